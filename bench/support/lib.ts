/**
 * Helpers shared by the benchmarks: flags, fio runs with JSON output, medians, peak RSS of a
 * process, and a registry of child processes and temp files that are cleaned up on every exit
 * path (normal end, error, Ctrl-C). No assertions anywhere: benchmarks measure, tests check.
 */
import { readdirSync, readFileSync, rmSync } from "node:fs";

/** `--name VALUE` from argv, or the fallback. */
export function flagValue(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && process.argv[index + 1] !== undefined ? process.argv[index + 1]! : fallback;
}

export const round = (value: number, digits = 1): number => Number(value.toFixed(digits));

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Peak resident set size (VmHWM) of a live process, in MB; NaN when it is gone. */
export function peakRssMB(pid: number): number {
  try {
    const match = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** What one fio write job measured. */
export interface FioResult {
  mbPerSecond: number;
  iops: number;
  p50LatencyMs: number;
  p99LatencyMs: number;
  /** Wall-clock time fio's job ended (performance.now() of this process). */
  endedAtMs: number;
}

export interface FioJob {
  name: string;
  rw: "write" | "randwrite";
  blockSize: string;
  iodepth: number;
  seconds: number;
  sizeBytes: number;
}

/** Child processes and paths to remove at exit; Ctrl-C runs the same cleanup. */
export class Cleanup {
  readonly #kills: (() => Promise<unknown>)[] = [];
  readonly #paths: string[] = [];
  #ran: Promise<void> | undefined;

  constructor() {
    const onSignal = (signal: NodeJS.Signals) => {
      process.stderr.write(`\n${signal}: stopping the benchmark's processes…\n`);
      void this.run().finally(() => process.exit(130));
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
  }

  onExit(kill: () => Promise<unknown>): void {
    this.#kills.push(kill);
  }

  removeAtExit(path: string): void {
    this.#paths.push(path);
  }

  run(): Promise<void> {
    this.#ran ??= (async () => {
      await Promise.allSettled(this.#kills.splice(0).reverse().map((kill) => kill()));
      // A child spawned but not registered yet (a role still starting when Ctrl-C came).
      await stopChildren(5_000);
      for (const path of this.#paths.splice(0)) rmSync(path, { recursive: true, force: true });
    })();
    return this.#ran;
  }

  /** Stops a spawned process by pid at exit (SIGTERM, then SIGKILL after graceMs). */
  killAtExit(proc: Bun.Subprocess, graceMs = 5_000): void {
    this.onExit(async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      await proc.exited;
      clearTimeout(timer);
    });
  }
}

/** Pids of this process's live children (from /proc: their parent pid is ours). */
function childPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === process.pid && fields[0] !== "Z") pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** SIGTERM to every child of this process, SIGKILL to those still there after `graceMs`. */
async function stopChildren(graceMs: number): Promise<void> {
  const signal = (pids: number[], name: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        process.kill(pid, name);
      } catch {
        // exited meanwhile
      }
    }
  };
  signal(childPids(), "SIGTERM");
  const deadline = performance.now() + graceMs;
  while (childPids().length > 0 && performance.now() < deadline) await Bun.sleep(50);
  signal(childPids(), "SIGKILL");
}

/** Runs one fio job with the nbd engine against `uri`; JSON goes to a file (fio prints notes on stdout). */
export function runFio(job: FioJob, uri: string, outputPath: string, cleanup: Cleanup): Promise<FioResult> {
  return runFioWith(job, ["--ioengine=nbd", `--uri=${uri}`], outputPath, cleanup);
}

/**
 * Runs one fio job straight on a file with libaio and O_DIRECT, an fdatasync after every
 * `fdatasyncEvery` writes (0: none): what the disk itself gives the same access pattern.
 */
export function runFioOnFile(job: FioJob, path: string, fdatasyncEvery: number, outputPath: string, cleanup: Cleanup): Promise<FioResult> {
  return runFioWith(job, ["--ioengine=libaio", "--direct=1", `--filename=${path}`, ...(fdatasyncEvery > 0 ? [`--fdatasync=${fdatasyncEvery}`] : [])], outputPath, cleanup);
}

async function runFioWith(job: FioJob, engineArgs: string[], outputPath: string, cleanup: Cleanup): Promise<FioResult> {
  const args = [
    "fio", `--name=${job.name}`, ...engineArgs, `--rw=${job.rw}`, `--bs=${job.blockSize}`, `--iodepth=${job.iodepth}`,
    `--size=${job.sizeBytes}`, "--time_based", `--runtime=${job.seconds}`, "--output-format=json", `--output=${outputPath}`,
  ];
  const { write, endedAtMs } = await runFioJson(args, outputPath, cleanup);
  const percentiles = write.clat_ns.percentile ?? {};
  return {
    mbPerSecond: write.bw_bytes / 1e6,
    iops: write.iops,
    p50LatencyMs: (percentiles["50.000000"] ?? Number.NaN) / 1e6,
    p99LatencyMs: (percentiles["99.000000"] ?? Number.NaN) / 1e6,
    endedAtMs,
  };
}

/** Runs fio (`args`, with JSON output to `outputPath`); its first job's write figures. Throws if fio fails. */
export async function runFioJson(args: string[], outputPath: string, cleanup: Cleanup): Promise<{ write: FioWrite; endedAtMs: number }> {
  const proc = Bun.spawn(args, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  cleanup.killAtExit(proc, 1_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const endedAtMs = performance.now();
  if (code !== 0) throw new Error(`fio failed (exit ${code}): ${stderr.trim() || stdout.trim()}\n${args.join(" ")}`);
  const text = readFileSync(outputPath, "utf8");
  return { write: (JSON.parse(text.slice(text.indexOf("{"))) as { jobs: { write: FioWrite }[] }).jobs[0]!.write, endedAtMs };
}

export interface FioWrite {
  bw_bytes: number;
  iops: number;
  io_bytes: number;
  runtime: number;
  clat_ns: { percentile?: Record<string, number>; mean?: number };
}

/** Which of these commands are missing from PATH. */
export function missingTools(tools: readonly string[]): string[] {
  return tools.filter((tool) => Bun.which(tool) === null);
}
