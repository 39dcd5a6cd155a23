/**
 * `druvaa client agent` with real processes: a real replica and staging server (a WRL made by
 * `druvaa wrl create`), the agent started with --insecure, and an attachment pushed to it the way
 * the panel does (prepare + commit). Its change map is missing and created at commit; qemu-io
 * writes through the NBD export and the replica ends equal to the primary. A SIGKILLed child is
 * restarted (restarts 1 in /status) and keeps replicating; disabling the attachment removes its
 * export and ends the child; the agent's SIGTERM leaves no child behind; a new agent on the same
 * state directory runs the committed attachment again.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { inspectChangeMapAtPath } from "../../src/changemap/index.ts";
import { AgentFleet, commitConfig, oneDeviceAttachment, until } from "./agent-jobs-setup.ts";
import { expectReplicaEqualsPrimary, isAlive, MiB, qemuIo, startSystem, type System } from "./helpers.ts";

const sizeBytes = 8 * MiB;
let system: System | undefined;
const fleet = new AgentFleet();

afterEach(async () => {
  await fleet.stopAll();
  await system?.stop();
  system = undefined;
});

/** An agent with --insecure: call(path, body?) → the JSON answer of its control port; commit(…) as the panel does. */
async function startAgent(stateDir: string) {
  const started = await fleet.start(stateDir);
  return { agent: started.agent, call: started.json, commit: (txid: string, version: number, config: unknown) => commitConfig(started.call, txid, version, config) };
}

/** Alive and not a zombie: an orphan that exited may wait a while for this machine's init to reap it. */
function isRunning(pid: number): boolean {
  try {
    return isAlive(pid) && !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false; // gone between the two looks
  }
}

