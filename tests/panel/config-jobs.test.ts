/**
 * The panel's restore and failback of a pair (src/roles/panel/config-jobs.ts) against fake
 * components (config-fake.ts) over real HTTP: each needs confirm, then becomes a job posted to the
 * pair's client agent with the replica's restore address (from its live status, a wildcard host
 * replaced by its control host) or the replica's and staging's control addresses; the agent's
 * refusal keeps its code; GET /api/jobs lists every client agent's jobs; a viewer reads them but
 * cannot start one.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { FakeComponent } from "./config-fake.ts";
import { fakePairBody, FakeSystem, fakeWrlBody } from "./fake-system.ts";
import { userClient, type ApiClient, type TestPanel } from "./helpers.ts";

let panel: TestPanel;
let admin: ApiClient;
let viewer: ApiClient;
const otherClient = new FakeComponent("client", "127.0.0.1:16017");
const downClient = new FakeComponent("client", "127.0.0.1:16027");
const system = new FakeSystem({ staging: "0.0.0.0:16001", replica: "127.0.0.1:16003", client: "127.0.0.1:16007" }, [["c2", otherClient], ["c3", downClient]]);
const { staging, replica, client } = system;

beforeAll(async () => {
  replica.restoreAddress = "0.0.0.0:16005";
  ({ panel, admin } = await system.start({ pollIntervalMs: 60_000, config: { requestTimeoutMs: 2_000, convergeIntervalMs: 100, behindGraceMs: 200 } }));
  viewer = await userClient(panel.url, admin, "vera", "viewer");
  await downClient.stop();
  expect((await admin.post("/api/wrls", fakeWrlBody)).status).toBe(201);
  expect((await admin.post("/api/pairs", fakePairBody("pair-db", "disk0"))).status).toBe(201);
});

afterAll(() => system.close());

const act = (body: Record<string, unknown>, as: ApiClient = admin) => as.post("/api/pairs/pair-db/actions", body);

describe("restore and failback: jobs of the pair's client agent", () => {
  test("restore without confirm is refused on the confirm field; with it the agent gets the job with the replica's restore address", async () => {
    const unconfirmed = await act({ action: "restore", to: "/srv/restore/disk0.img" });
    expect(unconfirmed.status).toBe(400);
    expect(unconfirmed.body.error.field).toBe("confirm");
    const wrongName = await act({ action: "restore", to: "/srv/restore/disk0.img", confirm: "pair-other" });
    expect(wrongName.body.error.field).toBe("confirm");
    expect(client.requests("/jobs")).toHaveLength(0);

    const relative = await act({ action: "restore", to: "restore.img", confirm: "pair-db" });
    expect(relative.status).toBe(400);
    expect(relative.body.error.field).toBe("to");
    expect(client.requests("/jobs")).toHaveLength(0);

    const started = await act({ action: "restore", to: "/srv/restore/disk0.img", at: "before-upgrade", confirm: "pair-db" });
    expect(started.status).toBe(200);
    expect(started.body).toMatchObject({ ok: true, pair: "pair-db", action: "restore", job: { id: "job-1", kind: "restore", state: "running" } });
    expect(client.requests("/jobs").at(-1)).toMatchObject({ method: "POST", body: { kind: "restore", attachment: "pair-db", device: "disk0", to: "/srv/restore/disk0.img", at: "before-upgrade", replicaRestore: "127.0.0.1:16005" } });

    // One job per attachment: the agent's refusal comes back with its code.
    const busy = await act({ action: "restore", to: "/srv/restore/disk0-2.img", confirm: "pair-db" });
    expect(busy.status).toBe(409);
    expect(busy.body.error.code).toBe("JOB_RUNNING");
    expect(busy.body.error.message).toContain("c1:");

    const activity = (await admin.get("/api/activity")).body.activity.filter((a: { action: string }) => a.action === "pair.restore");
    expect(activity.length).toBeGreaterThanOrEqual(2);
  });

  test("failback without confirm is refused; with it the agent gets the replica's and staging's control addresses, keep and dryRun", async () => {
    client.jobs = [];
    const unconfirmed = await act({ action: "failback", keep: "dr" });
    expect(unconfirmed.status).toBe(400);
    expect(unconfirmed.body.error.field).toBe("confirm");
    const badKeep = await act({ action: "failback", keep: "both", confirm: "pair-db" });
    expect(badKeep.status).toBe(400);
    expect(badKeep.body.error.field).toBe("keep");
    const before = client.requests("/jobs").length;
    expect(before).toBe(2);

    const started = await act({ action: "failback", keep: "dr", dryRun: true, confirm: "pair-db" });
    expect(started.status).toBe(200);
    expect(started.body).toMatchObject({ ok: true, pair: "pair-db", action: "failback", job: { kind: "failback", state: "running" } });
    expect(client.requests("/jobs").at(-1)!.body).toEqual({ kind: "failback", attachment: "pair-db", replica: replica.control, staging: staging.control, keep: "dr", dryRun: true });
    const activity = (await admin.get("/api/activity")).body.activity.find((a: { action: string }) => a.action === "pair.failback");
    expect(activity).toBeDefined();
  });

  test("GET /api/jobs lists every client agent's jobs, newest first, and the agents that did not answer; a viewer reads it but cannot start a job", async () => {
    otherClient.jobs = [{ id: "job-9", kind: "restore", attachment: "pair-web", state: "done", startedAtMs: 1, endedAtMs: 2, exitCode: 0, result: { ok: true }, error: null, logPath: "/x.log" }];
    const listed = await viewer.get("/api/jobs");
    expect(listed.status).toBe(200);
    expect(listed.body.jobs.map((job: { component: string; id: string; pair: string }) => [job.component, job.pair, job.id])).toEqual([["c1", "pair-db", client.jobs[0]!.id], ["c2", "pair-web", "job-9"]]);
    expect(listed.body.jobs[0]).toMatchObject({ kind: "failback", state: "running" });
    expect(listed.body.unreachable.map((entry: { component: string }) => entry.component)).toEqual(["c3"]);

    const jobsBefore = client.requests("/jobs").filter((r) => r.method === "POST").length;
    const forbidden = await act({ action: "restore", to: "/srv/restore/v.img", confirm: "pair-db" }, viewer);
    expect(forbidden.status).toBe(403);
    const forbiddenFailback = await act({ action: "failback", confirm: "pair-db" }, viewer);
    expect(forbiddenFailback.status).toBe(403);
    expect(client.requests("/jobs").filter((r) => r.method === "POST").length).toBe(jobsBefore);
  });
});
