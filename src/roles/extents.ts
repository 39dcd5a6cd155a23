/** Byte extents [start, end) of one device, and joining them (staging's pending ranges, the replica's journal and failback). */
export type Extent = [start: number, end: number];

/** Sorted by start, overlapping and touching extents joined. */
export function mergeExtents(extents: Extent[]): Extent[] {
  const sorted = [...extents].sort((a, b) => a[0] - b[0]);
  const merged: Extent[] = [];
  for (const extent of sorted) {
    const last = merged[merged.length - 1];
    if (last !== undefined && extent[0] <= last[1]) last[1] = Math.max(last[1], extent[1]);
    else merged.push([extent[0], extent[1]]);
  }
  return merged;
}
