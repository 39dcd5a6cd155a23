/**
 * The activity log in the client (activity-export.ts, activity-setup.ts, crash-recovery.ts) with
 * memory and simulated devices and a fake staging link: a write to a new extent is durable in the
 * log before anything of it is sent; after a crash (the log reopened without a clean shutdown)
 * the extents come back and, staging not being connected yet, are marked dirty before anything
 * is exported (the fallback of crash-recovery.ts), and the resync sends them as resync sets, each ended by a resyncEnd; an idle extent leaves the log only when a later
 * write rewrites it; a clean shutdown leaves nothing to recover.
 */
import { describe, expect, test } from "bun:test";
import { ActivityLog } from "../../src/changemap/activity-log.ts";
import { ChangeMap, changeMapLayoutBytes } from "../../src/changemap/index.ts";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { logger } from "../../src/log.ts";
import { withActivityLog } from "../../src/roles/client/activity-export.ts";
import { recoverAndStart, resyncSetsOpenAtStart } from "../../src/roles/client/activity-setup.ts";
import { ClientCore, type ClientDevice } from "../../src/roles/client/core.ts";
import { CrashRecovery } from "../../src/roles/client/crash-recovery.ts";
import { ProbeChannel } from "../../src/roles/client/verify-link.ts";
import { GatedDevice } from "../changemap/helpers.ts";
import { Clock, FakeSender, filled, settle } from "./core-helpers.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const volumeBytes = 32 * MiB;
const extentBytes = 4 * MiB;
const names = ["disk0", "disk1"];
const specs = names.map((name) => ({ name, volumeSizeBytes: volumeBytes }));

/** One client "process": a core over the given devices, its change map and activity log. */
async function startProcess(state: { mapDevice: BlockDevice; logDevice: BlockDevice; primaries: MemoryDevice[] }, now?: () => number) {
  const map = await ChangeMap.open(state.mapDevice);
  const log = await ActivityLog.open(state.logDevice, { changeMapUuid: map.uuid, regions: specs, ...(now === undefined ? {} : { now }) });
  const devices: ClientDevice[] = names.map((name, index) => ({ name, path: `/mem/${name}`, wrl: "wrl0", device: state.primaries[index]!, discardReadsZeros: true, changeMap: map.region(name) }));
  const clock = new Clock();
  const core = new ClientCore({ devices, timers: clock, ackTimeoutMs: 60_000, resyncSetsOpen: resyncSetsOpenAtStart(log, devices) });
  const ranges = await recoverAndStart(log, map, devices, logger("test:client"), "activity");
  // Staging is not connected yet: crash recovery marks the active extents dirty (the fallback;
  // checksum-first recovery with staging connected: crash-recovery.test.ts).
  const recovery = new CrashRecovery({ ranges, devices, core, probes: new ProbeChannel(core), release: (range) => void log.releaseRecovered(range), blockBytesOf: () => 4 * KiB, pollMs: 5 });
  await recovery.start();
  const exports = core.exports().map((exp, index) => withActivityLog(exp, log, names[index]!));
  let lsn = 0;
  const ack = (reqId: number) => core.handleReply({ type: "writeAck", reqId, lsn: (lsn += 1) });
  return { map, log, devices, core, exports, ack, recovery };
}

/** What a crashed process leaves: a copy of every device's bytes (memory devices keep no unflushed state). */
async function copy(device: BlockDevice): Promise<MemoryDevice> {
  return new MemoryDevice(device.sizeBytes, device.name, 512, await device.read(0, device.sizeBytes));
}

/** A memory device that stays readable after its owner closed it (to look at what a shutdown left). */
class KeptDevice extends MemoryDevice {
  override async close(): Promise<void> {}
}

async function freshState() {
  const mapDevice = new KeptDevice(changeMapLayoutBytes(specs, 4096), "map", 512);
  await (await ChangeMap.create(mapDevice, { regions: specs })).sync();
  return { mapDevice, logDevice: new KeptDevice(ActivityLog.sizeBytes(), "activity", 512) as BlockDevice, primaries: names.map((name) => new MemoryDevice(volumeBytes, name, 512)) };
}

