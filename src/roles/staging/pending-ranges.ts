/**
 * The device extents records write, gathered in log order (any order of offsets) and answered as
 * sorted, non-overlapping ranges per device, touching ones joined (GET /wrl/pending, failback.ts).
 *
 * Bounded by `rangesMax`: memory holds at most about twice that many extents (gathered ones are
 * merged whenever they reach it), and when the merged ranges are still too many, the smallest
 * gaps between neighbours (on the same device) are closed until they fit — the answer then covers
 * more than was written (`coarse`), never less: for failback, copying a few blocks too many is
 * safe, missing one is not.
 */
import { assert } from "../../assert.ts";
import { mergeExtents, type Extent } from "../extents.ts";

export interface DeviceRange {
  device: string;
  offset: number;
  length: number;
}


export class PendingRanges {
  readonly #byDevice = new Map<string, Extent[]>();
  #count = 0;
  #coarse = false;

  constructor(private readonly rangesMax: number) {
    assert(Number.isSafeInteger(rangesMax) && rangesMax >= 1, "at least one range");
  }

  /** `length` bytes at `offset` of `device` were written (zero length: nothing). */
  add(device: string, offset: number, length: number): void {
    if (length <= 0) return;
    let extents = this.#byDevice.get(device);
    if (extents === undefined) this.#byDevice.set(device, (extents = []));
    extents.push([offset, offset + length]);
    this.#count += 1;
    if (this.#count >= 2 * this.rangesMax) this.#compact();
  }

  /** The ranges (devices by name, offsets ascending); `coarse`: gaps were closed to fit the bound. */
  result(): { ranges: DeviceRange[]; coarse: boolean; bytes: number } {
    this.#compact();
    const ranges: DeviceRange[] = [];
    let bytes = 0;
    for (const device of [...this.#byDevice.keys()].sort()) {
      for (const [start, end] of this.#byDevice.get(device)!) {
        ranges.push({ device, offset: start, length: end - start });
        bytes += end - start;
      }
    }
    return { ranges, coarse: this.#coarse, bytes };
  }

  #compact(): void {
    let count = 0;
    for (const [device, extents] of this.#byDevice) {
      const merged = mergeExtents(extents);
      this.#byDevice.set(device, merged);
      count += merged.length;
    }
    this.#count = count;
    if (count > this.rangesMax) this.#coarsen();
  }

  /** Closes the smallest gaps between neighbours until at most rangesMax ranges are left (one per device at least). */
  #coarsen(): void {
    const gaps: number[] = [];
    for (const extents of this.#byDevice.values()) {
      for (let index = 1; index < extents.length; index += 1) gaps.push(extents[index]![0] - extents[index - 1]![1]);
    }
    const closing = Math.min(this.#count - this.rangesMax, gaps.length);
    if (closing <= 0) return;
    gaps.sort((a, b) => a - b);
    const widestClosed = gaps[closing - 1]!; // ties close too: fewer ranges, still a cover
    let count = 0;
    for (const [device, extents] of this.#byDevice) {
      const joined: Extent[] = [extents[0]!];
      for (let index = 1; index < extents.length; index += 1) {
        const last = joined[joined.length - 1]!;
        const next = extents[index]!;
        if (next[0] - last[1] <= widestClosed) last[1] = next[1];
        else joined.push(next);
      }
      this.#byDevice.set(device, joined);
      count += joined.length;
    }
    this.#count = count;
    this.#coarse = true;
  }
}

