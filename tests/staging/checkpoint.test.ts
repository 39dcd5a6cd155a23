/**
 * Checkpoints at staging: a checkpoint write is logged as a marker record carrying its label
 * (durable, acked with its LSN, after every write acked before it), the relay ships it with the
 * label as its payload, and a coalesced span never swallows one: the span ends right before the
 * checkpoint, which travels uncoalesced right after it, so the replica passes through exactly the
 * state the checkpoint names.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { checkpointLabelOf } from "../../src/protocol/checkpoint-label.ts";
import { decodeFrame, encodeFrameBytes } from "../../src/protocol/frame.ts";
import { checkpointFlags, checkpointLabelBytesOf, recordFlags, shipRecordData, type Message, type ShipMessage, type WriteAckMessage } from "../../src/protocol/messages.ts";
import { ResyncLog } from "../../src/roles/replica/resync-log.ts";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import { Coalescer } from "../../src/roles/staging/coalesce.ts";
import { shipRecordOf, wrlAppendOf } from "../../src/roles/staging/records.ts";
import { defaultShipmentLimits } from "../../src/roles/staging/shipment.ts";
import type { WrlRecord } from "../../src/wrl/types.ts";
import { WriteLog } from "../../src/wrl/write-log.ts";
import { closeTrackedFixtures, trackedFixture, type Fixture } from "./fixture.ts";
import { applyTo, bytes, CoreClient, FakeReplica, KiB, MiB, waitFor } from "./helpers.ts";

afterEach(closeTrackedFixtures);

const isCheckpoint = (flags: number) => (flags & recordFlags.checkpoint) !== 0;

/** Sends a checkpoint write through the codec, as the server would hand it over; resolves with the answer. */
async function sendCheckpoint(client: CoreClient, device: string, label: string, reqId: number): Promise<Message> {
  const message: Message = { type: "write", kind: "checkpoint", label, reqId, device, wrl: "w0", epoch: 1000 + reqId, offset: 0, length: 0 };
  const frame = decodeFrame(encodeFrameBytes(message));
  void client.core.handle(client.session, frame.message, frame.payload);
  await waitFor(() => client.answers.some((answer) => (answer.type === "writeAck" || answer.type === "writeNack") && answer.reqId === reqId), "the checkpoint's answer");
  return client.answers.find((answer) => (answer.type === "writeAck" || answer.type === "writeNack") && answer.reqId === reqId)!;
}

/** Records every checkpoint the replica core is handed (label from the payload, LSN). */
function watchCheckpoints(replica: FakeReplica): { label: string | undefined; lsn: number; coalesced: boolean }[] {
  const seen: { label: string | undefined; lsn: number; coalesced: boolean }[] = [];
  const core = replica.core;
  const ship = core.ship.bind(core);
  core.ship = (message: ShipMessage, payload: Uint8Array) => {
    const data = shipRecordData(message, payload);
    message.records.forEach((record, index) => {
      if (isCheckpoint(record.flags)) seen.push({ label: checkpointLabelOf(data[index]!), lsn: record.lsn, coalesced: message.coalesced === true });
    });
    return ship(message, payload);
  };
  return seen;
}

