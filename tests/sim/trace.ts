/**
 * Generated traces for the simulation: which writes the application issues (overlapping often:
 * small devices, 1 KiB-aligned ranges, a few hot offsets; one in ten a WRITE_ZEROES), when frames
 * are delivered and in which interleaving, when simulated time passes, and the faults: dropped
 * connections, staging killed or powered off (after 0–3 event-loop turns, so the power fails
 * between a write and its flush or mid-batch; sometimes again during the recovery), the replica
 * powered off (also in the middle of an apply), and I/O errors on the WRL or a replica device.
 * The WRL is 1 MiB (the smallest a WRL device may be) and writes reach 256 KiB, so it wraps and
 * sometimes fills up (WRL_FULL) in a good share of runs.
 */
import fc from "fast-check";
import { Random } from "../../src/io/random.ts";
import { turn } from "./clock.ts";
import { crashClient } from "./final-check.ts";
import { World, type Broken, type WorldStats } from "./world.ts";

const KiB = 1024;
/** Offsets and lengths are multiples of this (two sectors). */
export const unitBytes = 1 * KiB;

/** One write of an issue step (a device index, taken modulo the number of devices). */
export interface IssueSpec {
  device: number;
  offsetUnits: number;
  lengthUnits: number;
  zero: boolean;
}

export type Step =
  /** 1–4 writes issued at once, as an application with a queue depth does. */
  | { kind: "issue"; writes: IssueSpec[] }
  | { kind: "deliver"; count: number; pick: number; turnsAfter: number }
  | { kind: "settle" }
  | { kind: "tick"; ms: number }
  /** With againAfterTurns, the power fails again that many turns into the restart (during recovery). */
  | { kind: "crash-staging"; turnsBefore: number; againAfterTurns: number | undefined }
  | { kind: "drop-link"; which: number }
  /** SIGKILL of staging: no power loss, unflushed writes survive in the page cache. */
  | { kind: "restart-staging" }
  /** An I/O error at the next write or flush of the WRL (then staging is restarted, as an operator would). */
  | { kind: "wrl-io-error"; flush: boolean }
  /** An I/O error at the next write or flush of one replica device. */
  | { kind: "replica-io-error"; device: number; flush: boolean }
  /** With midApply, shipments are delivered until the replica is applying one, then it crashes. */
  | { kind: "crash-replica"; turnsBefore: number; midApply: boolean; pick: number }
  /** SIGKILL (or, with power, a power loss of its host) of a client and its restart on the same disks (resync traces only). */
  | { kind: "crash-client"; which: number; turnsBefore: number; power: boolean };

export interface Trace {
  seed: number;
  clients: number;
  deviceSizesBytes: number[];
  /** The relay's shipment bounds and window: small ones cut the WRL into many shipments. */
  shipmentRecordsMax: number;
  shipmentBytesMax: number;
  relayWindowMax: number;
  steps: Step[];
  /** Resync traces: clients with change maps (disconnected mode) and a replica WRL of this size. */
  /** Coalescing (spans merged, applied whole through the RS-WRL), zstd shipments, WRL payloads encrypted at rest. */
  resync?: { rsWrlSizeBytes: number; coalesce?: { lagBytesMin: number; spanBytesMax: number; partBytesMax: number } | undefined; compress?: boolean; encrypt?: boolean };
}

const issueArbitrary: fc.Arbitrary<IssueSpec> = fc.record({
  device: fc.nat(5),
  offsetUnits: fc.oneof(fc.constantFrom(0, 4, 8, 16, 24), fc.nat(255)),
  lengthUnits: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 8 }) }, { weight: 3, arbitrary: fc.integer({ min: 8, max: 64 }) }, { weight: 1, arbitrary: fc.integer({ min: 64, max: 256 }) }),
  // One in ten is a WRITE_ZEROES: a ZERO record without payload all the way to the replica.
  zero: fc.nat(9).map((n) => n === 0),
});

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  { weight: 7, arbitrary: fc.record({ kind: fc.constant("issue" as const), writes: fc.array(issueArbitrary, { minLength: 1, maxLength: 4 }) }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("deliver" as const), count: fc.integer({ min: 1, max: 8 }), pick: fc.nat(), turnsAfter: fc.nat(2) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("settle" as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("tick" as const), ms: fc.constantFrom(100, 1_000, 10_000) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("crash-staging" as const), turnsBefore: fc.nat(3), againAfterTurns: fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.nat(6) }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("drop-link" as const), which: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("restart-staging" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("wrl-io-error" as const), flush: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("replica-io-error" as const), device: fc.nat(2), flush: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("crash-replica" as const), turnsBefore: fc.nat(3), midApply: fc.boolean(), pick: fc.nat() }) },
);

const crashClientArbitrary: fc.Arbitrary<Step> = fc.record({ kind: fc.constant("crash-client" as const), which: fc.nat(1), turnsBefore: fc.nat(3), power: fc.boolean() });

/**
 * Traces of the replay property, or (resync) of the disconnected-mode property: one client (a
 * consistency group of one host) with a change map, client crashes, and a replica WRL.
 */
