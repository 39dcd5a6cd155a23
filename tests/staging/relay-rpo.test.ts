/**
 * --rpo on the relay (src/roles/staging/relay-rpo.ts), on a fake clock: the status' `rpo` follows
 * the WRL's lag every second; with the replica holding, the state goes ok → at-risk → missed, one
 * event each (kept in the staging status' `events`, bounded), auto compression is boosted; once
 * the replica answers it is back to ok and the boost is lifted. Also the lag's running totals the
 * drain ETA is computed from, the bounded event list, and the human status.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { formatStatus, type StagingStatus } from "../../src/commands/status-format.ts";
import { compressionBoostLevelMin } from "../../src/roles/staging/compression.ts";
import { LagTracker } from "../../src/roles/staging/lag.ts";
import { RateLimiter } from "../../src/roles/staging/relay-pacing.ts";
import { RecentEvents } from "../../src/roles/staging/relay-rpo.ts";
import { Schedule } from "../../src/schedule.ts";
import { ManualClock } from "../sim/clock.ts";
import { closeTrackedFixtures, trackedFixture } from "./fixture.ts";
import { CoreClient, KiB, MiB, waitFor } from "./helpers.ts";

afterEach(closeTrackedFixtures);

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
const t0 = Date.UTC(2025, 0, 1);

/** One second of the fake clock, then a real moment for the relay and the replica to act. */
async function second(clock: ManualClock): Promise<void> {
  await clock.advance(1000, turn);
  await Bun.sleep(1);
}

describe("relay with --rpo", () => {
  test("the replica holds: ok → at-risk → missed, one event each, compression boosted; it answers: back to ok, boost lifted", async () => {
    const clock = new ManualClock(t0);
    const f = await trackedFixture({ clock, compression: { mode: "auto" }, targets: { rpoTargetSeconds: 10 } });
    f.replica.holding = true;
    f.core.start();
    const client = new CoreClient(f.core);
    await client.attach("w0", "d0", 1 * MiB);
    const text = new TextEncoder().encode("compressible log lines, line after line; ");
    for (let index = 0; index < 9; index += 1) {
      const data = new Uint8Array(4 * KiB).map((_, at) => text[(at + index) % text.length]!);
      expect((await client.write("w0", "d0", index * 4 * KiB, data)).type).toBe("writeAck");
    }
    await waitFor(() => f.replica.heldCount === 2, "a full window held by the replica");
    const wrl = () => f.core.status().wrls[0]!;
    expect(wrl().rpo).toEqual({ targetSeconds: 10, rpoSeconds: 0, trend: "steady", drainEtaSeconds: 0, state: "ok" });

    const states: string[] = [];
    for (let tick = 1; tick <= 12; tick += 1) {
      await second(clock);
      states.push(wrl().rpo.state);
      expect(wrl().rpo.rpoSeconds).toBe(tick); // the oldest record was appended at t0
    }
    // Above half the target and not falling (nothing drains: no ETA) → at risk; above it → missed.
    expect(states).toEqual(["ok", "ok", "ok", "ok", "ok", "at-risk", "at-risk", "at-risk", "at-risk", "at-risk", "missed", "missed"]);
    expect(wrl().rpo).toMatchObject({ trend: "rising", drainEtaSeconds: null });
    const events = f.core.status().events;
    expect(events.map((event) => [event.kind, event.wrl, event.from, event.to, event.at])).toEqual([
      ["rpo", "w0", "ok", "at-risk", new Date(t0 + 6000).toISOString()],
      ["rpo", "w0", "at-risk", "missed", new Date(t0 + 11_000).toISOString()],
    ]);
    expect(events[1]!.message).toContain("missed the 10 s target");
    expect(wrl().replica.compression).toMatchObject({ mode: "auto", boosted: true, level: compressionBoostLevelMin });

    f.replica.release();
    await f.drained();
    await second(clock);
    expect(wrl().rpo).toMatchObject({ rpoSeconds: 0, drainEtaSeconds: 0, state: "ok" });
    expect(f.core.status().events.map((event) => event.to)).toEqual(["at-risk", "missed", "ok"]);
    expect(f.core.status().events[2]!.message).toContain("back within the 10 s target");
    expect(wrl().replica.compression.boosted).toBe(false);
    const appended = wrl().appendedBytes;
    expect(appended).toBe(9 * 4 * KiB);
    expect(wrl().ackedBytes).toBe(appended);
  });

  test("without --rpo the figures are there, the target is null, and there are no events", async () => {
    const clock = new ManualClock(t0);
    const f = await trackedFixture({ clock });
    f.replica.holding = true;
    f.core.start();
    const client = new CoreClient(f.core);
    await client.attach("w0", "d0", 1 * MiB);
    expect((await client.write("w0", "d0", 0, new Uint8Array(4 * KiB).fill(1))).type).toBe("writeAck");
    for (let tick = 0; tick < 40; tick += 1) await second(clock);
    expect(f.core.status().wrls[0]!.rpo).toMatchObject({ targetSeconds: null, rpoSeconds: 40, trend: "rising", state: "ok" });
    expect(f.core.status().wrls[0]!.rateLimit).toBeNull();
    expect(f.core.status().events).toEqual([]);
  });
});

