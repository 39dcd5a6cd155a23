/**
 * Hand-written runs of the in-process simulation (the real client, staging, WRL, relay and
 * replica cores; see world.ts), each steering the delivery of frames to one situation the
 * property test reaches only by chance:
 *   - two clients on one WRL, a write on one client that depends on a write of the other;
 *   - overlapping and non-overlapping writes issued together, replicated in one shipment;
 *   - staging losing power after acknowledging a write and before relaying it;
 *   - a write whose ack was lost with the connection, resent into a full WRL;
 *   - the WRL failing with a record written but not flushed (IO_ERROR to the client).
 * The two deliberately broken variants (world.ts Broken) run the first two scenarios too and
 * must be caught, which shows those scenarios can fail.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { setLogLevel } from "../../src/log.ts";
import { World, type Broken } from "./world.ts";

beforeAll(() => setLogLevel(Number(process.env.LVL ?? -1)));
afterAll(() => setLogLevel(3));

const KiB = 1024;
const clientLink = (index: number) => (label: string) => label.startsWith(`client-${index}->`);
const anyClientLink = (label: string) => label.startsWith("client-");

async function crossClientRun(broken?: Broken): Promise<{ world: World; a: number; b: number }> {
  // One record per shipment: every LSN is a consistent point of its own.
  const world = await World.create({ seed: 11, clients: 2, deviceSizesBytes: [64 * KiB, 64 * KiB], shipmentLimits: { payloadBytesMax: 64 * KiB, recordsMax: 1, headerBytesMax: 60 * KiB }, ...(broken === undefined ? {} : { broken }) });
  const a = world.issue("d0", 0, 8 * KiB); // client 0
  // The application waits for a to complete, delivering client 0's frames one at a time.
  await world.settle();
  while (a.completedAt === undefined) {
    expect(await world.pump(clientLink(0), 1)).toBeGreaterThan(0);
  }
  const b = world.issue("d1", 0, 8 * KiB); // client 1: depends on a
  await world.pump(clientLink(1));
  // Everything else, one frame at a time: each shipment is applied before the next arrives (the
  // replica would otherwise apply queued shipments as one group, with one consistent point).
  await world.pump();
  await world.drain();
  return { world, a: a.id, b: b.id };
}

async function overlapRun(broken?: Broken): Promise<World> {
  const world = await World.create({ seed: 12, clients: 1, deviceSizesBytes: [128 * KiB], shipmentLimits: { payloadBytesMax: 1024 * KiB, recordsMax: 16, headerBytesMax: 60 * KiB }, ...(broken === undefined ? {} : { broken }) });
  const a = world.issue("d0", 0, 16 * KiB);
  const c = world.issue("d0", 64 * KiB, 16 * KiB);
  const b = world.issue("d0", 8 * KiB, 16 * KiB); // overlaps a: waits in the overlap gate
  await world.pump(anyClientLink);
  expect([a, b, c].every((w) => w.completedAt !== undefined && w.failed === undefined)).toBe(true);
  // The relay shipped a and c as soon as they were durable; drop that connection, so the next
  // session resumes at LSN 1 and ships all three records at once.
  expect(world.replica.core.appliedLsn(world.staging.wrl.info().uuid)).toBe(0);
  world.replica.relayConnection()!.abort();
  await world.tick(1_000);
  // a and c were in flight together; b was issued while a was, but got its epoch after a completed.
  expect(c.epoch).toBe(a.epoch!);
  expect(b.epoch!).toBeGreaterThan(a.epoch!);
  await world.drain();
  // All three in one shipment: one consistent point.
  expect(world.consistentPoints.map((point) => point.writeIds)).toEqual([[a.id, b.id, c.id].sort((x, y) => x - y)]);
  return world;
}

describe("simulation scenarios", () => {
  test("two clients, one WRL: a write that depends on another client's write is never applied without it", async () => {
    const { world, a, b } = await crossClientRun();
    expect(world.problem()).toBeUndefined();
    expect(world.finalProblem()).toBeUndefined();
    expect(world.consistentPoints.map((point) => point.writeIds)).toEqual([[a], [a, b]]);
    // Each client has its own epoch counter, so the epochs do not say that b depends on a: the
    // WRL order (b was sent only after a was durable in it) is what carries the dependency.
    const [wa, wb] = [world.history.writes[a]!, world.history.writes[b]!];
    expect(wb.epoch).toBe(wa.epoch!);
  }, 30_000);

  test("broken client (completes before staging's ack): the cross-client dependency is violated, and the check says so", async () => {
    const { world } = await crossClientRun("early-complete");
    expect(world.problem()).toContain("not dependency-closed");
  }, 30_000);

  test("overlapping writes issued together reach the replica in the primary's order, in one shipment", async () => {
    const world = await overlapRun();
    expect(world.problem()).toBeUndefined();
    expect(world.finalProblem()).toBeUndefined();
    const [a, , b] = world.history.writes; // issued a, c, b
    const replica = world.replicaDisks.get("d0")!.snapshot();
    expect(replica.subarray(0, 8 * KiB)).toEqual(a!.data.subarray(0, 8 * KiB));
    expect(replica.subarray(8 * KiB, 24 * KiB)).toEqual(b!.data);
  }, 30_000);

  test("broken replica (applies a shipment's records in reverse): the overlap comes out wrong, and the check says so", async () => {
    const world = await overlapRun("reverse-apply");
    expect(world.problem()).toContain("differs from the image of the applied writes in primary order");
    expect(world.finalProblem()).toContain("differs from the primary");
  }, 30_000);

  test("staging loses power after acknowledging a write and before relaying it: recovery keeps it, the replica gets it", async () => {
    const world = await World.create({ seed: 13, clients: 1, deviceSizesBytes: [128 * KiB] });
    const a = world.issue("d0", 0, 32 * KiB);
    await world.pump(anyClientLink);
    expect(a.completedAt).toBeDefined();
    expect(a.failed).toBeUndefined();
    // b is on its way to staging; the relay's shipment of a is on its way to the replica.
    const b = world.issue("d0", 64 * KiB, 32 * KiB);
    await world.settle();
    expect(world.replica.core.appliedLsn(world.staging.wrl.info().uuid)).toBe(0);
    await world.crashStaging();
    expect(world.staging.wrl.info().headLsn).toBeGreaterThanOrEqual(1);
    await world.drain();
    expect(world.problem()).toBeUndefined();
    expect(world.finalProblem()).toBeUndefined();
    expect(world.history.writeAt(1)?.id).toBe(a.id);
    expect(b.completedAt).toBeDefined();
    expect(b.failed).toBeUndefined();
    expect(world.replicaDisks.get("d0")!.snapshot().subarray(0, 32 * KiB)).toEqual(a.data);
  }, 30_000);

  test("the WRL fails after writing a record, before flushing it: the write waits for staging's restart instead of failing", async () => {
    // Found by the property test: the client failed a write that staging answered IO_ERROR, but
    // the record was on the WRL device, and recovery after the restart kept it and shipped it.
    const world = await World.create({ seed: 15, clients: 1, deviceSizesBytes: [64 * KiB] });
    world.failWrl(true); // the next flush of the WRL fails: the WRL stops with the record written
    const w = world.issue("d0", 0, 8 * KiB);
    await world.pump(anyClientLink);
    expect(world.staging.wrlFailed).toBe(true);
    expect(w.failed).toBeUndefined();
    expect(w.completedAt).toBeUndefined();
    await world.restartStaging(); // no power loss: the unflushed record is still there
    expect(world.staging.wrl.info().headLsn).toBe(1);
    await world.drain();
    expect(w.failed).toBeUndefined();
    expect(w.completedAt).toBeDefined();
    expect(world.problem()).toBeUndefined();
    expect(world.finalProblem()).toBeUndefined();
    expect(world.replicaDisks.get("d0")!.snapshot().subarray(0, 8 * KiB)).toEqual(w.data);
  }, 30_000);

  test("a write whose ack was lost with the connection is resent into a full WRL: it waits for room instead of failing", async () => {
    // Found by the property test: the client failed such a write with WRL_FULL and never wrote it
    // locally, although its first copy was in the WRL: the replica then held bytes the primary
    // never got, for good.
    const world = await World.create({ seed: 14, clients: 2, deviceSizesBytes: [64 * KiB, 256 * KiB] });
    const lost = world.issue("d0", 0, 64 * KiB);
    await world.pump((label, toStaging) => clientLink(0)(label) && toStaging); // logged; the ack stays queued
    world.clients[0]!.connection!.abort(); // ... and is lost with the connection
    // Client 1 fills the WRL while the relay is held back.
    let offset = 0;
    for (let index = 0; index < 40 && world.staging.wrl.info().freeBytes >= 68 * KiB; index += 1) {
      const fill = world.issue("d1", offset, 64 * KiB);
      offset = (offset + 64 * KiB) % (256 * KiB);
      await world.pump(clientLink(1));
      expect(fill.failed).toBeUndefined();
    }
    expect(world.staging.wrl.info().freeBytes).toBeLessThan(68 * KiB);
    await world.tick(1_000); // client 0 reconnects and resends `lost`: staging answers WRL_FULL
    await world.pump(anyClientLink);
    expect(lost.failed).toBeUndefined();
    expect(lost.completedAt).toBeUndefined();
    await world.drain(); // the relay frees the WRL; the resend is logged (a second copy) and acked
    expect(lost.failed).toBeUndefined();
    expect(lost.completedAt).toBeDefined();
    expect(world.problem()).toBeUndefined();
    expect(world.finalProblem()).toBeUndefined();
  }, 30_000);
});
