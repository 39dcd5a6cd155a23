/**
 * The standard workload of issue 5, for bench/wan.ts: fio (nbd engine) random writes through a
 * druvaa client's export.
 *
 *   sizes        4–64 KiB: --bssplit=4k/30:8k/20:16k/20:32k/15:64k/15 (mean ~20 KiB per write)
 *   data         50% compressible: --buffer_compress_percentage=50 with --refill_buffers (fresh
 *                data for every write, so zstd cannot win on repeated buffers)
 *   overwrites   30% of the writes go to a hot area at the start of the device (default 1 MiB)
 *                and 70% spread over the rest: --random_distribution=zoned_abs:30/HOT:70/REST
 *                (with --norandommap, so blocks may be written again). The hot area is small, so
 *                nearly every write to it overwrites a block written a second or two before at
 *                the rates used here: "30% overwrites of recent blocks", what coalescing a span
 *                of the WRL can drop. (zipf/pareto were the alternatives; zoned says the 30%
 *                exactly: 29.5% of the writes and 30.8% of the bytes in a 8 MiB sample.)
 *   determinism  --randseed and --randrepeat: the same offsets and sizes for every system compared.
 *
 * The amount is either a byte count (--io_size; runs as fast as the client takes it, or at
 * `rateBytesPerSecond`) or a duration (--time_based). No verify: benchmarks measure, tests check.
 */
import { runFioJson, type Cleanup } from "./lib.ts";

export interface StandardWorkload {
  /** Size of the device written. */
  deviceBytes: number;
  /** Size of the hot area that takes 30% of the writes; default 1 MiB. */
  hotBytes?: number;
  /** Stop after this many bytes written… */
  ioBytes?: number;
  /** … or after this many seconds (time based). */
  seconds?: number;
  /** fio's --rate: the most bytes per second written; default unlimited. */
  rateBytesPerSecond?: number;
  seed: number;
  iodepth?: number;
}

export interface StandardRun {
  writtenBytes: number;
  seconds: number;
  mbPerSecond: number;
  iops: number;
  p50LatencyMs: number;
  p99LatencyMs: number;
  /** performance.now() of this process when fio exited. */
  endedAtMs: number;
}

/** The fio arguments of the standard workload (besides engine, uri and output). */
export function standardWorkloadArgs(workload: StandardWorkload): string[] {
  const hotBytes = workload.hotBytes ?? 1024 * 1024;
  const amount = workload.seconds !== undefined ? ["--time_based", `--runtime=${workload.seconds}`] : [`--io_size=${workload.ioBytes}`];
  return [
    "--rw=randwrite", "--bssplit=4k/30:8k/20:16k/20:32k/15:64k/15", "--blockalign=4k",
    `--random_distribution=zoned_abs:30/${hotBytes}:70/${workload.deviceBytes - hotBytes}`, "--norandommap",
    "--buffer_compress_percentage=50", "--refill_buffers",
    `--randseed=${workload.seed}`, "--randrepeat=1",
    `--iodepth=${workload.iodepth ?? 8}`, `--size=${workload.deviceBytes}`,
    ...(workload.rateBytesPerSecond === undefined ? [] : [`--rate=${Math.round(workload.rateBytesPerSecond)}`]),
    ...amount,
  ];
}


/** Runs the standard workload against an NBD URI; JSON goes to `outputPath`. Throws if fio fails. */
export async function runStandardWorkload(uri: string, workload: StandardWorkload, outputPath: string, cleanup: Cleanup, name = "wan-standard"): Promise<StandardRun> {
  const args = ["fio", `--name=${name}`, "--ioengine=nbd", `--uri=${uri}`, ...standardWorkloadArgs(workload), "--output-format=json", `--output=${outputPath}`];
  const { write, endedAtMs } = await runFioJson(args, outputPath, cleanup);
  const percentiles = write.clat_ns.percentile ?? {};
  return {
    writtenBytes: write.io_bytes,
    seconds: write.runtime / 1000,
    mbPerSecond: write.bw_bytes / 1e6,
    iops: write.iops,
    p50LatencyMs: (percentiles["50.000000"] ?? Number.NaN) / 1e6,
    p99LatencyMs: (percentiles["99.000000"] ?? Number.NaN) / 1e6,
    endedAtMs,
  };
}
