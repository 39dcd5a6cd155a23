/**
 * RpoTracker (src/roles/staging/rpo.ts): current RPO, trend, ETA to drain, and one event per
 * change of state when a target is set.
 */
import { describe, expect, test } from "bun:test";
import { RpoTracker, type RpoSample } from "../../src/roles/staging/rpo.ts";

const MB = 1e6;

/** Samples one second apart: lag seconds and bytes, and the append and ack rates (bytes/s). */
function feed(tracker: RpoTracker, points: { lag: number; lagBytes: number; appendRate: number; ackRate: number }[]) {
  let appended = 0;
  let acked = 0;
  const events = [];
  for (const [index, point] of points.entries()) {
    appended += point.appendRate;
    acked += point.ackRate;
    const sample: RpoSample = { nowMs: 1_000_000 + index * 1000, lagSeconds: point.lag, lagBytes: point.lagBytes, appendedBytes: appended, ackedBytes: acked };
    const event = tracker.sample(sample);
    if (event !== undefined) events.push(event);
  }
  return events;
}

describe("RPO tracking", () => {
  test("nothing behind: RPO 0, steady, nothing to drain, ok", () => {
    const tracker = new RpoTracker("w0", 30);
    expect(feed(tracker, Array.from({ length: 5 }, () => ({ lag: 0, lagBytes: 0, appendRate: MB, ackRate: MB })))).toEqual([]);
    expect(tracker.status()).toEqual({ targetSeconds: 30, rpoSeconds: 0, trend: "steady", drainEtaSeconds: 0, state: "ok" });
  });

  test("a link slower than the writes: rising, no ETA, at risk past half the target, then missed — one event each", () => {
    const tracker = new RpoTracker("w0", 10);
    const points = Array.from({ length: 14 }, (_, i) => ({ lag: i, lagBytes: i * MB, appendRate: 2 * MB, ackRate: MB }));
    const events = feed(tracker, points);
    expect(events.map((e) => e.to)).toEqual(["at-risk", "missed"]);
    expect(events[0]!.message).toContain("at risk of missing the 10 s target");
    expect(events[1]!.message).toContain("missed");
    expect(tracker.status()).toMatchObject({ rpoSeconds: 13, trend: "rising", drainEtaSeconds: null, state: "missed" });
  });

  test("the link catches up: falling, ETA = backlog / net drain rate, back to ok with one event", () => {
    const tracker = new RpoTracker("w0", 10);
    feed(tracker, [{ lag: 12, lagBytes: 12 * MB, appendRate: 0, ackRate: 0 }]);
    expect(tracker.state).toBe("missed");
    const tracker2 = new RpoTracker("w0", 10);
    const events = feed(tracker2, Array.from({ length: 10 }, (_, i) => ({ lag: 12 - i, lagBytes: (10 - i) * MB, appendRate: MB, ackRate: 2 * MB })));
    const status = tracker2.status();
    expect(status.trend).toBe("falling");
    // 1 MB/s net drain, 1 MB left.
    expect(status.drainEtaSeconds).toBeCloseTo(1, 5);
    expect(events.map((e) => e.to)).toEqual(["missed", "ok"]);
  });

  test("without a target: figures only, never an event", () => {
    const tracker = new RpoTracker("w0", null);
    expect(feed(tracker, Array.from({ length: 40 }, (_, i) => ({ lag: i * 10, lagBytes: i * MB, appendRate: 2 * MB, ackRate: MB })))).toEqual([]);
    expect(tracker.status()).toMatchObject({ targetSeconds: null, rpoSeconds: 390, trend: "rising", state: "ok" });
  });
});