describe("pieces", () => {
  test("LagTracker's running totals: appended since the start, acknowledged (recovered included), pro rata within a range", () => {
    const lag = new LagTracker(4, 100);
    lag.recovered(1, 2, 3000, 0);
    lag.appended(3, 1000, 1000);
    lag.appended(4, 1000, 1010); // same range as 3
    lag.appended(5, 500, 1500);
    expect(lag.appendedBytes).toBe(2500);
    expect(lag.ackedBytes).toBe(0);
    expect(lag.lagBytes()).toBe(5500);
    lag.acked(3); // the recovered range and half of 3..4 (pro rata)
    expect(lag.lagBytes()).toBe(1500);
    expect(lag.ackedBytes).toBe(4000);
    lag.acked(5);
    expect(lag.lagBytes()).toBe(0);
    expect(lag.ackedBytes).toBe(5500);
    lag.appended(5, 100, 1600); // an append resolved after its ack: counted both ways, never lag
    expect([lag.appendedBytes, lag.ackedBytes, lag.lagBytes()]).toEqual([2600, 5600, 0]);
    // Merging to stay within its ranges keeps the bytes.
    for (let lsn = 6; lsn < 30; lsn += 1) lag.appended(lsn, 10, lsn * 1000);
    expect(lag.rangeCount).toBeLessThanOrEqual(4);
    expect(lag.lagBytes()).toBe(240);
  });

  test("RecentEvents keeps the newest, oldest first, up to its bound", () => {
    const events = new RecentEvents<number>(3);
    for (let index = 1; index <= 5; index += 1) events.push(index);
    expect(events.list()).toEqual([3, 4, 5]);
  });

  test("druvaa status shows each WRL's rate limit, schedule and RPO, and the recent events", async () => {
    const clock = new ManualClock(t0);
    const f = await trackedFixture({ clock, targets: { rateLimit: new RateLimiter(2_500_000, "server"), schedule: Schedule.parse("Mon-Fri 19:00-07:00 UTC"), rpoTargetSeconds: 30 } });
    const core = f.core.status();
    const status: StagingStatus = { role: "staging", nodeId: "staging-1", version: "test", uptimeSeconds: 5, wrls: core.wrls as StagingStatus["wrls"], events: [{ at: "2025-01-01T00:00:06.000Z", wrl: "w0", message: "WRL w0: RPO 6.0 s, at risk of missing the 10 s target (trend rising, not draining)" }] };
    const text = formatStatus(status);
    expect(text).toContain("rate limit 20 Mbit/s (shared by the server's WRLs), 0.0 s waited for it");
    expect(text).toContain('schedule "Mon-Fri 19:00-07:00 UTC": open, closes at 2025-01-01T07:00:00.000Z');
    expect(text).toContain("RPO 0.0 s, target 30 s: ok (steady, nothing to drain)");
    expect(text).toContain("recent events:\n    2025-01-01T00:00:06.000Z WRL w0: RPO 6.0 s, at risk");
  });
});
