/** Shared pieces of the activity-log tests: regions, a test clock, devices to copy and inspect. */
import { ActivityLog, type ActivityLogOptions, type LeaveActivity } from "../../src/changemap/activity-log.ts";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";

export const MiB = 1024 * 1024;
export const extentBytes = 4 * MiB;
export const uuid = "11111111-2222-4333-8444-555555555555";
export const regions = [
  { name: "disk0", volumeSizeBytes: 256 * MiB },
  { name: "disk1", volumeSizeBytes: 64 * MiB + 512 },
];

export class TestClock {
  nowMs = 1_000;
  readonly now = () => this.nowMs;
}

export function options(clock: TestClock, extra: Partial<ActivityLogOptions> = {}): ActivityLogOptions {
  return { changeMapUuid: uuid, regions, now: clock.now, ...extra };
}

/** A memory device that stays readable after the log closes it (to look at what a shutdown left). */
export class KeptDevice extends MemoryDevice {
  override async close(): Promise<void> {}
}

export function memoryLog(): MemoryDevice {
  return new KeptDevice(ActivityLog.sizeBytes(), "activity", 512);
}

/** A copy of a log device's bytes: what a process opening it after a crash now would find. */
export async function copyDevice(device: BlockDevice): Promise<MemoryDevice> {
  return new KeptDevice(device.sizeBytes, "activity-copy", 512, await device.read(0, device.sizeBytes));
}

/** Opens a copy of the log (the old log object is left alone, as a killed process would). */
export async function reopenCopy(device: BlockDevice, clock: TestClock, extra: Partial<ActivityLogOptions> = {}): Promise<ActivityLog> {
  return ActivityLog.open(await copyDevice(device), options(clock, extra));
}

/** Extents of `region` the table on `device` names (what a crash now would recover). */
export async function durableExtents(device: BlockDevice, region = "disk0"): Promise<number[]> {
  const log = await reopenCopy(device, new TestClock());
  const extents = new Set<number>();
  for (const range of log.recovery.ranges) {
    if (range.region !== region) continue;
    for (let at = range.offsetBytes; at < range.offsetBytes + range.lengthBytes; at += extentBytes) extents.add(Math.floor(at / extentBytes));
  }
  return [...extents].sort((a, b) => a - b);
}

export async function enter(log: ActivityLog, region: string, offsetBytes: number, lengthBytes: number): Promise<LeaveActivity> {
  const entered = log.enter(region, offsetBytes, lengthBytes);
  return typeof entered === "function" ? entered : await entered;
}
