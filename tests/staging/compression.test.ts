/**
 * zstd compression of the relay's shipments (src/roles/staging/compression.ts): the
 * --compression flag, the `auto` level policy as a pure function (one test per row of its
 * table), and a StagingCore relaying through a real ReplicaCore with compression on: the replica
 * ends equal to what was written, the status shows the ratio, incompressible data goes raw.
 * The boost (RPO target at risk): a level floor for auto.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { DruvaaError } from "../../src/errors.ts";
import {
  autoLevelStart,
  autoLevelStep,
  compressionBoostLevelMin,
  compressionAutoGainMin,
  compressionAutoLevelMax,
  compressionAutoLevelMin,
  compressionAutoPeriodShipments,
  compressionAutoProbePeriods,
  compressionAutoRaiseFactor,
  parseCompression,
  ShipmentCompressor,
  type AutoLevelState,
  type CompressionSample,
} from "../../src/roles/staging/compression.ts";
import { closeTrackedFixtures, trackedFixture, type Fixture } from "./fixture.ts";
import { bytes, CoreClient, KiB, MiB, waitFor } from "./helpers.ts";

afterEach(closeTrackedFixtures);

function usageOf(text: string): DruvaaError {
  try {
    parseCompression(text);
  } catch (error) {
    expect(error).toBeInstanceOf(DruvaaError);
    return error as DruvaaError;
  }
  throw new Error(`--compression ${text} was accepted`);
}

describe("--compression", () => {
  test("off, auto and levels 1..19 are taken", () => {
    expect(parseCompression("off")).toEqual({ mode: "off" });
    expect(parseCompression("0")).toEqual({ mode: "off" });
    expect(parseCompression("AUTO")).toEqual({ mode: "auto" });
    expect(parseCompression("1")).toEqual({ mode: "fixed", level: 1 });
    expect(parseCompression(" 19 ")).toEqual({ mode: "fixed", level: 19 });
  });

  test("anything else is a usage error naming the value, with a hint", () => {
    for (const bad of ["25", "20", "-1", "1.5", "fast", "", "3x", "1e1"]) {
      const error = usageOf(bad);
      expect(error.code).toBe("USAGE");
      expect(error.exitCode).toBe(2);
      expect(error.message).toStartWith(`--compression ${bad}:`);
      expect(error.hint).toContain("--compression auto");
    }
    expect(usageOf("25").message).toBe("--compression 25: not a zstd level in 1..19");
  });
});

/** Feeds a whole period of identical samples; returns the state after the decision. */
function period(state: AutoLevelState, sample: CompressionSample): AutoLevelState {
  let next = state;
  for (let index = 0; index < compressionAutoPeriodShipments; index += 1) next = autoLevelStep(next, sample);
  return next;
}

const at = (level: number): AutoLevelState => ({ ...autoLevelStart(), level });
/** A 2 MiB shipment that compressed 3:1. */
const squeezed = { rawBytes: 2 * MiB, wireBytes: 700 * KiB };

