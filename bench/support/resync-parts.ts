/**
 * The three measurements of bench/resync.ts, each with its reference run on the same images:
 *   resyncPart:      a disconnect, random 4 KiB changes, reconnect → druvaa's resync, vs rsync
 *   verifyPart:      `druvaa verify` of a synced pair, vs `cmp` of the two images
 *   initialSyncPart: `--initial-sync network` of a fresh pair, vs nbdcopy into nbdkit
 * When the CLI refuses a part's druvaa feature (unknown command or option), the reference is
 * still measured and the outcome says why druvaa's figures are null; any other failure throws.
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { sha256File } from "../../src/io/file-hash.ts";
import { protectReserveBytesDefault } from "../../src/protect-constants.ts";
import { plainSha256 } from "../../src/roles/replica/protected-device.ts";
import { BenchSystem } from "./druvaa-system.ts";
import { dropCaches, plainCopy, rsyncFigure, sparseImage, timedRun, waitForSocket, writeRandomBlocks, zeroImage, type TimedRun } from "./images.ts";
import type { Cleanup } from "./lib.ts";

export interface BenchContext {
  workDir: string;
  device: string;
  volumeBytes: number;
  wrlBytes: number;
  blockBytes: number;
  changedFraction: number;
  seed: number;
  /** Drop the page cache before every timed run (root). */
  coldCache: boolean;
  /** Why dropping the page cache failed, once per distinct reason. */
  cacheDropFailures: Set<string>;
  /** How to run this checkout's druvaa CLI. */
  druvaa: string[];
  cleanup: Cleanup;
  say(line: string): void;
}

const MiB = 1024 * 1024;
const mbps = (bytes: number, seconds: number) => bytes / 1e6 / seconds;

async function cold(ctx: BenchContext): Promise<void> {
  if (!ctx.coldCache) return;
  const failure = await dropCaches();
  if (failure !== undefined && !ctx.cacheDropFailures.has(failure)) {
    ctx.cacheDropFailures.add(failure);
    ctx.say(`  (page cache not dropped: ${failure}; runs read what is cached)`);
  }
}

/** A druvaa refusal meaning "this command or option does not exist (yet)": exit 2 with "unknown …". */
function unknownToCli(text: string): string | undefined {
  const line = text.split("\n").find((l) => /unknown (command|option)/.test(l));
  return line?.replace(/^druvaa: error: /, "").trim();
}

function failed(what: string, run: TimedRun): Error {
  return new Error(`${what} exited ${run.exitCode}:\n${run.stderr.trim()}\n${run.stdout.trim()}`.trim());
}

/** A fresh WRL (written full of zeros first) and an all-clean change map in `dir`. */
async function prepareLogAndMap(ctx: BenchContext, dir: string): Promise<{ wrl: string; changeMap: string }> {
  const wrl = join(dir, "wrl.img");
  const changeMap = join(dir, "changemap.img");
  await zeroImage(wrl, ctx.wrlBytes);
  for (const args of [["wrl", "create", "--primary", wrl], ["changemap", "create", changeMap, "--volume-size", String(ctx.volumeBytes)]]) {
    const run = await timedRun([...ctx.druvaa, ...args]);
    if (run.exitCode !== 0) throw failed(`druvaa ${args.join(" ")}`, run);
  }
  return { wrl, changeMap };
}

/**
 * A running system on `primary` and `replica` (equal at the start) through a counting proxy,
 * with `initialBytes` written through the export and drained; `before` holds a copy of the
 * replica taken then (rsync's target later).
 */
export async function startSyncedPair(ctx: BenchContext, primary: string, replica: string, before: string, initialBytes: number): Promise<BenchSystem> {
  const dir = join(ctx.workDir, "pair");
  await mkdir(dir, { recursive: true });
  const { wrl, changeMap } = await prepareLogAndMap(ctx, dir);
  const system = await BenchSystem.start({ dir, device: ctx.device, primary, replica, wrl, changeMap, cleanup: ctx.cleanup, viaProxy: true });
  await system.startClient();
  const written = await writeRandomBlocks(system.exportAddress, ctx.device, ctx.volumeBytes, MiB, initialBytes / ctx.volumeBytes, ctx.seed + 1, 8);
  await system.waitDrained(120_000);
  ctx.say(`initial content: random data everywhere, plus ${written.blockCount} MiB written through the client while connected (${mbps(written.changedBytes, written.seconds).toFixed(0)} MB/s) and drained`);
  await plainCopy(replica, before, ctx.volumeBytes); // rsync's target: the plain image, as a primary holds it
  return system;
}

