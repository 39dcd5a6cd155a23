/**
 * Metric history (src/roles/panel/history.ts) under a fake clock, against a real panel database:
 * samples derived from crafted statuses (rates from counter deltas, none across a counter reset),
 * tier 0 → per-minute → per-quarter-hour averages, a restart that neither loses nor double counts
 * a bucket, age and row-count bounds, and queries answered from the finest tier that covers the
 * range with at most 1000 points.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { metricPointsMax, metricTierKeepMs } from "../../src/roles/panel/constants.ts";
import { MetricHistory } from "../../src/roles/panel/history.ts";
import type { ComponentStatus } from "../../src/roles/panel/monitor.ts";
import { PanelStore } from "../../src/roles/panel/store.ts";

const t0 = Date.UTC(2026, 0, 5, 10, 0, 0); // a whole quarter hour
const minuteMs = 60_000;
const stores: PanelStore[] = [];

afterEach(() => {
  for (const store of stores.splice(0)) store.close();
});

function openStore(): PanelStore {
  const store = PanelStore.open(":memory:");
  stores.push(store);
  store.addComponent("stg1", "staging", "127.0.0.1:6002", "test");
  return store;
}

function staging(values: { lagSeconds: number; appendedBytes: number; fillRatio?: number; bytesShipped?: number; rawBytes?: number }): ComponentStatus {
  return {
    name: "stg1",
    role: "staging",
    control: "127.0.0.1:6002",
    reachable: true,
    status: {
      role: "staging",
      wrls: [{ name: "fast", fillRatio: values.fillRatio ?? 0.25, lagSeconds: values.lagSeconds, appendedBytes: values.appendedBytes, ackedBytes: values.appendedBytes, rpo: { rpoSeconds: values.lagSeconds, state: "ok" }, replica: { bytesShipped: values.bytesShipped ?? 0, compression: { compressionRatio: 2.5 } } }],
    },
  };
}

const count = (store: PanelStore, series: string, tier: number) => Number((store.database.query("SELECT count(*) AS n FROM metric_samples WHERE series = $series AND tier = $tier").get({ series, tier }) as { n: bigint }).n);
const rows = (store: PanelStore, series: string, tier: number) => (store.database.query("SELECT t_ms, value FROM metric_samples WHERE series = $series AND tier = $tier ORDER BY t_ms").all({ series, tier }) as { t_ms: bigint; value: number }[]).map((row) => [Number(row.t_ms), row.value]);

describe("metric history", () => {
  test("gauges and rates per round; minutes fold into tier 1 averages; a counter reset gives no sample", () => {
    const store = openStore();
    let now = t0;
    const history = new MetricHistory(store, { nowMs: () => now });
    // Rounds every 2 s for 3 minutes: lag = round index seconds; 2 MiB appended per round (1 MiB/s).
    for (let round = 0; round < 90; round += 1) {
      now = t0 + round * 2000;
      history.record([staging({ lagSeconds: round, appendedBytes: round * 2 * 1024 * 1024, bytesShipped: round * 1024 * 1024 })]);
    }
    expect(history.seriesList()).toEqual(expect.arrayContaining([
      { name: "stg1/wrl/fast/lagMs", unit: "ms", component: "stg1" },
      { name: "stg1/wrl/fast/fillRatio", unit: "ratio", component: "stg1" },
      { name: "stg1/wrl/fast/appendBytesPerSecond", unit: "bytes/s", component: "stg1" },
      { name: "stg1/wrl/fast/relayBytesPerSecond", unit: "bytes/s", component: "stg1" },
      { name: "stg1/wrl/fast/compressionRatio", unit: "ratio", component: "stg1" },
      { name: "stg1/wrl/fast/rpoMs", unit: "ms", component: "stg1" },
    ]));
    expect(count(store, "stg1/wrl/fast/lagMs", 0)).toBe(90);
    // The first round has no rate (nothing to compare with); every later one is exactly 1 MiB/s.
    const rates = rows(store, "stg1/wrl/fast/appendBytesPerSecond", 0);
    expect(rates).toHaveLength(89);
    expect(rates.every(([, value]) => value === 1024 * 1024)).toBe(true);
    expect(rows(store, "stg1/wrl/fast/relayBytesPerSecond", 0).every(([, value]) => value === 512 * 1024)).toBe(true);
    // Minutes 0 and 1 are whole (the round at 2:00 folded them); minute 2 is still under way.
    expect(rows(store, "stg1/wrl/fast/lagMs", 1)).toEqual([
      [t0, 14_500], // mean of 0..29 s
      [t0 + minuteMs, 44_500], // mean of 30..59 s
    ]);
    // A restarted staging: its counter went down; no negative rate, and rates resume after.
    now += 2000;
    history.record([staging({ lagSeconds: 0, appendedBytes: 1000 })]);
    now += 2000;
    history.record([staging({ lagSeconds: 0, appendedBytes: 1000 + 4000 })]);
    const after = rows(store, "stg1/wrl/fast/appendBytesPerSecond", 0).slice(-1);
    expect(after).toEqual([[now, 2000]]);
    expect(count(store, "stg1/wrl/fast/appendBytesPerSecond", 0)).toBe(90);
  });

  test("quarter hours fold into tier 2; a restart neither loses nor double counts a bucket; ages expire", () => {
    const store = openStore();
    let now = t0;
    let history = new MetricHistory(store, { nowMs: () => now });
    // One round a minute for 40 minutes, lag = minute index seconds.
    for (let minute = 0; minute < 40; minute += 1) {
      now = t0 + minute * minuteMs + 1000;
      if (minute === 20) history = new MetricHistory(store, { nowMs: () => now }); // the panel restarted
      history.record([staging({ lagSeconds: minute, appendedBytes: 0 })]);
    }
    const quarter = 15 * minuteMs;
    expect(rows(store, "stg1/wrl/fast/lagMs", 2)).toEqual([
      [t0, 7_000], // mean of minutes 0..14
      [t0 + quarter, 22_000], // minutes 15..29, folded across the restart
    ]);
    expect(count(store, "stg1/wrl/fast/lagMs", 1)).toBe(39); // minute 39 is still under way
    // An hour later tier 0 of those minutes has aged out; tiers 1 and 2 still hold them.
    now += metricTierKeepMs[0] + minuteMs;
    history.record([staging({ lagSeconds: 1, appendedBytes: 0 })]);
    expect(rows(store, "stg1/wrl/fast/lagMs", 0)).toEqual([[now, 1000]]);
    expect(count(store, "stg1/wrl/fast/lagMs", 1)).toBe(40);
    // Past tier 1's two days only tier 2 remains; past 60 days nothing, and the series is gone.
    now += metricTierKeepMs[1];
    history.record([]);
    expect(count(store, "stg1/wrl/fast/lagMs", 1)).toBe(0);
    expect(count(store, "stg1/wrl/fast/lagMs", 2)).toBeGreaterThanOrEqual(2);
    now += metricTierKeepMs[2];
    history.record([]);
    expect(count(store, "stg1/wrl/fast/lagMs", 2)).toBe(0);
    expect(history.seriesList()).toEqual([]);
  });

  test("rows per series are capped; a query answers from the finest covering tier with at most 1000 points", () => {
    const store = openStore();
    let now = t0;
    const cap = 1500;
    const history = new MetricHistory(store, { nowMs: () => now, rowsPerSeriesMax: cap });
    // A fast poll: 300 ms rounds, more rounds in the hour than the cap.
    const rounds = cap + 50;
    for (let round = 0; round < rounds; round += 1) {
      now = t0 + round * 300;
      history.record([staging({ lagSeconds: round % 2, appendedBytes: 0 })]);
    }
    expect(count(store, "stg1/wrl/fast/lagMs", 0)).toBe(cap);
    const first = now - (cap - 1) * 300;
    expect(rows(store, "stg1/wrl/fast/lagMs", 0)[0]![0]).toBe(first); // the oldest went first

    const recent = history.query("stg1/wrl/fast/lagMs", first, now);
    expect(recent.tier).toBe(0);
    expect(recent.points.length).toBeLessThanOrEqual(metricPointsMax);
    expect(recent.points.length).toBeGreaterThan(metricPointsMax - 10);
    // 0 and 1 s alternate: a bucket holds one sample or the mean of two; times ascend within the range.
    for (const [t, value] of recent.points) {
      expect(t).toBeGreaterThanOrEqual(first);
      expect(t).toBeLessThanOrEqual(now);
      expect([0, 500, 1000]).toContain(value);
    }
    expect(recent.points.some(([, value]) => value === 500)).toBe(true);
    const mean = recent.points.reduce((sum, [, value]) => sum + value, 0) / recent.points.length;
    expect(mean).toBeGreaterThan(300);
    expect(mean).toBeLessThan(700);
    expect(recent.points.map(([t]) => t)).toEqual([...recent.points.map(([t]) => t)].sort((a, b) => a - b));

    // A short range of raw samples comes back as is.
    const raw = history.query("stg1/wrl/fast/lagMs", now - 900, now);
    expect(raw.points).toEqual([[now - 900, 1000 * ((rounds - 4) % 2)], [now - 600, 1000 * ((rounds - 3) % 2)], [now - 300, 1000 * ((rounds - 2) % 2)], [now, 1000 * ((rounds - 1) % 2)]]);

    // Two hours later a 3-hour range comes from tier 1 (per-minute means), plus the newest unfolded sample from tier 0.
    now += 2 * 60 * minuteMs + 30_000;
    history.record([staging({ lagSeconds: 7, appendedBytes: 0 })]);
    const wide = history.query("stg1/wrl/fast/lagMs", now - 3 * 60 * minuteMs, now);
    expect(wide.tier).toBe(1);
    const minuteTimes = wide.points.slice(0, -1).map(([t]) => t);
    expect(minuteTimes.every((t) => t % minuteMs === 0)).toBe(true);
    expect(minuteTimes.length).toBe(8); // 1550 rounds of 300 ms: minutes 0..7
    expect(wide.points.slice(0, -1)).toEqual(rows(store, "stg1/wrl/fast/lagMs", 1) as [number, number][]);
    expect(wide.points.at(-1)).toEqual([now, 7000]);
  });
});
