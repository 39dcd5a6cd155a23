/**
 * SimDisk crash semantics. The contract suite (contract.test.ts) covers the BlockDevice behaviour;
 * this file covers what only the simulated disk promises: what power loss may and may not do.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { Random } from "../../src/io/random.ts";
import { DruvaaError } from "../../src/errors.ts";

const sector = 512;

/** Seed for the property tests: FC_SEED replays a failure; printed so any run can be replayed. */
const fcSeed = Number(process.env.FC_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(`sim-disk.test.ts: fast-check seed ${fcSeed} (replay with FC_SEED=${fcSeed} node_modules/.bin/bun test tests/io/sim-disk.test.ts)`);

/**
 * How a sector looks after a crash, given its durable (old) and unsynced (new) contents:
 * "old", "new", "torn" (new up to a cut then old, or old up to a cut then new), or "other"
 * (anything the model forbids).
 */
function classify(actual: Uint8Array, old: Uint8Array, fresh: Uint8Array): "old" | "new" | "torn" | "other" {
  const prefix = (a: Uint8Array) => {
    let n = 0;
    while (n < actual.length && actual[n] === a[n]) n += 1;
    return n;
  };
  const suffix = (a: Uint8Array) => {
    let n = 0;
    while (n < actual.length && actual[actual.length - 1 - n] === a[a.length - 1 - n]) n += 1;
    return n;
  };
  if (prefix(old) === actual.length) return "old";
  if (prefix(fresh) === actual.length) return "new";
  // new head + old tail with a cut c exists iff the new-prefix and old-suffix together cover it.
  if (prefix(fresh) + suffix(old) >= actual.length) return "torn";
  if (prefix(old) + suffix(fresh) >= actual.length) return "torn";
  return "other";
}

type Op =
  | { kind: "write"; sectorIndex: number; sectorCount: number; fillSeed: number }
  | { kind: "discard"; sectorIndex: number; sectorCount: number }
  | { kind: "flush" };

function opArbitrary(sectorTotal: number): fc.Arbitrary<Op> {
  const range = fc
    .integer({ min: 0, max: sectorTotal - 1 })
    .chain((sectorIndex) => fc.record({ sectorIndex: fc.constant(sectorIndex), sectorCount: fc.integer({ min: 1, max: Math.min(8, sectorTotal - sectorIndex) }) }));
  return fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant("write" as const), range, fillSeed: fc.integer({ min: 0, max: 2 ** 31 }) }).map(({ range: r, fillSeed }) => ({ kind: "write" as const, ...r, fillSeed })) },
    { weight: 1, arbitrary: range.map((r) => ({ kind: "discard" as const, ...r })) },
    { weight: 2, arbitrary: fc.constant({ kind: "flush" as const }) },
  );
}

/** Runs ops against the disk and a two-layer model; returns the model. */
async function runOps(disk: SimDisk, ops: Op[]): Promise<{ durable: Uint8Array; current: Uint8Array }> {
  const durable = new Uint8Array(disk.sizeBytes);
  const current = new Uint8Array(disk.sizeBytes);
  for (const op of ops) {
    if (op.kind === "flush") {
      await disk.flush();
      durable.set(current);
    } else if (op.kind === "write") {
      const data = new Random(op.fillSeed).fill(new Uint8Array(op.sectorCount * sector));
      await disk.write(op.sectorIndex * sector, data);
      data.fill(0xee); // the disk must have copied it: the caller may reuse its buffer
      current.set(new Random(op.fillSeed).fill(new Uint8Array(op.sectorCount * sector)), op.sectorIndex * sector);
    } else {
      await disk.discard(op.sectorIndex * sector, op.sectorCount * sector);
      current.fill(0, op.sectorIndex * sector, (op.sectorIndex + op.sectorCount) * sector);
    }
  }
  return { durable, current };
}

