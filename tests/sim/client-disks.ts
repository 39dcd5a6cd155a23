/**
 * What outlives a client process of the simulation — its primaries and, with a change map, the
 * change map and the activity log — and how a client process opens them, as `druvaa client
 * attach` does (src/roles/client/attach.ts): change map, activity log (with the primaries flushed
 * before an extent leaves it), recovery of the extents an unclean run left, exports wrapped in the
 * activity log.
 *
 * With a change map every one of these lives on a FencedDisk (disk.ts), so a client can die two
 * ways: SIGKILL (the process stops; what it wrote stays, flushed or not) and power loss (its
 * unsynced sectors are dropped, kept or torn). Recovery here takes the activity log's fallback —
 * the active extents are marked dirty whole (CrashRecovery's path when it cannot verify) — and
 * the resync repairs them. Clients without a change map keep MemoryDevices and never crash.
 */
import { ActivityLog } from "../../src/changemap/activity-log.ts";
import { changeMapLayoutBytes, ChangeMap } from "../../src/changemap/index.ts";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { logger } from "../../src/log.ts";
import type { ClientDevice } from "../../src/roles/client/types.ts";
import type { NbdExport } from "../../src/nbd/backend.ts";
import { withActivityLog } from "../../src/roles/client/activity-export.ts";
import { recoverAndStart, resyncSetsOpenAtStart } from "../../src/roles/client/activity-setup.ts";
import { markRanges } from "../../src/roles/client/crash-recovery.ts";
import { FencedDisk } from "./disk.ts";
import type { World } from "./world.ts";

/** A primary as the checks see it (what reads return now) and as a process opens it. */
export interface PrimaryDisk {
  snapshot(): Uint8Array;
  handle(): BlockDevice;
}

export interface ClientDisks {
  primaries: Map<string, PrimaryDisk>;
  /** With a change map: it and its activity log, each on a disk of its own. */
  changeMapDisk?: FencedDisk;
  activityDisk?: FencedDisk;
}

/** What one client process opened of its disks. */
export interface OpenedDisks {
  /** The core's devices: each primary's handle, with its change-map region. */
  devices: ClientDevice[];
  changeMap?: ChangeMap;
  activity?: ActivityLog;
  /** Devices whose resync set the last run may have left open (the core ends them first). */
  resyncSetsOpen: string[];
}

const blockSizeBytes = 4096;
const activityExtentBytes = 16 * 1024;

/** Primaries on MemoryDevices: a client without a change map (it never crashes). */
export function memoryClientDisks(sizes: ReadonlyMap<string, number>): ClientDisks {
  return {
    primaries: new Map([...sizes].map(([name, sizeBytes]) => {
      const device = new MemoryDevice(sizeBytes, `primary-${name}`, 512);
      return [name, { snapshot: () => device.snapshot(), handle: () => device }];
    })),
  };
}

/** Fresh primaries, a change map (one region per device, 4 KiB a bit) and an activity log, on FencedDisks. */
export async function newClientDisks(world: World, index: number, sizes: ReadonlyMap<string, number>): Promise<ClientDisks> {
  const seed = world.options.seed + 1_000 * (index + 1);
  const primaries = new Map<string, PrimaryDisk>([...sizes].map(([name, sizeBytes], n) => [name, new FencedDisk(`primary-${name}`, sizeBytes, seed + n, world.activity)]));
  const regions = [...sizes].map(([name, volumeSizeBytes]) => ({ name, volumeSizeBytes }));
  const changeMapDisk = new FencedDisk(`changemap-${index}`, changeMapLayoutBytes(regions, blockSizeBytes), seed + 500, world.activity);
  const created = await ChangeMap.create(changeMapDisk.handle(), { regions, blockSizeBytes });
  await created.close();
  const activityDisk = new FencedDisk(`activity-${index}`, ActivityLog.sizeBytes(), seed + 501, world.activity);
  return { primaries, changeMapDisk, activityDisk };
}

/**
 * Opens the disks for a new client process, as attach.ts does before it builds its core: the
 * change map, the activity log (reading what the last run left) and which resync sets it may have
 * left open. `now` is the process clock (extents go cold by it); `dataFlush: false` is a broken
 * client whose activity log forgets extents without flushing the primaries.
 */
export async function openClientDisks(disks: ClientDisks, wrl: string, now: () => number, dataFlush = true): Promise<OpenedDisks> {
  const device = (name: string, disk: PrimaryDisk) => ({ name, path: `sim:${name}`, wrl, device: disk.handle(), discardReadsZeros: true });
  if (disks.changeMapDisk === undefined || disks.activityDisk === undefined) return { devices: [...disks.primaries].map(([name, disk]) => device(name, disk)), resyncSetsOpen: [] };
  const changeMap = await ChangeMap.open(disks.changeMapDisk.handle());
  const devices: ClientDevice[] = [...disks.primaries].map(([name, disk]) => ({ ...device(name, disk), changeMap: changeMap.region(name) }));
  const flushData = async () => void (await Promise.all(devices.map((d) => d.device.flush())));
  const activity = await ActivityLog.open(disks.activityDisk.handle(), {
    changeMapUuid: changeMap.uuid,
    regions: changeMap.regionNames.map((name) => ({ name, volumeSizeBytes: changeMap.region(name).volumeSizeBytes })),
    now,
    // Small extents and a small table, so the devices of a few 64 KiB units span many extents and
    // slots go cold and get evicted within a trace.
    extentBytes: activityExtentBytes,
    slotsMax: 4,
    sequentialExtents: 1,
    ...(dataFlush ? { flushData } : {}),
  });
  return { devices, changeMap, activity, resyncSetsOpen: resyncSetsOpenAtStart(activity, devices) };
}

/**
 * After the core exists and before the exports serve: recovers what an unclean run left (its
 * active extents marked dirty, then released), records that this run began, and wraps each
 * export in the activity log.
 */
export async function startActivity(opened: OpenedDisks, exports: readonly NbdExport[]): Promise<NbdExport[]> {
  const { activity, changeMap } = opened;
  if (activity === undefined || changeMap === undefined) return [...exports];
  const recovering = await recoverAndStart(activity, changeMap, opened.devices, logger("sim-client"), "sim:activity");
  await markRanges(recovering, (name) => changeMap.region(name));
  for (const range of recovering) activity.releaseRecovered(range);
  return exports.map((exp) => withActivityLog(exp, activity, exp.name));
}
