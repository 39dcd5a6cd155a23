/**
 * Seeded randomness. Randomness belongs to the I/O seam: code under test gets a `Random` passed
 * in, so a simulation run is replayed exactly from its seed. Not for anything secret (keys,
 * nonces): use node:crypto for those.
 */

/** A deterministic pseudo-random source (mulberry32: 32-bit state, fast, good enough for tests). */
export class Random {
  private state: number;

  constructor(readonly seed: number) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
    // Fold the high bits in so seeds that differ only above 2^32 still give different streams.
    this.state = (seed ^ Math.floor(seed / 0x1_0000_0000)) >>> 0;
  }

  /** Uniform integer in [0, 2^32). */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform float in [0, 1). */
  nextFloat(): number {
    return this.nextUint32() / 0x1_0000_0000;
  }

  /** Uniform integer in [0, maxExclusive); maxExclusive must be in [1, 2^32]. */
  nextInt(maxExclusive: number): number {
    if (!Number.isInteger(maxExclusive) || maxExclusive < 1 || maxExclusive > 0x1_0000_0000) {
      throw new RangeError(`nextInt bound must be an integer in [1, 2^32], got ${maxExclusive}`);
    }
    return Math.floor(this.nextFloat() * maxExclusive);
  }

  /** Uniform integer in [min, max] (both inclusive). */
  nextIntBetween(min: number, max: number): number {
    return min + this.nextInt(max - min + 1);
  }

  /** True with probability `probability`. */
  chance(probability: number): boolean {
    return this.nextFloat() < probability;
  }

  /** Fills `bytes` with pseudo-random bytes and returns it. */
  fill(bytes: Uint8Array): Uint8Array {
    let index = 0;
    for (; index + 4 <= bytes.length; index += 4) {
      const word = this.nextUint32();
      bytes[index] = word & 0xff;
      bytes[index + 1] = (word >>> 8) & 0xff;
      bytes[index + 2] = (word >>> 16) & 0xff;
      bytes[index + 3] = word >>> 24;
    }
    if (index < bytes.length) {
      let word = this.nextUint32();
      for (; index < bytes.length; index += 1) {
        bytes[index] = word & 0xff;
        word >>>= 8;
      }
    }
    return bytes;
  }

  /** A child source with its own stream, derived from this one (for handing to a component). */
  fork(): Random {
    return new Random(this.nextUint32() * 0x20_0000 + (this.nextUint32() >>> 11));
  }
}
