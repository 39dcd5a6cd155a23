/**
 * The panel's two-phase commit against real managed processes: `druvaa staging serve --managed`,
 * `druvaa replica apply --managed` and `druvaa client agent`, each asked for its GET /config
 * directly (not through the panel) to see what it really holds.
 *
 * 1. A WRL and a pair commit on every component they touch, and the pair replicates.
 * 2. A component that refuses in prepare (the replica: no such directory; the client: no such
 *    device) aborts the change everywhere: every component keeps its old version and config, no
 *    pending config is left, nothing is created on disk, the reason names the component and field.
 * 3. A component that is unreachable in prepare (the agent SIGKILLed; the replica SIGSTOPped)
 *    aborts the change the same way; restarted or thawed, it runs its old config.
 * 4. A component that misses the commit (the connection cut at POST /config/commit by a proxy in
 *    front of the replica's control port), then is SIGKILLed and restarted: CONFIG_BEHIND while it
 *    is behind; on its return the panel re-sends the commit, the replica opens the new device, the
 *    alert clears, and the new pair's writes reach the replica.
 * 5. Same, but the replica also lost its pending config while down (its file deleted): the panel
 *    prepares it again and commits.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { adminClient, startTestPanel, type ApiClient, type TestPanel } from "../panel/helpers.ts";
import { getJson } from "../helpers/control-http.ts";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.ts";
import { freePort, waitFor } from "../helpers/wait.ts";
import { createImage, isAlive, MiB, plainSha256, qemuIo, sha256File, startTracked } from "./helpers.ts";
import type { RoleProcess } from "../../src/demo/processes.ts";

const volumeBytes = 8 * MiB;
const dir = mkdtempSync(join(tmpdir(), "druvaa-panel-2pc-"));
const ports: Record<string, number> = {};
const processes = new Map<string, RoleProcess>();
let proxy: TcpProxy;
let panel: TestPanel;
let admin: ApiClient;

const roleArgs: Record<string, () => string[]> = {
  staging: () => ["staging", "serve", "--managed", "--listen", `127.0.0.1:${ports.stagingData}`, "--control", `127.0.0.1:${ports.stagingControl}`, "--state-dir", join(dir, "staging"), "--node-id", "staging1"],
  replica: () => ["replica", "apply", "--managed", "--listen", `127.0.0.1:${ports.replicaData}`, "--control", `127.0.0.1:${ports.replicaControl}`, "--restore", `127.0.0.1:${ports.replicaRestore}`, "--state-dir", join(dir, "replica"), "--node-id", "replica1"],
  agent: () => ["client", "agent", "--insecure", "--control", `127.0.0.1:${ports.agentControl}`, "--state-dir", join(dir, "client"), "--node-id", "db1"],
};

async function start(name: string): Promise<RoleProcess> {
  const role = await startTracked(name, roleArgs[name]!());
  processes.set(name, role);
  return role;
}

async function kill(name: string, signal: "SIGKILL" | "SIGTERM" = "SIGKILL"): Promise<void> {
  const role = processes.get(name)!;
  process.kill(role.pid, signal);
  await role.proc.exited;
}

interface ComponentConfig {
  version: number;
  txid: string | null;
  config: Record<string, unknown[]>;
  pending: { txid: string; version: number } | null;
}

/** What a component holds, asked directly at its own control port. */
async function configAt(port: number): Promise<ComponentConfig> {
  const body = (await getJson(`127.0.0.1:${port}`, "/config")) as ComponentConfig;
  return { version: body.version, txid: body.txid, config: body.config, pending: body.pending };
}

const componentPorts = () => ({ s1: ports.stagingControl!, r1: ports.replicaControl!, c1: ports.agentControl! });

async function allConfigs(): Promise<Record<string, ComponentConfig>> {
  const entries = await Promise.all(Object.entries(componentPorts()).map(async ([name, port]) => [name, await configAt(port)] as const));
  return Object.fromEntries(entries);
}

