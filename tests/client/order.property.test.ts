/**
 * Property: whatever the interleaving of NBD writes, staging acks and link drops, the client
 *   - leaves the primary equal to the writes applied one after another in issue order (overlapping
 *     writes are serialised in issue order; the others commute),
 *   - gives staging a log that, replayed in order, produces that same image (every byte on the
 *     primary went through staging), even with writes logged twice around a reconnect,
 *   - logs a write that completed before another was issued ahead of that other (the WRL order
 *     is a linear extension of "depends on"), with a smaller epoch.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { FakeSender, harness, settle } from "./core-helpers.ts";

const sectorBytes = 512;
const deviceSectors = 64;

type Action = { kind: "issue"; sector: number; sectors: number } | { kind: "ack"; pick: number } | { kind: "drop"; logMask: number };

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("issue" as const), sector: fc.nat(deviceSectors - 1), sectors: fc.integer({ min: 1, max: 8 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("ack" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("drop" as const), logMask: fc.nat() }) },
);

interface LogEntry {
  writeId: number;
  offset: number;
  data: Uint8Array;
  acked: boolean;
}

async function runTrace(actions: Action[]): Promise<void> {
  const h = harness({ sizes: [deviceSectors * sectorBytes] });
  const exp = h.exports.get("disk0")!;
  let link = new FakeSender();
  h.core.linkUp(link);
  const log: LogEntry[] = [];
  const acked = new Set<number>();
  const issued: { offset: number; data: Uint8Array; epoch?: number; completedBefore: number[]; promise: Promise<void> }[] = [];
  const completed: number[] = [];
  const writeIdOf = (payload: Uint8Array) => payload[0]! - 1; // fill byte = id + 1

  const unacked = () => {
    const seen = new Set<number>();
    return link.sent.filter((s) => !acked.has(s.message.reqId) && !seen.has(s.message.reqId) && seen.add(s.message.reqId));
  };
  const ackOne = (index: number) => {
    const s = unacked()[index]!;
    acked.add(s.message.reqId);
    log.push({ writeId: writeIdOf(s.payload!), offset: s.message.offset, data: s.payload!, acked: true });
    h.ack(s.message.reqId);
  };

  for (const step of actions) {
    if (step.kind === "issue") {
      if (issued.length >= 250) continue;
      const id = issued.length;
      const sectors = Math.min(step.sectors, deviceSectors - step.sector);
      const data = new Uint8Array(sectors * sectorBytes).fill(id + 1);
      const entry = { offset: step.sector * sectorBytes, data, completedBefore: [...completed], promise: Promise.resolve() };
      entry.promise = exp.write(entry.offset, data, false).then(() => void completed.push(id));
      issued.push(entry);
    } else if (step.kind === "ack") {
      const candidates = unacked();
      if (candidates.length > 0) ackOne(step.pick % candidates.length);
    } else {
      // The connection drops; staging may have logged some writes whose acks are lost.
      for (const [index, s] of unacked().entries()) {
        if ((step.logMask >> index) & 1) log.push({ writeId: writeIdOf(s.payload!), offset: s.message.offset, data: s.payload!, acked: false });
      }
      h.core.linkDown();
      link = new FakeSender();
      h.core.linkUp(link);
    }
    await settle();
  }
  // Staging catches up with everything.
  while (completed.length < issued.length) {
    const candidates = unacked();
    expect(candidates.length).toBeGreaterThan(0);
    ackOne(0);
    await settle();
  }
  await Promise.all(issued.map((w) => w.promise));

  const model = new Uint8Array(deviceSectors * sectorBytes);
  for (const w of issued) model.set(w.data, w.offset);
  expect(h.devices[0]!.snapshot()).toEqual(model);
  const replayed = new Uint8Array(deviceSectors * sectorBytes);
  for (const entry of log) replayed.set(entry.data, entry.offset);
  expect(replayed).toEqual(model);

  const ackedPosition = new Map<number, number>();
  const firstPosition = new Map<number, number>();
  for (const [position, entry] of log.entries()) {
    if (!firstPosition.has(entry.writeId)) firstPosition.set(entry.writeId, position);
    if (entry.acked) ackedPosition.set(entry.writeId, position);
  }
  const epochOf = new Map<number, number>();
  for (const s of link.sent) epochOf.set(writeIdOf(s.payload!), s.message.epoch);
  for (const [b, write] of issued.entries()) {
    for (const a of write.completedBefore) {
      expect(ackedPosition.get(a)!).toBeLessThan(firstPosition.get(b)!);
    }
  }
  // Epochs: every write was sent on some link; compare the ones the last link carried.
  for (const [b, write] of issued.entries()) {
    for (const a of write.completedBefore) {
      const ea = epochOf.get(a);
      const eb = epochOf.get(b);
      if (ea !== undefined && eb !== undefined) expect(ea).toBeLessThan(eb);
    }
  }
}

describe("client write ordering (property)", () => {
  test("primary = issue-order image = staging log replay; dependencies logged first", async () => {
    const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
    console.log(`client order property seed=${seed} (replay: FC_SEED=${seed} bun test tests/client/order.property.test.ts)`);
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 120 }), (actions) => runTrace(actions)),
      { seed, numRuns: Number(process.env.CLIENT_PROPERTY_RUNS ?? 100) },
    );
  });
});
