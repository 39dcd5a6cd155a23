/**
 * Repairing divergence, against the tools one would otherwise use, on this machine in this run
 * (issue 4). A volume of random data (2 GiB; --quick: 256 MiB) replicated client → staging →
 * replica as real processes on loopback, the client with a change map:
 *
 * 1. Resync after a disconnect. The pair starts in sync (both images written with the same
 *    random data), 64 MiB more is written through the client and drained, and a copy of the
 *    replica image is kept. Staging is SIGKILLed; 1% of the volume's 4 KiB blocks (distinct, at
 *    random) are overwritten with random data through the client's NBD export (the writes
 *    complete locally, marked in the change map); staging is started again. Timed from staging's
 *    ready line until the client is in sync (connected, nothing dirty, every write acked) and
 *    staging drained, polled every 50 ms; `druvaa resync` and `druvaa status --wait-drained`,
 *    started at the same moment, must both exit 0 (their own wall time is printed too). Bytes
 *    sent: the client's `lastResync.sentBytes` (payload), and what crossed a counting TCP proxy
 *    between client and staging (frames included). Then replica == primary (sha256 of the image
 *    files). Reference: `rsync --inplace --no-whole-file --ignore-times --stats` from the primary
 *    image into the copy of the replica taken before the changes (the same pair, the same
 *    change; --ignore-times because size and mtime say nothing about an image's blocks).
 *    Targets: bytesSentRatio ≤ 1.2, speedupVsRsync ≥ 5.
 * 2. Online verify of the synced pair: `druvaa verify --connect CLIENT --device disk0 --json`
 *    (wall time) vs `cmp` of the two image files; MB/s of volume compared. Target ≥ 0.7.
 * 3. Initial network sync of a fresh pair (the same primary, a sparse replica of zeros): the
 *    client started with `--initial-sync network`, timed from its start until in sync and
 *    drained, vs `nbdcopy --flush` of the same image into a fresh sparse file served by `nbdkit
 *    file` (without --flush printed as context). Target ≥ 0.7.
 *
 * The page cache is dropped before every timed run (root; --warm-cache to skip) so each reads
 * from the disk. The machine is shared and noisy: `--rounds N` repeats part 1 (a new change,
 * rsync again) and reports the median of each figure; parts 2 and 3 run once.
 *
 *   node_modules/.bin/bun bench/resync.ts [--quick] [--rounds 1] [--volume-mib 2048]
 *       [--wrl-mib 1024] [--changed-percent 1] [--seed N] [--parts resync,verify,initial]
 *       [--dir /var/tmp] [--warm-cache]
 *
 * A part whose druvaa feature the CLI does not know yet (`verify`, `--initial-sync`) has its
 * druvaa figures null with the reason (its reference is still measured). Ends with ONE line of JSON holding every figure and ratio; exit 1 if a
 * part failed. Cleans up its processes and files on every exit path, Ctrl-C included.
 */
import { mkdtempSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { selfCommand } from "../src/demo/processes.ts";
import { sha256File } from "../src/io/file-hash.ts";
import type { BenchSystem } from "./support/druvaa-system.ts";
import { fillRandomImages, protectedCopy } from "./support/images.ts";
import { Cleanup, flagValue, median, missingTools, round } from "./support/lib.ts";
import { initialSyncPart, resyncPart, startSyncedPair, verifyPart, type BenchContext } from "./support/resync-parts.ts";

const MiB = 1024 * 1024;
const quick = process.argv.includes("--quick");
const volumeBytes = Number(flagValue("volume-mib", quick ? "256" : "2048")) * MiB;
const wrlBytes = Number(flagValue("wrl-mib", quick ? "256" : "1024")) * MiB;
const changedPercent = Number(flagValue("changed-percent", "1"));
const seed = Number(flagValue("seed", String(Date.now() % 2 ** 31)));
const resyncRounds = Number(flagValue("rounds", "1"));
const parts = new Set(flagValue("parts", "resync,verify,initial").split(","));
const baseDir = resolve(flagValue("dir", "/var/tmp"));
const initialBytes = Math.min(64 * MiB, volumeBytes / 4);

// selfCommand() starts "this druvaa" as process.argv[1]: point that at the CLI, not this script.
process.argv[1] = resolve(import.meta.dir, "../src/cli.ts");

/** The figures the issue names, null when their part was not measured. */
const headline = {
  resync: ["resyncSeconds", "resyncBytesSent", "changedBytes", "bytesSentRatio", "rsyncSeconds", "rsyncBytesSent", "speedupVsRsync"],
  verify: ["verifyMBps", "cmpMBps", "verifyRatioVsCmp"],
  initial: ["initialSyncMBps", "nbdcopyMBps", "initialSyncRatioVsNbdcopy"],
} as const;
type Part = keyof typeof headline;

/** Numbers rounded for the report: integers stay, the rest keep 3 decimals. */
function rounded(figures: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(figures).map(([key, value]) => [key, typeof value === "number" && !Number.isInteger(value) ? round(value, 3) : value]));
}

