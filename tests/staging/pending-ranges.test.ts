/**
 * PendingRanges (GET /wrl/pending): exact merged ranges under the bound, a cover within the bound
 * above it — checked against a block map of what was added.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { PendingRanges, type DeviceRange } from "../../src/roles/staging/pending-ranges.ts";

const block = 512;
const deviceBlocks = 256;

interface Extent {
  device: string;
  startBlock: number;
  blocks: number;
}

const extentArb: fc.Arbitrary<Extent> = fc.record({ device: fc.constantFrom("d0", "d1", "d2"), startBlock: fc.integer({ min: 0, max: deviceBlocks - 1 }), blocks: fc.integer({ min: 0, max: 12 }) });

/** Per device, one flag per block: written or not. */
function blockMap(extents: Extent[]): Map<string, boolean[]> {
  const map = new Map<string, boolean[]>();
  for (const { device, startBlock, blocks } of extents) {
    if (blocks === 0) continue;
    const flags = map.get(device) ?? new Array<boolean>(deviceBlocks + 12).fill(false);
    map.set(device, flags);
    for (let index = startBlock; index < startBlock + blocks; index += 1) flags[index] = true;
  }
  return map;
}

/** The exact answer: maximal runs of written blocks, devices by name. */
function runsOf(map: Map<string, boolean[]>): DeviceRange[] {
  const ranges: DeviceRange[] = [];
  for (const device of [...map.keys()].sort()) {
    const flags = map.get(device)!;
    for (let index = 0; index < flags.length; index += 1) {
      if (!flags[index] || (index > 0 && flags[index - 1])) continue;
      let end = index;
      while (flags[end]) end += 1;
      ranges.push({ device, offset: index * block, length: (end - index) * block });
    }
  }
  return ranges;
}

function gathered(extents: Extent[], rangesMax: number): ReturnType<PendingRanges["result"]> {
  const ranges = new PendingRanges(rangesMax);
  for (const { device, startBlock, blocks } of extents) ranges.add(device, startBlock * block, blocks * block);
  return ranges.result();
}

describe("PendingRanges", () => {
  test("property: exact maximal runs when within the bound; otherwise at most rangesMax sorted, disjoint ranges covering every written block", () => {
    const seed = Number(process.env.STAGING_PROPERTY_SEED ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`[pending-ranges] fast-check seed=${seed}; replay with: STAGING_PROPERTY_SEED=${seed} node_modules/.bin/bun test tests/staging/pending-ranges.test.ts`);
    fc.assert(
      fc.property(fc.array(extentArb, { maxLength: 80 }), fc.integer({ min: 3, max: 40 }), (extents, rangesMax) => {
        const exact = runsOf(blockMap(extents));
        const result = gathered(extents, rangesMax);
        if (exact.length <= rangesMax && !result.coarse) {
          expect(result.ranges).toEqual(exact);
        } else {
          expect(result.coarse).toBe(true);
          expect(result.ranges.length).toBeLessThanOrEqual(rangesMax);
        }
        // Sorted, disjoint, not touching; every written block covered.
        for (let index = 1; index < result.ranges.length; index += 1) {
          const [a, b] = [result.ranges[index - 1]!, result.ranges[index]!];
          if (a.device === b.device) expect(b.offset).toBeGreaterThan(a.offset + a.length);
          else expect(b.device > a.device).toBe(true);
        }
        for (const range of exact) {
          expect(result.ranges.some((cover) => cover.device === range.device && cover.offset <= range.offset && cover.offset + cover.length >= range.offset + range.length)).toBe(true);
        }
        expect(result.bytes).toBe(result.ranges.reduce((sum, range) => sum + range.length, 0));
      }),
      { seed, numRuns: 300 },
    );
  });

  test("exact under the bound even when the extents outnumber it (overlaps merge first)", () => {
    const extents: Extent[] = Array.from({ length: 50 }, (_, index) => ({ device: "d0", startBlock: index % 5, blocks: 2 }));
    expect(gathered(extents, 3)).toEqual({ ranges: [{ device: "d0", offset: 0, length: 6 * block }], coarse: false, bytes: 6 * block });
  });

  test("over the bound: the smallest gaps are closed first", () => {
    // Gaps of 1, 5 and 2 blocks between four ranges; two ranges allowed: the 1- and 2-block gaps close.
    const extents: Extent[] = [{ device: "d0", startBlock: 0, blocks: 1 }, { device: "d0", startBlock: 2, blocks: 1 }, { device: "d0", startBlock: 8, blocks: 1 }, { device: "d0", startBlock: 11, blocks: 1 }];
    expect(gathered(extents, 2)).toEqual({ ranges: [{ device: "d0", offset: 0, length: 3 * block }, { device: "d0", offset: 8 * block, length: 4 * block }], coarse: true, bytes: 7 * block });
  });
});
