/**
 * The word-at-a-time bitmap against the obvious one-boolean-per-bit model: for any sequence of
 * set/clear over any ranges, every query (isSet, count, nextSet, nextClear) agrees, set/clear
 * report exactly how many bits changed, and the bytes follow the on-disk bit order.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Bitmap, popcount32 } from "../../src/changemap/bitmap.ts";
import { propertySeed } from "./helpers.ts";

function makeBitmap(bitCount: number): Bitmap {
  const bytes = new Uint8Array(Math.ceil(bitCount / 32) * 4 + 4);
  return new Bitmap(bytes, bitCount);
}

describe("Bitmap", () => {
  test("popcount32 known answers", () => {
    expect([0, 1, 0xff, 0x80000000, 0xffffffff, 0x55555555, 0x12345678].map(popcount32)).toEqual([0, 1, 8, 1, 32, 16, 13]);
  });

  test("bit i is byte i/8, bit i%8 (the on-disk order)", () => {
    const bitmap = makeBitmap(100);
    bitmap.set(0, 1);
    bitmap.set(9, 10);
    bitmap.set(31, 33);
    bitmap.set(99, 100);
    expect([...bitmap.bytes.subarray(0, 13)]).toEqual([0x01, 0x02, 0, 0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x08]);
  });

  test("clearPadding clears only bits past bitCount", () => {
    const bitmap = makeBitmap(40);
    bitmap.bytes.fill(0xff);
    bitmap.clearPadding();
    expect(bitmap.count()).toBe(40);
    expect([...bitmap.bytes]).toEqual([0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0]);
  });

  test("agrees with a boolean-per-bit model for any set/clear sequence (property)", () => {
    const seed = propertySeed("changemap bitmap");
    const op = fc.record({ kind: fc.constantFrom("set", "clear"), a: fc.nat(), b: fc.nat() });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.array(op, { maxLength: 40 }), fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 10 }), (bitCount, ops, queries) => {
        const bitmap = makeBitmap(bitCount);
        const model = new Array<boolean>(bitCount).fill(false);
        for (const { kind, a, b } of ops) {
          const first = Math.min(a % (bitCount + 1), b % (bitCount + 1));
          const end = Math.max(a % (bitCount + 1), b % (bitCount + 1));
          let changed = 0;
          for (let i = first; i < end; i += 1) {
            if (model[i] !== (kind === "set")) changed += 1;
            model[i] = kind === "set";
          }
          expect(kind === "set" ? bitmap.set(first, end) : bitmap.clear(first, end)).toBe(changed);
        }
        for (let i = 0; i < bitCount; i += 1) expect(bitmap.isSet(i)).toBe(model[i]!);
        expect(bitmap.count()).toBe(model.filter(Boolean).length);
        for (const [x, y] of queries) {
          const from = Math.min(x % (bitCount + 1), y % (bitCount + 1));
          const end = Math.max(x % (bitCount + 1), y % (bitCount + 1));
          const slice = model.slice(from, end);
          expect(bitmap.count(from, end)).toBe(slice.filter(Boolean).length);
          const firstSet = slice.indexOf(true);
          const firstClear = slice.indexOf(false);
          expect(bitmap.nextSet(from, end)).toBe(firstSet < 0 ? end : from + firstSet);
          expect(bitmap.nextClear(from, end)).toBe(firstClear < 0 ? end : from + firstClear);
        }
        // Padding past bitCount is never touched.
        for (let i = bitCount; i < bitmap.bytes.length * 8; i += 1) expect((bitmap.bytes[i >> 3]! >> (i & 7)) & 1).toBe(0);
      }),
      { seed, numRuns: 300 },
    );
  });
});