/** Per key over rounds: the median of numbers, true only if every round said true, null if any was. */
function medianFigures(rounds: readonly object[]): Record<string, unknown> {
  const keys = Object.keys(rounds[0] ?? {});
  return Object.fromEntries(keys.map((key) => {
    const values = rounds.map((figures) => (figures as Record<string, unknown>)[key]);
    if (values.some((v) => v === null || v === undefined)) return [key, null];
    if (values.every((v) => typeof v === "boolean")) return [key, values.every(Boolean)];
    return [key, median(values as number[])];
  }));
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

async function main(): Promise<number> {
  const needed = [...(parts.has("resync") ? ["rsync"] : []), ...(parts.has("verify") ? ["cmp"] : []), ...(parts.has("initial") ? ["nbdkit", "nbdcopy"] : [])];
  const missing = missingTools(needed);
  if (missing.length > 0) {
    console.error(`bench/resync.ts needs ${missing.join(", ")} for its references (apt-get install rsync nbdkit libnbd-bin diffutils); nothing measured`);
    return 2;
  }
  const cleanup = new Cleanup();
  const workDir = mkdtempSync(join(baseDir, "druvaa-bench-resync-"));
  cleanup.removeAtExit(workDir);
  const say = (line: string) => console.log(line);
  const ctx: BenchContext = {
    workDir, device: "disk0", volumeBytes, wrlBytes, blockBytes: 4096, changedFraction: changedPercent / 100, seed,
    coldCache: !process.argv.includes("--warm-cache"), cacheDropFailures: new Set(), druvaa: selfCommand(), cleanup, say,
  };
  const figures: Partial<Record<Part, object>> = {};
  const unavailable: Partial<Record<Part, string>> = {};
  const errors: Partial<Record<Part | "pair", string>> = {};
  const fail = (part: Part | "pair", error: unknown, system?: BenchSystem) => {
    errors[part] = message(error);
    say(`${part}: FAILED: ${message(error)}${system ? `\n${system.logTails()}` : ""}`);
  };
  try {
    say(`work dir ${workDir}, volume ${volumeBytes / MiB} MiB, WRL ${wrlBytes / MiB} MiB, ${changedPercent}% of 4 KiB blocks changed, seed ${seed}, page cache ${ctx.coldCache ? "dropped before each timed run" : "kept (--warm-cache)"}`);
    const primary = join(workDir, "primary.img");
    const replica = join(workDir, "replica.img");
    const before = join(workDir, "replica-before-changes.img");
    const filling = performance.now();
    await fillRandomImages([primary], volumeBytes);
    await protectedCopy(primary, replica, volumeBytes); // the replica's head is kept swapped to its end
    say(`primary and replica written with the same ${volumeBytes / MiB} MiB of random data in ${((performance.now() - filling) / 1000).toFixed(1)} s`);

    if (parts.has("resync") || parts.has("verify")) {
      say("");
      say("== resync after a disconnect, vs rsync ==");
      let system: BenchSystem | undefined;
      try {
        system = await startSyncedPair(ctx, primary, replica, before, initialBytes);
        if (parts.has("resync")) {
          try {
            // Each round changes other blocks of the same pair; rsync left `before` equal to the
            // primary, so it is again "the replica before the changes" for the next round.
            const rounds: object[] = [];
            for (let round = 0; round < resyncRounds; round += 1) {
              if (resyncRounds > 1) say(`-- round ${round + 1} of ${resyncRounds}`);
              rounds.push(await resyncPart({ ...ctx, seed: ctx.seed + round * 7919 }, system, primary, replica, before));
            }
            figures.resync = medianFigures(rounds);
          } catch (error) {
            fail("resync", error, system);
          }
        }
        if (parts.has("verify")) {
          say("");
          say("== online verify, vs cmp ==");
          if (errors.resync !== undefined) unavailable.verify = "skipped: the resync part failed";
          else {
            try {
              const outcome = await verifyPart(ctx, system, primary, replica);
              figures.verify = outcome.figures;
              if (outcome.unavailable !== undefined) unavailable.verify = outcome.unavailable;
            } catch (error) {
              fail("verify", error, system);
            }
          }
        }
      } catch (error) {
        fail("pair", error, system);
      } finally {
        await system?.stop();
        for (const path of [replica, before, join(workDir, "pair")]) await rm(path, { recursive: true, force: true });
      }
    }

    if (parts.has("initial")) {
      say("");
      say("== initial network sync, vs nbdcopy ==");
      try {
        const outcome = await initialSyncPart(ctx, primary, await sha256File(primary, volumeBytes));
        figures.initial = outcome.figures;
        if (outcome.unavailable !== undefined) unavailable.initial = outcome.unavailable;
      } catch (error) {
        fail("initial", error);
      }
    }

    const result: Record<string, unknown> = { volumeBytes, blockBytes: ctx.blockBytes, changedPercent, seed, pageCacheDropped: ctx.coldCache && ctx.cacheDropFailures.size === 0 };
    for (const part of Object.keys(headline) as Part[]) {
      for (const key of headline[part]) result[key] = null;
      Object.assign(result, rounded(figures[part] ?? {}));
    }
    const value = (key: string) => (typeof result[key] === "number" ? (result[key] as number) : undefined);
    const meets = (key: string, test: (v: number) => boolean) => (value(key) === undefined ? null : test(value(key)!));
    result.targetsMet = {
      bytesSentRatioAtMost1_2: meets("bytesSentRatio", (v) => v <= 1.2),
      wireBytesRatioAtMost1_2: meets("wireBytesRatio", (v) => v <= 1.2),
      speedupVsRsyncAtLeast5: meets("speedupVsRsync", (v) => v >= 5),
      initialSyncRatioAtLeast0_7: meets("initialSyncRatioVsNbdcopy", (v) => v >= 0.7),
      verifyRatioAtLeast0_7: meets("verifyRatioVsCmp", (v) => v >= 0.7),
    };
    result.unavailable = unavailable;
    result.errors = errors;

    say("");
    const show = (key: string, digits = 2) => (value(key) === undefined ? "n/a" : value(key)!.toFixed(digits));
    say(`resync:  ${show("resyncSeconds")} s, ${result.resyncBytesSent ?? "n/a"} bytes sent (payload; ${result.resyncWireBytesUp ?? "n/a"} on the wire) for ${result.changedBytes ?? "n/a"} changed → ratio ${show("bytesSentRatio", 3)} (wire ${show("wireBytesRatio", 3)}; target ≤ 1.2)`);
    say(`rsync:   ${show("rsyncSeconds")} s, ${result.rsyncBytesSent ?? "n/a"} bytes sent → druvaa ${show("speedupVsRsync")}× faster (target ≥ 5)`);
    say(`initial: druvaa ${show("initialSyncMBps", 1)} MB/s vs nbdcopy ${show("nbdcopyMBps", 1)} MB/s → ratio ${show("initialSyncRatioVsNbdcopy", 3)} (target ≥ 0.7)${unavailable.initial ? ` [${unavailable.initial}]` : ""}`);
    say(`verify:  druvaa ${show("verifyMBps", 1)} MB/s vs cmp ${show("cmpMBps", 1)} MB/s → ratio ${show("verifyRatioVsCmp", 3)} (target ≥ 0.7)${unavailable.verify ? ` [${unavailable.verify}]` : ""}`);
    console.log(JSON.stringify(result));
    return Object.keys(errors).length > 0 ? 1 : 0;
  } finally {
    await cleanup.run();
  }
}

process.exitCode = await main();