/** Acks everything sent so far until the core is connected (the first start ends every unknown set). */
async function ackUntilConnected(core: ClientCore, link: FakeSender, ack: (reqId: number) => void): Promise<void> {
  const acked = new Set<number>();
  for (let steps = 0; steps < 50 && core.mode !== "connected"; steps += 1) {
    for (const sent of link.sent) if (!acked.has(sent.message.reqId)) {
      acked.add(sent.message.reqId);
      ack(sent.message.reqId);
    }
    await settle();
  }
  expect(core.mode).toBe("connected");
}

describe("activity log in the client", () => {
  test("a write to a new extent is sent to staging only once the extent is durable in the log; a write to an active extent is not held", async () => {
    const state = await freshState();
    const disk = new SimDisk({ sizeBytes: ActivityLog.sizeBytes(), seed: 3 });
    const gated = new GatedDevice(disk);
    const client = await startProcess({ ...state, logDevice: gated });
    const link = new FakeSender();
    client.core.linkUp(link);
    await settle();
    // A new log knows nothing of an earlier run: every device's resync set is ended once.
    await ackUntilConnected(client.core, link, client.ack);
    expect(link.sent.map((s) => [s.message.kind, s.message.device])).toEqual([["resyncEnd", "disk0"], ["resyncEnd", "disk1"]]);
    gated.hold();
    const write = client.exports[0]!.write(5 * extentBytes + 8 * KiB, filled(4 * KiB, 0x11), false);
    await settle();
    expect(gated.waitingFlushes).toBe(1);
    expect(link.sent.filter((s) => s.message.kind === undefined)).toEqual([]);
    gated.release();
    await settle();
    const sent = link.sent.filter((s) => s.message.kind === undefined);
    expect(sent.map((s) => s.message.offset)).toEqual([5 * extentBytes + 8 * KiB]);
    // What a power loss now would leave: the extent is in the durable copy.
    const durable = await ActivityLog.open(new MemoryDevice(disk.sizeBytes, "durable", 512, disk.durableSnapshot()), { changeMapUuid: client.map.uuid, regions: specs });
    expect(durable.recovery.ranges).toEqual([{ region: "disk0", offsetBytes: 5 * extentBytes, lengthBytes: extentBytes }]);
    client.ack(sent[0]!.message.reqId);
    await write;
    // Same extent again: no log write, sent at once (even with the log's flushes held).
    const flushes = gated.flushCount;
    gated.hold();
    const again = client.exports[0]!.write(5 * extentBytes, filled(4 * KiB, 0x12), false);
    await settle();
    expect(link.sent.filter((s) => s.message.kind === undefined).length).toBe(2);
    expect(gated.flushCount).toBe(flushes);
    gated.release();
    client.ack(link.sent[link.sent.length - 1]!.message.reqId);
    await again;
  });

  test("crash: the next process finds the extents of completed and in-flight writes; staging not connected, it marks them dirty before exporting and resyncs them as resync sets", async () => {
    const state = await freshState();
    const first = await startProcess(state);
    const link = new FakeSender();
    first.core.linkUp(link);
    await ackUntilConnected(first.core, link, first.ack);
    link.sent.length = 0;
    const done = first.exports[0]!.write(2 * extentBytes + 4 * KiB, filled(8 * KiB, 0x21), false);
    await settle();
    first.ack(link.sent[0]!.message.reqId);
    await done;
    void first.exports[1]!.write(volumeBytes - 4 * KiB, filled(4 * KiB, 0x22), false); // logged, never acked
    await settle();
    expect(link.sent.length).toBe(2);
    expect(first.log.status().activeExtents).toBe(2);

    // SIGKILL. The next process starts on what is on the disks:
    const mapDevice = await copy(state.mapDevice);
    const second = await startProcess({ mapDevice, logDevice: await copy(state.logDevice), primaries: state.primaries });
    expect(second.log.recovery.clean).toBe(false);
    // Marked dirty, durably, before anything was exported or connected.
    const reopenedMap = await ChangeMap.open(await copy(mapDevice));
    expect([...reopenedMap.region("disk0").dirtyRanges()]).toEqual([{ offsetBytes: 2 * extentBytes, lengthBytes: extentBytes }]);
    expect([...reopenedMap.region("disk1").dirtyRanges()]).toEqual([{ offsetBytes: volumeBytes - extentBytes, lengthBytes: extentBytes }]);

    const next = new FakeSender();
    second.core.linkUp(next);
    await ackUntilConnected(second.core, next, second.ack);
    const resynced = next.sent.filter((s) => s.message.kind === "resync");
    // Exactly the two extents, whatever the resync's chunk size.
    const covered = (name: string) => resynced.filter((s) => s.message.device === name).sort((a, b) => a.message.offset - b.message.offset).reduce<[number, number][]>((runs, s) => {
      const last = runs.at(-1);
      if (last !== undefined && last[1] === s.message.offset) last[1] += s.message.length;
      else runs.push([s.message.offset, s.message.offset + s.message.length]);
      return runs;
    }, []);
    expect(covered("disk0")).toEqual([[2 * extentBytes, 3 * extentBytes]]);
    expect(covered("disk1")).toEqual([[volumeBytes - extentBytes, volumeBytes]]);
    for (const sent of resynced) expect(sent.payload).toEqual(await state.primaries[names.indexOf(sent.message.device)]!.read(sent.message.offset, sent.message.length));
    // Each device's set ends once, after its chunks.
    for (const name of names) {
      const end = next.sent.findIndex((s) => s.message.kind === "resyncEnd" && s.message.device === name);
      expect(end).toBeGreaterThan(next.sent.findLastIndex((s) => s.message.kind === "resync" && s.message.device === name));
      expect(next.sent.filter((s) => s.message.kind === "resyncEnd" && s.message.device === name).length).toBe(1);
    }
    await second.recovery.settled;
    expect(second.recovery.status()).toMatchObject({ state: "done", inProgress: false, markedBytes: 2 * extentBytes, verifiedBytes: 0 });
  });

  test("extents go cold lazily: an idle extent stays in the log until a write to a new extent rewrites it, then it is gone", async () => {
    const state = await freshState();
    let nowMs = 0;
    const client = await startProcess(state, () => nowMs);
    const link = new FakeSender();
    client.core.linkUp(link);
    await ackUntilConnected(client.core, link, client.ack);
    const write = async (offset: number) => {
      const done = client.exports[0]!.write(offset, filled(4 * KiB, 0x41), false);
      await settle();
      client.ack(link.sent[link.sent.length - 1]!.message.reqId);
      await done;
    };
    const recoverable = async () => (await ActivityLog.open(await copy(state.logDevice), { changeMapUuid: client.map.uuid, regions: specs })).recovery.ranges.map((r) => r.offsetBytes / extentBytes);
    await write(extentBytes);
    const logWrites = client.log.status().writes;
    nowMs += 60_000; // long idle: cold, but nothing is written for that alone
    await settle();
    expect(client.log.status().writes).toBe(logWrites);
    expect(await recoverable()).toEqual([1]);
    await write(6 * extentBytes);
    expect(await recoverable()).toEqual([6]);
    expect(client.log.status()).toMatchObject({ activeSlots: 1, activeExtents: 1 });
  });

  test("a clean shutdown leaves nothing to recover and no resync set open", async () => {
    const state = await freshState();
    const first = await startProcess(state);
    const link = new FakeSender();
    first.core.linkUp(link);
    await ackUntilConnected(first.core, link, first.ack);
    const write = first.exports[0]!.write(0, filled(4 * KiB, 0x31), false);
    await settle();
    first.ack(link.sent[link.sent.length - 1]!.message.reqId);
    await write;
    expect(await first.log.closeClean(first.core.modeStatus().resyncSetsOpen)).toBe(true);

    const second = await startProcess({ mapDevice: await copy(state.mapDevice), logDevice: await copy(state.logDevice), primaries: state.primaries });
    expect(second.log.recovery).toMatchObject({ clean: true, ranges: [], openResyncRegions: [] });
    const next = new FakeSender();
    second.core.linkUp(next);
    await settle();
    expect(next.sent).toEqual([]);
    expect(second.core.modeStatus()).toMatchObject({ mode: "connected", dirtyBytes: 0 });
  });
});
