/**
 * WRL append throughput with group commit: 16 concurrent writers appending 64 KiB records to a
 * write log on an image file and on a loop device, while a stand-in relay frees the tail. Each
 * run is compared with a reference on the same device in the same process: a plain sequential
 * O_DIRECT write loop that issues fdatasync after as many bytes as each of the WRL's fdatasyncs
 * covered on average (same cadence; no checksums, no copies, no bookkeeping). A third run puts
 * the log on the image file opened O_DIRECT (a bench-only device): druvaa's FileDevice uses the
 * page cache, and the difference shows what that costs.
 *
 *   node_modules/.bin/bun bench/wrl-append.ts [--seconds 6] [--dir /var/tmp]
 *
 * Needs root for the loop device (skipped with a note otherwise). Prints a table, then ONE line
 * of JSON with every figure. No assertions: this measures, tests check correctness.
 */
import { constants as fsConstants } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CountingDevice } from "../src/io/counting-device.ts";
import { openBlockDevice } from "../src/io/open-device.ts";
import { alignedBuffer } from "../src/io/raw-device.ts";
import { setLogLevel } from "../src/log.ts";
import { crc32c } from "../src/wrl/crc32c.ts";
import { WriteLog } from "../src/wrl/write-log.ts";

const MiB = 1024 * 1024;
const appendBytes = 64 * 1024;
const writerCount = 16;
const deviceBytes = 1024 * MiB;
const logStartBytes = 64 * 1024; // the reference writes where the log area starts

const argValue = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
};
const seconds = Number(argValue("seconds", "6"));
const baseDir = argValue("dir", process.env.TMPDIR ?? tmpdir());

function percentile(sorted: Float64Array, fraction: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

const round = (value: number, digits = 1) => Number(value.toFixed(digits));

async function benchWrl(path: string) {
  // Opened the way the staging server opens a WRL: O_DIRECT where the file system allows it.
  const device = new CountingDevice(await openBlockDevice(path, { direct: true }));
  const wrl = await WriteLog.create([device], { force: true });
  const payload = crypto.getRandomValues(new Uint8Array(appendBytes));
  const writesBefore = device.writeCount;
  const flushesBefore = device.flushCount;
  const bytesBefore = device.writtenBytes;
  const latenciesMs: number[] = [];
  let fullCount = 0;
  let running = true;
  // Stand-in relay: frees everything durable every 50 ms (a checkpoint: one small write + flush).
  const relay = (async () => {
    while (running) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      await wrl.advanceTail(wrl.info().headLsn);
    }
  })();
  const startMs = performance.now();
  const deadlineMs = startMs + seconds * 1000;
  let seq = 0;
  await Promise.all(Array.from({ length: writerCount }, async (_, writer) => {
    while (performance.now() < deadlineMs) {
      const t0 = performance.now();
      const result = await wrl.append({ epoch: 1, device: writer, seq: seq++, offset: 0, data: payload });
      if (result.ok) latenciesMs.push(performance.now() - t0);
      else fullCount += 1;
    }
  }));
  const elapsedS = (performance.now() - startMs) / 1000;
  running = false;
  await relay;
  await wrl.close();
  const flushes = device.flushCount - flushesBefore;
  const writtenBytes = device.writtenBytes - bytesBefore;
  const sorted = Float64Array.from(latenciesMs).sort();
  return {
    appendCount: latenciesMs.length,
    fullCount,
    elapsedS,
    payloadMBps: (latenciesMs.length * appendBytes) / MiB / elapsedS,
    diskMBps: writtenBytes / MiB / elapsedS,
    appendsPerS: latenciesMs.length / elapsedS,
    p50LatencyMs: percentile(sorted, 0.5),
    p99LatencyMs: percentile(sorted, 0.99),
    flushCount: flushes,
    writesPerFlush: (device.writeCount - writesBefore) / Math.max(1, flushes),
    avgBytesPerFlush: writtenBytes / Math.max(1, flushes),
    avgAppendsPerFlush: latenciesMs.length / Math.max(1, flushes),
  };
}

/** Sequential O_DIRECT writes of `batchBytes`, each followed by fdatasync, for `seconds`. */
async function benchReference(path: string, batchBytes: number, direct: boolean) {
  const flags = fsConstants.O_RDWR | (direct ? fsConstants.O_DIRECT : 0);
  const handle = await open(path, flags);
  const buffer = crypto.getRandomValues(alignedBuffer(batchBytes, 4096));
  const endBytes = deviceBytes - batchBytes;
  let position = logStartBytes;
  let bytes = 0;
  const startMs = performance.now();
  const deadlineMs = startMs + seconds * 1000;
  try {
    while (performance.now() < deadlineMs) {
      await handle.write(buffer, 0, batchBytes, position);
      await handle.datasync();
      bytes += batchBytes;
      position = position + 2 * batchBytes > endBytes ? logStartBytes : position + batchBytes;
    }
  } finally {
    await handle.close();
  }
  return bytes / MiB / ((performance.now() - startMs) / 1000);
}

