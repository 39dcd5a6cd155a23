/**
 * The panel's two-phase commit against fake components (config-fake.ts) over real HTTP: a pair
 * across client, staging and replica committed everywhere; a refusal or an unreachable component
 * in prepare aborts everywhere with every reason shown; a component that misses the commit (or
 * also loses its pending config) converges when it comes back.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eventually } from "./config-fake.ts";
import { fakePairBody as pairBody, FakeSystem } from "./fake-system.ts";
import type { ApiClient } from "./helpers.ts";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

let admin: ApiClient;
const system = new FakeSystem({ staging: "0.0.0.0:16001", replica: "127.0.0.1:16003", client: "127.0.0.1:16007" });
const { staging, replica, client, fakes } = system;

beforeAll(async () => {
  ({ admin } = await system.start({ pollIntervalMs: 60_000, config: { requestTimeoutMs: 2_000, convergeIntervalMs: 100, behindGraceMs: 200 } }));
});

afterAll(() => system.close());

const versions = () => fakes.map((fake) => fake.committed.version);

describe("a pair across three components", () => {
  test("a WRL, then a pair: each component prepares and commits its whole config; the transactions and activity say so", async () => {
    const wrl = await admin.post("/api/wrls", { name: "fast", staging: "s1", paths: ["/var/lib/druvaa/wrl/fast.img"], sizeBytes: GiB, replica: "r1", compression: "auto", rpo: "30s" });
    expect(wrl.status).toBe(201);
    expect(wrl.body.tx.state).toBe("committed");
    expect(wrl.body.wrl).toMatchObject({ name: "fast", staging: "s1", replica: "r1", replicaAddress: "127.0.0.1:16003", stagingAddress: "127.0.0.1:16001" });
    expect(staging.committed.version).toBe(1);
    expect(staging.committed.config).toEqual({ wrls: [{ name: "fast", paths: ["/var/lib/druvaa/wrl/fast.img"], sizeBytes: GiB, replica: "127.0.0.1:16003", compression: "auto", rpo: "30s" }] });
    // Nothing of the replica's or client's config changed: they were not asked.
    expect(replica.requests("/config/prepare")).toHaveLength(0);
    expect(client.requests("/config/prepare")).toHaveLength(0);

    const pair = await admin.post("/api/pairs", pairBody("pair-db", "disk0"));
    expect(pair.status).toBe(201);
    expect(pair.body.tx.state).toBe("committed");
    expect(pair.body.tx.components.map((c: { component: string; result: string }) => [c.component, c.result]).sort()).toEqual([["c1", "committed"], ["r1", "committed"]]);
    expect(client.committed.config).toEqual({ attachments: [{ name: "pair-db", devices: [{ name: "disk0", path: "/dev/disk0" }], staging: "127.0.0.1:16001", wrl: "fast", export: "unix:/run/druvaa/disk0.sock", initialSync: "none", enabled: true }] });
    expect(replica.committed.config).toEqual({ devices: [{ name: "disk0", path: "/srv/replica/disk0.img", sizeBytes: GiB + MiB, primarySizeBytes: GiB }] });
    expect(versions()).toEqual([1, 1, 1]);
    expect(fakes.every((fake) => fake.pending === undefined)).toBe(true);

    client.attachments = [{ name: "pair-db", enabled: true, state: "running", status: { mode: "connected" } }];
    const pairs = await admin.get("/api/pairs");
    expect(pairs.body.pairs).toHaveLength(1);
    expect(pairs.body.pairs[0]).toMatchObject({ name: "pair-db", staging: "s1", replica: "r1", deviceSizeBytes: GiB, state: "replicating", configVersion: { decided: 1, acked: 1 } });
    const wrls = await admin.get("/api/wrls");
    expect(wrls.body.wrls[0].pairs).toEqual(["pair-db"]);

    const txs = await admin.get("/api/transactions");
    expect(txs.body.transactions.map((t: { state: string; summary: string }) => [t.state, t.summary])).toEqual([["committed", "create pair pair-db (c1:/dev/disk0 → WRL fast)"], ["committed", "create WRL fast on s1"]]);
    const actions = (await admin.get("/api/activity")).body.activity.map((a: { action: string }) => a.action);
    expect(actions).toContain("wrl.create");
    expect(actions).toContain("pair.create");
  });

  test("stop and start a pair: only its client host gets a new config, with enabled false then true", async () => {
    const stopped = await admin.post("/api/pairs/pair-db/actions", { action: "stop" });
    expect(stopped.status).toBe(200);
    expect(client.committed.version).toBe(2);
    expect((client.committed.config as any).attachments[0].enabled).toBe(false);
    expect((await admin.get("/api/pairs")).body.pairs[0].state).toBe("stopped");
    expect((await admin.post("/api/pairs/pair-db/actions", { action: "start" })).status).toBe(200);
    expect((client.committed.config as any).attachments[0].enabled).toBe(true);
    expect(versions()).toEqual([1, 1, 3]);
  });

  test("a WRL in use is not removed; a snapshot goes to the replica; failover and split need confirm", async () => {
    const removal = await admin.delete("/api/wrls/fast");
    expect(removal.status).toBe(409);
    expect(removal.body.error.code).toBe("WRL_IN_USE");
    expect((await admin.delete("/api/components/s1")).body.error.code).toBe("COMPONENT_IN_USE");
    const snapshot = await admin.post("/api/pairs/pair-db/actions", { action: "snapshot", export: "unix:/run/druvaa/snap.sock" });
    expect(snapshot.status).toBe(200);
    expect(replica.requests("/snapshots")[0]!.body).toEqual({ device: "disk0", export: "unix:/run/druvaa/snap.sock" });
    const failover = await admin.post("/api/pairs/pair-db/actions", { action: "failover", export: "127.0.0.1:10810" });
    expect(failover.status).toBe(400);
    expect(failover.body.error.field).toBe("confirm");
    const resync = await admin.post("/api/pairs/pair-db/actions", { action: "resync" });
    expect(resync.status).toBe(200);
    expect(client.requests("/attachment/resync").at(-1)).toMatchObject({ method: "POST" });
    const verify = await admin.post("/api/pairs/pair-db/actions", { action: "verify", repair: true });
    expect(verify.body.result).toEqual({ ok: true, name: "pair-db", device: "disk0", repair: true });
    // Split without confirm: refused before the staging is asked (config-split.test.ts does the rest).
    const split = await admin.post("/api/pairs/pair-db/actions", { action: "split" });
    expect(split.status).toBe(400);
    expect(split.body.error.field).toBe("confirm");
    expect(staging.requests("/wrl/split")).toHaveLength(0);
  });
});

describe("aborts: every component stays on its old config", () => {
  test("the replica refuses in prepare: 409 naming the field; the others got abort; /api/transactions shows the reason", async () => {
    const before = versions();
    replica.refusePrepare = { code: "REPLICA_DEVICE_TOO_SMALL", message: "/srv/replica/disk1.img: 512 MiB is less than the primary's 1 GiB plus the header reserve", field: "devices[1].sizeBytes" };
    const answer = await admin.post("/api/pairs", pairBody("pair-two", "disk1", { replicaSizeBytes: 512 * MiB }));
    replica.refusePrepare = undefined;
    expect(answer.status).toBe(409);
    expect(answer.body.error).toMatchObject({ code: "CONFIG_REFUSED", field: "pair.replicaSizeBytes", reason: "REPLICA_DEVICE_TOO_SMALL" });
    expect(answer.body.error.message).toContain("r1: /srv/replica/disk1.img: 512 MiB");
    expect(answer.body.tx.state).toBe("aborted");
    expect(versions()).toEqual(before);
    expect(fakes.every((fake) => fake.pending === undefined)).toBe(true);
    const txid = answer.body.tx.txid;
    expect(client.requests("/config/abort").map((r) => r.body.txid)).toContain(txid);
    expect(client.requests("/config/commit").map((r) => r.body.txid)).not.toContain(txid);

    const listed = (await admin.get("/api/transactions?limit=1")).body.transactions[0];
    expect(listed).toMatchObject({ txid, state: "aborted" });
    expect(listed.reasons).toEqual([{ component: "r1", code: "REPLICA_DEVICE_TOO_SMALL", message: expect.stringContaining("512 MiB"), field: "devices[1].sizeBytes", formField: "pair.replicaSizeBytes" }]);
    expect(listed.components.map((c: { component: string; result: string }) => [c.component, c.result]).sort()).toEqual([["c1", "aborted"], ["r1", "refused"]]);
    expect((await admin.get("/api/pairs")).body.pairs.map((p: { name: string }) => p.name)).toEqual(["pair-db"]);
  });

  test("the client host is unreachable in prepare: aborted everywhere, the reason names it", async () => {
    const before = versions();
    await client.stop();
    try {
      const answer = await admin.post("/api/pairs", pairBody("pair-three", "disk3", { deviceSizeBytes: GiB }));
      expect(answer.status).toBe(409);
      expect(answer.body.tx.state).toBe("aborted");
      expect(answer.body.tx.reasons).toHaveLength(1);
      expect(answer.body.tx.reasons[0]).toMatchObject({ component: "c1", code: "NET_CONNECT_FAILED" });
      expect(answer.body.error.message).toContain("c1: prepare: c1 could not be reached");
      expect(replica.pending).toBeUndefined();
      expect(replica.requests("/config/abort").map((r) => r.body.txid)).toContain(answer.body.tx.txid);
    } finally {
      client.restart();
    }
    expect(versions()).toEqual(before);
  });
});

describe("convergence", () => {
  test("a client host down during commit gets the commit re-sent when it is back; CONFIG_BEHIND raised meanwhile, then cleared", async () => {
    client.downOnCommit = true;
    const answer = await admin.post("/api/pairs", pairBody("pair-four", "disk4"));
    expect(answer.status).toBe(201);
    expect(answer.body.tx.components.find((c: { component: string }) => c.component === "c1").result).toBe("commit-pending");
    const decided = answer.body.tx.components.find((c: { component: string }) => c.component === "c1").version;
    expect(client.committed.version).toBe(decided - 1);
    await eventually("CONFIG_BEHIND raised for c1", async () => (await admin.get("/api/alerts")).body.alerts.some((a: any) => a.component === "c1" && a.code === "CONFIG_BEHIND" && a.clearedAt === null));
    client.restart();
    await eventually("c1 on the decided version", () => client.committed.version === decided);
    expect(client.committed.txid).toBe(answer.body.tx.txid);
    expect((client.committed.config as any).attachments.map((a: { name: string }) => a.name)).toEqual(["pair-db", "pair-four"]);
    await eventually("CONFIG_BEHIND cleared", async () => !(await admin.get("/api/alerts")).body.alerts.some((a: any) => a.code === "CONFIG_BEHIND" && a.clearedAt === null));
    await eventually("acked", async () => (await admin.get("/api/pairs")).body.pairs.find((p: any) => p.name === "pair-four").configVersion.acked === decided);
  });

  test("a component that lost its pending config gets prepare and commit of the decided config", async () => {
    client.downOnCommit = true;
    const answer = await admin.post("/api/pairs", pairBody("pair-five", "disk5"));
    expect(answer.status).toBe(201);
    const txid = answer.body.tx.txid;
    client.losePending();
    const preparesBefore = client.requests("/config/prepare").filter((r) => r.body.txid === txid).length;
    client.restart();
    await eventually("c1 committed the decided txid", () => client.committed.txid === txid);
    expect(client.requests("/config/prepare").filter((r) => r.body.txid === txid).length).toBe(preparesBefore + 1);
    expect((client.committed.config as any).attachments.map((a: { name: string }) => a.name)).toEqual(["pair-db", "pair-five", "pair-four"]);
  });

  test("an apply failure reported by GET /config raises CONFIG_APPLY_FAILED; a clean apply clears it", async () => {
    client.applyError = { code: "NOT_A_DEVICE", message: "/dev/disk5 is not a block device" };
    await eventually("CONFIG_APPLY_FAILED raised", async () => (await admin.get("/api/alerts")).body.alerts.some((a: any) => a.code === "CONFIG_APPLY_FAILED" && a.clearedAt === null && a.message.includes("/dev/disk5")));
    client.applyError = undefined;
    await eventually("CONFIG_APPLY_FAILED cleared", async () => !(await admin.get("/api/alerts")).body.alerts.some((a: any) => a.code === "CONFIG_APPLY_FAILED" && a.clearedAt === null));
  });
});
