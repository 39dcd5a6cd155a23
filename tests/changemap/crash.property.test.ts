/**
 * Property: for any sequence of marks (awaited or left in flight), clears, syncs, generation
 * bumps, clean reopens and power losses at any write or flush, on a simulated disk that drops,
 * keeps or tears every unsynced sector:
 *   - no dirty bit is ever lost: every block whose markDirty resolved is dirty after the crash,
 *     unless a clear covering it was issued after that mark was;
 *   - nothing appears from nowhere: a block reads dirty after a crash only if it was marked at
 *     some point (a lost clear may bring a block back, a lost mark may vanish, nothing else);
 *   - in memory, the map is exact: at every quiet point the dirty ranges are exactly the blocks
 *     whose last operation was a mark; after a clean close and reopen, the same on disk;
 *   - the header survives torn writes: the generation after a crash is one that was written,
 *     never below one whose bump resolved.
 *
 * Replay a failure with the seed it prints: CHANGEMAP_PROPERTY_SEED=<seed>; soak with more runs:
 * CHANGEMAP_PROPERTY_RUNS=1000.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { ChangeMap } from "../../src/changemap/change-map.ts";
import type { ChangeMapRegion } from "../../src/changemap/region.ts";
import { changeMapLayoutBytes } from "../../src/changemap/format.ts";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { CrashPlan, propertySeed } from "./helpers.ts";

type Op =
  | { kind: "mark"; region: number; at: number; lengthBytes: number; awaited: boolean }
  | { kind: "clear"; region: number; at: number; lengthBytes: number }
  | { kind: "settle" }
  | { kind: "sync" }
  | { kind: "bump"; region: number }
  | { kind: "reopen" }
  | { kind: "crash"; operationsBeforeCrash: number; land: boolean };

const rangeFields = { region: fc.nat({ max: 2 }), at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), lengthBytes: fc.integer({ min: 1, max: 96 * 1024 }) };
const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant("mark" as const), ...rangeFields, awaited: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("clear" as const), ...rangeFields }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("settle" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("sync" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("bump" as const), region: fc.nat({ max: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("reopen" as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("crash" as const), operationsBeforeCrash: fc.nat({ max: 8 }), land: fc.boolean() }) },
);

/** What the scenarios exercised, so the property cannot go weak unnoticed. */
const coverage = { crashes: 0, resolvedMarksCheckedAfterCrash: 0, lostClearsSeen: 0, lostMarksSeen: 0, tornHeadersSeen: 0, cleanReopens: 0 };

/** Per region: what the test knows the map must, may and does hold. */
class RegionModel {
  /** Blocks whose last operation was a mark (what the map holds in memory). */
  dirtyNow = new Set<number>();
  /** Blocks that must read dirty after any crash. */
  mustDirty = new Set<number>();
  /** Blocks ever marked (issued): the only ones that may read dirty. */
  everMarked = new Set<number>();
  /** Sequence number of the last clear covering each block. */
  lastClearSeq = new Map<number, number>();
  constructor(readonly volumeSizeBytes: number, readonly blockSizeBytes: number) {}
  get blockCount(): number {
    return Math.ceil(this.volumeSizeBytes / this.blockSizeBytes);
  }
  /** Blocks a mark of the range covers: every block it touches. */
  markBlocks(offset: number, length: number): number[] {
    const first = Math.floor(offset / this.blockSizeBytes);
    const end = Math.floor((offset + length - 1) / this.blockSizeBytes) + 1;
    return Array.from({ length: end - first }, (_, i) => first + i);
  }
  /** Blocks a clear of the range covers: only whole blocks, the volume's partial last one included at its end. */
  clearBlocks(offset: number, length: number): number[] {
    const first = Math.ceil(offset / this.blockSizeBytes);
    const end = offset + length === this.volumeSizeBytes ? this.blockCount : Math.floor((offset + length) / this.blockSizeBytes);
    return end <= first ? [] : Array.from({ length: end - first }, (_, i) => first + i);
  }
}

function dirtyBlocksOf(region: ChangeMapRegion): Set<number> {
  const out = new Set<number>();
  for (const range of region.dirtyRanges()) {
    for (let b = range.offsetBytes / region.blockSizeBytes; b * region.blockSizeBytes < range.offsetBytes + range.lengthBytes; b += 1) out.add(b);
  }
  return out;
}

const sorted = (set: Set<number>) => [...set].sort((a, b) => a - b);

