/** ReplicaCore restores and the apply queue: consistent points, pause/resume, bounds, shutdown. */
import { describe, expect, test } from "bun:test";
import { replicaShipQueueMax, restoreChunkBytes } from "../../src/constants.ts";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { ReplicaCore, type RestoreMessage, type ShipReply } from "../../src/roles/replica/core.ts";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import { crc32c } from "../../src/wrl/crc32c.ts";
import { applyModel, dataRecord, memoryCore, replicaDevice, shipment, wrlUuid } from "./helpers.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** Collects what a restore sends and reassembles the image. */
function collector(onMessage?: (message: RestoreMessage) => void | Promise<void>) {
  const messages: RestoreMessage[] = [];
  const chunks: Uint8Array[] = [];
  const send = async (message: RestoreMessage, payload?: Uint8Array) => {
    messages.push(message);
    if (message.type === "restoreData") {
      expect(payload?.length).toBe(message.length);
      chunks.push(payload!.slice());
    }
    await onMessage?.(message);
  };
  const image = () => new Uint8Array(Buffer.concat(chunks));
  return { messages, send, image };
}

describe("restore", () => {
  test("streams the device at a shipment boundary: a shipment arriving meanwhile waits, then applies", async () => {
    const { core, memory } = await memoryCore({ disk0: 10 * MiB });
    const records = [dataRecord(1, "disk0", 0, 1 * MiB), dataRecord(2, "disk0", 6 * MiB, 1 * MiB)];
    const first = shipment(records, { devices: [{ name: "disk0", sizeBytes: 9 * MiB }] });
    expect((await core.ship(first.message, first.payload)).type).toBe("shipAck");
    const before = memory("disk0").snapshot().slice(0, 9 * MiB);
    let late: Promise<ShipReply> | undefined;
    const later = shipment([dataRecord(3, "disk0", 5 * MiB, 2 * MiB)]);
    const sink = collector((message) => {
      // Sent while the first chunk is on its way: must not change what the restore sends.
      if (message.type === "restoreBegin") late = core.ship(later.message, later.payload);
    });
    const result = await core.restore("disk0", sink.send);
    // The declared size (9 MiB), not the replica device's 10 MiB; chunks in order, <= 4 MiB.
    expect(sink.messages[0]).toEqual({ type: "restoreBegin", device: "disk0", sizeBytes: 9 * MiB, appliedLsn: 2 });
    const data = sink.messages.filter((message) => message.type === "restoreData");
    expect(data.map((message) => [message.offset, message.length])).toEqual([[0, restoreChunkBytes], [restoreChunkBytes, restoreChunkBytes], [2 * restoreChunkBytes, 1 * MiB]]);
    expect(sink.image()).toEqual(before);
    expect(sink.messages[sink.messages.length - 1]).toEqual({ type: "restoreEnd", device: "disk0", sizeBytes: 9 * MiB, crc32c: crc32c(before) });
    expect(result).toEqual({ device: "disk0", sizeBytes: 9 * MiB, appliedLsn: 2, crc32c: crc32c(before) });
    expect(await late!).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: 3 });
    const model = new Map([["disk0", new Uint8Array(10 * MiB)]]);
    applyModel(model, [...records, dataRecord(3, "disk0", 5 * MiB, 2 * MiB)]);
    expect(memory("disk0").snapshot()).toEqual(model.get("disk0")!);
  });

  test("without a declared size the replica device's size is exported; a device never written reads zeros", async () => {
    const { core } = await memoryCore({ disk0: 64 * KiB });
    const sink = collector();
    const result = await core.restore("disk0", sink.send);
    expect(result).toEqual({ device: "disk0", sizeBytes: 64 * KiB, appliedLsn: 0, crc32c: crc32c(new Uint8Array(64 * KiB)) });
    expect(sink.image()).toEqual(new Uint8Array(64 * KiB));
  });

  test("a declared size ending inside a 4 KiB replica block is exported exactly", async () => {
    const device = new MemoryDevice(64 * KiB, "disk0", 4096);
    const core = await ReplicaCore.open({ devices: [replicaDevice("disk0", device)], store: new MemoryStateStore() });
    const built = shipment([dataRecord(1, "disk0", 0, 8 * KiB)], { devices: [{ name: "disk0", sizeBytes: 20 * KiB + 512 }] });
    expect((await core.ship(built.message, built.payload)).type).toBe("shipAck");
    const sink = collector();
    const result = await core.restore("disk0", sink.send);
    expect(result.sizeBytes).toBe(20 * KiB + 512);
    expect(sink.image()).toEqual(device.snapshot().slice(0, 20 * KiB + 512));
  });

  test("a restorer that goes away mid-stream ends the restore, and apply resumes", async () => {
    const { core, memory } = await memoryCore({ disk0: 12 * MiB });
    let sent = 0;
    const failing = async (message: RestoreMessage) => {
      if (message.type === "restoreData" && ++sent === 2) throw new Error("restorer disconnected");
    };
    const restoring = core.restore("disk0", failing);
    const after = shipment([dataRecord(1, "disk0", 0, 4 * KiB)]);
    const reply = core.ship(after.message, after.payload);
    await expect(restoring).rejects.toThrow("restorer disconnected");
    expect(await reply).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: 1 });
    expect(memory("disk0").snapshot().subarray(0, 4 * KiB)).toEqual(dataRecord(1, "disk0", 0, 4 * KiB).data!);
  });

  test("an unknown device is DEVICE_UNKNOWN, naming the devices there are", async () => {
    const { core } = await memoryCore({ disk0: 64 * KiB });
    const error = (await core.restore("disk9", async () => undefined).catch((caught: unknown) => caught)) as { code?: string; hint?: string };
    expect(error.code).toBe("DEVICE_UNKNOWN");
    expect(error.hint).toContain("disk0");
  });
});

