/**
 * The activity log (src/changemap/activity-log.ts, activity-format.ts) on memory and simulated
 * disks: an extent is durable before enter() resolves, an active extent costs no I/O, concurrent
 * new extents share one log write, a sequential stream writes the log rarely, idle extents go
 * cold only at a later log write, the table stays bounded (LRU, waiting for room), a clean
 * shutdown empties it, and every row of the open decision table. Crash safety under power loss:
 * activity-log.property.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { ActivityLog, type LeaveActivity } from "../../src/changemap/activity-log.ts";
import { decodeActivityTable } from "../../src/changemap/activity-format.ts";
import { clientActivityCopyBytes } from "../../src/constants.ts";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { copyDevice, durableExtents, enter, extentBytes, memoryLog, MiB, options, reopenCopy, TestClock } from "./activity-helpers.ts";
import { CountingDevice, GatedDevice, settleTurns } from "./helpers.ts";

describe("activity log: the write path", () => {
  test("a write to a new extent waits until the extent is durable; one to an active extent costs no I/O and no wait", async () => {
    const clock = new TestClock();
    const disk = new SimDisk({ sizeBytes: ActivityLog.sizeBytes(), seed: 1 });
    const device = new GatedDevice(disk);
    const log = await ActivityLog.open(device, options(clock));
    await log.start();
    device.hold();
    const entered = log.enter("disk0", 9 * extentBytes + 4096, 8192);
    expect(typeof entered).not.toBe("function");
    let resolved = false;
    void (entered as Promise<LeaveActivity>).then(() => (resolved = true));
    await settleTurns();
    expect(device.waitingFlushes).toBe(1);
    expect(resolved).toBe(false); // not before the flush
    expect(await durableExtents(new MemoryDevice(disk.sizeBytes, "durable", 512, disk.durableSnapshot()))).toEqual([]);
    device.release();
    const leave = await entered;
    expect(await durableExtents(device)).toEqual([9]);
    const writesBefore = device.writeCount;
    const again = log.enter("disk0", 9 * extentBytes + 3 * MiB, 4096);
    expect(typeof again).toBe("function"); // synchronously: no extra turn, no I/O
    (again as LeaveActivity)();
    leave();
    expect(device.writeCount).toBe(writesBefore);
    expect(log.status()).toMatchObject({ activeSlots: 1, activeExtents: 1 });
  });

  test("new extents entered together share one log write (group commit); a write spanning extents activates all of them", async () => {
    const clock = new TestClock();
    const device = new CountingDevice(memoryLog());
    const log = await ActivityLog.open(device, options(clock));
    await log.start();
    const flushesBefore = device.flushCount;
    const leaves = await Promise.all([0, 10, 20, 30, 40].map((extent) => enter(log, "disk0", extent * extentBytes, 4096)));
    expect(device.flushCount - flushesBefore).toBe(1);
    const spanning = await enter(log, "disk1", 2 * extentBytes - 4096, 3 * extentBytes);
    expect(await durableExtents(device)).toEqual([0, 10, 20, 30, 40]);
    expect(await durableExtents(device, "disk1")).toEqual([1, 2, 3, 4]);
    for (const leave of [...leaves, spanning]) leave();
  });

  test("a sequential 1 MiB stream over 128 MiB writes the log once per few extents, not once per extent", async () => {
    const clock = new TestClock();
    const device = new CountingDevice(memoryLog());
    const log = await ActivityLog.open(device, options(clock));
    await log.start();
    const writesBefore = device.writeCount;
    for (let at = 0; at < 128 * MiB; at += MiB) {
      const leave = await enter(log, "disk0", at, MiB);
      leave();
    }
    const logWrites = device.writeCount - writesBefore;
    // 32 extents; after the first, a stream activates 4 at a time: 1 + ceil(31 / 4) = 9.
    expect(logWrites).toBeLessThanOrEqual(9);
    expect(logWrites).toBeGreaterThan(1);
    // A random write inside the extent after an active one is no stream: one extent only.
    (await enter(log, "disk0", 40 * extentBytes + 4096, 4096))();
    (await enter(log, "disk0", 41 * extentBytes + 64 * 1024, 4096))();
    expect((await durableExtents(device)).filter((extent) => extent >= 40)).toEqual([40, 41]);
  });

  test("idle extents go cold lazily: dropped at the next log write after coldMs, never by themselves, never while written", async () => {
    const clock = new TestClock();
    const device = new CountingDevice(memoryLog());
    const log = await ActivityLog.open(device, options(clock, { coldMs: 5_000 }));
    await log.start();
    (await enter(log, "disk0", 0, 4096))();
    const busy = await enter(log, "disk0", 50 * extentBytes, 4096); // stays in flight
    const writes = device.writeCount;
    clock.nowMs += 60_000;
    await settleTurns();
    expect(device.writeCount).toBe(writes); // going cold writes nothing by itself
    expect(await durableExtents(device)).toEqual([0, 50]);
    const leave = await enter(log, "disk0", 60 * extentBytes, 4096);
    expect(await durableExtents(device)).toEqual([50, 60]); // 0 was idle and cold; 50 has a write in flight
    busy();
    leave();
    expect(log.status().activeSlots).toBe(2);
  });

  test("with flushData, an extent leaves the log only after a flush of the volumes that began after its last write ended", async () => {
    const clock = new TestClock();
    const device = new CountingDevice(memoryLog());
    const flushes: { release: () => void; leavesBefore: number }[] = [];
    let leaves = 0;
    const log = await ActivityLog.open(device, options(clock, {
      coldMs: 5_000,
      flushData: () => new Promise<void>((resolve) => flushes.push({ release: resolve, leavesBefore: leaves })),
    }));
    await log.start();
    (await enter(log, "disk0", 0, 4096))();
    leaves += 1;
    const late = await enter(log, "disk0", 10 * extentBytes, 4096);
    clock.nowMs += 60_000;
    const next = log.enter("disk0", 60 * extentBytes, 4096) as Promise<LeaveActivity>;
    await settleTurns();
    expect(flushes.length).toBe(1); // extent 0 is cold: the volumes are flushed before it may go
    late(); // extent 10's write ends while that flush runs: the flush may not hold it
    clock.nowMs += 60_000;
    flushes[0]!.release();
    (await next)();
    expect(await durableExtents(device)).toEqual([10, 60]); // 0 dropped; 10 kept although cold
    expect(log.status().dataFlushes).toBe(1);
    clock.nowMs += 60_000;
    const after = log.enter("disk0", 50 * extentBytes, 4096) as Promise<LeaveActivity>;
    await settleTurns();
    flushes[1]!.release();
    (await after)();
    expect(await durableExtents(device)).toEqual([50]); // a later flush covers 10 (and 60)
  });

  test("a failed flush of the volumes drops nothing and fails the writes waiting for new extents (ACTIVITY_LOG_IO); the next one retries", async () => {
    const clock = new TestClock();
    const device = new CountingDevice(memoryLog());
    let failFlush = true;
    const log = await ActivityLog.open(device, options(clock, { coldMs: 5_000, flushData: async () => { if (failFlush) throw new Error("EIO on the primary"); } }));
    await log.start();
    (await enter(log, "disk0", 0, 4096))();
    clock.nowMs += 60_000;
    const error = await enter(log, "disk0", 60 * extentBytes, 4096).then(() => undefined, (e: unknown) => e as { code?: string; message?: string });
    expect(error?.code).toBe("ACTIVITY_LOG_IO");
    expect(error?.message).toContain("EIO on the primary");
    expect(await durableExtents(device)).toEqual([0]); // still named: its write may not be durable
    failFlush = false;
    (await enter(log, "disk0", 60 * extentBytes, 4096))();
    expect(await durableExtents(device)).toEqual([60]);
  });

  test("bounded: a full table drops the least recently used idle slot; with every slot busy a new one waits for a leave", async () => {
    const clock = new TestClock();
    const device = new CountingDevice(memoryLog());
    const log = await ActivityLog.open(device, options(clock, { slotsMax: 3 }));
    await log.start();
    // Extents far apart (no sequential read-ahead): 1, 3, 5.
    for (const extent of [1, 3, 5]) {
      (await enter(log, "disk0", extent * extentBytes, 4096))();
      clock.nowMs += 10;
    }
    (await enter(log, "disk0", 1 * extentBytes, 4096))(); // 1 is now the most recently used
    clock.nowMs += 10;
    const leave4 = await enter(log, "disk0", 10 * extentBytes, 4096);
    expect(await durableExtents(device)).toEqual([1, 5, 10]); // 3 was the least recently used
    const leave1 = await enter(log, "disk0", 1 * extentBytes, 4096);
    const leave3 = await enter(log, "disk0", 5 * extentBytes, 4096);
    let waited = true;
    const fifth = log.enter("disk0", 20 * extentBytes, 4096) as Promise<LeaveActivity>;
    void fifth.then(() => (waited = false));
    await settleTurns();
    expect(waited).toBe(true);
    expect(log.status().waitsForRoom).toBeGreaterThan(0);
    leave3();
    const leave5 = await fifth;
    expect(await durableExtents(device)).toEqual([1, 10, 20]);
    for (const leave of [leave1, leave4, leave5]) leave();
  });

  test("no deadlock in a full table: writes that span an active and a new extent hold nothing while they wait for room", async () => {
    const clock = new TestClock();
    const device = new CountingDevice(memoryLog());
    const log = await ActivityLog.open(device, options(clock, { slotsMax: 2 }));
    await log.start();
    const x = await enter(log, "disk0", 10 * extentBytes, 4096);
    const y = await enter(log, "disk0", 30 * extentBytes, 4096);
    // Each continues past an active extent into a new one: they need a slot each, the table is full.
    const spanning = [log.enter("disk0", 11 * extentBytes - 4096, 8192), log.enter("disk0", 31 * extentBytes - 4096, 8192)] as Promise<LeaveActivity>[];
    let done = 0;
    for (const entered of spanning) void entered.then(() => (done += 1));
    await settleTurns();
    expect(done).toBe(0);
    x();
    y();
    const leaves = await Promise.all(spanning); // before: each held its active extent and waited forever
    const extents = await durableExtents(device);
    expect(extents).toContain(10);
    expect(extents).toContain(11);
    for (const leave of leaves) leave();
    expect(log.status().activeSlots).toBeLessThanOrEqual(2);
  });

  test("a failed log write fails the writes waiting for it (ACTIVITY_LOG_IO); the next write retries and succeeds", async () => {
    const clock = new TestClock();
    const disk = new SimDisk({ sizeBytes: ActivityLog.sizeBytes(), seed: 7 });
    const log = await ActivityLog.open(disk, options(clock));
    await log.start();
    disk.failNextFlushes(1);
    const error = await enter(log, "disk0", 5 * extentBytes, 4096).then(() => undefined, (e: unknown) => e);
    expect((error as { code?: string }).code).toBe("IO_ERROR");
    const leave = await enter(log, "disk0", 5 * extentBytes, 4096);
    expect(await durableExtents(disk)).toEqual([5]);
    leave();
  });
});

describe("activity log: shutdown and recovery", () => {
  test("a run that did not shut down cleanly: its extents come back as ranges (clipped to the volume), pinned until released", async () => {
    const clock = new TestClock();
    const device = memoryLog();
    const log = await ActivityLog.open(device, options(clock));
    expect(log.recovery).toMatchObject({ isNew: true, clean: true, ranges: [], openResyncRegions: ["disk0", "disk1"] });
    await log.start();
    (await enter(log, "disk0", 3 * extentBytes, 4096))(); // completed
    await enter(log, "disk1", 16 * extentBytes, 512); // the last, partial extent of disk1; in flight
    // SIGKILL: nothing more is written. The next process:
    const nextDevice = await copyDevice(device);
    const next = await ActivityLog.open(nextDevice, options(clock, { coldMs: 1 }));
    expect(next.recovery.clean).toBe(false);
    expect(next.recovery.ranges).toEqual([
      { region: "disk0", offsetBytes: 3 * extentBytes, lengthBytes: extentBytes },
      { region: "disk1", offsetBytes: 16 * extentBytes, lengthBytes: 512 },
    ]);
    expect(next.recovery.openResyncRegions).toEqual(["disk0", "disk1"]);
    expect(next.status().recoveredExtents).toBe(2);
    // start() writes them again (unclean): a second crash before they were dealt with finds them.
    await next.start();
    expect((await reopenCopy(nextDevice, clock)).recovery.ranges.length).toBe(2);
    // Pinned: not dropped as cold by a later log write until released.
    clock.nowMs += 60_000;
    const leave = await enter(next, "disk0", 30 * extentBytes, 4096);
    expect(await durableExtents(nextDevice)).toEqual([3, 30]);
    next.releaseRecovered();
    leave();
    clock.nowMs += 60_000;
    (await enter(next, "disk0", 40 * extentBytes, 4096))();
    expect(await durableExtents(nextDevice)).toEqual([40]);
  });

  test("clean shutdown empties the table and records the open resync sets; with a write still in flight it stays unclean", async () => {
    const clock = new TestClock();
    const device = memoryLog();
    const log = await ActivityLog.open(device, options(clock));
    await log.start();
    (await enter(log, "disk0", 0, 4096))();
    expect(await log.closeClean(["disk1"])).toBe(true);
    const nextDevice = await copyDevice(device);
    const next = await ActivityLog.open(nextDevice, options(clock));
    expect(next.recovery).toMatchObject({ isNew: false, clean: true, ranges: [], openResyncRegions: ["disk1"] });

    await next.start();
    await enter(next, "disk0", 7 * extentBytes, 4096); // in flight at shutdown
    expect(await next.closeClean([])).toBe(false);
    const third = await reopenCopy(nextDevice, clock);
    expect(third.recovery.clean).toBe(false);
    expect(third.recovery.ranges).toEqual([{ region: "disk0", offsetBytes: 7 * extentBytes, lengthBytes: extentBytes }]);
  });
});

describe("activity log: which copy counts (the decision table of activity-format.ts)", () => {
  /** A log with two table writes: the older names extent 1, the newer extents 1 and 10. */
  async function twoWrites(): Promise<MemoryDevice> {
    const clock = new TestClock();
    const device = memoryLog();
    const log = await ActivityLog.open(device, options(clock));
    await log.start();
    await enter(log, "disk0", 1 * extentBytes, 4096);
    await enter(log, "disk0", 10 * extentBytes, 4096);
    return copyDevice(device);
  }
  const copies = async (device: BlockDevice) => {
    const bytes = await device.read(0, device.sizeBytes);
    return [decodeActivityTable(bytes.subarray(0, clientActivityCopyBytes)), decodeActivityTable(bytes.subarray(clientActivityCopyBytes))];
  };
  const damage = async (device: BlockDevice, copy: number, fill?: number) => {
    const at = copy * clientActivityCopyBytes;
    const bytes = await device.read(at, clientActivityCopyBytes);
    if (fill === undefined) bytes[100] = bytes[100]! ^ 0xff;
    else bytes.fill(fill);
    await device.write(at, bytes);
  };
  const newerCopy = async (device: BlockDevice) => {
    const [a, b] = await copies(device);
    return typeof a === "object" && typeof b === "object" && a.sequence > b.sequence ? 0 : 1;
  };

  test("both valid: the higher sequence", async () => {
    const device = await twoWrites();
    expect((await copies(device)).every((c) => typeof c === "object")).toBe(true);
    expect(await durableExtents(device)).toEqual([1, 10]);
  });

  test("one valid, the other torn: the valid (older) one", async () => {
    const device = await twoWrites();
    await damage(device, await newerCopy(device));
    expect(await durableExtents(device)).toEqual([1]);
  });

  test("both zero: a new log, clean, every region's resync set unknown (open)", async () => {
    const log = await ActivityLog.open(memoryLog(), options(new TestClock()));
    expect(log.recovery).toEqual({ isNew: true, clean: true, ranges: [], openResyncRegions: ["disk0", "disk1"] });
  });

  test("one zero, the other invalid (a torn first write): a new log", async () => {
    const device = memoryLog();
    await (await ActivityLog.open(device, options(new TestClock()))).start(); // sequence 1: copy 1
    await damage(device, 1);
    const log = await ActivityLog.open(device, options(new TestClock()));
    expect(log.recovery.isNew).toBe(true);
  });

  test("both invalid: ACTIVITY_LOG_CORRUPT with a hint, nothing opened", async () => {
    const device = await twoWrites();
    await damage(device, 0);
    await damage(device, 1);
    const error = await ActivityLog.open(device, options(new TestClock())).then(() => undefined, (e: unknown) => e as { code: string; message: string; hint: string });
    expect(error?.code).toBe("ACTIVITY_LOG_CORRUPT");
    expect(error?.hint).toContain("resync the whole device");
  });

  test("another change map's log: refused when it was not clean (ACTIVITY_LOG_MISMATCH); a clean one starts afresh", async () => {
    const device = await twoWrites();
    const other = { changeMapUuid: "99999999-2222-4333-8444-555555555555" };
    const error = await ActivityLog.open(await copyDevice(device), options(new TestClock(), other)).then(() => undefined, (e: unknown) => e as { code: string });
    expect(error?.code).toBe("ACTIVITY_LOG_MISMATCH");
    const clean = memoryLog();
    const log = await ActivityLog.open(clean, options(new TestClock()));
    await log.start();
    await log.closeClean([]);
    const fresh = await ActivityLog.open(await copyDevice(clean), options(new TestClock(), other));
    expect(fresh.recovery).toMatchObject({ clean: true, ranges: [], openResyncRegions: ["disk0", "disk1"] });
  });
});
