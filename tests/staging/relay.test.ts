/**
 * The relay of a StagingCore against a real ReplicaCore behind an in-memory link: LSN order,
 * the window, the tail freed only on acks, retries after nacks, drops and refused dials, resume
 * from what the replica applied, restart from the WRL and the saved devices.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import { buildShipment } from "../../src/roles/staging/shipment.ts";
import { MemoryDeviceStateStore } from "../../src/roles/staging/state.ts";
import { CoreClient, FakeReplica, KiB, MiB, WrlDisk, applyTo, bytes, waitFor } from "./helpers.ts";
import { closeTrackedFixtures, smallLimits, trackedFixture, untrackFixture } from "./fixture.ts";

afterEach(closeTrackedFixtures);

/** Writes `count` writes of varied sizes over d0 (some overlapping, some zero); returns the model image. */
async function writeSome(client: CoreClient, count: number, seed: number, model: Uint8Array = new Uint8Array(1 * MiB)): Promise<Uint8Array> {
  for (let index = 0; index < count; index += 1) {
    const lengthBytes = (1 + ((index * 7 + seed) % 8)) * 2 * KiB;
    const offset = ((index * 13 + seed) % 200) * 4 * KiB;
    const zero = index % 9 === 4;
    const data = zero ? undefined : bytes(lengthBytes, seed * 1000 + index);
    const answer = await client.write("w0", "d0", offset, data, lengthBytes);
    expect(answer.type).toBe("writeAck");
    applyTo(model, offset, data, lengthBytes);
  }
  return model;
}

function expectImage(replica: FakeReplica, model: Uint8Array): void {
  expect(Buffer.from(replica.image("d0")).equals(Buffer.from(model))).toBe(true);
}

/** Each shipment starts right after the one before it (re-deliveries restart at or below). */
function expectLsnOrder(firstLsns: number[], lastLsns: number[]): void {
  for (let index = 1; index < firstLsns.length; index += 1) expect(firstLsns[index]).toBeLessThanOrEqual(lastLsns[index - 1]! + 1);
}

