/**
 * Recovery, measured on this machine in this run (issue 6). A volume of random data (1 GiB;
 * --quick: 256 MiB) replicated client → staging → replica as real processes on loopback, the pair
 * starting in sync (the replica a protected copy of the primary), the client with a change map.
 *
 * 1. Time to first byte of a fast snapshot: POST /snapshots on the replica's control port (the
 *    snapshot exported over NBD on a Unix socket), connect with an NBD client, read the first
 *    4 KiB; median of --rounds × 3, each snapshot released after. The same on a second replica
 *    process serving a sparse --big-gib (default 64) GiB device, to show it does not grow with the
 *    volume. Target < 1 s for any size.
 * 2. Full restore throughput: `druvaa restore --to` of the device (it streams from a fast
 *    snapshot, checks a SHA-256 end to end and fdatasyncs the target) vs `nbdcopy --flush` from
 *    `nbdkit file` serving the replica image (durable too), the page cache dropped before each
 *    run (root), ABBA over --rounds, medians. Target ratio ≥ 0.8.
 * 3. Failback: `druvaa failover --export`, the client stopped, 1% of the volume's 4 KiB blocks
 *    (distinct, at random) overwritten through the DR export, then `druvaa failback --changemap
 *    --json`: bytes it sent vs the volume. Target ≤ 1.5% of the volume.
 *
 *   node_modules/.bin/bun bench/recovery.ts [--quick] [--volume-mib 1024] [--big-gib 64]
 *       [--rounds 2] [--changed-percent 1] [--seed N] [--dir /var/tmp]
 *
 * Targets are printed, never asserted. Ends with ONE line of JSON holding every figure and ratio.
 * Cleans up its processes and files on every exit path, Ctrl-C included.
 */
import { mkdtempSync } from "node:fs";
import { join, resolve } from "node:path";
import { runDruvaa, startRole } from "../src/demo/processes.ts";
import { connectNbd } from "../src/nbd/client.ts";
import { protectReserveBytesDefault } from "../src/protect-constants.ts";
import { BenchSystem } from "./support/druvaa-system.ts";
import { dropCaches, fillRandomImages, protectedCopy, sparseImage, timedRun, waitForSocket, writeRandomBlocks } from "./support/images.ts";
import { Cleanup, flagValue, median, missingTools, round } from "./support/lib.ts";

const MiB = 1024 * 1024;
const quick = process.argv.includes("--quick");
const volumeBytes = Number(flagValue("volume-mib", quick ? "256" : "1024")) * MiB;
const bigBytes = Number(flagValue("big-gib", "64")) * 1024 * MiB;
const rounds = Number(flagValue("rounds", quick ? "1" : "2"));
const changedFraction = Number(flagValue("changed-percent", "1")) / 100;
const seed = Number(flagValue("seed", String(Math.floor(Math.random() * 2 ** 31))));
const baseDir = resolve(flagValue("dir", "/var/tmp"));
process.argv[1] = resolve(import.meta.dir, "../src/cli.ts");

const cleanup = new Cleanup();
const missing = missingTools(["nbdkit", "nbdcopy"]);
if (missing.length > 0) {
  console.error(`missing tools: ${missing.join(", ")} (Debian: apt-get install nbdkit libnbd-bin)`);
  process.exit(1);
}
const dir = mkdtempSync(join(baseDir, "druvaa-bench-recovery-"));
cleanup.removeAtExit(dir);