export interface ResyncFigures {
  changedBlocks: number;
  changedBytes: number;
  disconnectedWriteSeconds: number;
  disconnectedWriteIops: number;
  dirtyBytesBeforeResync: number;
  stagingRestartSeconds: number;
  resyncSeconds: number;
  resyncReconnectSeconds: number;
  resyncInSyncSeconds: number;
  resyncPassSeconds: number | null;
  resyncCommandSeconds: number;
  resyncBytesSent: number | null;
  resyncWireBytesUp: number;
  resyncWireBytesDown: number;
  bytesSentRatio: number | null;
  wireBytesRatio: number;
  replicaEqualsPrimary: boolean;
  rsyncSeconds: number;
  rsyncBytesSent: number;
  rsyncBytesReceived: number;
  rsyncLiteralBytes: number;
  rsyncTargetEqualsPrimary: boolean;
  speedupVsRsync: number;
  rsyncBytesVsDruvaaWire: number;
}

/**
 * SIGKILL staging, change `changedFraction` of the 4 KiB blocks at random through the client
 * (disconnected mode), start staging again and time until the client is in sync and staging
 * drained; then rsync the same change from the primary into `before` (--ignore-times: an image's
 * size and mtime say nothing about its blocks, and the copy can share the primary's mtime second).
 */
