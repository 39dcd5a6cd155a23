/**
 * The replica's history (history.ts, journal.ts, snapshot.ts) through a real ReplicaCore on
 * memory devices and a journal in a temp directory: every point listed restores the image the
 * model had at that LSN; snapshots keep their point while apply goes on; a failed or crashed
 * apply is undone; retention drops the oldest points and says so.
 */
import { afterEach, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { ReplicaCore, type RestoreMessage } from "../../src/roles/replica/core.ts";
import { ReplicaHistory } from "../../src/roles/replica/history.ts";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import { checkpointFlags, recordFlags } from "../../src/protocol/messages.ts";
import { applyModel, dataRecord, replicaDevice, shipment, zeroRecord, type TestRecord } from "./helpers.ts";

const KiB = 1024;
const deviceBytes = 256 * KiB;
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "druvaa-history-"));
  dirs.push(dir);
  return dir;
}

async function historyCore(options: { stateDir?: string; retentionBytes?: number; retentionMs?: number; segmentBytes?: number; device?: BlockDevice; store?: MemoryStateStore; journal?: boolean; now?: () => number } = {}) {
  const stateDir = options.stateDir ?? tempDir();
  const memory = options.device ?? new MemoryDevice(deviceBytes, "disk0");
  const store = options.store ?? new MemoryStateStore();
  const history = await ReplicaHistory.open({ stateDir, ...(options.journal === false ? {} : { retention: { ms: options.retentionMs ?? 3600_000, bytes: options.retentionBytes ?? 1 << 30, ...(options.segmentBytes === undefined ? {} : { segmentBytes: options.segmentBytes }) } }), ...(options.now === undefined ? {} : { now: options.now }) });
  const core = await ReplicaCore.open({ devices: [replicaDevice("disk0", memory)], store, history });
  return { core, history, memory, store, stateDir };
}

/** What a restore of disk0 at `at` streams, as one image, and the LSN it announced. */
async function restoreImage(core: ReplicaCore, at?: string): Promise<{ image: Uint8Array; lsn: number }> {
  const chunks: Uint8Array[] = [];
  let lsn = -1;
  await core.restore("disk0", async (message: RestoreMessage, payload?: Uint8Array) => {
    if (message.type === "restoreBegin") lsn = message.appliedLsn;
    if (message.type === "restoreData") chunks.push(payload!.slice());
  }, at);
  return { image: new Uint8Array(Buffer.concat(chunks)), lsn };
}

/** A journaled core in a fresh state dir that applied LSN 1 (16 KiB at 0); `saved`: the device then. */
async function afterFirstShipment() {
  const stateDir = tempDir();
  const memory = new MemoryDevice(deviceBytes, "disk0");
  const store = new MemoryStateStore();
  const opened = await historyCore({ stateDir, device: memory, store });
  const first = shipment([dataRecord(1, "disk0", 0, 16 * KiB)]);
  await opened.core.ship(first.message, first.payload);
  return { stateDir, memory, store, opened, saved: memory.snapshot().slice() };
}

/** Random records over a small device (overlaps are common), data or zero, 4 KiB aligned. */
const recordArb = fc.record({ block: fc.integer({ min: 0, max: deviceBytes / (4 * KiB) - 1 }), blocks: fc.integer({ min: 1, max: 8 }), zero: fc.boolean() });