async function runScenario(diskSeed: number, blockSizeBytes: number, logicalBlockSizeBytes: number, volumeSizes: number[], ops: Op[]): Promise<void> {
  const specs = volumeSizes.map((volumeSizeBytes, i) => ({ name: `vol${i}`, volumeSizeBytes }));
  const disk = new SimDisk({ sizeBytes: changeMapLayoutBytes(specs, blockSizeBytes), seed: diskSeed, logicalBlockSizeBytes });
  const plan = new CrashPlan(disk);
  let map = await ChangeMap.create(plan.device(), { regions: specs, blockSizeBytes });
  const models = specs.map((s) => new RegionModel(s.volumeSizeBytes, blockSizeBytes));
  let outstanding: Promise<unknown>[] = [];
  let seq = 0;
  let generationMin = 1; // the highest generation whose bump resolved
  let generationMax = 1; // the highest generation a bump may have written
  let armed = false;

  const checkMemory = () => {
    models.forEach((model, i) => expect(sorted(dirtyBlocksOf(map.region(`vol${i}`)))).toEqual(sorted(model.dirtyNow)));
  };

  const recover = async () => {
    await Promise.allSettled(outstanding);
    outstanding = [];
    coverage.crashes += 1;
    map = await ChangeMap.open(plan.device());
    if (map.info().otherHeaderCopy === "invalid") coverage.tornHeadersSeen += 1;
    expect(map.generation).toBeGreaterThanOrEqual(generationMin);
    expect(map.generation).toBeLessThanOrEqual(generationMax);
    generationMin = generationMax = map.generation;
    models.forEach((model, i) => {
      const region = map.region(`vol${i}`, { volumeSizeBytes: model.volumeSizeBytes });
      expect(region.generation).toBeLessThanOrEqual(map.generation);
      const dirty = dirtyBlocksOf(region);
      for (const block of model.mustDirty) expect(dirty.has(block)).toBe(true);
      coverage.resolvedMarksCheckedAfterCrash += model.mustDirty.size;
      for (const block of dirty) {
        expect(model.everMarked.has(block)).toBe(true);
        if (!model.dirtyNow.has(block)) coverage.lostClearsSeen += 1;
      }
      for (const block of model.dirtyNow) if (!dirty.has(block)) coverage.lostMarksSeen += 1;
      // What reads dirty now is on disk: it must survive the next crash until cleared.
      model.dirtyNow = new Set(dirty);
      model.mustDirty = new Set(dirty);
      model.lastClearSeq.clear();
    });
    armed = false;
  };

  for (const op of ops) {
    if (plan.crashed) await recover();
    switch (op.kind) {
      case "mark":
      case "clear": {
        const model = models[op.region % models.length]!;
        const region = map.region(`vol${op.region % models.length}`);
        const offset = Math.floor(op.at * model.volumeSizeBytes);
        const length = Math.min(op.lengthBytes, model.volumeSizeBytes - offset);
        seq += 1;
        const opSeq = seq;
        if (op.kind === "clear") {
          const blocks = model.clearBlocks(offset, length);
          expect(region.clearClean(offset, length)).toBe(blocks.filter((b) => model.dirtyNow.has(b)).length);
          for (const b of blocks) {
            model.dirtyNow.delete(b);
            model.mustDirty.delete(b);
            model.lastClearSeq.set(b, opSeq);
          }
          break;
        }
        const blocks = model.markBlocks(offset, length);
        for (const b of blocks) {
          model.dirtyNow.add(b);
          model.everMarked.add(b);
        }
        const marked = region.markDirty(offset, length).then(() => {
          for (const b of blocks) if ((model.lastClearSeq.get(b) ?? 0) < opSeq) model.mustDirty.add(b);
        });
        outstanding.push(marked);
        if (op.awaited) await marked.catch(() => undefined);
        break;
      }
      case "settle":
        await Promise.allSettled(outstanding);
        outstanding = [];
        if (!plan.crashed) checkMemory();
        break;
      case "sync":
        outstanding.push(map.sync());
        break;
      case "bump": {
        generationMax += 1;
        outstanding.push(map.region(`vol${op.region % models.length}`).bumpGeneration().then((generation) => (generationMin = Math.max(generationMin, generation))));
        break;
      }
      case "reopen": {
        await Promise.allSettled(outstanding);
        outstanding = [];
        if (plan.crashed) break; // the crash is handled at the next step
        const wasArmed = armed;
        plan.disarm(); // a clean close and restart, no power loss
        await map.close();
        map = await ChangeMap.open(plan.device());
        coverage.cleanReopens += 1;
        expect(map.generation).toBe(generationMax); // every bump resolved
        generationMin = generationMax;
        models.forEach((model, i) => expect(sorted(dirtyBlocksOf(map.region(`vol${i}`)))).toEqual(sorted(model.dirtyNow)));
        if (wasArmed) armed = false;
        break;
      }
      case "crash":
        if (!armed) {
          plan.arm(op.operationsBeforeCrash, op.land);
          armed = true;
        }
        break;
    }
  }
  await Promise.allSettled(outstanding);
  if (!plan.crashed) plan.crashNow();
  await recover();
}

describe("change map crash safety (property)", () => {
  test("no acknowledged mark is ever lost; only lost clears bring blocks back", async () => {
    const seed = propertySeed("changemap crash");
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 0x7fff_ffff }),
        fc.constantFrom(512, 1024, 4096),
        fc.constantFrom(512, 512, 4096),
        // 64 KiB to 16 MiB volumes: at 512 B a bit up to 4 KiB of bitmap, several sectors each.
        fc.array(fc.integer({ min: 128, max: 32 * 1024 }).map((sectors) => sectors * 512), { minLength: 1, maxLength: 3 }),
        fc.array(opArbitrary, { minLength: 10, maxLength: 60 }),
        async (diskSeed, blockSizeBytes, logicalBlockSizeBytes, volumeSizes, ops) => runScenario(diskSeed, blockSizeBytes, logicalBlockSizeBytes, volumeSizes, ops),
      ),
      { seed, numRuns: Number(process.env.CHANGEMAP_PROPERTY_RUNS ?? 150) },
    );
    console.log(`[changemap crash] coverage: ${JSON.stringify(coverage)}`);
    expect(coverage.crashes).toBeGreaterThan(100);
    expect(coverage.resolvedMarksCheckedAfterCrash).toBeGreaterThan(0);
    expect(coverage.lostClearsSeen).toBeGreaterThan(0);
    expect(coverage.lostMarksSeen).toBeGreaterThan(0);
    expect(coverage.cleanReopens).toBeGreaterThan(0);
  });
});