describe("SimDisk crash", () => {
  test("after crash every sector is old, new or a single-cut mix, and flushed data survives (property)", async () => {
    const sectorTotal = 64;
    await fc.assert(
      fc.asyncProperty(fc.array(opArbitrary(sectorTotal), { minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: 2 ** 31 }), async (ops, diskSeed) => {
        const disk = new SimDisk({ sizeBytes: sectorTotal * sector, seed: diskSeed });
        const model = await runOps(disk, ops);
        expect(disk.snapshot()).toEqual(model.current); // read-your-writes before the crash
        expect(disk.durableSnapshot()).toEqual(model.durable);
        disk.crash();
        expect(disk.unsyncedSectorCount()).toBe(0);
        const after = await disk.read(0, disk.sizeBytes);
        expect(after).toEqual(disk.durableSnapshot());
        for (let index = 0; index < sectorTotal; index += 1) {
          const span = [index * sector, (index + 1) * sector] as const;
          const old = model.durable.subarray(...span);
          const fresh = model.current.subarray(...span);
          const kind = classify(after.subarray(...span), old, fresh);
          if (kind === "other") throw new Error(`sector ${index} is neither old, new nor a single-cut mix`);
          // Unchanged since the last flush (old equals new): must be exactly the flushed bytes.
          if (Buffer.compare(old, fresh) === 0) expect(after.subarray(...span)).toEqual(old);
        }
      }),
      { seed: fcSeed, numRuns: 150 },
    );
  });

  test("a crash drops, keeps and tears sectors, and every sector it tears is a real mix", async () => {
    const sectorTotal = 300;
    const disk = new SimDisk({ sizeBytes: sectorTotal * sector, seed: 7 });
    await disk.write(0, new Uint8Array(sectorTotal * sector).fill(0xaa));
    await disk.flush();
    await disk.write(0, new Uint8Array(sectorTotal * sector).fill(0x55));
    expect(disk.unsyncedSectorCount()).toBe(sectorTotal);
    const report = disk.crash();
    expect(report.droppedSectorCount).toBeGreaterThan(0);
    expect(report.keptSectorCount).toBeGreaterThan(0);
    expect(report.tornSectorCount).toBeGreaterThan(0);
    const after = await disk.read(0, disk.sizeBytes);
    let torn = 0;
    for (let index = 0; index < sectorTotal; index += 1) {
      const bytes = after.subarray(index * sector, (index + 1) * sector);
      const kind = classify(bytes, new Uint8Array(sector).fill(0xaa), new Uint8Array(sector).fill(0x55));
      expect(kind).not.toBe("other");
      if (kind === "torn") torn += 1;
    }
    expect(torn).toBe(report.tornSectorCount);
  });

  test("same seed and same calls give the same post-crash image; another seed differs", async () => {
    async function run(seed: number): Promise<Uint8Array> {
      const disk = new SimDisk({ sizeBytes: 128 * sector, seed });
      await disk.write(0, new Random(1).fill(new Uint8Array(64 * sector)));
      await disk.flush();
      await disk.write(32 * sector, new Random(2).fill(new Uint8Array(96 * sector)));
      disk.crash();
      return disk.snapshot();
    }
    expect(await run(42)).toEqual(await run(42));
    expect(await run(42)).not.toEqual(await run(43));
  });

  test("crash reopens a closed disk with only durable state", async () => {
    const disk = new SimDisk({ sizeBytes: 16 * sector, seed: 1 });
    await disk.write(0, new Uint8Array(sector).fill(1));
    await disk.flush();
    await disk.close();
    await expect(disk.read(0, sector)).rejects.toMatchObject({ code: "IO_CLOSED" });
    disk.crash();
    expect(await disk.read(0, sector)).toEqual(new Uint8Array(sector).fill(1));
    expect(disk.flushCount).toBe(1);
  });

  test("reopen after close keeps unsynced writes unsynced", async () => {
    const disk = new SimDisk({ sizeBytes: 16 * sector, seed: 1 });
    await disk.write(sector, new Uint8Array(sector).fill(9));
    await disk.close();
    disk.reopen();
    expect(await disk.read(sector, sector)).toEqual(new Uint8Array(sector).fill(9));
    expect(disk.unsyncedSectorCount()).toBe(1);
    expect(disk.durableSnapshot().subarray(sector, 2 * sector)).toEqual(new Uint8Array(sector));
  });

  test("an unflushed discard may be undone by a crash; a flushed one is durable", async () => {
    const disk = new SimDisk({ sizeBytes: 8 * sector, seed: 3 });
    await disk.write(0, new Uint8Array(8 * sector).fill(0x11));
    await disk.flush();
    await disk.discard(0, 8 * sector);
    expect(await disk.read(0, 8 * sector)).toEqual(new Uint8Array(8 * sector));
    expect(disk.durableSnapshot()).toEqual(new Uint8Array(8 * sector).fill(0x11));
    await disk.flush();
    disk.crash();
    expect(await disk.read(0, 8 * sector)).toEqual(new Uint8Array(8 * sector));
  });

  test("4096-byte logical blocks refuse 512-byte I/O but still tear at 512-byte sectors", async () => {
    const disk = new SimDisk({ sizeBytes: 64 * 4096, seed: 11, logicalBlockSizeBytes: 4096 });
    expect(disk.logicalBlockSizeBytes).toBe(4096);
    await expect(disk.write(512, new Uint8Array(512))).rejects.toMatchObject({ code: "IO_MISALIGNED" });
    await disk.write(0, new Uint8Array(64 * 4096).fill(0x77));
    expect(disk.unsyncedSectorCount()).toBe(64 * 8);
    const report = disk.crash();
    expect(report.droppedSectorCount + report.keptSectorCount + report.tornSectorCount).toBe(64 * 8);
  });

  test("constructor refuses a size that is zero or not a multiple of the block size", () => {
    expect(() => new SimDisk({ sizeBytes: 0, seed: 1 })).toThrow(RangeError);
    expect(() => new SimDisk({ sizeBytes: 1000, seed: 1 })).toThrow(RangeError);
    expect(() => new SimDisk({ sizeBytes: 4096 + 512, seed: 1, logicalBlockSizeBytes: 4096 })).toThrow(RangeError);
  });
});