describe("point-in-time journal", () => {
  test("property: every point listed restores exactly the model's image at that LSN; a snapshot keeps its point while apply goes on", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(recordArb, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 12 }), fc.nat(), fc.boolean(), async (shipments, snapshotAt, together) => {
        const { core, history } = await historyCore();
        try {
        const model = new Map([["disk0", new Uint8Array(deviceBytes)]]);
        const images = new Map<number, Uint8Array>([[0, new Uint8Array(deviceBytes)]]);
        let lsn = 0;
        let snapshot: { lsn: number; read: (offset: number, length: number) => Promise<Uint8Array>; release(): void } | undefined;
        // `together`: every shipment sent at once, so the replica applies them in groups (a
        // point only at a group's end); else one at a time (a point after each).
        const inFlight: Promise<{ type: string }>[] = [];
        for (const [index, records] of shipments.entries()) {
          const built: TestRecord[] = records.map((record) => {
            lsn += 1;
            const offset = record.block * 4 * KiB;
            const length = Math.min(record.blocks * 4 * KiB, deviceBytes - offset);
            return record.zero ? zeroRecord(lsn, "disk0", offset, length) : dataRecord(lsn, "disk0", offset, length);
          });
          const ship = shipment(built);
          if (together) inFlight.push(core.ship(ship.message, ship.payload));
          else expect((await core.ship(ship.message, ship.payload)).type).toBe("shipAck");
          applyModel(model, built);
          images.set(lsn, model.get("disk0")!.slice());
          if (!together && index === snapshotAt % shipments.length) snapshot = await core.snapshot("disk0");
        }
        for (const reply of await Promise.all(inFlight)) expect(reply.type).toBe("shipAck");
        snapshot ??= await core.snapshot("disk0");
        const points = core.points("disk0");
        if (together) {
          // Points at group ends only: each a shipment's end, the first and last always there.
          expect(points.every((point) => images.has(point.lsn))).toBe(true);
          expect(points.at(-1)!.lsn).toBe(lsn);
        } else {
          expect(points.map((point) => point.lsn)).toEqual([...images.keys()]);
        }
        expect(points.at(-1)!.current).toBe(true);
        for (const point of points) {
          const restored = await restoreImage(core, String(point.lsn));
          expect(restored.lsn).toBe(point.lsn);
          expect(Buffer.compare(restored.image, images.get(point.lsn)!)).toBe(0);
        }
        expect(Buffer.compare(await snapshot!.read(0, deviceBytes), images.get(snapshot!.lsn)!)).toBe(0);
        snapshot!.release();
        } finally {
          await history.close();
        }
      }),
      { numRuns: 25 },
    );
  });

  test("a checkpoint record in the middle of a shipment is a labelled point of its own: restore --at the label returns the image right after it", async () => {
    const { core, history } = await historyCore();
    const label = new TextEncoder().encode("before-upgrade");
    const checkpoint: TestRecord = { lsn: 3, device: "disk0", offset: 0, flags: checkpointFlags(label.length), digests: label, length: 0 };
    const records = [dataRecord(1, "disk0", 0, 32 * KiB), dataRecord(2, "disk0", 64 * KiB, 16 * KiB), checkpoint, dataRecord(4, "disk0", 0, 128 * KiB)];
    const ship = shipment(records);
    expect((await core.ship(ship.message, ship.payload)).type).toBe("shipAck");
    const points = core.points("disk0");
    expect(points.find((point) => point.label === "before-upgrade")?.lsn).toBe(3);
    const model = new Map([["disk0", new Uint8Array(deviceBytes)]]);
    applyModel(model, records.slice(0, 2));
    const restored = await restoreImage(core, "before-upgrade");
    expect(restored.lsn).toBe(3);
    expect(Buffer.compare(restored.image, model.get("disk0")!)).toBe(0);
    await history.close();
  });

  test("a snapshot of an earlier point reads that point, and keeps it while more shipments apply", async () => {
    const { core, history } = await historyCore();
    const first = shipment([dataRecord(1, "disk0", 0, 64 * KiB)]);
    await core.ship(first.message, first.payload);
    const atOne = (await restoreImage(core)).image;
    const second = shipment([dataRecord(2, "disk0", 32 * KiB, 64 * KiB)]);
    await core.ship(second.message, second.payload);
    const snapshot = await core.snapshot("disk0", "1");
    expect(snapshot.lsn).toBe(1);
    const third = shipment([dataRecord(3, "disk0", 0, 128 * KiB), zeroRecord(4, "disk0", 128 * KiB, 64 * KiB)]);
    expect((await core.ship(third.message, third.payload)).type).toBe("shipAck");
    expect(Buffer.compare(await snapshot.read(0, deviceBytes), atOne)).toBe(0);
    snapshot.release();
    await history.close();
  });

  test("points survive a restart; an apply the state never saved is undone at the next start", async () => {
    const { stateDir, memory, store, opened, saved } = await afterFirstShipment();
    // A crash after the before-images were kept and the device written, before the state save:
    // a store that refuses to save stands in for the crash, then the process "restarts".
    const failing = Object.assign(Object.create(Object.getPrototypeOf(store)), store, { save: async () => { throw new Error("power lost"); } }) as MemoryStateStore;
    const crashed = await ReplicaCore.open({ devices: [replicaDevice("disk0", memory)], store: failing, history: opened.history });
    const second = shipment([dataRecord(2, "disk0", 8 * KiB, 32 * KiB)]);
    expect((await crashed.ship(second.message, second.payload)).type).toBe("shipNack");
    // The failed group was undone in-process: the device is at LSN 1 again.
    expect(Buffer.compare(memory.snapshot(), saved)).toBe(0);
    await opened.history.close();
    const again = await historyCore({ stateDir, device: memory, store });
    expect(again.core.points("disk0").map((point) => point.lsn)).toEqual([0, 1]);
    expect((await again.core.ship(second.message, second.payload)).type).toBe("shipAck");
    expect((await restoreImage(again.core, "1")).image).toEqual(saved);
    await again.history.close();
  });

  test("a crash between keeping the before-images and saving the state: the next start undoes the writes", async () => {
    const { stateDir, memory, store, opened, saved } = await afterFirstShipment();
    // The apply path of the next shipment, cut short after its writes (no state save, no undo).
    const second = shipment([dataRecord(2, "disk0", 4 * KiB, 64 * KiB)]);
    const device = replicaDevice("disk0", memory);
    const writes = [{ record: second.message.records[0]!, target: device, data: second.payload, probe: undefined }];
    await opened.history.apply([{ wrlUuid: second.message.wrlUuid, wrlName: "wrl0", fromLsn: 1, toLsn: 2, writes }]);
    expect(Buffer.compare(memory.snapshot(), saved)).not.toBe(0);
    await opened.history.close();
    const again = await historyCore({ stateDir, device: memory, store });
    expect(Buffer.compare(memory.snapshot(), saved)).toBe(0);
    expect(again.core.points("disk0").map((point) => point.lsn)).toEqual([0, 1]);
    await again.history.close();
  });

  test("a torn entry at the journal's end (a crash while appending) is cut at the next start; the points before it stay", async () => {
    const stateDir = tempDir();
    const memory = new MemoryDevice(deviceBytes, "disk0");
    const store = new MemoryStateStore();
    const opened = await historyCore({ stateDir, device: memory, store });
    for (let lsn = 1; lsn <= 3; lsn += 1) {
      const ship = shipment([dataRecord(lsn, "disk0", (lsn - 1) * 16 * KiB, 32 * KiB)]);
      await opened.core.ship(ship.message, ship.payload);
    }
    const atTwo = (await restoreImage(opened.core, "2")).image;
    await opened.history.close();
    // Half an entry after the last one: a header that promises more than follows.
    const segment = join(stateDir, "journal", "00000001.jnl");
    const whole = readFileSync(segment);
    appendFileSync(segment, whole.subarray(0, 6000));
    const again = await historyCore({ stateDir, device: memory, store });
    expect(again.core.points("disk0").map((point) => point.lsn)).toEqual([0, 1, 2, 3]);
    expect(statSync(segment).size).toBe(whole.length);
    expect((await restoreImage(again.core, "2")).image).toEqual(atTwo);
    await again.history.close();
  });

  test("inside a resync applied as it came (no replica WRL) no point is listed; the resync's end is one", async () => {
    const { core, history } = await historyCore();
    const first = shipment([dataRecord(1, "disk0", 0, 8 * KiB)]);
    await core.ship(first.message, first.payload);
    for (const lsn of [2, 3]) {
      const resync = shipment([{ ...dataRecord(lsn, "disk0", lsn * 16 * KiB, 8 * KiB), flags: recordFlags.resync }]);
      expect((await core.ship(resync.message, resync.payload)).type).toBe("shipAck");
    }
    expect(core.points("disk0").map((point) => point.lsn)).toEqual([0, 1, 3]); // 3: the current point (restores refuse it while unsettled)
    await expect(restoreImage(core, "2")).rejects.toMatchObject({ code: "REPLICA_INCONSISTENT" });
    const end = shipment([{ lsn: 4, device: "disk0", offset: 0, length: 0, flags: recordFlags.resyncEnd }]);
    await core.ship(end.message, end.payload);
    expect(core.points("disk0").map((point) => point.lsn)).toEqual([0, 1, 4]);
    await history.close();
  });

  test("a checkpoint inside an atomic step (a resync set) is no point of its own", async () => {
    const { history } = await historyCore();
    const memory = new MemoryDevice(deviceBytes, "disk9");
    const target = replicaDevice("disk9", memory);
    const label = { label: "inside", lsn: 2 };
    const write = (lsn: number, offset: number) => ({ record: { lsn, epoch: lsn, device: "disk9", offset, length: 4 * KiB, flags: 0 }, target, data: new Uint8Array(4 * KiB).fill(lsn), probe: undefined });
    const checkpoint = { record: { lsn: 2, epoch: 2, device: "disk9", offset: 0, length: 0, flags: checkpointFlags(6) }, target, data: undefined, probe: undefined, checkpoint: label };
    await history.apply([{ wrlUuid: "w", wrlName: "w", fromLsn: 0, toLsn: 3, writes: [write(1, 0), checkpoint, write(3, 0)], atomic: true }]);
    const state = { version: 1 as const, wrls: [{ name: "w", uuid: "w", appliedLsn: 3, lastAppliedAt: null }], devices: [] };
    await history.committed(state);
    expect(history.points("w", "w", state).map((point) => [point.lsn, point.label])).toEqual([[0, undefined], [3, undefined]]);
    await history.close();
  });

  test("releasing the last snapshot while apply keeps going never fails an apply (the copy-on-write journal goes between groups)", async () => {
    const { core, history } = await historyCore({ journal: false });
    for (let round = 1; round <= 5; round += 1) {
      const snapshot = await core.snapshot("disk0");
      const ship = shipment([dataRecord(round, "disk0", 0, 16 * KiB)]);
      const applied = core.ship(ship.message, ship.payload);
      snapshot.release();
      expect((await applied).type).toBe("shipAck");
    }
    await history.close();
  });

  test("retention: past --retention-size the oldest points are dropped and reported; an --at before them is refused", async () => {
    // Segments of 64 KiB, at most 160 KiB kept: each shipment's 64 KiB of before-images fills a segment.
    const { core, history } = await historyCore({ retentionBytes: 160 * KiB, segmentBytes: 64 * KiB });
    for (let lsn = 1; lsn <= 6; lsn += 1) {
      const ship = shipment([dataRecord(lsn, "disk0", 0, 64 * KiB)]);
      expect((await core.ship(ship.message, ship.payload)).type).toBe("shipAck");
    }
    const status = history.status().journal!;
    expect(status.bytes).toBeLessThanOrEqual(160 * KiB);
    expect(status.droppedChunks).toBeGreaterThan(0);
    const points = core.points("disk0");
    expect(points[0]!.lsn).toBeGreaterThan(0);
    expect(points.at(-1)!.lsn).toBe(6);
    // The oldest point kept still restores exactly: the records after it, undone.
    const oldest = await restoreImage(core, String(points[0]!.lsn));
    expect(oldest.image.subarray(0, 64 * KiB)).toEqual(dataRecord(points[0]!.lsn, "disk0", 0, 64 * KiB).data!);
    await expect(restoreImage(core, "0")).rejects.toMatchObject({ code: "POINT_OUTSIDE_RETENTION" });
    await expect(restoreImage(core, "99")).rejects.toMatchObject({ code: "POINT_IN_FUTURE" });
    await expect(restoreImage(core, "no-such-label")).rejects.toMatchObject({ code: "POINT_UNKNOWN" });
    await history.close();
  });

  test("retention by age: points older than --retention are dropped as time passes", async () => {
    let nowMs = Date.UTC(2030, 0, 1);
    const { core, history } = await historyCore({ retentionMs: 3600_000, segmentBytes: 64 * KiB, now: () => nowMs });
    for (let lsn = 1; lsn <= 4; lsn += 1) {
      nowMs += 1800_000; // half an hour between shipments
      const ship = shipment([dataRecord(lsn, "disk0", 0, 64 * KiB)]);
      await core.ship(ship.message, ship.payload);
    }
    const points = core.points("disk0");
    expect(Date.parse(points[0]!.time)).toBeGreaterThanOrEqual(nowMs - 2 * 3600_000);
    expect(history.status().journal!.droppedChunks).toBeGreaterThan(0);
    await history.close();
  });

  test("without a journal only the current point exists: an earlier --at is refused with the flag to turn it on", async () => {
    const { core, history } = await historyCore({ journal: false });
    const ship = shipment([dataRecord(1, "disk0", 0, 8 * KiB), dataRecord(2, "disk0", 8 * KiB, 8 * KiB)]);
    await core.ship(ship.message, ship.payload);
    expect(core.points("disk0").map((point) => point.lsn)).toEqual([2]);
    await expect(restoreImage(core, "1")).rejects.toMatchObject({ code: "POINT_OUTSIDE_RETENTION", message: expect.stringContaining("--retention") });
    // A snapshot still works (copy-on-write journal) and keeps its point.
    const snapshot = await core.snapshot("disk0");
    const before = (await restoreImage(core)).image;
    const later = shipment([dataRecord(3, "disk0", 0, 32 * KiB)]);
    await core.ship(later.message, later.payload);
    expect(Buffer.compare(await snapshot.read(0, deviceBytes), before)).toBe(0);
    snapshot.release();
    await history.close();
  });
});