describe("auto level (pure)", () => {
  test("starts at the lowest level and decides only at the end of a period", () => {
    expect(autoLevelStart().level).toBe(compressionAutoLevelMin);
    const linkBound = { ...squeezed, compressMs: 1, waitMs: 50 };
    let state = autoLevelStart();
    for (let index = 1; index < compressionAutoPeriodShipments; index += 1) {
      state = autoLevelStep(state, linkBound);
      expect(state.level).toBe(compressionAutoLevelMin);
      expect(state.shipments).toBe(index);
    }
    state = autoLevelStep(state, linkBound);
    expect(state).toMatchObject({ level: compressionAutoLevelMin + 1, shipments: 0, compressMs: 0, waitMs: 0, pausedPeriods: 0 });
    expect(state.msPerByte).toBeCloseTo(1 / squeezed.rawBytes, 12);
  });

  test("row 1: data that barely compresses pauses compression, whatever the timing", () => {
    const barely = { rawBytes: 2 * MiB, wireBytes: Math.ceil((2 * MiB) / (compressionAutoGainMin * 0.99)), compressMs: 1, waitMs: 100 };
    expect(period(at(5), barely).level).toBe(0);
  });

  test("row 2: compression taking longer than the waits lowers the level by one; below the lowest it pauses (a LAN)", () => {
    expect(period(at(4), { ...squeezed, compressMs: 10, waitMs: 9 }).level).toBe(3);
    expect(period(at(compressionAutoLevelMin), { ...squeezed, compressMs: 10, waitMs: 0 }).level).toBe(0);
    // Some waiting already (a WAN link whose window is filling): the lowest level holds.
    expect(period(at(compressionAutoLevelMin), { ...squeezed, compressMs: 10, waitMs: 5 }).level).toBe(compressionAutoLevelMin);
  });

  test("paused: resumes at the lowest level when the link holds shipping back, or to look again after a while", () => {
    const paused = { ...autoLevelStart(), level: 0, msPerByte: 5 / squeezed.rawBytes }; // compressing one cost 5 ms
    const raw = { rawBytes: squeezed.rawBytes, wireBytes: squeezed.rawBytes, compressMs: 0 };
    expect(period(paused, { ...raw, waitMs: compressionAutoRaiseFactor * 5 }).level).toBe(compressionAutoLevelMin);
    let state = period(paused, { ...raw, waitMs: compressionAutoRaiseFactor * 5 - 1 });
    expect(state).toMatchObject({ level: 0, pausedPeriods: 1 });
    for (let periods = 2; periods < compressionAutoProbePeriods; periods += 1) state = period(state, { ...raw, waitMs: 0 });
    expect(state.level).toBe(0);
    expect(period(state, { ...raw, waitMs: 0 }).level).toBe(compressionAutoLevelMin);
  });

  test("row 3: waiting on the link far longer than compressing raises the level by one, up to the highest", () => {
    expect(period(at(2), { ...squeezed, compressMs: 1, waitMs: compressionAutoRaiseFactor }).level).toBe(3);
    expect(period(at(compressionAutoLevelMax), { ...squeezed, compressMs: 1, waitMs: 1000 }).level).toBe(compressionAutoLevelMax);
    // Nothing measured at all (too fast for the clock, and no waits): no reason to raise.
    expect(period(at(2), { ...squeezed, compressMs: 0, waitMs: 0 }).level).toBe(2);
  });

  test("row 4: in between (waits 1..4x the compression time) the level holds", () => {
    expect(period(at(3), { ...squeezed, compressMs: 2, waitMs: 2 }).level).toBe(3);
    expect(period(at(3), { ...squeezed, compressMs: 2, waitMs: compressionAutoRaiseFactor * 2 - 0.01 }).level).toBe(3);
  });

  test("deterministic: the same samples give the same levels; a link-bound run climbs to the top and stays", () => {
    const run = () => {
      let state = autoLevelStart();
      const levels: number[] = [];
      for (let index = 0; index < 10 * compressionAutoPeriodShipments; index += 1) {
        state = autoLevelStep(state, { ...squeezed, compressMs: 1 + (index % 3), waitMs: 40 });
        levels.push(state.level);
      }
      return levels;
    };
    expect(run()).toEqual(run());
    expect(run().at(-1)).toBe(compressionAutoLevelMax);
  });
});