async function controlJson(control: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(`http://${control}${path}`, body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const parsed = await response.json();
  if (!response.ok) throw new Error(`${path}: ${JSON.stringify(parsed)}`);
  return parsed;
}

/** Seconds from asking for a snapshot until its first 4 KiB is read over NBD (median of `count`). */
async function timeToFirstByte(control: string, device: string, count: number): Promise<number> {
  const samples: number[] = [];
  for (let index = 0; index < count; index += 1) {
    const socket = join(dir, `ttfb-${device}-${index}.sock`);
    const started = performance.now();
    const snapshot = await controlJson(control, "/snapshots", { device, export: `unix:${socket}` });
    const client = await connectNbd(`unix:${socket}`);
    const first = await client.read(0, 4096);
    samples.push((performance.now() - started) / 1000);
    if (first.length !== 4096) throw new Error("short first read");
    await client.close();
    await controlJson(control, "/snapshots/release", { id: snapshot.id });
  }
  return median(samples);
}

async function main(): Promise<void> {
  const primary = join(dir, "primary.img");
  const replica = join(dir, "replica.img");
  const changeMap = join(dir, "changemap.img");
  const wrl = join(dir, "wrl.img");
  console.error(`volume ${volumeBytes / MiB} MiB of random data, seed ${seed}`);
  await fillRandomImages([primary], volumeBytes);
  await protectedCopy(primary, replica, volumeBytes);
  await runDruvaa(["wrl", "create", "--primary", wrl, "--size", String(Math.max(256 * MiB, volumeBytes / 4))]);
  await runDruvaa(["changemap", "create", changeMap, "--region", `disk0=${volumeBytes}`]);
  const system = await BenchSystem.start({ dir, device: "disk0", primary, replica, wrl, changeMap, cleanup, viaProxy: false });
  await system.startClient();
  // One write so the replica knows the device's WRL (points, snapshots name it).
  await writeRandomBlocks(system.exportAddress, "disk0", volumeBytes, 4096, 1 / (volumeBytes / 4096), seed);
  await system.waitDrained(60_000);
  const control = String(system.replica.ready.control);

  // 1. Time to first byte, on this volume and on a big sparse one served by a second replica.
  const ttfbSeconds = await timeToFirstByte(control, "disk0", rounds * 3);
  const big = join(dir, "big.img");
  await sparseImage(big, bigBytes + protectReserveBytesDefault);
  const bigReplica = await startRole("replica-big", ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `big=${big}`, "--state-dir", join(dir, "big-state"), "--insecure"]);
  cleanup.onExit(() => bigReplica.stop());
  const ttfbBigSeconds = await timeToFirstByte(String(bigReplica.ready.control), "big", rounds * 3);
  await bigReplica.stop();
  console.error(`time to first byte: ${ttfbSeconds.toFixed(3)} s (${volumeBytes / MiB} MiB), ${ttfbBigSeconds.toFixed(3)} s (${bigBytes / 1024 / MiB} GiB)`);

  // 2. Full restore vs nbdcopy of the replica image, ABBA, caches dropped.
  const restoreMBps: number[] = [];
  const nbdcopyMBps: number[] = [];
  let cacheNote: string | undefined;
  const runRestore = async () => {
    const target = join(dir, "restored.img");
    await timedRun(["rm", "-f", target]);
    cacheNote = (await dropCaches()) ?? cacheNote;
    const run = await timedRun([...selfCommandArgs(), "restore", "--replica", String(system.replica.ready.restore), "--device", "disk0", "--to", target, "--insecure"], cleanup);
    if (run.exitCode !== 0) throw new Error(`druvaa restore failed: ${run.stderr}`);
    restoreMBps.push(volumeBytes / MiB / run.seconds);
  };
  const runNbdcopy = async () => {
    const target = join(dir, "copied.img");
    await timedRun(["rm", "-f", target]);
    const socket = join(dir, `nbdkit-${nbdcopyMBps.length}.sock`);
    const nbdkit = Bun.spawn(["nbdkit", "--foreground", "--unix", socket, "--readonly", "file", replica], { stdout: "ignore", stderr: "pipe" });
    cleanup.killAtExit(nbdkit);
    await waitForSocket(socket, nbdkit);
    cacheNote = (await dropCaches()) ?? cacheNote;
    // --flush: the copy is durable when nbdcopy exits, as a restore's is (it fdatasyncs the target).
    const run = await timedRun(["nbdcopy", "--flush", `nbd+unix:///?socket=${socket}`, target], cleanup);
    nbdkit.kill("SIGTERM");
    await nbdkit.exited;
    if (run.exitCode !== 0) throw new Error(`nbdcopy failed: ${run.stderr}`);
    nbdcopyMBps.push((volumeBytes + protectReserveBytesDefault) / MiB / run.seconds);
  };
  for (let index = 0; index < rounds; index += 1) {
    if (index % 2 === 0) {
      await runRestore();
      await runNbdcopy();
    } else {
      await runNbdcopy();
      await runRestore();
    }
  }
  const restoreRatio = median(restoreMBps) / median(nbdcopyMBps);
  console.error(`full restore ${median(restoreMBps).toFixed(1)} MB/s vs nbdcopy ${median(nbdcopyMBps).toFixed(1)} MB/s: ${restoreRatio.toFixed(2)}${cacheNote === undefined ? "" : ` (${cacheNote})`}`);

  // 3. Failover, 1% of the blocks changed at the DR site, failback.
  const drSocket = join(dir, "dr.sock");
  await runDruvaa(["failover", "--connect", control, "--device", "disk0", "--export", `unix:${drSocket}`]);
  await system.client!.stop();
  const changes = await writeRandomBlocks(`unix:${drSocket}`, "disk0", volumeBytes, 4096, changedFraction, seed + 1);
  const failback = await timedRun([...selfCommandArgs(), "failback", "--connect", control, "--device", "disk0", "--primary", primary, "--staging", system.stagingControl, "--changemap", changeMap, "--json"], cleanup);
  if (failback.exitCode !== 0) throw new Error(`druvaa failback failed: ${failback.stderr}`);
  const back = JSON.parse(failback.stdout);
  const failbackPercent = (100 * back.sentBytes) / volumeBytes;
  console.error(`failback sent ${back.sentBytes} bytes (${failbackPercent.toFixed(2)} % of the volume) after ${changes.changedBytes} bytes changed at the DR site, ${failback.seconds.toFixed(2)} s`);

  const figures = {
    volumeMiB: volumeBytes / MiB,
    bigVolumeGiB: bigBytes / 1024 / MiB,
    snapshotTtfbSeconds: round(ttfbSeconds, 3),
    snapshotTtfbBigSeconds: round(ttfbBigSeconds, 3),
    snapshotTtfbTargetSeconds: 1,
    restoreMBps: round(median(restoreMBps)),
    nbdcopyMBps: round(median(nbdcopyMBps)),
    restoreRatioVsNbdcopy: round(restoreRatio, 2),
    restoreRatioTarget: 0.8,
    failbackChangedBytes: changes.changedBytes,
    failbackSentBytes: back.sentBytes,
    failbackSentPercentOfVolume: round(failbackPercent, 3),
    failbackSentPercentTarget: 1.5,
    failbackSeconds: round(failback.seconds, 2),
    rounds,
    seed,
    cacheDropped: cacheNote === undefined,
  };
  console.log(JSON.stringify(figures));
}

/** The druvaa command line (bun + cli.ts under `bun`, or the compiled binary). */
function selfCommandArgs(): string[] {
  return [process.execPath, resolve(import.meta.dir, "../src/cli.ts")];
}

try {
  await main();
} catch (error) {
  console.error(error instanceof Error ? error.stack : String(error));
  process.exitCode = 1;
} finally {
  await cleanup.run();
}
