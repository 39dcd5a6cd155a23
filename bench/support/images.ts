/**
 * Image files and outside tools for the resync benchmark: images full of random data, random
 * block changes through an NBD export, page-cache dropping, and timed runs of other programs
 * (rsync, nbdcopy, cmp, druvaa's own CLI) that never throw on a non-zero exit.
 */
import { randomFillSync } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { connectNbd } from "../../src/nbd/client.ts";
import { Random } from "../../src/io/random.ts";
import { FileDevice } from "../../src/io/file-device.ts";
import { protectReserveBytesDefault } from "../../src/protect-constants.ts";
import { openProtected, ProtectedDevice } from "../../src/roles/replica/protected-device.ts";
import type { Cleanup } from "./lib.ts";

const MiB = 1024 * 1024;

/** Writes the same incompressible random data to every path (a pair that starts in sync), then fdatasyncs. */
export async function fillRandomImages(paths: readonly string[], sizeBytes: number): Promise<void> {
  const handles = await Promise.all(paths.map((path) => open(path, "w")));
  try {
    const chunk = Buffer.alloc(8 * MiB);
    for (let offset = 0; offset < sizeBytes; offset += chunk.length) {
      const length = Math.min(chunk.length, sizeBytes - offset);
      randomFillSync(chunk, 0, length);
      await Promise.all(handles.map((handle) => handle.write(chunk, 0, length, offset)));
    }
    await Promise.all(handles.map((handle) => handle.datasync()));
  } finally {
    await Promise.all(handles.map((handle) => handle.close()));
  }
}

/** A sparse file of `sizeBytes` (reads as zeros), as a fresh replica or copy target. */
export async function sparseImage(path: string, sizeBytes: number): Promise<void> {
  const handle = await open(path, "w");
  try {
    await handle.truncate(sizeBytes);
  } finally {
    await handle.close();
  }
}

/** A file written full of zeros and fsynced (a WRL that pays no block allocation during the run). */
export async function zeroImage(path: string, sizeBytes: number): Promise<void> {
  const handle = await open(path, "w");
  try {
    const zeros = new Uint8Array(8 * MiB);
    for (let offset = 0; offset < sizeBytes; offset += zeros.length) await handle.write(zeros, 0, Math.min(zeros.length, sizeBytes - offset), offset);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

export interface BlockChanges {
  blockCount: number;
  changedBytes: number;
  seconds: number;
}

/**
 * Overwrites `fraction` of the export's `blockBytes` blocks, chosen at random without repeats
 * (positions from `seed`), with fresh random data, `depth` writes in flight; then a flush.
 */
export async function writeRandomBlocks(exportAddress: string, exportName: string, sizeBytes: number, blockBytes: number, fraction: number, seed: number, depth = 32): Promise<BlockChanges> {
  const random = new Random(seed);
  const totalBlocks = Math.floor(sizeBytes / blockBytes);
  const wanted = Math.max(1, Math.round(totalBlocks * fraction));
  const chosen = new Set<number>();
  while (chosen.size < wanted) chosen.add(random.nextInt(totalBlocks));
  const blocks = [...chosen];
  const client = await connectNbd(exportAddress, exportName);
  const started = performance.now();
  try {
    let next = 0;
    const worker = async () => {
      const data = new Uint8Array(blockBytes);
      while (next < blocks.length) {
        const block = blocks[next++]!;
        randomFillSync(data);
        await client.write(block * blockBytes, data);
      }
    };
    await Promise.all(Array.from({ length: depth }, worker));
    await client.flush();
  } finally {
    await client.close();
  }
  return { blockCount: blocks.length, changedBytes: blocks.length * blockBytes, seconds: (performance.now() - started) / 1000 };
}

/**
 * `sync`, then drops the page cache so the next run reads from the disk (root only). Returns
 * why it could not, or undefined when it did.
 */
export async function dropCaches(): Promise<string | undefined> {
  const synced = await timedRun(["sync"]);
  if (synced.exitCode !== 0) return `sync failed: ${synced.stderr.trim()}`;
  try {
    writeFileSync("/proc/sys/vm/drop_caches", "3\n");
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

export interface TimedRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs a program to completion and times it (wall clock); never throws on a non-zero exit. */
export async function timedRun(cmd: string[], cleanup?: Cleanup): Promise<TimedRun> {
  const started = performance.now();
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  cleanup?.killAtExit(proc, 1_000);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, stdout, stderr, seconds: (performance.now() - started) / 1000 };
}

/** A number rsync printed after `label:` ("Total bytes sent: 1,234,567"), separators removed. */
export function rsyncFigure(stats: string, label: string): number {
  const match = new RegExp(`${label}:\\s*([\\d,.']+)`).exec(stats);
  return match ? Number(match[1]!.replace(/\D/g, "")) : Number.NaN;
}

/** Waits until a Unix socket exists (nbdkit serving), or throws if `proc` exits first. */
export async function waitForSocket(path: string, proc: Bun.Subprocess, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!existsSync(path)) { // Bun.file().exists() is false for a socket
    if (proc.exitCode !== null) throw new Error(`the server for ${path} exited with code ${proc.exitCode}`);
    if (performance.now() > deadline) throw new Error(`${path} did not appear within ${timeoutMs} ms`);
    await Bun.sleep(20);
  }
}

/**
 * A protected replica image (druvaa replica apply protects its devices by default: the head is
 * kept swapped to the end) whose logical contents are the first `sizeBytes` of the plain image at
 * `plainPath`: a replica that starts in sync with its primary. Written and fdatasynced.
 */
export async function protectedCopy(plainPath: string, replicaPath: string, sizeBytes: number): Promise<void> {
  await sparseImage(replicaPath, sizeBytes + protectReserveBytesDefault);
  const [source, target] = await Promise.all([FileDevice.open(plainPath, { readOnly: true }), FileDevice.open(replicaPath).then((physical) => openProtected(physical, { reserveBytes: protectReserveBytesDefault }))]);
  try {
    for (let offset = 0; offset < sizeBytes; offset += 8 * MiB) await target.write(offset, await source.read(offset, Math.min(8 * MiB, sizeBytes - offset)));
    await target.flush();
  } finally {
    await Promise.all([source.close(), target.close()]);
  }
}

/** The logical image (first `sizeBytes`) of the protected replica image at `replicaPath`, as a plain file. */
export async function plainCopy(replicaPath: string, plainPath: string, sizeBytes: number): Promise<void> {
  const handle = await open(plainPath, "w");
  try {
    for (let offset = 0; offset < sizeBytes; offset += 64 * MiB) {
      const lengthBytes = Math.min(64 * MiB, sizeBytes - offset);
      await handle.write(await readPlainRange(replicaPath, offset, lengthBytes), 0, lengthBytes, offset);
    }
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

async function readPlainRange(replicaPath: string, offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
  const physical = await FileDevice.open(replicaPath, { readOnly: true });
  try {
    return await new ProtectedDevice(physical, protectReserveBytesDefault).read(offsetBytes, lengthBytes);
  } finally {
    await physical.close();
  }
}
