/**
 * Byte-range arithmetic of the online verify (verify.ts): cutting a device range into probes,
 * hashing a probe's blocks, taking blocks known to be dirty out of a report, and keeping the
 * differing ranges of a whole pass merged and bounded. Pure, apart from yielding while hashing and
 * reading the change map's bits (in memory).
 */
import { assert } from "../../assert.ts";
import type { ChangeMapRegion } from "../../changemap/index.ts";
import { replicaVerifyRangesMax, verifyBlockBytesMin, verifyRangeBytesMax, verifyRangesMax } from "../../constants.ts";
import { yieldToEventLoop } from "../../io/event-loop.ts";
import { verifyDigestBytes, type ByteRange } from "../../protocol/messages.ts";

/** One verify probe: `length` bytes at `offset`, a whole number of `blockBytes` blocks. */
export interface ProbeRange extends ByteRange {
  blockBytes: number;
}

/**
 * The probes covering [startBytes, endBytes): chunks of at most `chunkBytes` (whole blocks, and
 * few enough blocks that an outcome never has to give up listing them: at most twice the ranges
 * an outcome lists (the replica's replicaVerifyRangesMax, within the protocol's verifyRangesMax),
 * since differing ranges alternate with equal ones at worst). A tail
 * shorter than a block (the device's end) gets a probe of its own with the largest power-of-two
 * block that divides it. `startBytes` must be block aligned.
 */
export function planProbes(startBytes: number, endBytes: number, blockBytes: number, chunkBytes: number): ProbeRange[] {
  assert(startBytes % blockBytes === 0 && endBytes >= startBytes, "a verify range starts on a block");
  const rangesListed = Math.min(verifyRangesMax, replicaVerifyRangesMax);
  const blocksPerChunk = Math.max(1, Math.min(Math.floor(chunkBytes / blockBytes), 2 * rangesListed, Math.floor(verifyRangeBytesMax / blockBytes)));
  const probeBytes = blocksPerChunk * blockBytes;
  const bodyEnd = startBytes + Math.floor((endBytes - startBytes) / blockBytes) * blockBytes;
  const probes: ProbeRange[] = [];
  for (let offset = startBytes; offset < bodyEnd; offset += probeBytes) probes.push({ offset, length: Math.min(probeBytes, bodyEnd - offset), blockBytes });
  const tailBytes = endBytes - bodyEnd;
  if (tailBytes > 0) {
    const tailBlockBytes = tailBytes & -tailBytes; // lowest set bit: the largest power of two dividing it
    assert(tailBlockBytes >= verifyBlockBytesMin, "devices are whole sectors, so their tail is too");
    probes.push({ offset: bodyEnd, length: tailBytes, blockBytes: tailBlockBytes });
  }
  return probes;
}

/**
 * sha256 of each `blockBytes` block of `data` into `into` (32 bytes each, in order), without a
 * copy of the data. Gives the event loop a turn every `sliceBytes` so the client keeps serving
 * its NBD clients while a chunk is hashed.
 */
export async function hashBlocks(data: Uint8Array, blockBytes: number, into: Uint8Array, sliceBytes: number): Promise<void> {
  assert(data.length % blockBytes === 0 && into.length === (data.length / blockBytes) * verifyDigestBytes, "one digest per whole block");
  let sinceYield = 0;
  for (let offset = 0, at = 0; offset < data.length; offset += blockBytes, at += verifyDigestBytes) {
    Bun.SHA256.hash(data.subarray(offset, offset + blockBytes), into.subarray(at, at + verifyDigestBytes));
    sinceYield += blockBytes;
    if (sinceYield >= sliceBytes && offset + blockBytes < data.length) {
      sinceYield = 0;
      await yieldToEventLoop();
    }
  }
}

/** `ranges` without the bytes of `removed` (both sorted by offset, each without overlaps). */
export function subtractRanges(ranges: readonly ByteRange[], removed: readonly ByteRange[]): ByteRange[] {
  if (removed.length === 0) return [...ranges];
  const result: ByteRange[] = [];
  let index = 0;
  for (const range of ranges) {
    let start = range.offset;
    const end = range.offset + range.length;
    while (index < removed.length && removed[index]!.offset + removed[index]!.length <= start) index += 1;
    for (let cut = index; cut < removed.length && removed[cut]!.offset < end; cut += 1) {
      const hole = removed[cut]!;
      if (hole.offset > start) result.push({ offset: start, length: hole.offset - start });
      start = Math.max(start, hole.offset + hole.length);
    }
    if (start < end) result.push({ offset: start, length: end - start });
  }
  return result;
}

/** The blocks of `range` the change map holds dirty now (clipped to the range). */
export function dirtyWithin(region: ChangeMapRegion | undefined, range: ByteRange): ByteRange[] {
  if (region === undefined || region.dirtyBytes === 0 || !region.isDirty(range.offset, range.length)) return [];
  const end = range.offset + range.length;
  const dirty: ByteRange[] = [];
  for (const extent of region.dirtyRanges({ fromOffsetBytes: range.offset })) {
    if (extent.offsetBytes >= end) break;
    const start = Math.max(extent.offsetBytes, range.offset);
    const stop = Math.min(extent.offsetBytes + extent.lengthBytes, end);
    if (stop > start) dirty.push({ offset: start, length: stop - start });
  }
  return dirty;
}

/** `ranges` clipped to [offset, offset + length) (what a confused peer reports outside is dropped). */
export function clipRanges(ranges: readonly ByteRange[], within: ByteRange): ByteRange[] {
  const end = within.offset + within.length;
  const clipped: ByteRange[] = [];
  for (const range of ranges) {
    const start = Math.max(range.offset, within.offset);
    const stop = Math.min(range.offset + range.length, end);
    if (stop > start) clipped.push({ offset: start, length: stop - start });
  }
  return clipped.sort((a, b) => a.offset - b.offset);
}

/**
 * The differing ranges of one pass: added as probes report (in any order), listed sorted and
 * merged. Keeps at most `rangesMax` ranges (a device different everywhere would otherwise grow
 * it without bound): past that the ranges at the highest offsets are dropped, only the byte count
 * keeps growing, and `truncated` says so.
 */
export class RangeList {
  #ranges: ByteRange[] = [];
  #sorted = true;
  bytes = 0;
  truncated = false;

  constructor(private readonly rangesMax: number) {}

  add(ranges: readonly ByteRange[]): void {
    for (const range of ranges) {
      this.bytes += range.length;
      const last = this.#ranges.at(-1);
      if (last !== undefined && range.offset < last.offset) this.#sorted = false;
      this.#ranges.push({ offset: range.offset, length: range.length });
      if (this.#ranges.length >= 2 * this.rangesMax) this.#compact();
    }
  }

  get count(): number {
    this.#compact();
    return this.#ranges.length;
  }

  list(): ByteRange[] {
    this.#compact();
    return this.#ranges.map((range) => ({ ...range }));
  }

  #compact(): void {
    if (!this.#sorted) this.#ranges.sort((a, b) => a.offset - b.offset);
    this.#sorted = true;
    const merged: ByteRange[] = [];
    for (const range of this.#ranges) {
      const last = merged.at(-1);
      if (last !== undefined && range.offset <= last.offset + last.length) last.length = Math.max(last.length, range.offset + range.length - last.offset);
      else merged.push(range);
    }
    if (merged.length > this.rangesMax) {
      merged.length = this.rangesMax;
      this.truncated = true;
    }
    this.#ranges = merged;
  }
}
