/**
 * Property: for any sequence of appends, commits, tail advances, add-device, clean reopens and
 * power losses at any device operation (optionally with writes completing late and out of
 * order), on 1–3 small simulated disks plus a spare (so the log wraps often), recovery
 * yields exactly the records that were acknowledged (and not freed), in LSN order and with their
 * bytes, optionally followed by a prefix of the appends that were never acknowledged; never a
 * torn, corrupt or foreign record. Appends that do not fit get the typed "full" result, and
 * since every held record is read back intact after each crash, none was ever overwritten.
 *
 * Replay a failure with the seed it prints: WRL_PROPERTY_SEED=<seed>; soak with more runs:
 * WRL_PROPERTY_RUNS=1000.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { WriteLog } from "../../src/wrl/write-log.ts";
import type { WrlAppendResult, WrlRecord } from "../../src/wrl/types.ts";
import { setLogLevel } from "../../src/log.ts";
import { Random } from "../../src/io/random.ts";
import { CrashPlan, makeDisks, payloadFor, propertySeed, type CrashMode } from "./helpers.ts";

// Every simulated power loss makes the dead WriteLog log an error; that is expected here.
// Quiet while this file runs (injected I/O failures are logged as errors by design); restored
// afterwards, because every test file shares this process and its log level.
beforeAll(() => setLogLevel(-1));
afterAll(() => setLogLevel(3));

const KiB = 1024;

type Op =
  | { kind: "append"; sizesBytes: number[] }
  | { kind: "settle" }
  | { kind: "advance"; fraction: number; settleFirst: boolean }
  | { kind: "reopen" }
  | { kind: "add-device" }
  | { kind: "crash"; operationsBeforeCrash: number; mode: CrashMode };

/** Sizes from 512 B to 256 KiB, half of them small so batches hold many records. */
const sizeArbitrary = fc.oneof(fc.integer({ min: 512, max: 16 * KiB }), fc.integer({ min: 16 * KiB, max: 256 * KiB }));

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("append" as const), sizesBytes: fc.array(sizeArbitrary, { minLength: 1, maxLength: 8 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("settle" as const) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("advance" as const), fraction: fc.double({ min: 0.3, max: 1, noNaN: true }), settleFirst: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("reopen" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("add-device" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("crash" as const), operationsBeforeCrash: fc.integer({ min: 0, max: 12 }), mode: fc.constantFrom<CrashMode>("drop", "land", "skip-first-sector") }) },
);

interface Attempt {
  id: number;
  sizeBytes: number;
  outcome: "pending" | "acked" | "full" | "too-large" | "rejected";
  lsn?: number;
}

/** Everything the test knows the log must hold, and what it may hold. */
/** What the generated scenarios exercised, printed and checked so the property cannot go weak unnoticed. */
const coverage = { recoveries: 0, unacknowledgedRecovered: 0, fullResults: 0, scenariosThatWrapped: 0, devicesAdded: 0 };

class Model {
  /** lsn -> append id, for records acknowledged or recovered (durable, not yet freed). */
  committed = new Map<number, number>();
  attempts: Attempt[] = [];
  outstanding: Promise<unknown>[] = [];
  tailAcked = 0;
  tailRequestedMax = 0;
  nextId = 1;
  ackedBytes = 0;
  sizes = new Map<number, number>();
}

async function readAll(wrl: WriteLog): Promise<WrlRecord[]> {
  const info = wrl.info();
  const out: WrlRecord[] = [];
  let next = info.tailLsn + 1;
  while (next <= info.headLsn) {
    const batch = await wrl.read(next);
    expect(batch.length).toBeGreaterThan(0);
    out.push(...batch);
    next = batch[batch.length - 1]!.lsn + 1;
  }
  return out;
}

/** Reopens after a crash or close and checks the recovered log against the model. */
async function recoverAndCheck(plan: CrashPlan, model: Model): Promise<WriteLog> {
  await Promise.allSettled(model.outstanding);
  model.outstanding = [];
  let wrl: WriteLog;
  for (;;) {
    try {
      // A resolver rather than a list: whether an interrupted add-device made it into the
      // superblock is for recovery to say.
      const devices = plan.devices();
      wrl = await WriteLog.open({ primary: devices[0]!, resolve: async (entry) => devices[entry.index]! });
      break;
    } catch (error) {
      // Power lost during recovery itself (its superblock write): recover again.
      if (!plan.crashed) throw error;
    }
  }
  const info = wrl.info();
  expect(info.tailLsn).toBeGreaterThanOrEqual(model.tailAcked);
  expect(info.tailLsn).toBeLessThanOrEqual(Math.max(model.tailAcked, model.tailRequestedMax));
  const records = await readAll(wrl);
  expect(records.length).toBe(info.headLsn - info.tailLsn);
  const committedLsns = [...model.committed.keys()].filter((lsn) => lsn > info.tailLsn).sort((a, b) => a - b);
  // Acknowledged and recovered records: all there, in order, byte for byte.
  expect(records.slice(0, committedLsns.length).map((r) => [r.lsn, r.seq])).toEqual(committedLsns.map((lsn) => [lsn, model.committed.get(lsn)!]));
  // Then at most a prefix of the appends that were never acknowledged, in call order.
  const unacknowledged = model.attempts.filter((a) => a.outcome === "rejected").map((a) => a.id);
  const extra = records.slice(committedLsns.length).map((r) => r.seq);
  coverage.recoveries += 1;
  coverage.unacknowledgedRecovered += extra.length;
  coverage.fullResults += model.attempts.filter((a) => a.outcome === "full").length;
  expect(extra).toEqual(unacknowledged.slice(0, extra.length));
  for (const record of records) {
    const sizeBytes = model.sizes.get(record.seq)!;
    expect(record.data.length).toBe(sizeBytes);
    expect(Buffer.compare(record.data, payloadFor(record.seq, sizeBytes))).toBe(0);
    expect(record.offset).toBe(record.seq * 4096);
  }
  // The recovered records are durable now: later crashes must keep them.
  model.committed = new Map(records.map((r) => [r.lsn, r.seq]));
  model.attempts = [];
  model.tailAcked = model.tailRequestedMax = info.tailLsn;
  expect(info.usedBytes).toBeLessThanOrEqual(info.sizeBytes);
  return wrl;
}