const pairBody = (name: string, device: string, extra: Record<string, unknown> = {}) => ({
  name, client: "c1", deviceName: device, devicePath: join(dir, `${device}.img`), export: `unix:${join(dir, `${device}.sock`)}`, wrl: "fast", replica: "r1",
  replicaDevicePath: join(dir, `replica-${device}.img`), initialSync: "none", ...extra,
});

const uriOf = (device: string) => `nbd+unix:///${device}?socket=${join(dir, `${device}.sock`)}`;

/** Writes a pattern through the device's export (retrying while the export comes up), then waits for the replica to equal the primary. */
async function expectReplicates(device: string, pattern: number, offsetMiB: number): Promise<void> {
  await waitFor(`${device}'s export taking writes`, 30_000, async () => (await qemuIo(uriOf(device), [`write -P ${pattern} ${offsetMiB}M 1M`])).exitCode === 0);
  const primary = await sha256File(join(dir, `${device}.img`));
  await waitFor(`replica of ${device} equal to its primary`, 60_000, async () => existsSync(join(dir, `replica-${device}.img`)) && (await plainSha256(join(dir, `replica-${device}.img`), volumeBytes)) === primary);
}

async function openAlert(component: string, code: string): Promise<boolean> {
  const alerts = (await admin.get("/api/alerts")).body.alerts as { component: string; code: string; clearedAt: string | null }[];
  return alerts.some((alert) => alert.component === component && alert.code === code && alert.clearedAt === null);
}

beforeAll(async () => {
  for (const name of ["stagingData", "stagingControl", "replicaData", "replicaControl", "replicaRestore", "agentControl"]) ports[name] = freePort();
  for (const device of ["disk0", "disk1", "disk2", "disk3"]) await createImage(join(dir, `${device}.img`), volumeBytes);
  // All settled before any failure is thrown: afterAll then stops every process that did start.
  const started = await Promise.allSettled(["replica", "staging", "agent"].map(start));
  for (const outcome of started) if (outcome.status === "rejected") throw outcome.reason;
  proxy = startTcpProxy({ host: "127.0.0.1", port: ports.replicaControl! });
  panel = await startTestPanel({ pollIntervalMs: 1_000, config: { requestTimeoutMs: 2_000, convergeIntervalMs: 300, behindGraceMs: 1_500 } });
  admin = await adminClient(panel.url);
  for (const [name, role, control] of [["s1", "staging", `127.0.0.1:${ports.stagingControl}`], ["r1", "replica", proxy.address], ["c1", "client", `127.0.0.1:${ports.agentControl}`]]) {
    const added = await admin.post("/api/components", { name, role, control });
    expect(added.status).toBe(201);
  }
}, 60_000);

afterAll(async () => {
  await panel?.close();
  proxy?.close();
  for (const role of processes.values()) {
    if (!isAlive(role.pid)) continue;
    try {
      process.kill(role.pid, "SIGCONT");
    } catch {
      // gone meanwhile
    }
    await role.stop().catch(() => undefined);
  }
  rmSync(dir, { recursive: true, force: true });
});

