/**
 * --schedule on the relay (src/roles/staging/relay.ts, relay-pacing.ts), on a fake clock: while
 * the window is closed the WRL takes and acknowledges writes but the replica gets nothing (not
 * even a connection); at the opening everything is delivered in LSN order; when the window
 * closes, shipments in flight are answered, nothing more is sent, and the relay disconnects and
 * sleeps until the next opening.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { Schedule } from "../../src/schedule.ts";
import { ManualClock } from "../sim/clock.ts";
import { closeTrackedFixtures, trackedFixture } from "./fixture.ts";
import { CoreClient, KiB, MiB, applyTo, bytes, waitFor } from "./helpers.ts";

afterEach(closeTrackedFixtures);

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
const hourMs = 3600_000;
const t0 = Date.UTC(2025, 0, 1); // a Wednesday, 00:00 UTC

/** Moves the fake clock `ms` forward in steps of at most `stepMs`, letting the relay run between them. */
async function advance(clock: ManualClock, ms: number, stepMs = 60_000): Promise<void> {
  const target = clock.now() + ms;
  while (clock.now() < target) {
    await clock.advance(Math.min(stepMs, target - clock.now()), turn);
    await Bun.sleep(1);
  }
}

async function writeBlocks(client: CoreClient, model: Uint8Array, count: number, seed: number): Promise<void> {
  for (let index = 0; index < count; index += 1) {
    const offset = ((index * 7 + seed) % 200) * 4 * KiB;
    const data = bytes(4 * KiB, seed * 1000 + index);
    // Acknowledged by staging: durable in the WRL, whether or not the window is open.
    expect((await client.write("w0", "d0", offset, data)).type).toBe("writeAck");
    applyTo(model, offset, data);
  }
}

describe("relay with --schedule", () => {
  test("closed: writes are acked and buffered, the replica gets nothing; at the opening everything arrives in order; at the closing in-flight shipments finish and nothing more goes", async () => {
    const clock = new ManualClock(t0);
    const f = await trackedFixture({ clock, windowMax: 2, targets: { schedule: Schedule.parse("06:00-07:00 UTC") } });
    f.replica.clock = clock;
    f.core.start();
    const client = new CoreClient(f.core);
    await client.attach("w0", "d0", 1 * MiB);
    const model = new Uint8Array(1 * MiB);
    await writeBlocks(client, model, 20, 1);

    // 05:59: closed all night long — no dial, no frame, nothing freed; the status says when it opens.
    await advance(clock, 6 * hourMs - 60_000, hourMs / 4);
    expect(f.replica.dials).toBe(0);
    expect(f.replica.frames).toEqual([]);
    let status = f.core.status().wrls[0]!;
    expect(status.schedule).toEqual({ schedule: "06:00-07:00 UTC", open: false, nextChangeAt: "2025-01-01T06:00:00.000Z" });
    expect(status).toMatchObject({ headLsn: 20, tailLsn: 0, recordCount: 20 });
    expect(status.replica).toMatchObject({ connected: false, appliedLsn: 0, lastError: null, shipmentsShipped: 0 });
    expect(status.lagSeconds).toBe(6 * 3600 - 60);

    // 06:00: the relay wakes at the opening and ships everything, in LSN order.
    await advance(clock, 60_000);
    await f.drained();
    const openedAt = t0 + 6 * hourMs;
    expect(f.replica.frames[0]).toMatchObject({ type: "resume", atMs: openedAt });
    expect(f.replica.frames.every((frame) => frame.atMs === openedAt)).toBe(true);
    const ships = f.replica.shipments;
    expect(ships[0]!.firstLsn).toBe(1);
    for (let index = 1; index < ships.length; index += 1) expect(ships[index]!.firstLsn).toBe(ships[index - 1]!.lastLsn + 1);
    expect(ships[ships.length - 1]!.lastLsn).toBe(20);
    expect(Buffer.from(f.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
    status = f.core.status().wrls[0]!;
    expect(status.schedule).toEqual({ schedule: "06:00-07:00 UTC", open: true, nextChangeAt: "2025-01-01T07:00:00.000Z" });
    expect(status.replica.connected).toBe(true);

    // 06:30, the replica stops answering: two shipments (the window) wait in flight past 07:00.
    await advance(clock, 30 * 60_000);
    f.replica.holding = true;
    await writeBlocks(client, model, 12, 2);
    await waitFor(() => f.replica.heldCount === 2, "a full window of shipments in flight");
    const shippedBefore = f.replica.shipments.length;
    await advance(clock, 31 * 60_000);
    expect(f.core.status().wrls[0]!.schedule).toMatchObject({ open: false, nextChangeAt: "2025-01-02T06:00:00.000Z" });
    // The shipments in flight may finish; once they are answered the relay disconnects, without an error.
    f.replica.release();
    await waitFor(() => !f.core.status().wrls[0]!.replica.connected, "the relay to disconnect");
    await advance(clock, 2 * hourMs);
    status = f.core.status().wrls[0]!;
    expect(f.replica.shipments.length).toBe(shippedBefore);
    expect(f.replica.dials).toBe(1);
    expect(status.replica).toMatchObject({ connected: false, lastError: null, appliedLsn: f.replica.shipments[shippedBefore - 1]!.lastLsn });
    expect(status.headLsn).toBe(32);
    expect(status.tailLsn).toBeLessThan(32);
    expect(status.recordCount).toBeGreaterThan(0);

    // The next morning's window: the rest arrives.
    await advance(clock, 21 * hourMs, hourMs);
    await f.drained();
    expect(f.replica.dials).toBe(2);
    expect(Buffer.from(f.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
  }, 30_000);
});
