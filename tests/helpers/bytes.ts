/** Deterministic test payloads. */

/** `length` bytes from an xorshift32 stream seeded by `seed`: the same seed always gives the same bytes. */
export function bytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let state = (seed * 2654435761) >>> 0 || 1;
  for (let index = 0; index < length; index += 1) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[index] = state & 0xff;
  }
  return out;
}
