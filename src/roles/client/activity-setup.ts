/**
 * The activity log of `druvaa client attach --changemap PATH`: where it lives, and the start
 * steps around it (crash-recovery.ts has the decision table).
 *
 * Where: next to the change map, as `PATH.activity`, when the change map is an image file; in the
 * state directory, as `STATE_DIR/NAME.activity`, when it is a block device (a partition has no
 * room beside it). One client process uses it at a time, like the change map.
 */
import { basename, join } from "node:path";
import type { ConsolaInstance } from "consola/basic";
import { ActivityLog, type ActiveRange } from "../../changemap/activity-log.ts";
import type { ChangeMap } from "../../changemap/index.ts";
import { formatBytes } from "../../units.ts";
import { isBlockDevicePath, openBlockDevice } from "../../io/open-device.ts";
import { CrashRecovery, markRanges, rangeBytes } from "./crash-recovery.ts";
import type { ClientCore } from "./core.ts";
import type { ClientDevice } from "./types.ts";
import type { ClientVerify } from "./verify-setup.ts";

/** Where the activity log of the change map at `changeMapPath` lives. */
export async function activityLogPath(changeMapPath: string, stateDir: string): Promise<string> {
  return (await isBlockDevicePath(changeMapPath)) ? join(stateDir, `${basename(changeMapPath)}.activity`) : `${changeMapPath}.activity`;
}

/**
 * Opens (or creates) the activity log of `map`; reads what the last run left, writes nothing yet.
 * Extents leave it only once `devices` (the primaries) were flushed after their last write.
 */
export async function openActivityLog(path: string, map: ChangeMap, devices: readonly ClientDevice[]): Promise<ActivityLog> {
  const device = await openBlockDevice(path, { createSizeBytes: ActivityLog.sizeBytes() });
  try {
    return await ActivityLog.open(device, {
      changeMapUuid: map.uuid,
      regions: map.regionNames.map((name) => ({ name, volumeSizeBytes: map.region(name).volumeSizeBytes })),
      flushData: async () => void (await Promise.all(devices.map((d) => d.device.flush()))),
    });
  } catch (error) {
    await device.close().catch(() => undefined); // already failing with the better error
    throw error;
  }
}

/** The devices whose resync set the last run may have left open (the core ends them first). */
export function resyncSetsOpenAtStart(log: ActivityLog, devices: readonly ClientDevice[]): string[] {
  const open = new Set(log.recovery.openResyncRegions);
  return devices.filter((device) => device.changeMap !== undefined && open.has(device.changeMap.name)).map((device) => device.name);
}

/**
 * Before exporting: after an unclean shutdown, marks the active extents of regions no --device of
 * this run serves dirty, then records durably that this run has begun. Returns the active
 * extents of the devices it serves, still pinned in the log: CrashRecovery (crash-recovery.ts)
 * verifies them, or marks them dirty, and releases each once that is durable.
 */
export async function recoverAndStart(log: ActivityLog, map: ChangeMap, devices: readonly ClientDevice[], logger: ConsolaInstance, path: string): Promise<ActiveRange[]> {
  const { recovery } = log;
  const served = new Set(devices.map((device) => device.changeMap?.name));
  const ours: ActiveRange[] = recovery.ranges.filter((range) => served.has(range.region));
  if (!recovery.clean) {
    const others = recovery.ranges.filter((range) => !served.has(range.region));
    logger.warn(`the last run did not shut down cleanly: ${recovery.ranges.length} active extent range(s) (${formatBytes(rangeBytes(recovery.ranges))}) in ${path} may differ between primary and replica; recovering them`);
    if (others.length > 0) {
      await markRanges(others, (name) => map.region(name));
      for (const range of others) log.releaseRecovered(range);
      logger.warn(`marked ${others.length} active range(s) of region(s) no --device of this run serves (${[...new Set(others.map((r) => r.region))].join(", ")}) dirty: they resync when those devices are attached`);
    }
  } else if (recovery.isNew) {
    logger.info(`activity log ${path}: new`);
  }
  await log.start();
  return ours;
}

/** Checksum-first recovery of `ranges` (recoverAndStart's answer) for attach; start() it once the link was tried. */
export function crashRecoveryOf(log: ActivityLog, ranges: readonly ActiveRange[], core: ClientCore, devices: readonly ClientDevice[], verify: ClientVerify): CrashRecovery {
  return new CrashRecovery({
    ranges,
    devices,
    core,
    probes: verify.probes,
    release: (range) => void log.releaseRecovered(range),
    blockBytesOf: (spec) => verify.verifier.blockBytesOf(spec),
    extentBytes: log.extentBytes,
  });
}
