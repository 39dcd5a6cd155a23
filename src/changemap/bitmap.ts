/**
 * A bitmap over 32-bit words: bit i lives in word i >>> 5 at position i & 31, which on the
 * little-endian hosts druvaa runs on (crc32c.ts refuses others) is byte i >>> 3, bit i & 7 — the
 * on-disk order. Pure and synchronous; the change map builds durability on top of it.
 *
 * Ranges are half-open bit ranges [firstBit, endBit). Every operation works word by word, so
 * marking or scanning a whole volume costs one pass over its words, not one per bit.
 */
import { assert } from "../assert.ts";

/** Bits set in a 32-bit word (SWAR popcount). */
export function popcount32(value: number): number {
  let x = value >>> 0;
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

/** Index of the lowest set bit of a non-zero word. */
function lowestSetBit(word: number): number {
  return 31 - Math.clz32(word & -word);
}

/** Mask of bits [fromBit, toBit) inside one word, 0 <= fromBit < toBit <= 32. */
function wordMask(fromBit: number, toBit: number): number {
  const high = toBit === 32 ? 0xffffffff : ((1 << toBit) >>> 0) - 1;
  return (high & ~((1 << fromBit) - 1)) >>> 0;
}

export class Bitmap {
  readonly words: Uint32Array;

  /**
   * A view over `bytes` (not a copy): changes show in both. `bytes` must start on a 4-byte
   * boundary and be whole words; `bitCount` bits are used, the rest must stay zero.
   */
  constructor(readonly bytes: Uint8Array, readonly bitCount: number) {
    assert(bytes.byteOffset % 4 === 0 && bytes.length % 4 === 0, "bitmap bytes are whole aligned words");
    assert(Number.isSafeInteger(bitCount) && bitCount >= 0 && bitCount <= bytes.length * 8, "bit count fits the bytes");
    this.words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  }

  private checkRange(firstBit: number, endBit: number): void {
    assert(Number.isSafeInteger(firstBit) && Number.isSafeInteger(endBit) && firstBit >= 0 && firstBit <= endBit && endBit <= this.bitCount, `bit range ${firstBit}..${endBit} outside 0..${this.bitCount}`);
  }

  /** Calls `visit(wordIndex, mask)` for every word the range touches, with the range's bits in it. */
  private forEachWord(firstBit: number, endBit: number, visit: (wordIndex: number, mask: number) => void): void {
    let bit = firstBit;
    while (bit < endBit) {
      const wordIndex = bit >>> 5;
      const wordStart = wordIndex * 32;
      const to = Math.min(endBit - wordStart, 32);
      visit(wordIndex, wordMask(bit - wordStart, to));
      bit = wordStart + to;
    }
  }

  isSet(bit: number): boolean {
    this.checkRange(bit, bit + 1);
    return ((this.words[bit >>> 5]! >>> (bit & 31)) & 1) === 1;
  }

  /** Sets the bits in [firstBit, endBit); returns how many were clear before. */
  set(firstBit: number, endBit: number): number {
    this.checkRange(firstBit, endBit);
    const words = this.words;
    let newlySet = 0;
    this.forEachWord(firstBit, endBit, (index, mask) => {
      const old = words[index]!;
      const added = (mask & ~old) >>> 0;
      if (added !== 0) {
        newlySet += popcount32(added);
        words[index] = old | mask;
      }
    });
    return newlySet;
  }

  /** Clears the bits in [firstBit, endBit); returns how many were set before. */
  clear(firstBit: number, endBit: number): number {
    this.checkRange(firstBit, endBit);
    const words = this.words;
    let cleared = 0;
    this.forEachWord(firstBit, endBit, (index, mask) => {
      const old = words[index]!;
      const removed = (mask & old) >>> 0;
      if (removed !== 0) {
        cleared += popcount32(removed);
        words[index] = old & ~mask;
      }
    });
    return cleared;
  }

  /** How many bits in [firstBit, endBit) are set. */
  count(firstBit = 0, endBit = this.bitCount): number {
    this.checkRange(firstBit, endBit);
    const words = this.words;
    let total = 0;
    this.forEachWord(firstBit, endBit, (index, mask) => {
      total += popcount32(words[index]! & mask);
    });
    return total;
  }

  /** The first set bit in [fromBit, endBit), or endBit if there is none. */
  nextSet(fromBit: number, endBit = this.bitCount): number {
    return this.scan(fromBit, endBit, 0);
  }

  /** The first clear bit in [fromBit, endBit), or endBit if there is none. */
  nextClear(fromBit: number, endBit = this.bitCount): number {
    return this.scan(fromBit, endBit, 0xffffffff);
  }

  /** First bit in range whose value differs from `skip` (0: find a set bit; all ones: a clear one). */
  private scan(fromBit: number, endBit: number, skip: number): number {
    this.checkRange(Math.min(fromBit, endBit), endBit);
    const words = this.words;
    let bit = fromBit;
    while (bit < endBit) {
      const wordIndex = bit >>> 5;
      const wordStart = wordIndex * 32;
      const candidates = ((words[wordIndex]! ^ skip) & wordMask(bit - wordStart, 32)) >>> 0;
      if (candidates !== 0) return Math.min(wordStart + lowestSetBit(candidates), endBit);
      bit = wordStart + 32;
    }
    return endBit;
  }

  /** Clears every bit at or past bitCount (padding that damage or a foreign writer may have set). */
  clearPadding(): void {
    const words = this.words;
    const lastUsedWord = this.bitCount >>> 5;
    if ((this.bitCount & 31) !== 0) words[lastUsedWord] = words[lastUsedWord]! & wordMask(0, this.bitCount & 31);
    const firstFreeWord = Math.ceil(this.bitCount / 32);
    words.fill(0, firstFreeWord);
  }
}