export async function resyncPart(ctx: BenchContext, system: BenchSystem, primary: string, replica: string, before: string): Promise<ResyncFigures> {
  const lastResyncBefore = (await system.clientStatus()).lastResync;
  await system.killStaging();
  await system.waitForMode("disconnected", 30_000);
  ctx.say(`staging SIGKILLed; the client is in disconnected mode`);
  const changes = await writeRandomBlocks(system.exportAddress, ctx.device, ctx.volumeBytes, ctx.blockBytes, ctx.changedFraction, ctx.seed);
  const dirtyBytesBeforeResync = (await system.clientStatus()).dirtyBytes ?? 0;
  ctx.say(`changed ${changes.blockCount} random ${ctx.blockBytes / 1024} KiB blocks (${(changes.changedBytes / MiB).toFixed(1)} MiB) in ${changes.seconds.toFixed(2)} s (${Math.round(changes.blockCount / changes.seconds)} writes/s, completed locally); change map: ${dirtyBytesBeforeResync} dirty bytes`);

  await cold(ctx);
  const proxy = system.proxy!;
  const restartStarted = performance.now();
  await system.restartStaging();
  const t0 = performance.now();
  const stagingRestartSeconds = (t0 - restartStarted) / 1000;
  const [upBefore, downBefore] = [proxy.upBytes, proxy.downBytes];
  // What an operator runs, started at the same moment: `druvaa resync` (exit 0 once in sync),
  // then `druvaa status --wait-drained`. The headline time comes from the 50 ms polling below.
  const commands = (async () => {
    const resync = await timedRun([...ctx.druvaa, "resync", "--connect", system.clientControl, "--json", "--timeout", "10m"], ctx.cleanup);
    const drained = await timedRun([...ctx.druvaa, "status", "--connect", system.stagingControl, "--wait-drained", "--timeout", "600"], ctx.cleanup);
    return { resync, drained, seconds: (performance.now() - t0) / 1000 };
  })();
  const times = await system.waitInSyncAndDrained(t0, lastResyncBefore, 600_000);
  const wireUp = proxy.upBytes - upBefore;
  const wireDown = proxy.downBytes - downBefore;
  const cli = await commands;
  if (cli.resync.exitCode !== 0) throw failed("druvaa resync", cli.resync);
  if (cli.drained.exitCode !== 0) throw failed("druvaa status --wait-drained", cli.drained);
  const sent = times.lastResync?.sentBytes ?? null;
  ctx.say(`staging restarted in ${stagingRestartSeconds.toFixed(2)} s; from its ready line: client reconnected at ${times.connectedSeconds.toFixed(2)} s, in sync at ${times.inSyncSeconds.toFixed(2)} s, replica drained at ${times.drainedSeconds.toFixed(2)} s`);
  ctx.say(`  resync pass: ${times.lastResync?.seconds.toFixed(2) ?? "?"} s, ${sent ?? "?"} bytes sent (client's lastResync.sentBytes, outcome ${times.lastResync?.outcome ?? "?"}); on the wire client→staging ${wireUp} bytes, staging→client ${wireDown} bytes`);
  ctx.say(`  \`druvaa resync\` then \`druvaa status --wait-drained\`: both exit 0, ${cli.seconds.toFixed(2)} s together`);

  const [primaryHash, replicaHash] = await Promise.all([sha256File(primary, ctx.volumeBytes), plainSha256(replica, ctx.volumeBytes)]);
  const replicaEqualsPrimary = primaryHash === replicaHash;
  ctx.say(`replica ${replicaEqualsPrimary ? "==" : "!="} primary (sha256 of the images, the replica's un-swapped)`);

  await cold(ctx);
  const rsync = await timedRun(["rsync", "--inplace", "--no-whole-file", "--ignore-times", "--stats", primary, before], ctx.cleanup);
  if (rsync.exitCode !== 0) throw failed("rsync", rsync);
  const rsyncBytesSent = rsyncFigure(rsync.stdout, "Total bytes sent");
  const rsyncTargetEqualsPrimary = (await sha256File(before, ctx.volumeBytes)) === primaryHash;
  ctx.say(`rsync --inplace --no-whole-file --ignore-times (same image pair): ${rsync.seconds.toFixed(2)} s, ${rsyncBytesSent} bytes sent (literal data ${rsyncFigure(rsync.stdout, "Literal data")}), target ${rsyncTargetEqualsPrimary ? "==" : "!="} primary`);
  return {
    changedBlocks: changes.blockCount,
    changedBytes: changes.changedBytes,
    disconnectedWriteSeconds: changes.seconds,
    disconnectedWriteIops: changes.blockCount / changes.seconds,
    dirtyBytesBeforeResync,
    stagingRestartSeconds,
    resyncSeconds: times.drainedSeconds,
    resyncReconnectSeconds: times.connectedSeconds,
    resyncInSyncSeconds: times.inSyncSeconds,
    resyncPassSeconds: times.lastResync?.seconds ?? null,
    resyncCommandSeconds: cli.seconds,
    resyncBytesSent: sent,
    resyncWireBytesUp: wireUp,
    resyncWireBytesDown: wireDown,
    bytesSentRatio: sent === null ? null : sent / changes.changedBytes,
    wireBytesRatio: wireUp / changes.changedBytes,
    replicaEqualsPrimary,
    rsyncSeconds: rsync.seconds,
    rsyncBytesSent,
    rsyncBytesReceived: rsyncFigure(rsync.stdout, "Total bytes received"),
    rsyncLiteralBytes: rsyncFigure(rsync.stdout, "Literal data"),
    rsyncTargetEqualsPrimary,
    speedupVsRsync: rsync.seconds / times.drainedSeconds,
    rsyncBytesVsDruvaaWire: rsyncBytesSent / wireUp,
  };
}

/** A part's figures; `unavailable` says why druvaa's side was not measured (its figures are null). */
export interface PartOutcome<Figures> {
  figures: Figures;
  unavailable?: string;
}

export interface VerifyFigures {
  verifySeconds: number | null;
  verifyReportedSeconds: number | null;
  verifyCheckedBytes: number | null;
  verifyMBps: number | null;
  cmpSeconds: number;
  cmpMBps: number;
  verifyRatioVsCmp: number | null;
}

/**
 * `druvaa verify` of the synced pair (wall time of the command) vs `cmp` of the two image files;
 * cmp is measured even when druvaa has no verify command yet.
 */