describe("two-phase commit across real managed processes", () => {
  test("a WRL and a pair commit on every component they touch, and the pair replicates", async () => {
    const wrl = await admin.post("/api/wrls", { name: "fast", staging: "s1", paths: [join(dir, "fast.wrl")], sizeBytes: 64 * MiB, replica: "r1" });
    expect({ status: wrl.status, tx: wrl.body.tx?.state }).toEqual({ status: 201, tx: "committed" });
    const pair = await admin.post("/api/pairs", pairBody("pair-a", "disk0"));
    expect({ status: pair.status, tx: pair.body.tx?.state, reasons: pair.body.tx?.reasons }).toEqual({ status: 201, tx: "committed", reasons: [] });

    const configs = await allConfigs();
    expect(Object.fromEntries(Object.entries(configs).map(([name, c]) => [name, [c.version, c.pending]]))).toEqual({ s1: [1, null], r1: [1, null], c1: [1, null] });
    expect((configs.s1!.config.wrls as { name: string }[]).map((w) => w.name)).toEqual(["fast"]);
    expect((configs.r1!.config.devices as { name: string }[]).map((d) => d.name)).toEqual(["disk0"]);
    expect((configs.c1!.config.attachments as { name: string }[]).map((a) => a.name)).toEqual(["pair-a"]);
    await expectReplicates("disk0", 0x11, 1);
  }, 120_000);

  test("a refusal in prepare (replica: no such directory; client: no such device) leaves every component on its old config", async () => {
    const before = await allConfigs();

    const badReplica = await admin.post("/api/pairs", pairBody("pair-b", "disk1", { replicaDevicePath: join(dir, "no-such-dir", "replica-disk1.img") }));
    expect(badReplica.status).toBe(409);
    expect(badReplica.body.tx.state).toBe("aborted");
    expect(badReplica.body.tx.reasons).toEqual([expect.objectContaining({ component: "r1", code: "NOT_FOUND", field: "devices[1].path" })]);
    expect(badReplica.body.tx.components.map((c: { component: string; result: string }) => [c.component, c.result]).sort()).toEqual([["c1", "aborted"], ["r1", "refused"]]);
    // The client had prepared the attachment: aborted, it runs nothing new.
    expect(await allConfigs()).toEqual(before);
    expect(existsSync(join(dir, "disk1.sock"))).toBe(false);

    // With the device's size given, the panel does not probe the client host first: its prepare refuses.
    const badClient = await admin.post("/api/pairs", pairBody("pair-b", "disk1", { devicePath: join(dir, "no-such-disk.img"), deviceSizeBytes: volumeBytes }));
    expect(badClient.status).toBe(409);
    expect(badClient.body.tx.reasons).toEqual([expect.objectContaining({ component: "c1", code: "DEVICE_NOT_FOUND", field: "attachments[1].devices[0].path" })]);
    expect(badClient.body.tx.components.map((c: { component: string; result: string }) => [c.component, c.result]).sort()).toEqual([["c1", "refused"], ["r1", "aborted"]]);
    expect(await allConfigs()).toEqual(before);
    // The replica had nothing to create: no image appeared at the pair's replica path.
    expect(existsSync(join(dir, "replica-disk1.img"))).toBe(false);
    expect((await admin.get("/api/pairs")).body.pairs.map((p: { name: string }) => p.name)).toEqual(["pair-a"]);
  }, 60_000);

  test("an unreachable component in prepare (agent killed; replica frozen) aborts everywhere; back, it runs its old config", async () => {
    const before = await allConfigs();
    await kill("agent");
    try {
      // Without deviceSizeBytes the panel would refuse at once (it cannot probe the device's size).
      const answer = await admin.post("/api/pairs", pairBody("pair-b", "disk1", { deviceSizeBytes: volumeBytes }));
      expect(answer.status).toBe(409);
      expect(answer.body.tx.state).toBe("aborted");
      expect(answer.body.tx.reasons).toEqual([expect.objectContaining({ component: "c1", message: expect.stringContaining("could not be reached") })]);
      // The replica had prepared disk1: aborted, it holds nothing pending.
      expect(await configAt(ports.replicaControl!)).toEqual(before.r1!);
    } finally {
      await start("agent");
    }
    expect(await allConfigs()).toEqual(before);
    await expectReplicates("disk0", 0x22, 2);

    const replica = processes.get("replica")!;
    process.kill(replica.pid, "SIGSTOP");
    let frozen: Awaited<ReturnType<ApiClient["post"]>>;
    try {
      frozen = await admin.post("/api/pairs", pairBody("pair-b", "disk1"));
    } finally {
      process.kill(replica.pid, "SIGCONT");
    }
    expect(frozen.status).toBe(409);
    expect(frozen.body.tx.reasons).toEqual([expect.objectContaining({ component: "r1", message: expect.stringContaining("could not be reached") })]);
    // The replica's prepare may have reached it before the freeze's timeout: the abort, or the
    // panel's convergence (a pending txid of an aborted transaction), drops it.
    await waitFor("no pending config left at the replica", 15_000, async () => (await configAt(ports.replicaControl!)).pending === null);
    expect(await allConfigs()).toEqual(before);
  }, 120_000);

  test("a replica that misses the commit and is restarted converges: CONFIG_BEHIND meanwhile, then the new pair replicates", async () => {
    // Every commit to the replica is lost (the panel's re-sends too) until it is down.
    proxy.dropMatching = /^POST \/config\/commit /;
    const answer = await admin.post("/api/pairs", pairBody("pair-b", "disk1"));
    expect(proxy.dropped).toBeGreaterThanOrEqual(1);
    expect(answer.status).toBe(201);
    expect(answer.body.tx.state).toBe("committed");
    expect(answer.body.tx.components.map((c: { component: string; result: string }) => [c.component, c.result]).sort()).toEqual([["c1", "committed"], ["r1", "commit-pending"]]);
    const txid = answer.body.tx.txid as string;
    const decided = answer.body.tx.components.find((c: { component: string }) => c.component === "r1").version as number;

    // Down before the panel's next round could re-send the commit: it keeps the pending config on disk.
    await kill("replica");
    proxy.dropMatching = undefined;
    await waitFor("CONFIG_BEHIND for the replica", 30_000, () => openAlert("r1", "CONFIG_BEHIND"));
    await start("replica");
    await waitFor("the replica on the decided version", 30_000, async () => (await configAt(ports.replicaControl!)).version === decided);
    const replica = await configAt(ports.replicaControl!);
    expect(replica).toMatchObject({ txid, pending: null });
    expect((replica.config.devices as { name: string }[]).map((d) => d.name)).toEqual(["disk0", "disk1"]);
    await waitFor("CONFIG_BEHIND cleared", 15_000, async () => !(await openAlert("r1", "CONFIG_BEHIND")));
    await waitFor("the panel recording the replica's ack", 15_000, async () => {
      const pair = (await admin.get("/api/pairs")).body.pairs.find((p: { name: string }) => p.name === "pair-b");
      return pair?.configVersion?.acked === pair?.configVersion?.decided;
    });
    await expectReplicates("disk1", 0x33, 3);
    await expectReplicates("disk0", 0x44, 4);
  }, 180_000);

  test("a replica that also lost its pending config while down is prepared again and commits", async () => {
    proxy.dropMatching = /^POST \/config\/commit /;
    const answer = await admin.post("/api/pairs", pairBody("pair-c", "disk2"));
    expect(answer.body.tx.components.find((c: { component: string }) => c.component === "r1").result).toBe("commit-pending");
    const decided = answer.body.tx.components.find((c: { component: string }) => c.component === "r1").version as number;
    await kill("replica");
    proxy.dropMatching = undefined;
    rmSync(join(dir, "replica", "managed-config.pending.json"), { force: false });
    await start("replica");
    await waitFor("the replica on the decided version", 30_000, async () => (await configAt(ports.replicaControl!)).version === decided);
    expect(((await configAt(ports.replicaControl!)).config.devices as { name: string }[]).map((d) => d.name)).toEqual(["disk0", "disk1", "disk2"]);
    // The panel records the convergence once the commit's answer is back (after the replica took it).
    const convergedCount = async () => (await admin.get("/api/activity")).body.activity.filter((a: { action: string }) => a.action === "config.converged").length as number;
    await waitFor("both convergences in the activity log", 15_000, async () => (await convergedCount()) >= 2);
    await expectReplicates("disk2", 0x55, 5);
  }, 180_000);
});
