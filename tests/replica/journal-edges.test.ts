/**
 * Edge cases of the point-in-time journal found in review: a step given in pieces counts only
 * whole (retention may drop its first pieces); a checkpoint inside a resync applied as it came is
 * no point, even in a group with the resync's end; a step starting inside such a resync gives no
 * point at its start; an undo that fails is tried again before anything else is applied.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { checkpointFlags } from "../../src/protocol/messages.ts";
import type { PlannedWrite } from "../../src/roles/replica/apply.ts";
import { ReplicaCore } from "../../src/roles/replica/core.ts";
import { ReplicaHistory } from "../../src/roles/replica/history.ts";
import { MemoryStateStore, type ReplicaState } from "../../src/roles/replica/state.ts";
import { applyModel, dataRecord, replicaDevice, shipment } from "./helpers.ts";

const KiB = 1024;
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function openHistory(options: { segmentBytes?: number; retentionBytes?: number } = {}) {
  const stateDir = mkdtempSync(join(tmpdir(), "druvaa-journal-edges-"));
  dirs.push(stateDir);
  return ReplicaHistory.open({ stateDir, retention: { ms: 3600_000, bytes: options.retentionBytes ?? 2 ** 40, ...(options.segmentBytes === undefined ? {} : { segmentBytes: options.segmentBytes }) } });
}

const memory = new MemoryDevice(1024 * KiB, "d");
const target = replicaDevice("d", memory);
const write = (lsn: number, offset: number, length = 64 * KiB): PlannedWrite => ({ record: { lsn, epoch: lsn, device: "d", offset, length, flags: 0 }, target, data: new Uint8Array(length).fill(lsn), probe: undefined });
const checkpoint = (lsn: number, label: string): PlannedWrite => ({ record: { lsn, epoch: lsn, device: "d", offset: 0, length: 0, flags: checkpointFlags(label.length) }, target, data: undefined, probe: undefined, checkpoint: { label, lsn } });
const stateAt = (lsn: number): ReplicaState => ({ version: 1, wrls: [{ name: "w", uuid: "w", appliedLsn: lsn, lastAppliedAt: null }], devices: [] });
const lsnsOf = (history: ReplicaHistory, lsn: number) => history.points("w", "w", stateAt(lsn)).map((point) => [point.lsn, point.label ?? null]);

describe("journal edges", () => {
  test("a step given in pieces is no way back once retention dropped its first piece", async () => {
    const history = await openHistory({ segmentBytes: 64 * KiB, retentionBytes: 200 * KiB });
    await history.apply([{ wrlUuid: "w", wrlName: "w", fromLsn: 0, toLsn: 1, writes: [write(1, 0)] }]);
    await history.committed(stateAt(1));
    for (let piece = 0; piece < 3; piece += 1) await history.apply([{ wrlUuid: "w", wrlName: "w", fromLsn: 1, toLsn: 4, writes: [write(2 + piece, (piece + 1) * 64 * KiB)], atomic: true, piece }]);
    await history.committed(stateAt(4));
    expect(history.status().journal!.droppedChunks).toBeGreaterThanOrEqual(2); // step 0→1 and piece 0
    expect(lsnsOf(history, 4)).toEqual([[4, null]]);
    await history.close();
  });

  test("a checkpoint inside a resync applied as it came is no point, in a group with the resync's end too", async () => {
    const history = await openHistory();
    await history.apply([
      { wrlUuid: "w", wrlName: "w", fromLsn: 0, toLsn: 2, writes: [write(1, 0), checkpoint(2, "cp")], unsettled: true },
      { wrlUuid: "w", wrlName: "w", fromLsn: 2, toLsn: 3, writes: [write(3, 64 * KiB)] },
    ]);
    await history.committed(stateAt(3));
    expect(lsnsOf(history, 3)).toEqual([[0, null], [3, null]]);
    await history.close();
  });

  test("history cut inside such a resync gives no point at the cut", async () => {
    const history = await openHistory();
    await history.apply([{ wrlUuid: "w", wrlName: "w", fromLsn: 0, toLsn: 1, writes: [write(1, 0)] }]);
    await history.apply([{ wrlUuid: "w", wrlName: "w", fromLsn: 1, toLsn: 2, writes: [write(2, 0)], unsettled: true }]);
    await history.apply([{ wrlUuid: "w", wrlName: "w", fromLsn: 2, toLsn: 3, writes: [write(3, 0)] }]);
    await history.committed(stateAt(3));
    await history.forget("w", 2);
    expect(lsnsOf(history, 3)).toEqual([[3, null]]);
    await history.close();
  });

  test("an undo that fails is tried again before anything else is applied; the device ends right", async () => {
    const history = await openHistory();
    let failWrites = false;
    const inner = new MemoryDevice(256 * KiB, "disk0");
    const flaky: BlockDevice = Object.assign(Object.create(Object.getPrototypeOf(inner)), inner, {
      write: (offset: number, data: Uint8Array) => (failWrites ? Promise.reject(new Error("EIO")) : inner.write(offset, data)),
      read: (offset: number, length: number) => inner.read(offset, length),
      flush: () => inner.flush(),
    });
    const store = new MemoryStateStore();
    const core = await ReplicaCore.open({ devices: [replicaDevice("disk0", flaky)], store, history });
    const first = shipment([dataRecord(1, "disk0", 0, 16 * KiB)]);
    await core.ship(first.message, first.payload);
    const model = new Map([["disk0", new Uint8Array(256 * KiB)]]);
    applyModel(model, [dataRecord(1, "disk0", 0, 16 * KiB)]);
    // A group fails mid-write, and its undo fails too: nothing more is applied until the undo works.
    const save = store.save.bind(store);
    store.save = async () => {
      failWrites = true;
      throw new Error("power lost");
    };
    const second = shipment([dataRecord(2, "disk0", 8 * KiB, 16 * KiB)]);
    expect((await core.ship(second.message, second.payload)).type).toBe("shipNack");
    store.save = save;
    const third = shipment([dataRecord(2, "disk0", 8 * KiB, 16 * KiB)]);
    expect(await core.ship(third.message, third.payload)).toMatchObject({ type: "shipNack", code: "IO_ERROR", message: expect.stringContaining("undoing an earlier failed apply") });
    failWrites = false;
    expect((await core.ship(third.message, third.payload)).type).toBe("shipAck");
    applyModel(model, [dataRecord(2, "disk0", 8 * KiB, 16 * KiB)]);
    expect(Buffer.compare(inner.snapshot(), model.get("disk0")!)).toBe(0);
    expect(core.points("disk0").map((point) => point.lsn)).toEqual([0, 1, 2]);
    await history.close();
  });
});