export async function verifyPart(ctx: BenchContext, system: BenchSystem, primary: string, replica: string): Promise<PartOutcome<VerifyFigures>> {
  await cold(ctx);
  const verify = await timedRun([...ctx.druvaa, "verify", "--connect", system.clientControl, "--device", ctx.device, "--json"], ctx.cleanup);
  const missing = verify.exitCode === 2 ? unknownToCli(verify.stderr + verify.stdout) : undefined;
  if (missing === undefined && verify.exitCode !== 0) throw failed("druvaa verify (on a pair in sync)", verify);
  const report = missing !== undefined ? {} : (JSON.parse(verify.stdout.trim().split("\n").findLast((line) => line.startsWith("{")) ?? "{}") as { checkedBytes?: number; seconds?: number });
  await cold(ctx);
  // The replica keeps its first R bytes at its end (protected device): cmp compares [R, size) in
  // place and the head against the replica's end, two runs timed together.
  const reserve = protectReserveBytesDefault;
  const body = await timedRun(["cmp", "-i", String(reserve), "-n", String(ctx.volumeBytes - reserve), primary, replica], ctx.cleanup);
  if (body.exitCode !== 0) throw failed("cmp primary replica", body);
  const head = await timedRun(["cmp", "-i", `0:${ctx.volumeBytes}`, "-n", String(reserve), primary, replica], ctx.cleanup);
  if (head.exitCode !== 0) throw failed("cmp primary replica (head)", head);
  const cmp = { ...body, seconds: body.seconds + head.seconds };
  const cmpMBps = mbps(ctx.volumeBytes, cmp.seconds);
  const checkedBytes = report.checkedBytes ?? Number.NaN;
  const verifyMBps = missing === undefined ? mbps(checkedBytes, verify.seconds) : null;
  if (missing === undefined) ctx.say(`druvaa verify: equal, ${checkedBytes} bytes checked in ${verify.seconds.toFixed(2)} s wall (${report.seconds?.toFixed(2) ?? "?"} s reported) → ${verifyMBps!.toFixed(0)} MB/s`);
  else ctx.say(`druvaa verify not measured: ${missing}`);
  ctx.say(`cmp of the two images: ${cmp.seconds.toFixed(2)} s → ${cmpMBps.toFixed(0)} MB/s`);
  return {
    figures: {
      verifySeconds: missing === undefined ? verify.seconds : null,
      verifyReportedSeconds: report.seconds ?? null,
      verifyCheckedBytes: missing === undefined ? checkedBytes : null,
      verifyMBps,
      cmpSeconds: cmp.seconds,
      cmpMBps,
      verifyRatioVsCmp: verifyMBps === null ? null : verifyMBps / cmpMBps,
    },
    ...(missing === undefined ? {} : { unavailable: `druvaa verify: ${missing}` }),
  };
}

interface DruvaaInitialSync {
  initialSyncSeconds: number;
  initialSyncInSyncSeconds: number;
  initialSyncBytesSent: number | null;
  initialSyncMBps: number;
  initialSyncReplicaEqualsPrimary: boolean;
}

export type InitialSyncFigures = { [K in keyof DruvaaInitialSync]: DruvaaInitialSync[K] | null } & {
  nbdcopySeconds: number;
  nbdcopyMBps: number;
  nbdcopyNoFlushMBps: number;
  initialSyncRatioVsNbdcopy: number | null;
};

/**
 * A fresh pair (the replica a sparse file of zeros) whose client starts with
 * `--initial-sync network`, timed from the client's start until in sync and drained; then
 * nbdcopy of the same primary into a fresh sparse file served by nbdkit, with --flush (durable at
 * the end, as druvaa's replica is) and without. nbdcopy is measured even when the client does
 * not know --initial-sync yet.
 */