/** `deviceSizesBytes`: the devices the log is created on, then one spare for add-device. */
async function runScenario(seed: number, deviceSizesBytes: number[], ops: Op[], asyncWrites: boolean): Promise<void> {
  const plan = new CrashPlan(makeDisks(seed, deviceSizesBytes));
  if (asyncWrites) plan.writeDelays = new Random(seed);
  const initialCount = deviceSizesBytes.length - 1;
  let wrl = await WriteLog.create(plan.devices().slice(0, initialCount), { uuid: "00000000-0000-4000-8000-000000000001" });
  const model = new Model();
  for (const op of ops) {
    switch (op.kind) {
      case "append":
        for (const sizeBytes of op.sizesBytes) issueAppend(wrl, model, sizeBytes);
        break;
      case "settle":
        await Promise.allSettled(model.outstanding);
        model.outstanding = [];
        break;
      case "advance": {
        if (op.settleFirst) await Promise.allSettled(model.outstanding);
        const { tailLsn, headLsn } = wrl.info();
        const lsn = tailLsn + Math.floor(op.fraction * (headLsn - tailLsn));
        model.tailRequestedMax = Math.max(model.tailRequestedMax, lsn);
        await wrl.advanceTail(lsn).then(
          () => {
            model.tailAcked = Math.max(model.tailAcked, lsn);
          },
          () => undefined,
        );
        break;
      }
      case "reopen":
        // A clean shutdown, unless an armed crash strikes during close() or the reopen.
        await Promise.allSettled(model.outstanding);
        await wrl.close().catch((error: unknown) => {
          if (!plan.crashed) throw error;
        });
        wrl = await recoverAndCheck(plan, model);
        break;
      case "crash":
        if (!plan.armed) plan.arm(op.operationsBeforeCrash, op.mode);
        break;
      case "add-device": {
        const memberCount = wrl.info().devices.length;
        const spare = plan.device(memberCount);
        if (spare !== undefined) {
          await wrl.addDevice(spare).then(() => coverage.devicesAdded++, () => undefined);
        }
        break;
      }
    }
    if (plan.crashed || (op.kind === "settle" && plan.armed)) {
      plan.crashNow();
      wrl = await recoverAndCheck(plan, model);
    }
  }
  plan.crashNow();
  wrl = await recoverAndCheck(plan, model);
  if (model.ackedBytes > wrl.info().sizeBytes) coverage.scenariosThatWrapped += 1;
  await wrl.close();
}

function issueAppend(wrl: WriteLog, model: Model, sizeBytes: number): void {
  const id = model.nextId++;
  model.sizes.set(id, sizeBytes);
  const attempt: Attempt = { id, sizeBytes, outcome: "pending" };
  model.attempts.push(attempt);
  const promise = wrl.append({ epoch: id, device: id % 2 === 0 ? 3 : "vol-a", seq: id, offset: id * 4096, data: payloadFor(id, sizeBytes) }).then(
    (result: WrlAppendResult) => {
      if (result.ok) {
        attempt.outcome = "acked";
        attempt.lsn = result.lsn;
        model.committed.set(result.lsn, id);
        model.ackedBytes += sizeBytes;
      } else {
        attempt.outcome = result.reason;
      }
    },
    () => {
      attempt.outcome = "rejected";
    },
  );
  model.outstanding.push(promise);
}

describe("WRL crash recovery (property)", () => {
  test("recovery yields exactly the acknowledged records, then a prefix of the rest", async () => {
    const seed = propertySeed("wrl crash recovery");
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 0x7fff_ffff }),
        fc.array(fc.integer({ min: 2048, max: 4096 }).map((sectors) => sectors * 512), { minLength: 2, maxLength: 4 }),
        fc.array(opArbitrary, { minLength: 20, maxLength: 60, size: "max" }),
        fc.boolean(),
        async (diskSeed, sizes, ops, asyncWrites) => runScenario(diskSeed, sizes, ops, asyncWrites),
      ),
      { seed, numRuns: Number(process.env.WRL_PROPERTY_RUNS ?? 150) },
    );
    console.log(`[wrl crash recovery] coverage: ${JSON.stringify(coverage)}`);
    expect(coverage.scenariosThatWrapped).toBeGreaterThan(0);
    expect(coverage.fullResults).toBeGreaterThan(0);
    expect(coverage.unacknowledgedRecovered).toBeGreaterThan(0);
    expect(coverage.devicesAdded).toBeGreaterThan(0);
  }, 60_000);
});