describe("ShipmentCompressor", () => {
  const message = { type: "ship" as const, wrl: "w0", wrlUuid: "0f8fad5b-d9cb-469f-a165-70867728950e", firstLsn: 1, lastLsn: 1, records: [{ lsn: 1, epoch: 0, device: "d0", offset: 0, length: 64 * KiB, flags: 0 }] };

  test("counts raw and wire bytes; off sends as is, small payloads and random data go raw", async () => {
    const zeros = new Uint8Array(64 * KiB);
    const off = new ShipmentCompressor();
    expect(await off.pack({ message, payload: zeros })).toEqual({ message, payload: zeros });
    expect(off.status()).toMatchObject({ mode: "off", level: null, rawBytes: 64 * KiB, wireBytes: 64 * KiB, compressionRatio: 1, compressedShipments: 0 });

    const fixed = new ShipmentCompressor({ mode: "fixed", level: 3 });
    const packed = await fixed.pack({ message, payload: zeros });
    expect(packed.message.codec).toBe("zstd");
    const random = bytes(64 * KiB, 9);
    expect((await fixed.pack({ message, payload: random })).payload).toBe(random);
    const small = { message: { ...message, records: [{ ...message.records[0]!, length: 512 }] }, payload: new Uint8Array(512) };
    expect(await fixed.pack(small)).toBe(small);
    const status = fixed.status();
    expect(status).toMatchObject({ mode: "fixed", level: 3, rawBytes: 128 * KiB + 512, wireBytes: packed.payload.length + 64 * KiB + 512, compressedShipments: 1 });
    expect(status.compressionRatio).toBeCloseTo(status.rawBytes / status.wireBytes, 10);
  });

  test("compression boost: auto at level 3 at least and never paused while on; lifted, the level comes down by the policy; no effect on a fixed level", async () => {
    let nowMs = 0;
    const auto = new ShipmentCompressor({ mode: "auto" }, () => (nowMs += 1)); // every compression costs 1 ms
    const zeros = new Uint8Array(64 * KiB);
    // No waits at all: compression holds shipping up, so auto would come down and pause.
    for (let index = 0; index < 2 * compressionAutoPeriodShipments; index += 1) await auto.pack({ message, payload: zeros });
    expect(auto.status().level).toBe(0);
    auto.boost(true);
    expect(auto.status()).toMatchObject({ level: compressionBoostLevelMin, boosted: true });
    for (let index = 0; index < 3 * compressionAutoPeriodShipments; index += 1) await auto.pack({ message, payload: zeros });
    // Still CPU-bound, but boosted: never below the floor, never paused.
    expect(auto.status()).toMatchObject({ level: compressionBoostLevelMin, boosted: true });
    auto.boost(false);
    for (let index = 0; index < compressionAutoPeriodShipments; index += 1) await auto.pack({ message, payload: zeros });
    expect(auto.status()).toMatchObject({ level: compressionBoostLevelMin - 1, boosted: false });
    const fixed = new ShipmentCompressor({ mode: "fixed", level: 1 });
    fixed.boost(true);
    expect(fixed.status()).toMatchObject({ level: 1, boosted: false });
  });

  test("auto follows the policy with the times it measures (a fake clock)", async () => {
    let nowMs = 0;
    const auto = new ShipmentCompressor({ mode: "auto" }, () => (nowMs += 1)); // every compression takes 1 ms
    const zeros = new Uint8Array(64 * KiB);
    for (let index = 0; index < compressionAutoPeriodShipments; index += 1) {
      auto.noteWait(10); // link-bound: the relay waited 10 ms per shipment
      await auto.pack({ message, payload: zeros });
    }
    expect(auto.status()).toMatchObject({ mode: "auto", level: compressionAutoLevelMin + 1, compressMs: compressionAutoPeriodShipments });
    for (let index = 0; index < compressionAutoPeriodShipments; index += 1) await auto.pack({ message, payload: zeros }); // no waits: CPU-bound
    expect(auto.status().level).toBe(compressionAutoLevelMin);
  });
});

