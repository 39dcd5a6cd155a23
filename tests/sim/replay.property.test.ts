/**
 * The design card's property: WRL replay preserves partial write order.
 *
 * fast-check generates traces (trace.ts) of concurrent writes with overlapping ranges over 1–3
 * devices and 1–2 clients, interleavings of every message, time passing, dropped connections,
 * staging killed, power losses at staging (also during its recovery) and at the replica — the
 * simulated disks dropping, keeping or tearing unsynced sectors — and I/O errors on the WRL and
 * the replica devices. The real ClientCore (epochs, overlap gate,
 * resend), StagingCore with a real WriteLog (group commit, recovery, a 1 MiB log that wraps),
 * Relay and ReplicaCore process them in one process (world.ts). At every consistent point the
 * replica claims, its devices must equal the image of a dependency-closed set of writes applied in
 * the primary's order for overlaps (history.ts); once faults stop, everything must drain, every
 * write acknowledged to the application must be at the replica, and replica == primary.
 *
 * Two deliberately broken variants must make the property fail, with a fixed seed: a replica
 * that applies a shipment's records in reverse, and a client that completes a write before
 * staging has made it durable.
 *
 * Replay a failure with the seed it prints: FC_SEED=<seed> node_modules/.bin/bun test
 * tests/sim/replay.property.test.ts; more runs: FC_RUNS=2000.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { setLogLevel } from "../../src/log.ts";
import { runTrace, traceArbitrary, type Trace } from "./trace.ts";
import type { Broken } from "./world.ts";

// The cores log every crash, reconnect and refusal; thousands of them are expected here.
beforeAll(() => setLogLevel(-1));
afterAll(() => setLogLevel(3));

const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
const numRuns = Number(process.env.FC_RUNS ?? 200);

describe("WRL replay preserves partial write order (deterministic simulation)", () => {
  test("every replica state reached is the image of a dependency-closed set of writes in primary order; nothing acknowledged is lost", async () => {
    console.log(`sim property seed=${seed} runs=${numRuns} (replay: FC_SEED=${seed} node_modules/.bin/bun test tests/sim/replay.property.test.ts)`);
    const coverage = { runs: 0, writes: 0, checks: 0, deferredChecks: 0, inconsistentUntilRedelivery: 0, stagingCrashes: 0, stagingRestarts: 0, injectedIoErrors: 0, recoveryCrashes: 0, replicaCrashes: 0, droppedLinks: 0, failedWrites: 0, twoClients: 0, wrapped: 0 };
    let failure: string | undefined;
    await fc.assert(
      fc.asyncProperty(traceArbitrary(), async (trace) => {
        const result = await runTrace(trace);
        coverage.runs += 1;
        coverage.writes += result.writes;
        for (const key of ["checks", "deferredChecks", "inconsistentUntilRedelivery", "stagingCrashes", "stagingRestarts", "injectedIoErrors", "recoveryCrashes", "replicaCrashes", "droppedLinks", "failedWrites"] as const) coverage[key] += result.stats[key];
        if (trace.clients === 2) coverage.twoClients += 1;
        if (result.stats.appendedBytes > result.wrlSizeBytes) coverage.wrapped += 1;
        if (result.problem !== undefined) {
          failure = result.problem;
          throw new Error(result.problem);
        }
      }),
      { seed, numRuns, interruptAfterTimeLimit: 100_000 },
    ).catch((error: unknown) => {
      throw new Error(`${failure ?? String(error)}\n\n${String(error)}\n(replay: FC_SEED=${seed})`);
    });
    console.log(`sim property coverage: ${JSON.stringify(coverage)}`);
    // The property must not go weak unnoticed: the runs reached what they are meant to.
    expect(coverage.runs).toBeGreaterThanOrEqual(Math.min(numRuns, 20));
    expect(coverage.checks).toBeGreaterThan(coverage.runs);
    for (const key of ["deferredChecks", "stagingCrashes", "stagingRestarts", "injectedIoErrors", "recoveryCrashes", "replicaCrashes", "droppedLinks", "twoClients", "wrapped"] as const) expect(coverage[key]).toBeGreaterThan(0);
  }, 120_000);

  test("a run replays exactly: the same trace gives the same history, consistent points and replica bytes", async () => {
    const traces = fc.sample(traceArbitrary(), { seed: 777, numRuns: 5 });
    for (const trace of traces) {
      const first = await runTrace(trace);
      const second = await runTrace(trace);
      expect(first.problem).toBeUndefined();
      expect(second.fingerprint).toBe(first.fingerprint);
    }
  }, 60_000);

  // Fixed seeds, so these are deterministic: fast-check must find a counterexample.
  const brokenCases: { broken: Broken; seed: number; expected: RegExp }[] = [
    { broken: "reverse-apply", seed: 4242, expected: /differs from the (image of the applied writes in primary order|primary)/ },
    { broken: "early-complete", seed: 4243, expected: /not dependency-closed|completed to the application but never reached the replica/ },
  ];
  for (const { broken, seed: brokenSeed, expected } of brokenCases) {
    test(`a deliberately broken variant (${broken}) makes the property fail`, async () => {
      const result = await fc.check(
        fc.asyncProperty(traceArbitrary(), async (trace: Trace) => {
          const outcome = await runTrace(trace, broken);
          if (outcome.problem !== undefined) throw new Error(outcome.problem);
        }),
        { seed: brokenSeed, numRuns: 100, endOnFailure: true },
      );
      expect(result.failed).toBe(true);
      const counterexample = result.counterexample![0];
      const again = await runTrace(counterexample, broken);
      expect(again.problem).toMatch(expected);
      // The same trace passes with the real code: the failure is the broken variant's doing.
      expect((await runTrace(counterexample)).problem).toBeUndefined();
    }, 60_000);
  }
});
