/**
 * The relay with coalescing (relay-coalesce.ts) against a real ReplicaCore: behind, with a replica
 * that has an RS-WRL, it ships coalesced spans (fewer bytes, each covering many shipments' worth of
 * records) and the replica ends equal to what was written; a replica without an RS-WRL never gets one; RS_WRL_FULL makes the relay ship those
 * records as they are.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { ResyncLog } from "../../src/roles/replica/resync-log.ts";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import { WriteLog } from "../../src/wrl/write-log.ts";
import { closeTrackedFixtures, trackedFixture, type Fixture } from "./fixture.ts";
import { applyTo, bytes, CoreClient, FakeReplica, KiB, MiB, waitFor } from "./helpers.ts";

afterEach(closeTrackedFixtures);

const coalesceAlways = { mode: "auto" as const, lagBytesMin: 1, spanBytesMax: 256 * KiB };

async function replicaWithRsWrl(): Promise<FakeReplica> {
  const rsWrl = ResyncLog.over(await WriteLog.create([new MemoryDevice(4 * MiB, "rswrl")]));
  return FakeReplica.create({ d0: 1 * MiB, d1: 256 * KiB }, new MemoryStateStore(), rsWrl);
}

/** A started core coalescing into a holding replica with an RS-WRL (64 KiB shipments), d0 attached. */
async function heldSpanFixture(): Promise<{ f: Fixture; client: CoreClient }> {
  const f = await trackedFixture({ replica: await replicaWithRsWrl(), coalesce: coalesceAlways, limits: { payloadBytesMax: 64 * KiB, recordsMax: 64, headerBytesMax: 60 * KiB } });
  f.replica.holding = true;
  f.core.start();
  const client = new CoreClient(f.core);
  await client.attach("w0", "d0", 1 * MiB);
  return { f, client };
}

/** Many small writes over a few hot blocks (overwrites), some zeros; returns the model image. */
async function writeHot(client: CoreClient, count: number, model: Uint8Array = new Uint8Array(1 * MiB)): Promise<Uint8Array> {
  for (let index = 0; index < count; index += 1) {
    const lengthBytes = (1 + (index % 3)) * 4 * KiB;
    const offset = ((index * 5) % 12) * 4 * KiB;
    const data = index % 7 === 3 ? undefined : bytes(lengthBytes, 500 + index);
    expect((await client.write("w0", "d0", offset, data, lengthBytes)).type).toBe("writeAck");
    applyTo(model, offset, data, lengthBytes);
  }
  return model;
}

describe("relay coalescing", () => {
  test("behind, with a replica that has an RS-WRL: coalesced spans, fewer bytes, the replica equals what was written", async () => {
    const { f, client } = await heldSpanFixture();
    const model = await writeHot(client, 60);
    await waitFor(() => f.replica.shipments.length >= 1, "a first shipment");
    f.replica.release();
    await f.drained();
    expect(Buffer.from(f.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
    const spans = f.replica.shipments.filter((ship) => ship.coalesced === true);
    expect(spans.length).toBeGreaterThan(0);
    for (let index = 1; index < f.replica.shipments.length; index += 1) expect(f.replica.shipments[index]!.firstLsn).toBe(f.replica.shipments[index - 1]!.lastLsn + 1);
    const status = f.core.status().wrls[0]!.replica.coalescing;
    expect(status).toMatchObject({ mode: "auto", replicaAccepts: true, spans: spans.length });
    expect(status.recordsIn).toBeGreaterThan(status.recordsOut);
    expect(status.bytesSaved).toBeGreaterThan(0);
    expect(f.replica.core.status().rsWrl!.usedBytes).toBe(0);
  });

  test("a span's merged payload may exceed one shipment's: many shipments' worth of records in one frame", async () => {
    const { f, client } = await heldSpanFixture();
    const model = new Uint8Array(1 * MiB);
    for (let index = 0; index < 48; index += 1) {
      const data = bytes(4 * KiB, 900 + index);
      expect((await client.write("w0", "d0", index * 8 * KiB, data, 4 * KiB)).type).toBe("writeAck");
      applyTo(model, index * 8 * KiB, data, 4 * KiB);
    }
    await waitFor(() => f.replica.shipments.length >= 1, "a first shipment");
    f.replica.release();
    await f.drained();
    expect(Buffer.from(f.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
    // No overwrites: the merged payload is the input; a plain shipment holds 16 of these writes.
    const records = f.replica.shipments.filter((ship) => ship.coalesced === true).map((ship) => ship.records.length);
    expect(Math.max(0, ...records)).toBeGreaterThan(16);
  });

  test("a replica without an RS-WRL never gets a coalesced shipment, however far behind", async () => {
    const f = await trackedFixture({ coalesce: coalesceAlways });
    f.replica.holding = true;
    f.core.start();
    const client = new CoreClient(f.core);
    await client.attach("w0", "d0", 1 * MiB);
    const model = await writeHot(client, 40);
    f.replica.release();
    await f.drained();
    expect(Buffer.from(f.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
    expect(f.replica.shipments.some((ship) => ship.coalesced === true)).toBe(false);
    expect(f.core.status().wrls[0]!.replica.coalescing).toMatchObject({ replicaAccepts: false, spans: 0 });
  });

  test("--coalesce off (the relay's default) ships records as they are", async () => {
    const f = await trackedFixture({ replica: await replicaWithRsWrl() });
    f.core.start();
    const client = new CoreClient(f.core);
    await client.attach("w0", "d0", 1 * MiB);
    await writeHot(client, 20);
    await f.drained();
    expect(f.replica.shipments.some((ship) => ship.coalesced === true)).toBe(false);
    expect(f.core.status().wrls[0]!.replica.coalescing).toMatchObject({ mode: "off", replicaAccepts: true, spans: 0 });
  });

  test("RS_WRL_FULL for a span: those records go again as they are, and the replica converges", async () => {
    const f = await trackedFixture({ replica: await replicaWithRsWrl(), coalesce: coalesceAlways });
    const client = new CoreClient(f.core);
    await client.attach("w0", "d0", 1 * MiB);
    const model = await writeHot(client, 30);
    f.replica.nackNext.push("RS_WRL_FULL");
    f.core.start();
    await f.drained();
    expect(Buffer.from(f.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
    const [refused, ...after] = f.replica.shipments;
    expect(refused!.coalesced).toBe(true);
    const resent = after.filter((ship) => ship.firstLsn <= refused!.lastLsn);
    expect(resent.length).toBeGreaterThan(0);
    expect(resent.every((ship) => ship.coalesced !== true)).toBe(true);
    expect(after.some((ship) => ship.coalesced === true && ship.firstLsn > refused!.lastLsn)).toBe(true);
  });
});
