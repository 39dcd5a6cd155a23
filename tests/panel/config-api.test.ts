/**
 * The configuration API's edge against fake components (config-fake.ts): who may change what,
 * every bad field refused with 400 and its name, SQL/HTML-looking input refused or stored inert,
 * the wizard's set as one transaction, removing a pair, probe and sizing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { FakeSystem } from "./fake-system.ts";
import { userClient, type ApiClient, type TestPanel } from "./helpers.ts";

const GiB = 1024 ** 3;

let panel: TestPanel;
let admin: ApiClient;
let viewer: ApiClient;
const system = new FakeSystem({ staging: "127.0.0.1:16101", replica: "127.0.0.1:16103", client: "127.0.0.1:16107" });
const { staging, replica, client, fakes } = system;

beforeAll(async () => {
  ({ panel, admin } = await system.start({ pollIntervalMs: 60_000, config: { requestTimeoutMs: 2_000, convergeIntervalMs: 60_000 } }));
  viewer = await userClient(panel.url, admin, "vera", "viewer");
});

afterAll(() => system.close());

const wrl = { name: "fast", staging: "s1", paths: ["/var/lib/druvaa/wrl/fast.img"], sizeBytes: "1GiB", replica: "r1" };
const pair = { name: "pair-db", client: "c1", deviceName: "disk0", devicePath: "/dev/sdb", export: "unix:/run/druvaa/disk0.sock", wrl: "fast", replica: "r1", replicaDevicePath: "/srv/replica/disk0.img", changemap: "cm-db", initialSync: "checksum", rateLimit: "50MiB/s" };
const prepares = () => fakes.reduce((sum, fake) => sum + fake.requests("/config/prepare").length, 0);

describe("roles", () => {
  test("a viewer reads the configuration but gets 403 on every change route; nothing reaches a component", async () => {
    const changes: [string, string, unknown][] = [
      ["POST", "/api/wrls", wrl], ["DELETE", "/api/wrls/fast", undefined], ["POST", "/api/changemaps", { name: "cm", client: "c1", path: "/var/lib/druvaa/cm.map" }], ["DELETE", "/api/changemaps/cm", undefined],
      ["POST", "/api/pairs", pair], ["DELETE", "/api/pairs/pair-db", undefined], ["POST", "/api/pairs/pair-db/actions", { action: "stop" }],
      ["POST", "/api/wizard", { wrl, pair }], ["GET", "/api/probe?component=c1&path=/dev/sdb", undefined],
    ];
    for (const [method, path, body] of changes) {
      const answer = await viewer.request(method, path, body);
      expect({ path, status: answer.status, code: answer.body.error.code }).toEqual({ path, status: 403, code: "FORBIDDEN" });
    }
    expect(prepares()).toBe(0);
    expect(client.requests("/probe")).toHaveLength(0);
    for (const path of ["/api/wrls", "/api/changemaps", "/api/pairs", "/api/transactions", "/api/sizing?primarySizeBytes=1073741824"]) {
      expect((await viewer.get(path)).status).toBe(200);
    }
  });
});

describe("fields", () => {
  test("each bad field answers 400 BAD_FIELD naming it (error.field too), and nothing is sent to a component", async () => {
    const cases: [string, Record<string, unknown>, string, string][] = [
      ["/api/wrls", { ...wrl, name: undefined }, "wrl.name", "is required"],
      ["/api/wrls", { ...wrl, paths: ["relative/path.img"] }, "wrl.paths[0]", "must be an absolute path"],
      ["/api/wrls", { ...wrl, paths: [] }, "wrl.paths", "must be a list of 1 to 8 paths"],
      ["/api/wrls", { ...wrl, sizeBytes: -5 }, "wrl.sizeBytes", "positive whole number"],
      ["/api/wrls", { ...wrl, sizeBytes: 1000 }, "wrl.sizeBytes", "512-byte sectors"],
      ["/api/wrls", { ...wrl, staging: "r1" }, "wrl.staging", '"r1" is a replica, not a staging'],
      ["/api/wrls", { ...wrl, replica: "nobody" }, "wrl.replica", 'no component "nobody"'],
      ["/api/wrls", { ...wrl, replicaAddress: "10.0.0.9:0" }, "wrl.replicaAddress", "real host and port"],
      ["/api/wrls", { ...wrl, compression: 25 }, "wrl.compression", "zstd level from 1 to 19"],
      ["/api/wrls", { ...wrl, rateLimit: "fast" }, "wrl.rateLimit", "cannot read \"fast\""],
      ["/api/wrls", { ...wrl, rpo: "soon" }, "wrl.rpo", "as a duration"],
      ["/api/changemaps", { name: "cm", client: "s1", path: "/var/lib/druvaa/cm.map" }, "changemap.client", "is a staging, not a client"],
      ["/api/pairs", { ...pair, export: "nowhere" }, "pair.export", "listen address"],
      ["/api/pairs", { ...pair, initialSync: "magic" }, "pair.initialSync", "must be one of none, network, checksum, media"],
      ["/api/pairs", { ...pair, changemap: undefined }, "pair.initialSync", "checksum needs a change map"],
      ["/api/pairs", { ...pair, deviceSizeBytes: "lots" }, "pair.deviceSizeBytes", "as a size"],
      ["/api/pairs", { ...pair, wrl: "nope" }, "pair.wrl", 'no WRL "nope"'],
      ["/api/pairs", { ...pair, enabled: "yes" }, "pair.enabled", "must be true or false"],
      ["/api/wizard", { wrl: { ...wrl, sizeBytes: "huge" }, pair }, "wrl.sizeBytes", "as a size"],
      ["/api/wizard", { wrl }, "pair", "is required"],
      ["/api/pairs/pair-db/actions", { action: "explode" }, "action", "must be one of start, stop"],
    ];
    for (const [path, body, field, message] of cases) {
      const answer = await admin.post(path, body);
      expect({ path, field, status: answer.status, code: answer.body.error.code, errorField: answer.body.error.field }).toEqual({ path, field, status: 400, code: "BAD_FIELD", errorField: field });
      expect(answer.body.error.message).toStartWith(`${field}: `);
      expect(answer.body.error.message).toContain(message);
    }
    for (const query of ["limit=0", "limit=abc", "limit=100000"]) {
      const answer = await admin.get(`/api/transactions?${query}`);
      expect(answer.status).toBe(400);
      expect(answer.body.error.field).toBe("limit");
    }
    expect(prepares()).toBe(0);
  });

  test("a replica whose data address cannot be learnt (down) is refused naming wrl.replicaAddress, unless it is given", async () => {
    expect((await admin.post("/api/components", { name: "r-down", role: "replica", control: "127.0.0.1:1" })).status).toBe(201);
    const refused = await admin.post("/api/wrls", { ...wrl, name: "slow", replica: "r-down" });
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: "ADDRESS_UNKNOWN", field: "wrl.replicaAddress" });
    expect(prepares()).toBe(0);
    const given = await admin.post("/api/wrls", { ...wrl, name: "slow", replica: "r-down", replicaAddress: "10.0.0.9:6003" });
    expect(given.status).toBe(201);
    expect((staging.committed.config as any).wrls).toEqual([{ name: "slow", paths: wrl.paths, sizeBytes: 1024 ** 3, replica: "10.0.0.9:6003" }]);
    expect((await admin.delete("/api/wrls/slow")).status).toBe(200);
    expect((await admin.delete("/api/components/r-down")).status).toBe(200);
  });

  test("SQL- and HTML-looking names are refused; an HTML-looking path is stored as given and answered escaped", async () => {
    for (const name of ["x'; DROP TABLE pairs; --", "<script>alert(1)</script>", "a b", "../etc"]) {
      const answer = await admin.post("/api/wrls", { ...wrl, name });
      expect(answer.status).toBe(400);
      expect(answer.body.error.field).toBe("wrl.name");
    }
    const odd = "/var/lib/druvaa/<b>x</b>'); DROP TABLE wrls; --.img";
    const created = await admin.post("/api/wrls", { ...wrl, name: "odd", paths: [odd] });
    expect(created.status).toBe(201);
    const raw = await fetch(`${panel.url}/api/wrls`, { headers: { cookie: admin.cookie! } }).then((r) => r.text());
    expect(raw).not.toContain("<b>");
    expect(raw).toContain("\\u003cb\\u003ex");
    const listed = (await admin.get("/api/wrls")).body.wrls;
    expect(listed.map((w: { name: string }) => w.name)).toEqual(["odd"]);
    expect(listed[0].paths).toEqual([odd]);
    expect((staging.committed.config as any).wrls[0].paths).toEqual([odd]);
    expect((await admin.delete("/api/wrls/odd")).status).toBe(200);
    expect(staging.committed.config).toEqual({ wrls: [] });
    expect((await admin.delete("/api/wrls/odd")).status).toBe(404);
  });
});

describe("the wizard, removal, probe, sizing", () => {
  test("the wizard's WRL, change map and pair are one transaction on all three components; a name taken refuses the whole set", async () => {
    const before = { staging: staging.committed.version, replica: replica.committed.version, client: client.committed.version };
    const answer = await admin.post("/api/wizard", { wrl: { ...wrl, rateLimit: "20MiB/s" }, changemap: { name: "cm-db", client: "c1", path: "/var/lib/druvaa/pair-db.map" }, pair });
    expect(answer.status).toBe(201);
    expect(answer.body.tx.components.map((c: { component: string }) => c.component).sort()).toEqual(["c1", "r1", "s1"]);
    expect(staging.committed.version).toBe(before.staging + 1);
    expect(replica.committed.version).toBe(before.replica + 1);
    expect(client.committed.version).toBe(before.client + 1);
    expect((client.committed.config as any).attachments[0]).toMatchObject({ name: "pair-db", changemap: "/var/lib/druvaa/pair-db.map", initialSync: "checksum", rateLimit: "50MiB/s", staging: "127.0.0.1:16101" });
    expect((await admin.get("/api/changemaps")).body.changemaps[0]).toMatchObject({ name: "cm-db", client: "c1", pairs: ["pair-db"] });
    const inUse = await admin.delete("/api/changemaps/cm-db");
    expect(inUse.status).toBe(409);
    expect(inUse.body.error.code).toBe("CHANGEMAP_IN_USE");

    const sentBefore = prepares();
    const again = await admin.post("/api/wizard", { wrl: { ...wrl, name: "other" }, pair: { ...pair, name: "pair-x", deviceName: "disk9", devicePath: "/dev/sdz", export: "unix:/run/druvaa/x.sock", replicaDevicePath: "/srv/replica/x.img" } });
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: "PATH_TAKEN", field: "wrl.paths" });
    const shared = await admin.post("/api/pairs", { ...pair, name: "pair-y", deviceName: "disk8", devicePath: "/dev/sdy", export: "unix:/run/druvaa/y.sock", replicaDevicePath: "/srv/replica/y.img" });
    expect(shared.status).toBe(409);
    expect(shared.body.error.field).toBe("pair.changemap");
    expect(prepares()).toBe(sentBefore);
    expect((await admin.get("/api/wrls")).body.wrls.map((w: { name: string }) => w.name)).toEqual(["fast"]);
  });

  test("removing a pair takes its attachment and replica device away; probe forwards to the client agent; sizing answers", async () => {
    const removed = await admin.delete("/api/pairs/pair-db");
    expect(removed.status).toBe(200);
    expect(client.committed.config).toEqual({ attachments: [] });
    expect(replica.committed.config).toEqual({ devices: [] });
    expect((await admin.get("/api/pairs")).body.pairs).toEqual([]);
    expect((await admin.delete("/api/changemaps/cm-db")).status).toBe(200);
    expect((await admin.get("/api/changemaps")).body.changemaps).toEqual([]);

    const probe = await admin.get(`/api/probe?component=c1&path=${encodeURIComponent("/dev/sdb")}`);
    expect(probe.status).toBe(200);
    expect(probe.body).toMatchObject({ component: "c1", path: "/dev/sdb", kind: "block", sizeBytes: GiB });
    expect((await admin.get("/api/probe?component=s1&path=/dev/sdb")).body.error.field).toBe("component");
    expect((await admin.get("/api/probe?component=c1&path=sdb")).body.error.field).toBe("path");

    const sizing = await admin.get(`/api/sizing?primarySizeBytes=${GiB}&writeBytesPerSecond=1000000&outageSeconds=3600`);
    expect(sizing.status).toBe(200);
    expect(sizing.body.replicaDeviceSizeBytes).toBe(GiB + 1024 * 1024);
    expect(sizing.body.stagingWrlSizeBytes).toBe(Math.ceil((10 * 1_000_000 * 3600) / 512) * 512);
    expect((await admin.get("/api/sizing?primarySizeBytes=-1")).body.error.field).toBe("primarySizeBytes");
  });
});