export function traceArbitrary(stepsMax = 60, resync = false): fc.Arbitrary<Trace> {
  // Half the resync traces have client crashes (after which the model checks only the end state).
  const crashy = fc.oneof({ weight: 30, arbitrary: stepArbitrary }, { weight: 1, arbitrary: crashClientArbitrary });
  const steps = resync ? fc.oneof(fc.array(stepArbitrary, { minLength: 10, maxLength: stepsMax, size: "max" }), fc.array(crashy, { minLength: 10, maxLength: stepsMax, size: "max" })) : fc.array(stepArbitrary, { minLength: 10, maxLength: stepsMax, size: "max" });
  return fc.integer({ min: 1, max: 3 }).chain((devices) =>
    fc.record({
      seed: fc.integer({ min: 1, max: 2 ** 30 }),
      clients: resync ? fc.constant(1) : fc.integer({ min: 1, max: Math.min(2, devices) }),
      deviceSizesBytes: fc.array(fc.constantFrom(64 * KiB, 128 * KiB, 256 * KiB), { minLength: devices, maxLength: devices }),
      shipmentRecordsMax: fc.constantFrom(1, 4, 16),
      shipmentBytesMax: fc.constantFrom(16 * KiB, 64 * KiB, 1024 * KiB),
      relayWindowMax: fc.integer({ min: 1, max: 4 }),
      steps,
      ...(resync ? { resync: fc.record({ rsWrlSizeBytes: fc.constant(4 * 1024 * KiB), coalesce: fc.oneof({ weight: 1, arbitrary: fc.constant(undefined) }, { weight: 2, arbitrary: fc.record({ lagBytesMin: fc.constantFrom(0, 16 * KiB), spanBytesMax: fc.constantFrom(32 * KiB, 256 * KiB), partBytesMax: fc.constantFrom(8 * KiB, 8 * KiB, 64 * KiB, 8 * 1024 * KiB) }) }), compress: fc.boolean(), encrypt: fc.boolean() }) } : {}),
    }),
  );
}

export interface TraceResult {
  problem: string | undefined;
  stats: WorldStats;
  wrlSizeBytes: number;
  writes: number;
  /** What happened, in enough detail to tell two runs apart (they must not differ: replay). */
  fingerprint: string;
  /** resyncEnd messages sent (resync sets completed, or resent). */
  resyncEnds: number;
}

/** Runs one trace on a fresh world, then drains with faults off and checks the end state. */
export async function runTrace(trace: Trace, broken?: Broken): Promise<TraceResult> {
  const world = await World.create({
    seed: trace.seed,
    clients: trace.clients,
    deviceSizesBytes: trace.deviceSizesBytes,
    shipmentLimits: { payloadBytesMax: trace.shipmentBytesMax, recordsMax: trace.shipmentRecordsMax, headerBytesMax: 60 * KiB },
    relayWindowMax: trace.relayWindowMax,
    ...(broken === undefined ? {} : { broken }),
    ...(trace.resync === undefined ? {} : { changeMap: true, ...(broken === "no-rs-wrl" ? {} : { rsWrlSizeBytes: trace.resync.rsWrlSizeBytes }) }),
    ...(trace.resync?.coalesce === undefined ? {} : { coalesce: { mode: "auto" as const, ...trace.resync.coalesce } }),
    // zstd level 1 on the event loop (deterministic), and the staging WRL encrypting payloads at rest.
    ...(trace.resync?.compress === true ? { compression: { mode: "fixed" as const, level: 1, inline: true } } : {}),
    ...(trace.resync?.encrypt === true ? { payloadKey: new Uint8Array(32).fill(0x5a) } : {}),
  });
  const result = (problem: string | undefined): TraceResult => ({ problem, stats: world.stats, wrlSizeBytes: world.options.wrlSizeBytes, writes: world.history.writes.length, fingerprint: world.fingerprint(), resyncEnds: world.history.resyncEndsSent });
  try {
    for (const [index, step] of trace.steps.entries()) {
      await runStep(world, step);
      const problem = world.problem();
      if (problem !== undefined) return result(`after step ${index} ${JSON.stringify(step)}:\n${problem}`);
    }
    await world.drain();
    const drained = world.problem();
    return result(drained === undefined ? world.finalProblem() : `during the final drain (faults off):\n${drained}`);
  } catch (error) {
    return result(`the run failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  }
}

async function runStep(world: World, step: Step): Promise<void> {
  switch (step.kind) {
    case "issue":
      for (const write of step.writes) {
        const spec = world.history.devices[write.device % world.history.devices.length]!;
        const sizeUnits = spec.sizeBytes / unitBytes;
        const lengthUnits = Math.min(write.lengthUnits, sizeUnits);
        const offsetUnits = write.offsetUnits % (sizeUnits - lengthUnits + 1);
        world.issue(spec.name, offsetUnits * unitBytes, lengthUnits * unitBytes, write.zero);
      }
      return;
    case "deliver":
      await world.deliver(step.count, new Random(step.pick), step.turnsAfter);
      return;
    case "settle":
      await world.settle();
      return;
    case "tick":
      await world.tick(step.ms);
      return;
    case "crash-staging":
      for (let index = 0; index < step.turnsBefore; index += 1) await turn();
      await world.crashStaging(step.againAfterTurns);
      return;
    case "drop-link":
      world.dropLink(step.which);
      return;
    case "restart-staging":
      await world.restartStaging();
      return;
    case "wrl-io-error":
      world.failWrl(step.flush);
      return;
    case "replica-io-error":
      world.failReplica(step.device, step.flush);
      return;
    case "crash-replica":
      if (step.midApply) {
        await world.crashReplicaMidApply(step.turnsBefore, new Random(step.pick));
        return;
      }
      for (let index = 0; index < step.turnsBefore; index += 1) await turn();
      await world.crashReplica();
      return;
    case "crash-client":
      for (let index = 0; index < step.turnsBefore; index += 1) await turn();
      await crashClient(world, step.which % world.clients.length, step.power);
      return;
  }
}