describe("client agent: attachments as child processes", () => {
  test("commit starts an attachment that replicates; a killed child is restarted; disable stops it; a changed one restarts; SIGTERM leaves no child; a new agent runs it again", async () => {
    const sys = (system = await startSystem({ sizeBytes, client: false }));
    const stateDir = join(sys.dir, "agent");
    const mapPath = join(sys.dir, "maps", "pair-a.map");
    mkdirSync(join(sys.dir, "maps"));
    const socket = join(sys.dir, "agent-export.sock");
    const uri = `nbd+unix:///disk0?socket=${socket}`;
    const attachment = oneDeviceAttachment("pair-a", { primary: sys.primaryPath("disk0"), staging: sys.stagingListen, wrl: sys.wrlName, socket, changemap: mapPath });
    let { agent, call, commit } = await startAgent(stateDir);

    // Prepare changes nothing; commit creates the change map and starts the child.
    expect(await call("/config/prepare", { txid: "tx-1", version: 1, config: { attachments: [attachment] } })).toMatchObject({ ok: true });
    expect(existsSync(mapPath)).toBe(false);
    expect((await call("/status")).attachments).toEqual([]);
    const committed = await call("/config/commit", { txid: "tx-1" });
    expect(committed).toMatchObject({ ok: true, version: 1 });
    expect(committed.applied.error).toBeUndefined();
    expect((await inspectChangeMapAtPath(mapPath)).regions.map((r) => [r.name, r.volumeSizeBytes])).toEqual([["disk0", sizeBytes]]);
    const running = await call("/status");
    expect(running).toMatchObject({ role: "client", nodeId: "db1", managed: { version: 1, applied: { version: 1 } } });
    const first = running.attachments[0];
    expect(first).toMatchObject({ name: "pair-a", enabled: true, state: "running", restarts: 0, addresses: { export: `unix:${socket}` } });
    expect(first.status).toMatchObject({ role: "client", nodeId: "db1", staging: { connected: true }, devices: [{ name: "disk0" }] });
    expect(isAlive(first.pid)).toBe(true);

    // Writes through the child's export reach the replica.
    const wrote = await qemuIo(uri, ["write -P 0x5a 0 1M", "write -P 0xa5 3M 512k", "write -P 0x11 7M 4k"]);
    expect(wrote.exitCode).toBe(0);
    await expectReplicaEqualsPrimary(sys);

    // SIGKILL the child: restarted (once), and it serves and replicates again.
    process.kill(first.pid, "SIGKILL");
    const restarted = await until("child restarted", () => call("/status"), (s) => s.attachments[0].restarts === 1 && s.attachments[0].state === "running");
    const second = restarted.attachments[0];
    expect(second.pid).not.toBe(first.pid);
    expect(second.lastExit).toMatchObject({ signal: "SIGKILL" });
    expect(isAlive(first.pid)).toBe(false);
    expect((await qemuIo(uri, ["write -P 0x33 2M 64k"])).exitCode).toBe(0);
    await expectReplicaEqualsPrimary(sys);
    expect(readFileSync(join(stateDir, "attachments", "pair-a.log"), "utf8").match(/druvaa client agent: starting/g)).toHaveLength(2);

    // The panel's per-pair actions go through the agent to the attachment's own routes.
    const resync = await call("/attachment/resync?name=pair-a", {});
    expect(resync.ok).not.toBe(false);
    const verify = await call("/attachment/verify?name=pair-a", { device: "disk0" });
    expect(verify).toMatchObject({ device: "disk0" });
    const runs = await fetch(`http://${String(agent.ready.control)}/attachment/verify?name=pair-a`).then((r) => r.json() as Promise<any>);
    expect(runs.runs.map((run: { id: unknown }) => run.id)).toContain(verify.id);
    const unknown = await call("/attachment/resync?name=nope", {});
    expect(unknown).toMatchObject({ ok: false, error: { code: "ATTACHMENT_NOT_RUNNING" } });

    // Disabled: the child ends, its export is gone; the attachment is still listed.
    await commit("tx-2", 2, { attachments: [{ ...attachment, enabled: false }] });
    const disabled = (await call("/status")).attachments[0];
    expect(disabled).toMatchObject({ name: "pair-a", enabled: false, state: "stopped", pid: null });
    expect(isAlive(second.pid)).toBe(false);
    expect(existsSync(socket)).toBe(false);
    expect((await qemuIo(uri, ["read 0 4k"])).exitCode).not.toBe(0);

    // Enabled again.
    await commit("tx-3", 3, { attachments: [attachment] });
    const third = (await call("/status")).attachments[0];
    // The crash count is the attachment's over the agent's life: a deliberate stop and start is not one.
    expect(third).toMatchObject({ state: "running", restarts: 1, lastExit: { code: 0, signal: null } });
    // A changed setting restarts the child with it.
    await commit("tx-4", 4, { attachments: [{ ...attachment, rateLimit: "50MiB/s" }] });
    const fourth = (await call("/status")).attachments[0];
    expect(fourth).toMatchObject({ state: "running", restarts: 1 });
    expect(isAlive(third.pid)).toBe(false);
    expect(readFileSync(`/proc/${fourth.pid}/cmdline`, "utf8").split("\0")).toContain("50MiB/s");

    // The agent is told to stop: no child is left.
    expect(await fleet.stop(agent)).toBe(0);
    expect(isAlive(fourth.pid)).toBe(false);
    expect(existsSync(socket)).toBe(false);

    // A new agent on the same state directory runs the committed attachment again.
    ({ agent, call } = await startAgent(stateDir));
    expect(agent.ready.configVersion).toBe(4);
    const again = (await call("/status")).attachments[0];
    expect(again).toMatchObject({ name: "pair-a", state: "running", restarts: 0, status: { devices: [{ name: "disk0" }] } });
    expect((await qemuIo(uri, ["write -P 0x77 5M 256k"])).exitCode).toBe(0);
    await expectReplicaEqualsPrimary(sys);
    expect(await fleet.stop(agent)).toBe(0);
    expect(isAlive(again.pid)).toBe(false);
  }, 240_000);

  test("an attachment that cannot start at commit (staging down) reports the apply error; once the agent's retry brings it up, the error is cleared", async () => {
    const sys = (system = await startSystem({ sizeBytes, client: false }));
    const socket = join(sys.dir, "agent-export.sock");
    // No change map: a client that cannot reach staging at start exits, so the commit's apply fails.
    const attachment = oneDeviceAttachment("pair-a", { primary: sys.primaryPath("disk0"), staging: sys.stagingListen, wrl: sys.wrlName, socket });
    const { call } = await startAgent(join(sys.dir, "agent"));
    await sys.kill("staging");
    expect(await call("/config/prepare", { txid: "tx-1", version: 1, config: { attachments: [attachment] } })).toMatchObject({ ok: true });
    const committed = await call("/config/commit", { txid: "tx-1" });
    expect(committed).toMatchObject({ ok: true, version: 1, applied: { version: 1, error: { code: "ATTACHMENT_START_FAILED" } } });
    expect((await call("/config")).applied.error.code).toBe("ATTACHMENT_START_FAILED");

    await sys.restart("staging");
    const config = await until("the apply error cleared", () => call("/config"), (answer) => answer.applied.error === undefined);
    expect(config).toMatchObject({ version: 1, applied: { version: 1 } });
    const attached = (await call("/status")).attachments[0];
    expect(attached).toMatchObject({ name: "pair-a", state: "running" });
    expect(attached.restarts).toBeGreaterThanOrEqual(1);
    expect((await qemuIo(`nbd+unix:///disk0?socket=${socket}`, ["write -P 0x3c 1M 256k"])).exitCode).toBe(0);
    await expectReplicaEqualsPrimary(sys);
  }, 240_000);

  test("an agent killed with SIGKILL leaves its child running; the next agent stops that one before starting its own", async () => {
    const sys = (system = await startSystem({ sizeBytes, client: false }));
    const stateDir = join(sys.dir, "agent");
    const socket = join(sys.dir, "agent-export.sock");
    const attachment = oneDeviceAttachment("pair-b", { primary: sys.primaryPath("disk0"), staging: sys.stagingListen, wrl: sys.wrlName, socket });
    const first = await startAgent(stateDir);
    await first.commit("tx-1", 1, { attachments: [attachment] });
    const orphan = (await first.call("/status")).attachments[0];
    expect(orphan.state).toBe("running");
    first.agent.proc.kill("SIGKILL");
    await first.agent.proc.exited;
    fleet.forget(first.agent);
    expect(isRunning(orphan.pid)).toBe(true);

    const second = await startAgent(stateDir);
    expect(isRunning(orphan.pid)).toBe(false);
    const now = (await second.call("/status")).attachments[0];
    expect(now).toMatchObject({ name: "pair-b", state: "running", restarts: 0 });
    expect(now.pid).not.toBe(orphan.pid);
    expect((await qemuIo(`nbd+unix:///disk0?socket=${socket}`, ["write -P 0x42 1M 1M"])).exitCode).toBe(0);
    await expectReplicaEqualsPrimary(sys);
  }, 120_000);

  test("GET /probe: kind, size and holder of a path on the host", async () => {
    const sys = (system = await startSystem({ sizeBytes, client: false }));
    const { call } = await startAgent(join(sys.dir, "agent"));
    expect(await call(`/probe?path=${encodeURIComponent(sys.primaryPath("disk0"))}`)).toEqual({ ok: true, path: sys.primaryPath("disk0"), exists: true, kind: "file", sizeBytes, inUse: null });
    expect(await call(`/probe?path=${encodeURIComponent(join(sys.dir, "nothing.img"))}`)).toMatchObject({ ok: true, exists: false, kind: "missing", sizeBytes: null });
    expect(await call(`/probe?path=${encodeURIComponent(sys.dir)}`)).toMatchObject({ ok: true, exists: true, kind: "other", sizeBytes: null });
    // The replica image is open in the replica process: the wizard must not offer it.
    expect((await call(`/probe?path=${encodeURIComponent(sys.replicaPath("disk0"))}`)).inUse).toContain(`process ${sys.replica.pid}`);
    expect((await call("/probe?path=relative.img")).error).toMatchObject({ code: "USAGE" });
  }, 120_000);
});