describe("checkpoint records", () => {
  test("a checkpoint write becomes a marker carrying its label, shipped with offset 0 and length 0", () => {
    const append = wrlAppendOf({ type: "write", kind: "checkpoint", label: "before-x", reqId: 4, device: "d0", wrl: "w0", epoch: 2, offset: 0, length: 0 }, new Uint8Array(0));
    expect(append.type).toBe("marker");
    expect(new TextDecoder().decode(append.data)).toBe("before-x");
    expect(append.lengthBytes).toBe(0);
    expect(append.flags).toBe(checkpointFlags(8));
    const record: WrlRecord = { lsn: 9, type: "marker", epoch: 2, device: "d0", seq: 4, offset: 0, lengthBytes: 0, flags: append.flags!, data: append.data };
    expect(shipRecordOf(record, "d0")).toEqual({ lsn: 9, epoch: 2, device: "d0", offset: 0, length: 0, flags: checkpointFlags(8) });
  });

  test("logged durably after the writes acked before it, and relayed to the replica with its label", async () => {
    const f = await trackedFixture();
    const seen = watchCheckpoints(f.replica);
    f.replica.holding = true; // the WRL keeps the records until released
    f.core.start();
    const client = new CoreClient(f.core);
    await client.attach("w0", "d0", 1 * MiB);
    const model = new Uint8Array(1 * MiB);
    let lastWriteLsn = 0;
    for (let index = 0; index < 5; index += 1) {
      const data = bytes(8 * KiB, 40 + index);
      const ack = await client.write("w0", "d0", index * 4 * KiB, data);
      expect(ack.type).toBe("writeAck");
      lastWriteLsn = (ack as WriteAckMessage).lsn;
      applyTo(model, index * 4 * KiB, data);
    }
    const answer = await sendCheckpoint(client, "d0", "before-x", 500);
    expect(answer.type).toBe("writeAck");
    const lsn = (answer as WriteAckMessage).lsn;
    expect(lsn).toBeGreaterThan(lastWriteLsn);
    // Durable in the WRL: read back as a marker with the label as its data.
    const [logged] = await f.wrl.read(lsn, 4 * KiB);
    expect(logged).toMatchObject({ lsn, type: "marker", device: "d0", offset: 0, lengthBytes: 0 });
    expect(isCheckpoint(logged!.flags) && checkpointLabelBytesOf(logged!.flags)).toBe(8);
    expect(new TextDecoder().decode(logged!.data)).toBe("before-x");
    f.replica.release();
    await f.drained();
    expect(seen).toEqual([{ label: "before-x", lsn, coalesced: false }]);
    const shipped = f.replica.shipments.flatMap((ship) => ship.records).find((record) => isCheckpoint(record.flags));
    expect(shipped).toEqual({ lsn, epoch: 1500, device: "d0", offset: 0, length: 0, flags: checkpointFlags(8) });
    // It wrote nothing: the replica holds exactly the data.
    expect(Buffer.from(f.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
  });

  test("a checkpoint with a bad label never reaches the WRL: the frame is refused at decode", () => {
    const message = { type: "write", kind: "checkpoint", label: "no spaces", reqId: 1, device: "d0", wrl: "w0", epoch: 1, offset: 0, length: 0 } as Message;
    expect(() => encodeFrameBytes(message)).toThrow(/write\.label/);
  });
});

describe("coalescing stops at a checkpoint", () => {
  const target = { wrl: "w0", wrlUuid: "6f1c2a4e-0b5d-4c1e-9a7b-3d2e1f0a9b8c", deviceSizes: new Map([["d0", 64 * KiB]]) };
  const write = (lsn: number, offset: number, fill: number): WrlRecord => ({ lsn, type: "write", epoch: lsn, device: "d0", seq: lsn, offset, lengthBytes: 4 * KiB, flags: 0, data: new Uint8Array(4 * KiB).fill(fill) });
  const checkpoint = (lsn: number): WrlRecord => ({ lsn, type: "marker", epoch: lsn, device: "d0", seq: lsn, offset: 0, lengthBytes: 0, flags: checkpointFlags(1), data: new TextEncoder().encode("c") });

  test("the span ends right before the checkpoint: the block keeps its value at the checkpoint", () => {
    const records = [write(1, 0, 1), write(2, 0, 2), write(3, 4 * KiB, 3), checkpoint(4), write(5, 0, 5)];
    const coalescer = new Coalescer(target, defaultShipmentLimits);
    const outcomes: string[] = [];
    for (const record of records) {
      outcomes.push(coalescer.add(record));
      if (outcomes.at(-1) !== "added") break; // the relay sends what it has
    }
    expect(outcomes).toEqual(["added", "added", "added", "stop"]);
    const span = coalescer.build();
    expect(span.message.lastLsn).toBe(3);
    expect(span.message.records.some((record) => isCheckpoint(record.flags))).toBe(false);
    // Block 0 as of the checkpoint (LSN 2's bytes), not LSN 5's.
    const data = shipRecordData(span.message, span.payload);
    const block0 = span.message.records.findIndex((record) => record.offset === 0);
    expect(data[block0]![0]).toBe(2);
    // A span starting at the checkpoint takes nothing: it goes as it is.
    expect(new Coalescer(target, defaultShipmentLimits).add(checkpoint(4))).toBe("stop");
  });

  test("through the relay, behind: no coalesced span covers the checkpoint; the shipment before it ends right before it", async () => {
    const rsWrl = ResyncLog.over(await WriteLog.create([new MemoryDevice(4 * MiB, "rswrl")]));
    const replica = await FakeReplica.create({ d0: 1 * MiB, d1: 256 * KiB }, new MemoryStateStore(), rsWrl);
    const f: Fixture = await trackedFixture({ replica, coalesce: { mode: "auto", lagBytesMin: 1, spanBytesMax: 256 * KiB }, limits: { payloadBytesMax: 64 * KiB, recordsMax: 64, headerBytesMax: 60 * KiB } });
    const seen = watchCheckpoints(f.replica);
    f.replica.holding = true;
    f.core.start();
    const client = new CoreClient(f.core);
    await client.attach("w0", "d0", 1 * MiB);
    const model = new Uint8Array(1 * MiB);
    const hot = async (from: number, count: number) => {
      for (let index = from; index < from + count; index += 1) {
        const data = bytes(4 * KiB, 300 + index);
        const offset = (index % 8) * 4 * KiB;
        expect((await client.write("w0", "d0", offset, data)).type).toBe("writeAck");
        applyTo(model, offset, data);
      }
    };
    await hot(0, 40);
    const answer = await sendCheckpoint(client, "d0", "mid-burst", 900);
    expect(answer.type).toBe("writeAck");
    const lsn = (answer as WriteAckMessage).lsn;
    await hot(40, 40);
    await waitFor(() => f.replica.shipments.length >= 1, "a first shipment");
    f.replica.release();
    await f.drained();
    expect(Buffer.from(f.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
    const spans = f.replica.shipments.filter((ship) => ship.coalesced === true);
    expect(spans.length).toBeGreaterThan(0);
    for (const span of spans) expect(span.firstLsn <= lsn && lsn <= span.lastLsn).toBe(false);
    expect(seen).toEqual([{ label: "mid-burst", lsn, coalesced: false }]);
    // Behind, the relay coalesced up to the checkpoint: a span ends right before it, and the
    // checkpoint opens the next shipment, uncoalesced.
    expect(spans.some((span) => span.lastLsn === lsn - 1)).toBe(true);
    const carrier = f.replica.shipments.find((ship) => ship.records.some((record) => record.lsn === lsn))!;
    expect(carrier.coalesced).toBeUndefined();
    expect(carrier.firstLsn).toBe(lsn);
    expect(f.replica.core.status().wrls[0]!.appliedLsn).toBeGreaterThanOrEqual(lsn);
  });
});