export async function initialSyncPart(ctx: BenchContext, primary: string, primaryHash: string): Promise<PartOutcome<InitialSyncFigures>> {
  const dir = join(ctx.workDir, "initial");
  await mkdir(dir, { recursive: true });
  const druvaa = await druvaaInitialSync(ctx, dir, primary, primaryHash);
  const nbdcopySeconds = await nbdcopy(ctx, dir, primary, true);
  const noFlushSeconds = await nbdcopy(ctx, dir, primary, false);
  const nbdcopyMBps = mbps(ctx.volumeBytes, nbdcopySeconds);
  ctx.say(`nbdcopy --flush into nbdkit file: ${nbdcopySeconds.toFixed(2)} s → ${nbdcopyMBps.toFixed(0)} MB/s (without --flush: ${mbps(ctx.volumeBytes, noFlushSeconds).toFixed(0)} MB/s)`);
  const figures: InitialSyncFigures = {
    initialSyncSeconds: null, initialSyncInSyncSeconds: null, initialSyncBytesSent: null, initialSyncMBps: null, initialSyncReplicaEqualsPrimary: null,
    ...("unavailable" in druvaa ? {} : druvaa),
    nbdcopySeconds,
    nbdcopyMBps,
    nbdcopyNoFlushMBps: mbps(ctx.volumeBytes, noFlushSeconds),
    initialSyncRatioVsNbdcopy: "unavailable" in druvaa ? null : druvaa.initialSyncMBps / nbdcopyMBps,
  };
  return { figures, ...("unavailable" in druvaa ? { unavailable: druvaa.unavailable } : {}) };
}

async function druvaaInitialSync(ctx: BenchContext, dir: string, primary: string, primaryHash: string): Promise<DruvaaInitialSync | { unavailable: string }> {
  const replica = join(dir, "replica.img");
  await sparseImage(replica, ctx.volumeBytes + protectReserveBytesDefault); // + the swapped header reserve
  const { wrl, changeMap } = await prepareLogAndMap(ctx, dir);
  const system = await BenchSystem.start({ dir, device: ctx.device, primary, replica, wrl, changeMap, cleanup: ctx.cleanup, viaProxy: false });
  try {
    await cold(ctx);
    const t0 = performance.now();
    try {
      await system.startClient(["--initial-sync", "network"]);
    } catch (error) {
      const missing = unknownToCli(error instanceof Error ? error.message : String(error));
      if (missing === undefined) throw error;
      ctx.say(`druvaa initial sync not measured: ${missing}`);
      return { unavailable: `druvaa client attach: ${missing}` };
    }
    // Generous (5 MB/s at worst) but bounded: a stuck initial sync fails the part, not the run.
    const times = await system.waitInSyncAndDrained(t0, null, Math.max(120_000, (ctx.volumeBytes / 5e6) * 1000));
    const equal = (await plainSha256(replica, ctx.volumeBytes)) === primaryHash;
    const figures = {
      initialSyncSeconds: times.drainedSeconds,
      initialSyncInSyncSeconds: times.inSyncSeconds,
      initialSyncBytesSent: times.lastResync?.sentBytes ?? null,
      initialSyncMBps: mbps(ctx.volumeBytes, times.drainedSeconds),
      initialSyncReplicaEqualsPrimary: equal,
    };
    ctx.say(`druvaa --initial-sync network: in sync ${times.inSyncSeconds.toFixed(2)} s after the client started, drained at ${times.drainedSeconds.toFixed(2)} s → ${figures.initialSyncMBps.toFixed(0)} MB/s; ${figures.initialSyncBytesSent ?? "?"} bytes sent; replica ${equal ? "==" : "!="} primary`);
    return figures;
  } finally {
    await system.stop();
    await rm(replica, { force: true });
    await rm(wrl, { force: true });
  }
}

/** Seconds nbdcopy takes to copy `primary` into a fresh sparse file served by `nbdkit file`. */
async function nbdcopy(ctx: BenchContext, dir: string, primary: string, flush: boolean): Promise<number> {
  const target = join(dir, "nbdcopy-target.img");
  const socket = join(dir, "nbdkit.sock");
  await sparseImage(target, ctx.volumeBytes);
  await rm(socket, { force: true });
  const nbdkit = Bun.spawn(["nbdkit", "--foreground", "--exit-with-parent", "--unix", socket, "file", target], { stdin: "ignore", stdout: "ignore", stderr: "inherit" });
  ctx.cleanup.killAtExit(nbdkit);
  try {
    await waitForSocket(socket, nbdkit);
    await cold(ctx);
    const run = await timedRun(["nbdcopy", ...(flush ? ["--flush"] : []), primary, `nbd+unix:///?socket=${socket}`], ctx.cleanup);
    if (run.exitCode !== 0) throw failed("nbdcopy", run);
    return run.seconds;
  } finally {
    nbdkit.kill("SIGTERM");
    await nbdkit.exited;
    await rm(target, { force: true });
  }
}
