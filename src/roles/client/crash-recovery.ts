/**
 * Client crash recovery: what happens to the extents the activity log names after a run that did
 * not shut down cleanly (SIGKILL, power loss). Each of them may differ between primary and
 * replica: a write may have been logged at staging and not written locally, or written locally
 * and not logged. The default repair marks them dirty in the change map, durably, before the
 * devices are exported, so the normal resync sends their current contents as a resync set.
 *
 * This is the one place to switch to checksum-first recovery (verify probes: only the blocks that
 * differ are marked): ClientCoreOptions.recoverActiveExtents replaces markActiveExtentsDirty.
 * Whatever replaces it must leave every differing block dirty before it resolves, or keep the
 * extents pinned in the activity log until it has (attach releases them after it resolves).
 *
 * Decision table (attach, at start, with --changemap):
 *   no activity log, or a new one     -> nothing to recover; every device's resync set may be
 *                                        open (unknown): the first pass ends them
 *   log clean                         -> nothing to recover; the sets it recorded as open
 *   log not clean                     -> recoverActiveExtents(its ranges), then every device's
 *                                        set counts as open
 *   ranges of a region no --device of -> marked dirty in that region all the same (the device
 *     this run serves                    resyncs when it is attached again)
 */
import type { ActiveRange } from "../../changemap/activity-log.ts";
import type { ChangeMapRegion } from "../../changemap/index.ts";
import { DruvaaError } from "../../errors.ts";
import type { ClientDevice } from "./types.ts";

/** The default recovery: marks each range dirty in its device's region; resolves once durable. */
export async function markActiveExtentsDirty(ranges: readonly ActiveRange[], devices: readonly ClientDevice[]): Promise<void> {
  const regions = new Map<string, ChangeMapRegion>();
  for (const device of devices) if (device.changeMap !== undefined) regions.set(device.changeMap.name, device.changeMap);
  await markRanges(ranges, (name) => regions.get(name));
}

/** Marks each range dirty in the region `regionOf` gives (all marks share the change map's flushes). */
export async function markRanges(ranges: readonly ActiveRange[], regionOf: (name: string) => ChangeMapRegion | undefined): Promise<void> {
  await Promise.all(ranges.map((range) => {
    const region = regionOf(range.region);
    if (region === undefined) throw new DruvaaError("CHANGEMAP_REGION_UNKNOWN", `the activity log names region '${range.region}', which no device of this client uses`);
    const endBytes = Math.min(range.offsetBytes + range.lengthBytes, region.volumeSizeBytes);
    return endBytes > range.offsetBytes ? region.markDirty(range.offsetBytes, endBytes - range.offsetBytes) : Promise.resolve();
  }));
}

/** Total bytes of `ranges` (for the log line). */
export function rangeBytes(ranges: readonly ActiveRange[]): number {
  return ranges.reduce((sum, range) => sum + range.lengthBytes, 0);
}