describe("relay", () => {
  test("ships in LSN order within its window and frees records only when the replica acknowledges them", async () => {
    const f = await trackedFixture({ windowMax: 2 });
    f.replica.holding = true;
    f.core.start();
    const a = new CoreClient(f.core);
    await a.attach("w0", "d0", 1 * MiB);
    const model = await writeSome(a, 20, 1);
    await waitFor(() => f.replica.shipments.length === 2, "a full window");
    await Bun.sleep(30);
    // The window is full and nothing was acknowledged: no third shipment, nothing freed.
    expect(f.replica.shipments).toHaveLength(2);
    expect(f.wrl.info().tailLsn).toBe(0);
    const held = f.core.status().wrls[0]!;
    expect(held.lagBytes).toBeGreaterThan(0);
    expect(held.lagSeconds).toBeGreaterThanOrEqual(0);
    expect(held.replica).toMatchObject({ connected: true, appliedLsn: 0, inflightShipments: 2 });

    f.replica.release();
    await f.drained();
    const ships = f.replica.shipments;
    expect(ships[0]!.firstLsn).toBe(1);
    for (let index = 1; index < ships.length; index += 1) expect(ships[index]!.firstLsn).toBe(ships[index - 1]!.lastLsn + 1);
    expect(ships[ships.length - 1]!.lastLsn).toBe(20);
    for (const ship of ships) expect(ship.records.length).toBeLessThanOrEqual(smallLimits.recordsMax);
    // Every shipment declares the devices its records name, with the client's size.
    expect(ships.every((ship) => JSON.stringify(ship.devices) === JSON.stringify([{ name: "d0", sizeBytes: 1 * MiB }]))).toBe(true);
    const drained = f.core.status().wrls[0]!;
    expect(drained).toMatchObject({ headLsn: 20, tailLsn: 20, recordCount: 0, lagBytes: 0, lagSeconds: 0 });
    expect(drained.replica.appliedLsn).toBe(20);
    expectImage(f.replica, model);
  });

  test("a nack is shown as lastError; the same records are shipped again after the backoff, none skipped", async () => {
    const f = await trackedFixture();
    f.replica.nackNext.push("BUSY", "DEVICE_UNKNOWN");
    f.core.start();
    const a = new CoreClient(f.core);
    await a.attach("w0", "d0", 1 * MiB);
    const model = await writeSome(a, 12, 2);
    await f.drained();
    const status = f.core.status().wrls[0]!;
    expect(status.replica.lastError).toMatchObject({ code: "DEVICE_UNKNOWN" });
    expect(status.replica.lastError!.message).toContain("fake DEVICE_UNKNOWN");
    expect(typeof status.replica.lastError!.at).toBe("string");
    const firsts = f.replica.shipments.map((ship) => ship.firstLsn);
    expect(firsts.filter((lsn) => lsn === 1).length).toBeGreaterThanOrEqual(2); // shipped again after the nack
    expectLsnOrder(firsts, f.replica.shipments.map((ship) => ship.lastLsn));
    expect(f.replica.dials).toBeGreaterThanOrEqual(3);
    expectImage(f.replica, model);
  });

  test("a dropped connection is resumed from what the replica applied; an unreachable replica is retried until it is back", async () => {
    const f = await trackedFixture();
    f.replica.dropAfterShipments = 3;
    f.core.start();
    const a = new CoreClient(f.core);
    await a.attach("w0", "d0", 1 * MiB);
    let model = await writeSome(a, 15, 3);
    await f.drained();
    expect(f.replica.dials).toBeGreaterThanOrEqual(2);
    expectImage(f.replica, model);

    f.replica.refuseDials = true;
    f.replica.disconnectAll();
    model = await writeSome(a, 10, 4, model);
    await waitFor(() => f.core.status().wrls[0]!.replica.lastError?.code === "NET_CONNECT_REFUSED", "the refused dial in the status");
    const waiting = f.core.status().wrls[0]!;
    expect(waiting.replica.connected).toBe(false);
    expect(waiting.headLsn).toBeGreaterThan(waiting.replica.appliedLsn);
    expect(waiting.recordCount).toBeGreaterThan(0);
    f.replica.refuseDials = false;
    await f.drained();
    expectImage(f.replica, model);
  });

  test("skips what the replica already applied: resumes after its appliedLsn and frees those records at once", async () => {
    const f = await trackedFixture();
    const a = new CoreClient(f.core);
    await a.attach("w0", "d0", 1 * MiB);
    const model = await writeSome(a, 10, 5);
    // The replica got LSN 1..6 before (e.g. from this staging before a crash).
    const earlier = buildShipment((await f.wrl.read(1)).slice(0, 6), { wrl: "w0", wrlUuid: f.wrl.info().uuid, deviceSizes: new Map([["d0", 1 * MiB]]) });
    expect(await f.replica.core.ship(earlier.message, earlier.payload)).toMatchObject({ type: "shipAck", appliedLsn: 6 });
    f.core.start();
    await f.drained();
    expect(f.replica.shipments[0]!.firstLsn).toBe(7);
    expect(f.replica.shipments.every((ship) => ship.firstLsn >= 7)).toBe(true);
    // In one session, without a detour through an error.
    expect(f.replica.dials).toBe(1);
    expect(f.core.status().wrls[0]!.replica.lastError).toBeNull();
    expectImage(f.replica, model);
  });

  test("a replica that lost its state, or another replica, gets nothing: REPLICA_MISSING_RECORDS is shown and retried, nothing is freed", async () => {
    const f = await trackedFixture();
    f.core.start();
    const a = new CoreClient(f.core);
    await a.attach("w0", "d0", 1 * MiB);
    await writeSome(a, 5, 6);
    await f.drained();
    // The replica's state directory is wiped: it says it applied nothing, staging freed 1..5.
    const amnesiac = await FakeReplica.create({ d0: 1 * MiB, d1: 256 * KiB }, new MemoryStateStore());
    f.replica.core = amnesiac.core;
    f.replica.disconnectAll();
    const shippedBefore = f.replica.shipments.length;
    await writeSome(a, 3, 7);
    await waitFor(() => f.core.status().wrls[0]!.replica.lastError?.code === "REPLICA_MISSING_RECORDS", "REPLICA_MISSING_RECORDS in the status");
    const status = f.core.status().wrls[0]!;
    expect(status.replica.lastError?.message).toContain("not the replica this WRL replicates to");
    expect(status.replica.lastError?.hint).toContain("--replica");
    expect(f.replica.shipments.length).toBe(shippedBefore);
    expect(status.tailLsn).toBe(5);
    expect(status.headLsn).toBe(8);
    expect(amnesiac.core.appliedLsn(f.wrl.info().uuid)).toBe(0);
  });

  test("a replica ahead of the WRL (the WRL lost records) is refused: REPLICA_AHEAD, nothing shipped", async () => {
    const f = await trackedFixture();
    const uuid = f.wrl.info().uuid;
    const records = [1, 2, 3].map((lsn) => ({ lsn, type: "write" as const, epoch: lsn, device: "d0", seq: lsn, offset: 0, lengthBytes: 4 * KiB, flags: 0, data: bytes(4 * KiB, lsn) }));
    const ahead = buildShipment(records, { wrl: "w0", wrlUuid: uuid, deviceSizes: new Map([["d0", 1 * MiB]]) });
    expect(await f.replica.core.ship(ahead.message, ahead.payload)).toMatchObject({ type: "shipAck", appliedLsn: 3 });
    f.core.start();
    await waitFor(() => f.core.status().wrls[0]!.replica.lastError?.code === "REPLICA_AHEAD", "REPLICA_AHEAD in the status");
    expect(f.replica.shipments).toHaveLength(0);
  });

  test("restart: recovered records and saved device sizes are relayed; lag counts them until acknowledged", async () => {
    const disk = WrlDisk.memory(4 * MiB);
    const store = new MemoryDeviceStateStore();
    const first = await trackedFixture({ disk, store });
    first.replica.holding = true;
    first.core.start();
    const a = new CoreClient(first.core);
    await a.attach("w0", "d0", 1 * MiB);
    const model = await writeSome(a, 8, 8);
    await first.close();
    untrackFixture(first);

    const replica = first.replica;
    replica.release();
    replica.shipments.length = 0;
    const second = await trackedFixture({ disk, store, reopen: true, replica });
    const before = second.core.status().wrls[0]!;
    expect(before).toMatchObject({ headLsn: 8, tailLsn: 0, recordCount: 8 });
    expect(before.lagBytes).toBeGreaterThan(0);
    expect(before.devices).toEqual([{ name: "d0", sizeBytes: 1 * MiB, clientNodeId: "client-a", connected: false }]);
    second.core.start();
    await second.drained();
    expect(replica.shipments[0]!.devices).toEqual([{ name: "d0", sizeBytes: 1 * MiB }]);
    expect(second.core.status().wrls[0]).toMatchObject({ lagBytes: 0, lagSeconds: 0, tailLsn: 8 });
    expectImage(replica, model);
  });
});
