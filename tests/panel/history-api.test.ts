/**
 * The metric history's API over HTTP, fed by the panel's real poll of a stand-in control port:
 * the series a user can chart, their points with the values the component reported, the
 * refusals naming the bad parameter, and who may ask.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { adminClient, ApiClient, startTestPanel, userClient, type TestPanel } from "./helpers.ts";
import { startFakeComponent, waitFor, type FakeComponent } from "./live-fake-component.ts";

let panel: TestPanel | undefined;
let fake: FakeComponent | undefined;
afterAll(async () => {
  await panel?.close();
  await fake?.stop();
});

describe("GET /api/metrics", () => {
  test("series and points from real polls; bad parameters named; viewers may read, strangers may not", async () => {
    fake = startFakeComponent("staging", { wrls: [{ name: "fast", fillRatio: 0.25, lagSeconds: 1.5, appendedBytes: 0, rpo: { rpoSeconds: 2, state: "ok" } }] });
    panel = await startTestPanel({ pollIntervalMs: 100, statusTimeoutMs: 90 });
    const admin = await adminClient(panel.url);
    const viewer = await userClient(panel.url, admin, "vera", "viewer");
    const startMs = Date.now();
    expect((await admin.post("/api/components", { name: "stg1", role: "staging", control: fake.control })).status).toBe(201);

    const lag = "stg1/wrl/fast/lagMs";
    const points = await waitFor("three lag samples", 10_000, async () => {
      const answer = await viewer.get(`/api/metrics?series=${encodeURIComponent(lag)}`);
      return answer.status === 200 && answer.body.points.length >= 3 ? answer.body : undefined;
    });
    expect(points).toMatchObject({ ok: true, series: lag, unit: "ms", tier: 0 });
    for (const [t, value] of points.points as [number, number][]) {
      expect(value).toBe(1500);
      expect(t).toBeGreaterThanOrEqual(startMs);
      expect(t).toBeLessThanOrEqual(Date.now());
    }
    const series = (await viewer.get("/api/metrics/series")).body.series as { name: string; unit: string; component: string }[];
    expect(series).toEqual(expect.arrayContaining([
      { name: lag, unit: "ms", component: "stg1" },
      { name: "stg1/wrl/fast/fillRatio", unit: "ratio", component: "stg1" },
      { name: "stg1/wrl/fast/rpoMs", unit: "ms", component: "stg1" },
      { name: "stg1/wrl/fast/appendBytesPerSecond", unit: "bytes/s", component: "stg1" },
    ]));

    // A range: only the points inside it.
    const all = points.points as [number, number][];
    const [fromMs, toMs] = [all[1]![0], all.at(-1)![0]];
    const ranged = (await viewer.get(`/api/metrics?series=${encodeURIComponent(lag)}&fromMs=${fromMs}&toMs=${toMs}`)).body;
    expect(ranged.points[0][0]).toBe(fromMs);
    expect(ranged.points.every(([t]: [number]) => t >= fromMs && t <= toMs)).toBe(true);
    expect((await viewer.get(`/api/metrics?series=${encodeURIComponent(lag)}&fromMs=1&toMs=2`)).body.points).toEqual([]);

    const refusals: [string, number, string][] = [
      ["/api/metrics", 400, "series: "],
      ["/api/metrics?series=stg1/wrl/nope/lagMs", 404, "series: "],
      [`/api/metrics?series=${encodeURIComponent(lag)}&fromMs=yesterday`, 400, "fromMs: "],
      [`/api/metrics?series=${encodeURIComponent(lag)}&toMs=-5`, 400, "toMs: "],
      [`/api/metrics?series=${encodeURIComponent(lag)}&fromMs=2000&toMs=1000`, 400, "fromMs: "],
    ];
    for (const [path, status, field] of refusals) {
      const answer = await viewer.get(path);
      expect([path, answer.status, answer.body.error.message.startsWith(field)]).toEqual([path, status, true]);
    }
    const stranger = new ApiClient(panel.url);
    expect((await stranger.get("/api/metrics/series")).status).toBe(401);
    expect((await stranger.get(`/api/metrics?series=${encodeURIComponent(lag)}`)).body.error.code).toBe("NOT_LOGGED_IN");
  });
});
