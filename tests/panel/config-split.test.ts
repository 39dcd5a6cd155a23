/**
 * The panel's split and join actions against fake components (config-fake.ts) over real HTTP: they
 * go to the staging server of the pair's WRL (POST /wrl/split {wrl, by}, /wrl/join {wrl}); split
 * needs the pair's name as confirm (the refusal names every pair of the WRL, which all stop); the
 * pair's state follows the staging's `split`; both are in the activity log; a viewer may not.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { fakePairBody, FakeSystem, fakeWrlBody } from "./fake-system.ts";
import { userClient, type ApiClient, type TestPanel } from "./helpers.ts";

let panel: TestPanel;
let admin: ApiClient;
const system = new FakeSystem({ staging: "127.0.0.1:16101", replica: "127.0.0.1:16103", client: "127.0.0.1:16107" });
const { staging, client } = system;

beforeAll(async () => {
  ({ panel, admin } = await system.start({ pollIntervalMs: 60_000, config: { requestTimeoutMs: 2_000, convergeIntervalMs: 100, behindGraceMs: 200 } }));
  expect((await admin.post("/api/wrls", fakeWrlBody)).status).toBe(201);
  for (const [name, device] of [["pair-db", "disk0"], ["pair-logs", "disk1"]] as const) {
    expect((await admin.post("/api/pairs", fakePairBody(name, device))).status).toBe(201);
  }
  client.attachments = ["pair-db", "pair-logs"].map((name) => ({ name, enabled: true, state: "running", status: { mode: "connected" } }));
});

afterAll(async () => {
  await system.close();
});

const stateOf = async (name: string): Promise<string> => ((await admin.get("/api/pairs")).body.pairs as { name: string; state: string }[]).find((pair) => pair.name === name)!.state;

describe("split and join of a pair's WRL", () => {
  test("split needs confirm; then the staging splits the WRL and every pair in it shows split; join resumes", async () => {
    expect(await stateOf("pair-db")).toBe("replicating");

    const unconfirmed = await admin.post("/api/pairs/pair-db/actions", { action: "split" });
    expect(unconfirmed.status).toBe(400);
    expect(unconfirmed.body.error).toMatchObject({ field: "confirm" });
    expect(unconfirmed.body.error.message).toContain("pair-logs");
    const wrong = await admin.post("/api/pairs/pair-db/actions", { action: "split", confirm: "pair-logs" });
    expect(wrong.status).toBe(400);
    expect(staging.requests("/wrl/split")).toHaveLength(0);

    const split = await admin.post("/api/pairs/pair-db/actions", { action: "split", confirm: "pair-db" });
    expect(split.status).toBe(200);
    expect(split.body).toMatchObject({ ok: true, pair: "pair-db", action: "split", wrl: "fast", result: { wrl: "fast", changed: true, split: { by: "admin" } } });
    expect(staging.requests("/wrl/split").map((r) => [r.method, r.body])).toEqual([["POST", { wrl: "fast", by: "admin" }]]);
    // The WRL is one consistency group: both of its pairs are split.
    expect(await stateOf("pair-db")).toBe("split");
    expect(await stateOf("pair-logs")).toBe("split");

    const join = await admin.post("/api/pairs/pair-logs/actions", { action: "join" });
    expect(join.status).toBe(200);
    expect(join.body).toMatchObject({ ok: true, pair: "pair-logs", action: "join", wrl: "fast", result: { wrl: "fast", wasSplit: true } });
    expect(staging.requests("/wrl/join").map((r) => [r.method, r.body])).toEqual([["POST", { wrl: "fast" }]]);
    expect(await stateOf("pair-db")).toBe("replicating");

    const activity = (await admin.get("/api/activity")).body.activity as { action: string; detail: Record<string, unknown> }[];
    const splitActivity = activity.find((a) => a.action === "pair.split");
    const joinActivity = activity.find((a) => a.action === "pair.join");
    expect(splitActivity?.detail).toMatchObject({ name: "pair-db", staging: "s1", wrl: "fast", ok: true });
    expect(joinActivity?.detail).toMatchObject({ name: "pair-logs", staging: "s1", wrl: "fast", ok: true });
  });

  test("a staging server that is down: 502, and the failed attempt is in the activity log", async () => {
    await staging.stop();
    try {
      const down = await admin.post("/api/pairs/pair-db/actions", { action: "join" });
      expect(down.status).toBe(502);
      expect(down.body.ok).toBe(false);
      const activity = (await admin.get("/api/activity")).body.activity as { action: string; detail: Record<string, unknown> }[];
      expect(activity.find((a) => a.action === "pair.join")?.detail).toMatchObject({ name: "pair-db", staging: "s1", ok: false });
    } finally {
      staging.restart();
    }
  });

  test("a viewer may neither split nor join", async () => {
    const viewer = await userClient(panel.url, admin, "vera", "viewer");
    const before = staging.received.length;
    expect((await viewer.post("/api/pairs/pair-db/actions", { action: "split", confirm: "pair-db" })).status).toBe(403);
    expect((await viewer.post("/api/pairs/pair-db/actions", { action: "join" })).status).toBe(403);
    expect(staging.received.slice(before).filter((r) => r.path.startsWith("/wrl/"))).toHaveLength(0);
  });
});