describe("relay with compression", () => {
  /** Starts the core's relay and attaches d0 (1 MiB) to w0. */
  async function startAttached(f: Fixture): Promise<CoreClient> {
    f.core.start();
    const client = new CoreClient(f.core);
    await client.attach("w0", "d0", 1 * MiB);
    return client;
  }

  /** Writes text-and-zeros blocks (as file systems do) and random blocks over d0; returns the model. */
  async function writeMixed(client: CoreClient, count: number, randomEvery: number): Promise<Uint8Array> {
    const model = new Uint8Array(1 * MiB);
    const line = new TextEncoder().encode("replicated by druvaa, block after block; ");
    for (let index = 0; index < count; index += 1) {
      const lengthBytes = (1 + (index % 4)) * 4 * KiB;
      const offset = ((index * 37) % 240) * 4 * KiB;
      let data: Uint8Array;
      if (randomEvery > 0 && index % randomEvery === 0) data = bytes(lengthBytes, index + 1);
      else {
        data = new Uint8Array(lengthBytes);
        for (let position = 0; position < lengthBytes / 2; position += 1) data[position] = line[(position + index) % line.length]!;
      }
      expect((await client.write("w0", "d0", offset, data)).type).toBe("writeAck");
      model.set(data, offset);
    }
    return model;
  }

  for (const compression of [{ mode: "auto" as const }, { mode: "fixed" as const, level: 19 }]) {
    test(`--compression ${compression.mode === "auto" ? "auto" : compression.level}: the replica equals what was written; the status shows the ratio`, async () => {
      const f = await trackedFixture({ compression, limits: { payloadBytesMax: 64 * KiB, recordsMax: 8, headerBytesMax: 60 * KiB } });
      const client = await startAttached(f);
      const model = await writeMixed(client, 60, 7);
      await f.drained();
      expect(Buffer.from(f.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
      const compressed = f.replica.shipments.filter((ship) => ship.codec === "zstd");
      expect(compressed.length).toBeGreaterThan(0);
      const replica = f.core.status().wrls[0]!.replica;
      expect(replica.compression.mode).toBe(compression.mode);
      // auto pauses once the (in-process, never waiting) replica shows compression is not what holds shipping up.
      expect(replica.compression.compressionRatio).toBeGreaterThan(compression.mode === "auto" ? 1.05 : 1.5);
      expect(replica.compression.compressedShipments).toBe(compressed.length);
      expect(replica.shipmentsShipped).toBe(f.replica.shipments.length);
      expect(replica.bytesShipped).toBe(replica.compression.wireBytes);
      expect(replica.compression.rawBytes).toBe(f.replica.shipments.reduce((sum, ship) => sum + (ship.rawBytes ?? ship.records.reduce((bytes, record) => bytes + record.length, 0)), 0));
    });
  }

  test("shipments compressed side by side still go out in LSN order, within the window", async () => {
    const f = await trackedFixture({ compression: { mode: "fixed", level: 3 }, windowMax: 3 });
    f.replica.holding = true;
    const client = await startAttached(f);
    const model = await writeMixed(client, 40, 0);
    await waitFor(() => f.replica.shipments.length === 3, "a full window");
    await Bun.sleep(30);
    expect(f.replica.shipments).toHaveLength(3); // nothing sent past the window, however many are packed
    f.replica.release();
    await f.drained();
    const ships = f.replica.shipments;
    expect(ships[0]!.firstLsn).toBe(1);
    for (let index = 1; index < ships.length; index += 1) expect(ships[index]!.firstLsn).toBe(ships[index - 1]!.lastLsn + 1);
    expect(ships.at(-1)!.lastLsn).toBe(40);
    expect(ships.every((ship) => ship.codec === "zstd")).toBe(true);
    expect(Buffer.from(f.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
  });

  test("random data travels raw (ratio 1); compression off sends no codec field at all", async () => {
    for (const compression of [{ mode: "fixed" as const, level: 1 }, { mode: "off" as const }]) {
      const f = await trackedFixture({ compression });
      const client = await startAttached(f);
      const model = await writeMixed(client, 12, 1);
      await f.drained();
      expect(Buffer.from(f.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
      expect(f.replica.shipments.every((ship) => ship.codec === undefined)).toBe(true);
      const status = f.core.status().wrls[0]!.replica;
      expect(status.compression).toMatchObject({ mode: compression.mode, compressionRatio: 1, compressedShipments: 0 });
      expect(status.bytesShipped).toBe(status.compression.rawBytes);
      await closeTrackedFixtures();
    }
  });
});
