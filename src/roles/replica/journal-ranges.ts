/**
 * The ranges an apply step overwrites, as the journal (journal.ts) keeps their before-images, and
 * the points its chunks give.
 */
import { recordFlags } from "../../protocol/messages.ts";
import type { PlannedWrite, ReplicaDevice } from "./apply.ts";
import type { JournalRange } from "./journal-format.ts";
import type { Chunk, Point } from "./journal.ts";
import { mergeExtents, type Extent } from "../extents.ts";

/**
 * The ranges `writes` overwrite, merged per device (sorted, overlapping and touching ranges
 * joined): probes, markers and checkpoints overwrite nothing.
 */
export function mergedRanges(writes: readonly PlannedWrite[], byName: Map<string, ReplicaDevice>): JournalRange[] {
  const perDevice = new Map<string, Extent[]>();
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
  for (const [device, list] of perDevice) for (const [start, end] of mergeExtents(list)) ranges.push({ device, offset: start, length: end - start });
  return ranges;
}

/**
 * The points `chunks` (one WRL's committed chunks, oldest first) give: only those reachable through
 * an unbroken chain of steps back from the current point (`applied`); a step is one chunk, or
 * several with the same from and to (a resync set applied in pieces). Oldest first, ending with
 * the current point.
 */
export function chainPoints(chunks: readonly Chunk[], where: { wrl: string; wrlUuid: string; applied: number; lastAppliedAt: string }): Point[] {
  const points: Point[] = [];
  // Reachable only through an unbroken chain of steps back from the current point; a step is
  // one chunk, or several with the same from and to (a resync set applied in pieces).
  let expectTo = where.applied;
  const reachable: Chunk[] = [];
  // Steps newest first; a step is the run of chunks with its from and to.
  const reversed = [...chunks].reverse();
  for (let index = 0; index < reversed.length; ) {
    const head = reversed[index]!.meta;
    if (head.toLsn !== expectTo) break;
    const step: Chunk[] = [];
    while (index < reversed.length && reversed[index]!.meta.fromLsn === head.fromLsn && reversed[index]!.meta.toLsn === head.toLsn) step.push(reversed[index++]!);
    // A step given in pieces counts only with every piece (retention may have dropped the first ones).
    const pieces = step.map((chunk) => chunk.meta.piece).filter((piece): piece is number => piece !== undefined);
    if (pieces.length > 0 && (pieces.length !== step.length || new Set(pieces).size !== step.length || Math.max(...pieces) !== step.length - 1)) break;
    reachable.push(...step);
    expectTo = head.fromLsn;
  }
  reachable.reverse();
  const first = reachable[0];
  if (first !== undefined && first.meta.fromUnsettled !== true) points.push({ wrl: where.wrl, wrlUuid: where.wrlUuid, lsn: first.meta.fromLsn, time: new Date(first.meta.fromTimeMs).toISOString(), current: false });
  for (const [index, chunk] of reachable.entries()) {
    const next = reachable[index + 1];
    if (next !== undefined && next.meta.fromLsn === chunk.meta.fromLsn && next.meta.toLsn === chunk.meta.toLsn) continue;
    // Inside a resync applied as it came (no replica WRL), a step's end is no consistent point.
    if (chunk.meta.unsettled === true) continue;
    points.push({ wrl: where.wrl, wrlUuid: where.wrlUuid, lsn: chunk.meta.toLsn, time: new Date(chunk.meta.timeMs).toISOString(), ...(chunk.meta.label === undefined ? {} : { label: chunk.meta.label }), current: false });
  }
  const last = points.at(-1);
  if (last !== undefined && last.lsn === where.applied) last.current = true;
  else points.push({ wrl: where.wrl, wrlUuid: where.wrlUuid, lsn: where.applied, time: where.lastAppliedAt, current: true });
  return points;
}
