/**
 * Shipments that wait while one is applied are applied as one group: one flush and one state save
 * for all of them, then each is acked with its own last LSN. A shipment refused inside a group
 * does not take the group's acknowledged shipments down with it.
 */
import { describe, expect, test } from "bun:test";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { ReplicaCore, type ShipReply } from "../../src/roles/replica/core.ts";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import { applyModel, dataRecord, replicaDevice, shipment, wrlUuid, type TestRecord } from "./helpers.ts";

const KiB = 1024;

/** A memory device whose writes wait for `release()`, counting flushes. */
function gatedDevice(sizeBytes: number) {
  const inner = new MemoryDevice(sizeBytes, "disk0");
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const counters = { writes: 0, flushes: 0 };
  const device: BlockDevice = Object.assign(Object.create(inner) as MemoryDevice, {
    write: async (offset: number, data: Uint8Array) => {
      counters.writes += 1;
      await held;
      await inner.write(offset, data);
    },
    flush: async () => {
      counters.flushes += 1;
      await inner.flush();
    },
  });
  return { inner, device, counters, release };
}

describe("group apply", () => {
  test("shipments arriving while one is applied join its group: flushed and saved once, acked each with its own LSN", async () => {
    const gated = gatedDevice(256 * KiB);
    const store = new MemoryStateStore();
    const core = await ReplicaCore.open({ devices: [replicaDevice("disk0", gated.device)], store });
    const records: TestRecord[] = Array.from({ length: 4 }, (_, index) => dataRecord(index + 1, "disk0", (index % 3) * 8 * KiB, 8 * KiB));
    const replies: Promise<ShipReply>[] = [];
    replies.push(core.ship(shipment([records[0]!]).message, shipment([records[0]!]).payload));
    while (gated.counters.writes === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    for (const record of records.slice(1)) {
      const built = shipment([record]);
      replies.push(core.ship(built.message, built.payload));
    }
    gated.release();
    const answers = await Promise.all(replies);
    expect(answers).toEqual(records.map((record) => ({ type: "shipAck", wrl: "wrl0", appliedLsn: record.lsn })));
    // The three that arrived while the first one's writes ran joined its group: one flush, one save.
    expect(store.saveCount).toBe(1);
    expect(gated.counters.flushes).toBe(1);
    expect(store.saved?.wrls[0]?.appliedLsn).toBe(4);
    const model = new Map([["disk0", new Uint8Array(256 * KiB)]]);
    applyModel(model, records);
    expect(gated.inner.snapshot()).toEqual(model.get("disk0")!);
  });

  test("a refused shipment inside a group: the ones before it are applied and acked, it and the ones after it are not", async () => {
    const gated = gatedDevice(64 * KiB);
    const store = new MemoryStateStore();
    const core = await ReplicaCore.open({ devices: [replicaDevice("disk0", gated.device)], store });
    const first = dataRecord(1, "disk0", 0, 4 * KiB);
    const second = dataRecord(2, "disk0", 4 * KiB, 4 * KiB);
    const unknown = { ...dataRecord(3, "disk0", 8 * KiB, 4 * KiB), device: "disk9" };
    const fourth = dataRecord(4, "disk0", 12 * KiB, 4 * KiB);
    const replies: Promise<ShipReply>[] = [core.ship(shipment([first]).message, shipment([first]).payload)];
    while (gated.counters.writes === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    for (const record of [second, unknown, fourth]) {
      const built = shipment([record]);
      replies.push(core.ship(built.message, built.payload));
    }
    gated.release();
    const answers = await Promise.all(replies);
    expect(answers.map((answer) => (answer.type === "shipAck" ? answer.appliedLsn : answer.code))).toEqual([1, 2, "DEVICE_UNKNOWN", "LSN_GAP"]);
    expect(core.appliedLsn(wrlUuid)).toBe(2);
    expect(store.saved?.wrls[0]?.appliedLsn).toBe(2);
    const model = new Map([["disk0", new Uint8Array(64 * KiB)]]);
    applyModel(model, [first, second]);
    expect(gated.inner.snapshot()).toEqual(model.get("disk0")!);
  });
});