function benchCrc32c(): number {
  const data = crypto.getRandomValues(new Uint8Array(appendBytes));
  let sink = 0;
  for (let i = 0; i < 500; i += 1) sink ^= crc32c(data); // warm-up
  const startMs = performance.now();
  const rounds = 8000;
  for (let i = 0; i < rounds; i += 1) sink ^= crc32c(data);
  const mbps = (rounds * appendBytes) / MiB / ((performance.now() - startMs) / 1000);
  return sink === 0.5 ? 0 : mbps; // `sink` keeps the loop from being optimised away
}

async function runTarget(label: string, path: string) {
  const wrlResult = await benchWrl(path);
  const batchBytes = Math.max(4096, Math.round(wrlResult.avgBytesPerFlush / 4096) * 4096);
  const refMBps = await benchReference(path, batchBytes, true);
  const ratio = wrlResult.payloadMBps / refMBps;
  console.log(
    `${label.padEnd(14)} WRL ${wrlResult.payloadMBps.toFixed(0).padStart(5)} MB/s payload (${wrlResult.diskMBps.toFixed(0)} MB/s to disk), ` +
    `${wrlResult.appendsPerS.toFixed(0)} appends/s, p50 ${wrlResult.p50LatencyMs.toFixed(2)} ms, p99 ${wrlResult.p99LatencyMs.toFixed(2)} ms, ` +
    `${wrlResult.avgAppendsPerFlush.toFixed(1)} appends per fdatasync (${(batchBytes / 1024).toFixed(0)} KiB) | ` +
    `reference O_DIRECT ${refMBps.toFixed(0)} MB/s | ratio ${ratio.toFixed(2)}`,
  );
  return { ...wrlResult, refBatchBytes: batchBytes, refMBps, ratio };
}

/**
 * A fully written (zero-filled) file: fdatasync on blocks the file system still has to allocate
 * also commits allocation metadata, which would penalise whichever run comes first.
 */
async function makeFilledFile(path: string): Promise<void> {
  const handle = await open(path, "w");
  try {
    const zeros = new Uint8Array(16 * MiB);
    for (let at = 0; at < deviceBytes; at += zeros.length) await handle.write(zeros, 0, zeros.length, at);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function main() {
  setLogLevel(-1);
  const cleanup: Array<() => Promise<void>> = [];
  const dir = await mkdtemp(join(baseDir, "druvaa-bench-wrl-"));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const figures: Record<string, number | string> = { appendBytes, writerCount, secondsPerRun: seconds, deviceBytes };
  try {
    figures.crc32cMBps = round(benchCrc32c(), 0);
    console.log(`crc32c         ${figures.crc32cMBps} MB/s (64 KiB buffers)`);

    const imagePath = join(dir, "wrl.img");
    await makeFilledFile(imagePath);
    const image = await runTarget("image file", imagePath);
    Object.assign(figures, {
      wrlAppendMBps: round(image.payloadMBps), wrlDiskMBps: round(image.diskMBps), wrlAppendsPerS: round(image.appendsPerS, 0),
      p50LatencyMs: round(image.p50LatencyMs, 3), p99LatencyMs: round(image.p99LatencyMs, 3), avgAppendsPerFlush: round(image.avgAppendsPerFlush),
      avgBytesPerFlush: round(image.avgBytesPerFlush, 0), writesPerFlush: round(image.writesPerFlush, 2), fullResults: image.fullCount,
      refMBps: round(image.refMBps), ratioVsReference: round(image.ratio, 3),
    });
    if (process.getuid?.() !== 0) {
      figures.loopSkipped = "needs root for losetup";
      console.log("loop device skipped: needs root for losetup");
    } else {
      const backing = join(dir, "loop-backing.img");
      await makeFilledFile(backing);
      const attach = Bun.spawnSync(["losetup", "--find", "--show", backing]);
      if (attach.exitCode !== 0) throw new Error(`losetup failed: ${attach.stderr.toString()}`);
      const loop = attach.stdout.toString().trim();
      cleanup.unshift(async () => void Bun.spawnSync(["losetup", "--detach", loop]));
      const onLoop = await runTarget(loop, loop);
      Object.assign(figures, {
        loopWrlAppendMBps: round(onLoop.payloadMBps), loopWrlDiskMBps: round(onLoop.diskMBps), loopWrlAppendsPerS: round(onLoop.appendsPerS, 0),
        loopP50LatencyMs: round(onLoop.p50LatencyMs, 3), loopP99LatencyMs: round(onLoop.p99LatencyMs, 3), loopAvgAppendsPerFlush: round(onLoop.avgAppendsPerFlush),
        loopAvgBytesPerFlush: round(onLoop.avgBytesPerFlush, 0), loopFullResults: onLoop.fullCount,
        loopRefMBps: round(onLoop.refMBps), loopRatioVsReference: round(onLoop.ratio, 3),
      });
    }
  } finally {
    for (const step of cleanup) await step().catch(() => undefined);
  }
  console.log(JSON.stringify(figures));
}

await main();
