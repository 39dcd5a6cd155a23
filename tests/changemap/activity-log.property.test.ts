/**
 * Property: for any sequence of writes entering and leaving the activity log, time passing, and
 * power losses at any log write or flush (landed or not) on a simulated disk that drops, keeps or
 * tears every unsynced sector, every extent of every write whose enter() resolved and that had
 * not left is recovered by the next open, and the recovered table never holds more than slotsMax
 * ranges.
 *
 * Replay a failure with the seed it prints: CHANGEMAP_PROPERTY_SEED=<seed>; more runs:
 * CHANGEMAP_PROPERTY_RUNS=1000.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { ActivityLog, type LeaveActivity } from "../../src/changemap/activity-log.ts";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { options, regions, TestClock } from "./activity-helpers.ts";
import { CrashPlan, propertySeed, settleTurns } from "./helpers.ts";

type Op =
  | { kind: "enter"; region: number; at: number; lengthBytes: number; awaited: boolean }
  | { kind: "leave"; pick: number }
  | { kind: "time"; ms: number }
  | { kind: "crash"; operationsBeforeCrash: number; land: boolean };

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant("enter" as const), region: fc.nat({ max: 1 }), at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), lengthBytes: fc.integer({ min: 1, max: 64 * 2 }).map((sectors) => sectors * 64 * 1024), awaited: fc.boolean() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("leave" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("time" as const), ms: fc.integer({ min: 0, max: 3_000 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("crash" as const), operationsBeforeCrash: fc.nat({ max: 4 }), land: fc.boolean() }) },
);

describe("activity log: crash safety (property)", () => {
  test("after power loss at any write or flush, every extent of every write whose enter resolved and that had not left is recovered", async () => {
    const seed = propertySeed("activity log crash");
    const coverage = { crashes: 0, crashesDuringIo: 0, writesChecked: 0 };
    await fc.assert(
      fc.asyncProperty(fc.array(opArbitrary, { minLength: 1, maxLength: 60 }), fc.integer({ min: 2, max: 12 }), fc.nat(), async (ops, slotsMax, diskSeed) => {
        const disk = new SimDisk({ sizeBytes: ActivityLog.sizeBytes(), seed: diskSeed });
        const plan = new CrashPlan(disk);
        const clock = new TestClock();
        const open = () => ActivityLog.open(plan.device(), options(clock, { slotsMax, coldMs: 2_000 }));
        let log = await open();
        await log.start();
        /** Writes whose enter resolved and that have not left: they must survive a crash. */
        let inLog: { region: string; offsetBytes: number; lengthBytes: number; leave: LeaveActivity }[] = [];
        /** Bumped at every crash: an enter of a dead process that settles later is ignored. */
        let generation = 0;
        const crashAndCheck = async () => {
          await settleTurns();
          if (plan.crashed) coverage.crashesDuringIo += 1;
          else plan.crashNow();
          coverage.crashes += 1;
          generation += 1;
          const mustSurvive = inLog;
          inLog = [];
          plan.disarm();
          log = await open();
          const recovered = log.recovery.ranges;
          expect(log.recovery.clean).toBe(false);
          for (const write of mustSurvive) {
            coverage.writesChecked += 1;
            // The recovered ranges together (a write across two extents comes back as two adjacent ranges).
            const end = Math.min(write.offsetBytes + write.lengthBytes, regions.find((x) => x.name === write.region)!.volumeSizeBytes);
            let coveredTo = write.offsetBytes;
            for (const r of recovered.filter((range) => range.region === write.region).sort((a, b) => a.offsetBytes - b.offsetBytes)) {
              if (r.offsetBytes <= coveredTo) coveredTo = Math.max(coveredTo, r.offsetBytes + r.lengthBytes);
            }
            const covered = coveredTo >= end;
            if (!covered) throw new Error(`lost: ${JSON.stringify({ write: { ...write, leave: undefined }, recovered })}`);
          }
          expect(recovered.length).toBeLessThanOrEqual(slotsMax);
          await log.start();
          log.releaseRecovered();
        };
        let armed = false;
        for (const op of ops) {
          if (plan.crashed) {
            await crashAndCheck();
            armed = false;
          }
          if (op.kind === "enter") {
            const region = regions[op.region]!;
            const lengthBytes = Math.min(op.lengthBytes, region.volumeSizeBytes);
            const offsetBytes = Math.floor((op.at * (region.volumeSizeBytes - lengthBytes)) / 512) * 512;
            const entered = log.enter(region.name, offsetBytes, lengthBytes);
            const ofGeneration = generation;
            const record = (leave: LeaveActivity) => {
              if (ofGeneration === generation) inLog.push({ region: region.name, offsetBytes, lengthBytes, leave });
            };
            if (typeof entered === "function") record(entered);
            else {
              const settled = entered.then(record, () => undefined);
              // Awaited, but not forever: with every slot held by a write in the log it waits for a leave.
              if (op.awaited) await Promise.race([settled, settleTurns(3)]);
            }
          } else if (op.kind === "leave") {
            if (inLog.length === 0) continue;
            const [write] = inLog.splice(op.pick % inLog.length, 1);
            write!.leave();
          } else if (op.kind === "time") {
            clock.nowMs += op.ms;
          } else if (!armed) {
            // Power fails at the n-th log write or flush from now on, whichever op causes it.
            plan.arm(op.operationsBeforeCrash, op.land);
            armed = true;
          }
        }
        await settleTurns();
        await crashAndCheck();
      }),
      { seed, numRuns: Number(process.env.CHANGEMAP_PROPERTY_RUNS ?? 200) },
    );
    console.log(`[activity log crash] coverage ${JSON.stringify(coverage)}`);
    expect(coverage.crashes).toBeGreaterThan(100);
    expect(coverage.crashesDuringIo).toBeGreaterThan(20);
    expect(coverage.writesChecked).toBeGreaterThan(100);
  }, 120_000);
});