describe("apply queue", () => {
  test(`at most ${replicaShipQueueMax} shipments wait; the next is refused with BUSY; the waiting ones apply in order`, async () => {
    const { core, memory } = await memoryCore({ disk0: 1 * MiB });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    // A restore holding apply paused (its receiver is slow) lets the queue fill deterministically.
    const restoring = core.restore("disk0", async (message) => {
      if (message.type === "restoreBegin") await held;
    });
    const replies: Promise<ShipReply>[] = [];
    const records = Array.from({ length: replicaShipQueueMax + 1 }, (_, index) => dataRecord(index + 1, "disk0", (index % 8) * 4 * KiB, 4 * KiB));
    for (const record of records) {
      const built = shipment([record]);
      replies.push(core.ship(built.message, built.payload));
    }
    const refused = await replies[replicaShipQueueMax]!;
    expect(refused.type === "shipNack" && refused.code).toBe("BUSY");
    expect(core.queuedShipments).toBe(replicaShipQueueMax);
    release();
    await restoring;
    const answers = await Promise.all(replies.slice(0, replicaShipQueueMax));
    expect(answers.map((answer) => (answer.type === "shipAck" ? answer.appliedLsn : answer.code))).toEqual(records.slice(0, replicaShipQueueMax).map((record) => record.lsn));
    const model = new Map([["disk0", new Uint8Array(1 * MiB)]]);
    applyModel(model, records.slice(0, replicaShipQueueMax));
    expect(memory("disk0").snapshot()).toEqual(model.get("disk0")!);
  });

  test("stop() lets the shipment being applied finish and be acked; queued ones get SHUTTING_DOWN", async () => {
    const inner = new MemoryDevice(64 * KiB, "disk0");
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let writes = 0;
    const gated: BlockDevice = Object.assign(Object.create(inner) as MemoryDevice, {
      write: async (offset: number, data: Uint8Array) => {
        writes += 1;
        await held;
        await inner.write(offset, data);
      },
    });
    const store = new MemoryStateStore();
    const core = await ReplicaCore.open({ devices: [replicaDevice("disk0", gated)], store });
    const a = shipment([dataRecord(1, "disk0", 0, 4 * KiB)]);
    const b = shipment([dataRecord(2, "disk0", 4 * KiB, 4 * KiB)]);
    const first = core.ship(a.message, a.payload);
    const second = core.ship(b.message, b.payload);
    while (writes === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    expect(core.applying).toBe(true);
    const stopping = core.stop();
    release();
    expect(await first).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: 1 });
    const refused = await second;
    expect(refused.type === "shipNack" && refused.code).toBe("SHUTTING_DOWN");
    await stopping;
    expect(store.saved?.wrls[0]?.appliedLsn).toBe(1);
    expect(core.appliedLsn(wrlUuid)).toBe(1);
    const late = await core.ship(b.message, b.payload);
    expect(late.type === "shipNack" && late.code).toBe("SHUTTING_DOWN");
  });
});
