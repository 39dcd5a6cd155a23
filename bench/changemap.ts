/**
 * Change-map markDirty throughput on an image file (real fdatasync), the number the client's
 * disconnected-mode write path pays per write:
 *   - already set: the bits are set and durable, so markDirty must return with no I/O;
 *   - new bits:    every mark sets a fresh bit and waits for its group commit, with 1, 16 and 64
 *                  writers marking concurrently (how many marks one fdatasync covers shows the
 *                  group commit at work).
 *
 *   node_modules/.bin/bun bench/changemap.ts [--seconds 2] [--dir /var/tmp]
 *
 * Prints a table, then ONE line of JSON with every figure. No assertions: this measures, tests
 * check correctness.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChangeMap } from "../src/changemap/change-map.ts";
import { createChangeMapAtPath, openChangeMapAtPath } from "../src/changemap/paths.ts";
import { Random } from "../src/io/random.ts";

const KiB = 1024;
const GiB = 1024 ** 3;
const volumeSizeBytes = 256 * GiB; // 8 MiB of bitmap at 4 KiB a bit
const blockSizeBytes = 4 * KiB;
const blockCount = volumeSizeBytes / blockSizeBytes;

const argValue = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
};
const seconds = Number(argValue("seconds", "2"));
const baseDir = argValue("dir", process.env.TMPDIR ?? tmpdir());

async function alreadySet(map: ChangeMap): Promise<{ marksPerSecond: number; writes: number; flushes: number }> {
  const region = map.region("default");
  await region.markAll();
  const before = { ...map.stats };
  const random = new Random(1);
  let marks = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  while (performance.now() < deadline) {
    for (let i = 0; i < 10_000; i += 1) {
      await region.markDirty(random.nextInt(blockCount) * blockSizeBytes, blockSizeBytes);
    }
    marks += 10_000;
  }
  const elapsedS = (performance.now() - started) / 1000;
  return { marksPerSecond: marks / elapsedS, writes: map.stats.writeCount - before.writeCount, flushes: map.stats.flushCount - before.flushCount };
}

async function newBits(map: ChangeMap, writers: number, seed: number): Promise<{ writers: number; marksPerSecond: number; flushes: number; marksPerFlush: number }> {
  const region = map.region("default");
  region.clearClean(0, volumeSizeBytes);
  await map.sync();
  const before = { ...map.stats };
  const random = new Random(seed);
  let marks = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  const writer = async () => {
    while (performance.now() < deadline) {
      // A random 4 KiB block: practically always a new bit (a volume has 64 Mi of them).
      await region.markDirty(random.nextInt(blockCount) * blockSizeBytes, blockSizeBytes);
      marks += 1;
    }
  };
  await Promise.all(Array.from({ length: writers }, writer));
  const elapsedS = (performance.now() - started) / 1000;
  const flushes = map.stats.flushCount - before.flushCount;
  return { writers, marksPerSecond: marks / elapsedS, flushes, marksPerFlush: marks / Math.max(1, flushes) };
}

const dir = await mkdtemp(join(baseDir, "druvaa-bench-changemap-"));
try {
  const path = join(dir, "bench.chm");
  await createChangeMapAtPath({ path, regions: [{ name: "default", volumeSizeBytes }], blockSizeBytes });
  const map = await openChangeMapAtPath(path);
  const hot = await alreadySet(map);
  const fresh = [];
  for (const [i, writers] of [1, 16, 64].entries()) fresh.push(await newBits(map, writers, 100 + i));
  await map.close();

  const format = (n: number) => Math.round(n).toLocaleString("en-US");
  console.log(`change map on ${path} (volume ${volumeSizeBytes / GiB} GiB, ${blockSizeBytes / KiB} KiB a bit), ${seconds} s a run`);
  console.log(`  already set:       ${format(hot.marksPerSecond).padStart(12)} marks/s   (${hot.writes} writes, ${hot.flushes} flushes)`);
  for (const run of fresh) {
    console.log(`  new bits, ${String(run.writers).padStart(2)} writers: ${format(run.marksPerSecond).padStart(12)} marks/s   (${run.flushes} flushes, ${run.marksPerFlush.toFixed(1)} marks per flush)`);
  }
  console.log(JSON.stringify({
    bench: "changemap",
    volumeSizeBytes,
    blockSizeBytes,
    seconds,
    alreadySetMarksPerSecond: Math.round(hot.marksPerSecond),
    alreadySetWrites: hot.writes,
    alreadySetFlushes: hot.flushes,
    newBits: fresh.map((r) => ({ writers: r.writers, marksPerSecond: Math.round(r.marksPerSecond), flushes: r.flushes, marksPerFlush: Number(r.marksPerFlush.toFixed(2)) })),
  }));
} finally {
  await rm(dir, { recursive: true, force: true });
}
