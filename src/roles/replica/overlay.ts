/**
 * An overlay of one device: which byte ranges read from somewhere else than the device (a
 * journal's before-image, a snapshot's copy-on-write store, a drill's own writes). Intervals never
 * overlap; they are kept sorted by start. `fillGaps` adds a source only where nothing is yet (the
 * first version preserved wins: that is the content at the snapshot's point); `replace` puts it
 * over everything (a write into a writable snapshot).
 *
 * Sizes are bounded by the number of distinct ranges written since the point (each apply or
 * write adds at most a few intervals), not by the device size.
 */
export interface OverlaySource {
  /** `lengthBytes` of the source starting at its position `positionBytes`. */
  read(positionBytes: number, lengthBytes: number): Promise<Uint8Array>;
}

interface Interval {
  start: number;
  end: number;
  source: OverlaySource;
  /** The source position of `start`. */
  position: number;
}

/** A piece of a read: from the device, or from a source at a position. */
export type OverlayPiece = { start: number; end: number; source: undefined } | { start: number; end: number; source: OverlaySource; position: number };

export class Overlay {
  readonly #intervals: Interval[] = [];
  #coveredBytes = 0;

  get coveredBytes(): number {
    return this.#coveredBytes;
  }

  get intervalCount(): number {
    return this.#intervals.length;
  }

  /** Index of the first interval whose end is past `offset`. */
  #firstEndingAfter(offset: number): number {
    let low = 0;
    let high = this.#intervals.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.#intervals[middle]!.end <= offset) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** Covers the uncovered parts of [start, end) with `source` (byte x at position + x - start). */
  fillGaps(start: number, end: number, source: OverlaySource, position: number): void {
    const added: Interval[] = [];
    let index = this.#firstEndingAfter(start);
    let cursor = start;
    while (cursor < end) {
      const next = this.#intervals[index];
      const gapEnd = next === undefined ? end : Math.min(end, next.start);
      if (gapEnd > cursor) added.push({ start: cursor, end: gapEnd, source, position: position + (cursor - start) });
      if (next === undefined || next.start >= end) break;
      cursor = Math.max(cursor, next.end);
      index += 1;
    }
    for (const interval of added) this.#insert(interval);
  }

  /** Covers [start, end) with `source`, over whatever covered it before. */
  replace(start: number, end: number, source: OverlaySource, position: number): void {
    const first = this.#firstEndingAfter(start);
    let last = first;
    const kept: Interval[] = [];
    while (last < this.#intervals.length && this.#intervals[last]!.start < end) {
      const old = this.#intervals[last]!;
      if (old.start < start) kept.push({ ...old, end: start });
      if (old.end > end) kept.push({ ...old, start: end, position: old.position + (end - old.start) });
      this.#coveredBytes -= old.end - old.start;
      last += 1;
    }
    const fresh: Interval = { start, end, source, position };
    const pieces = [...kept.filter((piece) => piece.start < start), fresh, ...kept.filter((piece) => piece.start >= end)];
    this.#intervals.splice(first, last - first, ...pieces);
    for (const piece of pieces) this.#coveredBytes += piece.end - piece.start;
  }

  /** Drops every interval read from `source`: those bytes read from the device again. */
  removeSource(source: OverlaySource): void {
    for (let index = this.#intervals.length - 1; index >= 0; index -= 1) {
      const interval = this.#intervals[index]!;
      if (interval.source !== source) continue;
      this.#coveredBytes -= interval.end - interval.start;
      this.#intervals.splice(index, 1);
    }
  }

  #insert(interval: Interval): void {
    const index = this.#firstEndingAfter(interval.start);
    this.#intervals.splice(index, 0, interval);
    this.#coveredBytes += interval.end - interval.start;
  }

  /** [start, end) as pieces, in order: covered ones name their source, gaps read the device. */
  pieces(start: number, end: number): OverlayPiece[] {
    const result: OverlayPiece[] = [];
    let cursor = start;
    for (let index = this.#firstEndingAfter(start); cursor < end; index += 1) {
      const next = this.#intervals[index];
      if (next === undefined || next.start >= end) {
        result.push({ start: cursor, end, source: undefined });
        break;
      }
      if (next.start > cursor) result.push({ start: cursor, end: next.start, source: undefined });
      const pieceStart = Math.max(cursor, next.start);
      const pieceEnd = Math.min(end, next.end);
      result.push({ start: pieceStart, end: pieceEnd, source: next.source, position: next.position + (pieceStart - next.start) });
      cursor = pieceEnd;
    }
    return result;
  }

  /** True when some byte of [start, end) is covered. */
  touches(start: number, end: number): boolean {
    const next = this.#intervals[this.#firstEndingAfter(start)];
    return next !== undefined && next.start < end;
  }
}

/**
 * Reads [offset, offset + length) through `overlay` over `readDevice`. A device piece is read,
 * then looked up again: a part preserved meanwhile (apply overwrote it while the read was in
 * flight; it is always preserved before it is written) is read from its source instead.
 */
export async function readThrough(overlay: Overlay, readDevice: (offset: number, length: number) => Promise<Uint8Array>, offset: number, length: number): Promise<Uint8Array> {
  if (!overlay.touches(offset, offset + length)) {
    // Nothing preserved there (the common case): the device's own buffer, no copy, unless apply
    // preserved part of it while the read was in flight.
    const data = await readDevice(offset, length);
    if (!overlay.touches(offset, offset + length)) return data;
  }
  const into = new Uint8Array(length);
  const fill = async (start: number, end: number): Promise<void> => {
    for (const piece of overlay.pieces(start, end)) {
      if (piece.source !== undefined) {
        into.set(await piece.source.read(piece.position, piece.end - piece.start), piece.start - offset);
        continue;
      }
      const data = await readDevice(piece.start, piece.end - piece.start);
      into.set(data, piece.start - offset);
      if (overlay.touches(piece.start, piece.end)) {
        for (const again of overlay.pieces(piece.start, piece.end)) {
          if (again.source !== undefined) into.set(await again.source.read(again.position, again.end - again.start), again.start - offset);
        }
      }
    }
  };
  await fill(offset, offset + length);
  return into;
}
