/** The ranges an apply step overwrites, as the journal (journal.ts) keeps their before-images. */
import { recordFlags } from "../../protocol/messages.ts";
import type { PlannedWrite, ReplicaDevice } from "./apply.ts";
import type { JournalRange } from "./journal-format.ts";

/**
 * The ranges `writes` overwrite, merged per device (sorted, overlapping and touching ranges
 * joined): probes, markers and checkpoints overwrite nothing.
 */
export function mergedRanges(writes: readonly PlannedWrite[], byName: Map<string, ReplicaDevice>): JournalRange[] {
  const perDevice = new Map<string, [number, number][]>();
  for (const write of writes) {
    const { record } = write;
    if (write.probe !== undefined || record.length === 0 || (record.flags & recordFlags.resyncEnd) !== 0) continue;
    if (write.data === undefined && (record.flags & recordFlags.zero) === 0) continue;
    byName.set(write.target.name, write.target);
    let list = perDevice.get(write.target.name);
    if (list === undefined) perDevice.set(write.target.name, (list = []));
    list.push([record.offset, record.offset + record.length]);
  }
  const ranges: JournalRange[] = [];
  for (const [device, list] of perDevice) {
    list.sort((a, b) => a[0] - b[0]);
    let [start, end] = list[0]!;
    for (const [nextStart, nextEnd] of list.slice(1)) {
      if (nextStart <= end) end = Math.max(end, nextEnd);
      else {
        ranges.push({ device, offset: start, length: end - start });
        [start, end] = [nextStart, nextEnd];
      }
    }
    ranges.push({ device, offset: start, length: end - start });
  }
  return ranges;
}