describe("SimDisk fault injection", () => {
  test("failNextWrites rejects the next writes with the code and changes nothing", async () => {
    const disk = new SimDisk({ sizeBytes: 8 * sector, seed: 5 });
    disk.failNextWrites(2, "IO_EIO");
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const error = await disk.write(0, new Uint8Array(sector).fill(3)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DruvaaError);
      expect((error as DruvaaError).code).toBe("IO_EIO");
    }
    expect(disk.unsyncedSectorCount()).toBe(0);
    expect(disk.snapshot()).toEqual(new Uint8Array(8 * sector));
    await disk.write(0, new Uint8Array(sector).fill(3));
    expect(await disk.read(0, sector)).toEqual(new Uint8Array(sector).fill(3));
  });

  test("failNextWrites defaults to IO_ERROR", async () => {
    const disk = new SimDisk({ sizeBytes: 8 * sector, seed: 5 });
    disk.failNextWrites(1);
    await expect(disk.write(0, new Uint8Array(sector))).rejects.toMatchObject({ code: "IO_ERROR" });
  });

  test("a failed flush makes nothing durable and does not count", async () => {
    const disk = new SimDisk({ sizeBytes: 8 * sector, seed: 5 });
    await disk.write(0, new Uint8Array(sector).fill(4));
    disk.failNextFlushes(1);
    await expect(disk.flush()).rejects.toMatchObject({ code: "IO_ERROR" });
    expect(disk.flushCount).toBe(0);
    expect(disk.unsyncedSectorCount()).toBe(1);
    await disk.flush();
    expect(disk.flushCount).toBe(1);
    expect(disk.durableSnapshot().subarray(0, sector)).toEqual(new Uint8Array(sector).fill(4));
  });
});
