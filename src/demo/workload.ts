/**
 * The demo's mixed workload, written through the client's NBD export: a bulk copy with nbdcopy,
 * overlapping pattern writes, zeroes and discards with qemu-io (each only where installed), and
 * always the built-in NBD client doing random 4 KiB overwrites, sequential 1 MiB writes, zeroes
 * and trims with many requests in flight.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { connectNbd } from "../nbd/client.ts";
import { DruvaaError } from "../errors.ts";

export interface WorkloadStep {
  tool: string;
  what: string;
  bytes: number;
  ms: number;
}

export interface WorkloadTarget {
  /** NBD URI of the export (for nbdcopy / qemu-io). */
  uri: string;
  /** `unix:PATH` or `HOST:PORT` of the export, for the built-in client. */
  address: string;
  exportName: string;
  sizeBytes: number;
  workDir: string;
}

const MiB = 1024 * 1024;

async function run(cmd: string[]): Promise<void> {
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  // qemu-io reports a failed command on stdout and still exits 0: look for its error lines too.
  const failed = code !== 0 || /^(write|read|discard|flush) failed/m.test(stdout);
  if (failed) throw new DruvaaError("DEMO_WORKLOAD_FAILED", `${cmd[0]} failed (exit ${code}): ${(stderr || stdout).trim().slice(0, 2000)}`);
}

export async function runWorkload(target: WorkloadTarget, onStep: (step: WorkloadStep) => void): Promise<WorkloadStep[]> {
  const steps: WorkloadStep[] = [];
  const record = (step: WorkloadStep) => {
    steps.push(step);
    onStep(step);
  };
  const size = target.sizeBytes;
  const quarter = Math.floor(size / 4 / MiB) * MiB;

  if (Bun.which("nbdcopy")) {
    const source = join(target.workDir, "source.bin");
    await Bun.write(source, randomBytes(quarter));
    const started = performance.now();
    await run(["nbdcopy", "--flush", source, target.uri]);
    record({ tool: "nbdcopy", what: `copied ${quarter / MiB} MiB of random data to the start of the volume`, bytes: quarter, ms: performance.now() - started });
  }

  if (Bun.which("qemu-io")) {
    const half = 2 * quarter;
    const commands = [
      `write -P 0xa1 ${half} 1M`,
      `write -P 0xb2 ${half + 512 * 1024} 1M`, // overlaps the previous write: order matters
      `write -z ${half + 256 * 1024} 128k`,
      `write -P 0xc3 ${half + 4 * MiB} 2M`,
      `discard ${half + 4 * MiB + 512 * 1024} 512k`,
      `write -P 0xd4 ${size - MiB} 1M`, // the last MiB of the volume
      "flush",
    ];
    const started = performance.now();
    await run(["qemu-io", "-f", "raw", target.uri, ...commands.flatMap((c) => ["-c", c])]);
    record({ tool: "qemu-io", what: "overlapping pattern writes, write-zeroes, discard, the last MiB, flush", bytes: 5 * MiB, ms: performance.now() - started });
  }

  const client = await connectNbd(target.address, target.exportName);
  try {
    // Random 4 KiB overwrites in the second quarter, 16 in flight, some landing on the same block.
    const randomStart = quarter;
    const blocks = Math.max(1, quarter / 4096);
    const writes = Math.min(4000, blocks * 2);
    let started = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < writes) {
        next += 1;
        const block = Math.floor(Math.random() * Math.min(blocks, 2048));
        await client.write(randomStart + block * 4096, randomBytes(4096));
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    record({ tool: "built-in NBD client", what: `${writes} random 4 KiB writes (16 in flight, overlapping)`, bytes: writes * 4096, ms: performance.now() - started });

    // Sequential 1 MiB writes over the last quarter but the final MiB, 8 in flight.
    started = performance.now();
    const seqStart = 3 * quarter;
    const seqEnd = size - MiB;
    const inflight: Promise<void>[] = [];
    let seqBytes = 0;
    for (let offset = seqStart; offset + MiB <= seqEnd; offset += MiB) {
      inflight.push(client.write(offset, randomBytes(MiB)));
      seqBytes += MiB;
      if (inflight.length >= 8) await inflight.shift();
    }
    await Promise.all(inflight);
    record({ tool: "built-in NBD client", what: `sequential 1 MiB writes (8 in flight)`, bytes: seqBytes, ms: performance.now() - started });

    started = performance.now();
    // Zero the first part of the sequential span and trim the next: both must replicate as zeros.
    const span = seqEnd - seqStart;
    const zeroBytes = Math.min(2 * MiB, Math.floor(span / 2 / 4096) * 4096);
    const trimBytes = Math.min(MiB, Math.floor((span - zeroBytes) / 4096) * 4096);
    await client.writeZeroes(seqStart, zeroBytes);
    if (client.canTrim && trimBytes > 0) await client.trim(seqStart + zeroBytes, trimBytes);
    await client.flush();
    record({ tool: "built-in NBD client", what: `write-zeroes ${zeroBytes / 1024} KiB, trim ${trimBytes / 1024} KiB, flush`, bytes: zeroBytes + trimBytes, ms: performance.now() - started });
  } finally {
    await client.close();
  }
  return steps;
}
