/**
 * One region of a change map: the dirty bits of one client volume.
 *
 * Rounding: a mark covers every block the byte range touches (outward), a clear only blocks the
 * range covers completely (inward), so a partial clear never forgets the rest of a block. The
 * volume's last block may be partial; a range ending at the volume's end covers it.
 *
 * What it guarantees: once markDirty() resolves, the blocks stay dirty across any crash until a
 * clear covering them is issued. What it does not: clears are durable only after sync() (or a
 * later mark in the same bitmap sector); a crash may bring them back.
 */
import { DruvaaError } from "../errors.ts";
import type { Bitmap } from "./bitmap.ts";
import type { RegionEntry } from "./format.ts";
import type { Batch, SectorPersister } from "./persister.ts";

export interface DirtyRange {
  offsetBytes: number;
  lengthBytes: number;
}

export interface DirtyRangesOptions {
  /** Start the scan at the block holding this offset (default 0). */
  fromOffsetBytes?: number;
  /** Stop after this many ranges. */
  maxRanges?: number;
  /** Split longer runs into ranges of at most this many bytes (rounded down to whole blocks, at least one). */
  maxRangeBytes?: number;
}

export interface RegionInfo {
  name: string;
  volumeSizeBytes: number;
  volumeUuid?: string;
  deviceIdentity?: string;
  generation: number;
  bitmapOffsetBytes: number;
  bitmapBytes: number;
  blockCount: number;
  dirtyBlocks: number;
  dirtyBytes: number;
  dirtyFraction: number;
  firstDirtyRanges: DirtyRange[];
  /** More dirty ranges exist than firstDirtyRanges lists. */
  moreDirtyRanges: boolean;
}

/** What a region needs from the map that holds it. */
export interface RegionHost {
  readonly blockSizeBytes: number;
  entry(index: number): RegionEntry;
  /** Throws CHANGEMAP_CLOSED / CHANGEMAP_READ_ONLY when the map cannot be used (for writing). */
  checkUsable(forWriting: boolean): void;
  bumpGeneration(index: number): Promise<number>;
}

const resolved = Promise.resolve();

export class ChangeMapRegion {
  readonly name: string;
  readonly volumeSizeBytes: number;
  readonly blockSizeBytes: number;
  readonly blockCount: number;
  private dirtyBlockCount: number;
  private readonly sectorBits: number;
  private readonly firstSector: number;

  constructor(
    private readonly host: RegionHost,
    private readonly index: number,
    private readonly bitmap: Bitmap,
    private readonly persister: SectorPersister,
  ) {
    const entry = host.entry(index);
    this.name = entry.name;
    this.volumeSizeBytes = entry.volumeSizeBytes;
    this.blockSizeBytes = host.blockSizeBytes;
    this.blockCount = bitmap.bitCount;
    this.dirtyBlockCount = bitmap.count();
    this.sectorBits = persister.sectorBytes * 8;
    this.firstSector = entry.bitmapOffsetBytes / persister.sectorBytes;
  }

  get volumeUuid(): string | undefined {
    return this.host.entry(this.index).volumeUuid;
  }

  /** This region's generation: the map generation at its last bump (1 when created). */
  get generation(): number {
    return this.host.entry(this.index).generation;
  }

  get dirtyBlocks(): number {
    return this.dirtyBlockCount;
  }

  /** Volume bytes in dirty blocks (the partial last block counts only its part inside the volume). */
  get dirtyBytes(): number {
    const slackBytes = this.blockCount * this.blockSizeBytes - this.volumeSizeBytes;
    const lastIsDirty = this.blockCount > 0 && this.bitmap.isSet(this.blockCount - 1);
    return this.dirtyBlockCount * this.blockSizeBytes - (lastIsDirty ? slackBytes : 0);
  }

  /**
   * Marks every block [offsetBytes, offsetBytes + lengthBytes) touches as dirty. Resolves when
   * the marks are durable; at once, with no I/O, when every bit was already set and durable.
   * Concurrent calls share one flush. Rejects (nothing acknowledged) on an I/O error; a later
   * call rewrites the sectors. A zero-length range is a no-op.
   */
  markDirty(offsetBytes: number, lengthBytes: number): Promise<void> {
    try {
      this.host.checkUsable(true);
      this.checkRange(offsetBytes, lengthBytes, "markDirty");
    } catch (error) {
      return Promise.reject(error);
    }
    if (lengthBytes === 0) return resolved;
    const firstBlock = Math.floor(offsetBytes / this.blockSizeBytes);
    const endBlock = Math.floor((offsetBytes + lengthBytes - 1) / this.blockSizeBytes) + 1;
    return this.setBlocks(firstBlock, endBlock);
  }

  /** Marks the whole volume dirty (initial sync, or after the map was lost); resolves when durable. */
  markAll(): Promise<void> {
    try {
      this.host.checkUsable(true);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.setBlocks(0, this.blockCount);
  }

  private setBlocks(firstBlock: number, endBlock: number): Promise<void> {
    let first: Batch | undefined;
    let second: Batch | undefined;
    for (let block = firstBlock; block < endBlock; ) {
      const sectorIndex = Math.floor(block / this.sectorBits);
      const stop = Math.min(endBlock, (sectorIndex + 1) * this.sectorBits);
      const sector = this.firstSector + sectorIndex;
      const added = this.bitmap.set(block, stop);
      let batch: Batch | undefined;
      if (added > 0) {
        this.dirtyBlockCount += added;
        batch = this.persister.setIn(sector);
      } else {
        batch = this.persister.pendingFor(sector);
      }
      // At most two batches exist at a time: the running one and the open one.
      if (batch !== undefined && batch !== first) {
        if (first === undefined) first = batch;
        else second = batch;
      }
      block = stop;
    }
    if (first === undefined) return resolved;
    return this.persister.wait(second === undefined ? [first] : [first, second]);
  }

  /**
   * Clears the blocks that [offsetBytes, offsetBytes + lengthBytes) covers completely. Call it
   * only once the data of those blocks is durable at the other side. Lazily durable (see the
   * file comment). Returns how many blocks went from dirty to clean.
   */
  clearClean(offsetBytes: number, lengthBytes: number): number {
    this.host.checkUsable(true);
    this.checkRange(offsetBytes, lengthBytes, "clearClean");
    const endBytes = offsetBytes + lengthBytes;
    const firstBlock = Math.ceil(offsetBytes / this.blockSizeBytes);
    const endBlock = endBytes === this.volumeSizeBytes ? this.blockCount : Math.floor(endBytes / this.blockSizeBytes);
    let clearedTotal = 0;
    for (let block = firstBlock; block < endBlock; ) {
      const sectorIndex = Math.floor(block / this.sectorBits);
      const stop = Math.min(endBlock, (sectorIndex + 1) * this.sectorBits);
      const cleared = this.bitmap.clear(block, stop);
      if (cleared > 0) {
        clearedTotal += cleared;
        this.persister.clearedIn(this.firstSector + sectorIndex);
      }
      block = stop;
    }
    this.dirtyBlockCount -= clearedTotal;
    return clearedTotal;
  }

  /** clearClean() for each range; returns the blocks cleared in all. */
  clear(ranges: Iterable<DirtyRange>): number {
    let total = 0;
    for (const range of ranges) total += this.clearClean(range.offsetBytes, range.lengthBytes);
    return total;
  }

  /** True if any block the range touches is dirty (in memory: includes marks not yet durable). */
  isDirty(offsetBytes: number, lengthBytes: number): boolean {
    this.host.checkUsable(false);
    this.checkRange(offsetBytes, lengthBytes, "isDirty");
    if (lengthBytes === 0) return false;
    const firstBlock = Math.floor(offsetBytes / this.blockSizeBytes);
    const endBlock = Math.floor((offsetBytes + lengthBytes - 1) / this.blockSizeBytes) + 1;
    return this.bitmap.nextSet(firstBlock, endBlock) < endBlock;
  }

  /**
   * The dirty extents in volume order, as whole blocks clipped to the volume. Reads the bitmap
   * as it is when each range is produced, so marks and clears made while iterating show up (or
   * not) depending on where the scan is.
   */
  *dirtyRanges(opts: DirtyRangesOptions = {}): Generator<DirtyRange> {
    this.host.checkUsable(false);
    const fromOffsetBytes = opts.fromOffsetBytes ?? 0;
    this.checkRange(Math.min(fromOffsetBytes, this.volumeSizeBytes), 0, "dirtyRanges");
    const maxRanges = opts.maxRanges ?? Number.POSITIVE_INFINITY;
    const maxBlocks = opts.maxRangeBytes === undefined ? Number.POSITIVE_INFINITY : Math.max(1, Math.floor(opts.maxRangeBytes / this.blockSizeBytes));
    let block = Math.floor(fromOffsetBytes / this.blockSizeBytes);
    for (let produced = 0; produced < maxRanges; produced += 1) {
      const start = this.bitmap.nextSet(Math.min(block, this.blockCount));
      if (start >= this.blockCount) return;
      const stop = Math.min(this.bitmap.nextClear(start), start + maxBlocks);
      const offsetBytes = start * this.blockSizeBytes;
      yield { offsetBytes, lengthBytes: Math.min(stop * this.blockSizeBytes, this.volumeSizeBytes) - offsetBytes };
      block = stop;
    }
  }

  /** Bumps the generation (durably, in both the map and this region); resolves to the new value. */
  bumpGeneration(): Promise<number> {
    try {
      this.host.checkUsable(true);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.host.bumpGeneration(this.index);
  }

  info(rangesMax: number): RegionInfo {
    const entry = this.host.entry(this.index);
    const firstDirtyRanges = [...this.dirtyRanges({ maxRanges: rangesMax + 1 })];
    const moreDirtyRanges = firstDirtyRanges.length > rangesMax;
    if (moreDirtyRanges) firstDirtyRanges.pop();
    const dirtyBytes = this.dirtyBytes;
    return {
      name: entry.name,
      volumeSizeBytes: entry.volumeSizeBytes,
      ...(entry.volumeUuid === undefined ? {} : { volumeUuid: entry.volumeUuid }),
      ...(entry.deviceIdentity === undefined ? {} : { deviceIdentity: entry.deviceIdentity }),
      generation: entry.generation,
      bitmapOffsetBytes: entry.bitmapOffsetBytes,
      bitmapBytes: entry.bitmapBytes,
      blockCount: this.blockCount,
      dirtyBlocks: this.dirtyBlockCount,
      dirtyBytes,
      dirtyFraction: dirtyBytes / entry.volumeSizeBytes,
      firstDirtyRanges,
      moreDirtyRanges,
    };
  }

  private checkRange(offsetBytes: number, lengthBytes: number, what: string): void {
    if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > this.volumeSizeBytes) {
      throw new DruvaaError("CHANGEMAP_OUT_OF_RANGE", `change map region '${this.name}': ${what} ${offsetBytes}+${lengthBytes} is outside the volume (${this.volumeSizeBytes} bytes)`, "The region was created for a smaller volume; check the volume size");
    }
  }
}
