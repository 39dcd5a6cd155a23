/**
 * The client agent's jobs (src/roles/client/agent-jobs.ts) with real processes: a real replica
 * (with retention, so it can fail over) and staging, the agent with an attachment pushed as the
 * panel does. qemu-io writes through the attachment's export; a restore job copies the replica
 * device to a new file equal to the primary; the attachment's own device is refused as a target.
 * Then the device is failed over on the replica, the DR side is written with qemu-io, and a
 * failback job (keep dr) stops the attachment, brings the DR writes to the primary and starts the
 * attachment again, which replicates once more; a second job for the attachment while one runs is
 * refused with 409 JOB_RUNNING. A split brain (both sides written) fails the job with the command's
 * SPLIT_BRAIN answer and starts the attachment again; the job again with keep primary keeps every
 * block of the primary.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { AgentFleet, commitConfig, expectDrWritesOnPrimary, failOverAndWriteDr, jobEnded as ended, oneDeviceAttachment, runningAgain } from "./agent-jobs-setup.ts";
import { druvaaOk, expectReplicaEqualsPrimary, isAlive, MiB, qemuIo, sha256File, startSystem, type System } from "./helpers.ts";

const sizeBytes = 8 * MiB;
let system: System | undefined;
const fleet = new AgentFleet();

afterEach(async () => {
  await fleet.stopAll();
  await system?.stop();
  system = undefined;
});

describe("client agent: restore and failback jobs", () => {
  test("a restore job equals the primary; after a failover and DR writes, a failback job (keep dr) brings them to the primary and the attachment runs again; one job per attachment", async () => {
    const sys = (system = await startSystem({ sizeBytes, client: false, replicaFlags: ["--retention", "1h"] }));
    const stateDir = join(sys.dir, "agent");
    mkdirSync(join(sys.dir, "maps"));
    const socket = join(sys.dir, "agent-export.sock");
    const uri = `nbd+unix:///disk0?socket=${socket}`;
    const primary = sys.primaryPath("disk0");
    const attachment = oneDeviceAttachment("pair-a", { primary, staging: sys.stagingListen, wrl: sys.wrlName, socket, changemap: join(sys.dir, "maps", "pair-a.map") });
    const { call } = await fleet.start(stateDir);
    await commitConfig(call, "tx-1", 1, { attachments: [attachment] });
    const first = (await call("/status")).body.attachments[0];
    expect(first).toMatchObject({ name: "pair-a", state: "running" });

    expect((await qemuIo(uri, ["write -P 0x5a 0 1M", "write -P 0xa5 3M 512k", "write -P 0x11 7M 4k"])).exitCode).toBe(0);
    await expectReplicaEqualsPrimary(sys);

    // Restore job: to a new file, equal to the primary.
    const restored = join(sys.dir, "restored.img");
    const started = await call("/jobs", { kind: "restore", attachment: "pair-a", to: restored, replicaRestore: sys.replicaRestore });
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ ok: true, kind: "restore", state: "running" });
    const restore = await ended(call, started.body.id);
    expect(restore).toMatchObject({ kind: "restore", attachment: "pair-a", state: "done", exitCode: 0, error: null, result: { ok: true, device: "disk0" } });
    expect(restore.endedAtMs).toBeGreaterThanOrEqual(restore.startedAtMs);
    expect(await sha256File(restored, sizeBytes)).toBe(await sha256File(primary, sizeBytes));
    expect(restore.result.sha256).toBe(await sha256File(restored, sizeBytes));
    expect(readFileSync(restore.logPath, "utf8")).toContain("druvaa restore --replica");

    // Refused at the edge: the attachment's own device while it is enabled, an unknown attachment, a bad kind.
    const onDevice = await call("/jobs", { kind: "restore", attachment: "pair-a", to: primary, replicaRestore: sys.replicaRestore, force: true });
    expect(onDevice.status).toBe(409);
    expect(onDevice.body.error).toMatchObject({ code: "TARGET_IN_USE", field: "to" });
    expect((await call("/jobs", { kind: "restore", attachment: "nope", to: restored, replicaRestore: sys.replicaRestore })).body.error.code).toBe("ATTACHMENT_UNKNOWN");
    expect((await call("/jobs", { kind: "resync", attachment: "pair-a" })).status).toBe(400);
    // A restore the command refuses (the target exists, no force): failed, with the command's error.
    const exists = await call("/jobs", { kind: "restore", attachment: "pair-a", to: restored, replicaRestore: sys.replicaRestore });
    const refused = await ended(call, exists.body.id);
    expect(refused.state).toBe("failed");
    expect(refused.exitCode).not.toBe(0);
    expect(refused.error.code).not.toBe("JOB_FAILED");
    expect(refused.result.ok).toBe(false);

    // Failover on the replica; the DR side is written.
    await failOverAndWriteDr(sys.replicaControl, join(sys.dir, "dr.sock"));

    // The failback job: the attachment is stopped for it; a second job meanwhile is refused.
    const failback = await call("/jobs", { kind: "failback", attachment: "pair-a", replica: sys.replicaControl, staging: sys.stagingControl, keep: "dr" });
    expect(failback.status).toBe(202);
    const second = await call("/jobs", { kind: "restore", attachment: "pair-a", to: join(sys.dir, "second.img"), replicaRestore: sys.replicaRestore });
    expect(second.status).toBe(409);
    expect(second.body.error).toMatchObject({ code: "JOB_RUNNING" });
    expect(second.body.error.hint).toContain("GET /jobs");
    const back = await ended(call, failback.body.id);
    if (back.state !== "done") console.log(readFileSync(back.logPath, "utf8"));
    expect(back).toMatchObject({ kind: "failback", state: "done", exitCode: 0, result: { ok: true, keep: "dr", direction: "dr-to-primary", splitBrain: false } });
    expect(readFileSync(back.logPath, "utf8")).toContain(`--client-state ${join(stateDir, "attachments", "pair-a")}`);
    await expectDrWritesOnPrimary(primary);

    // The attachment runs again (a new child, not a crash) and replicates in the original direction.
    const again = await runningAgain(call);
    expect(again.pid).not.toBe(first.pid);
    expect(again.restarts).toBe(0);
    expect(isAlive(first.pid)).toBe(false);
    expect(existsSync(socket)).toBe(true);
    expect((await qemuIo(uri, ["write -P 0x77 5M 256k"])).exitCode).toBe(0);
    await expectReplicaEqualsPrimary(sys);

    const listed = (await call("/jobs")).body.jobs.map((job: { id: string }) => job.id);
    expect(listed).toEqual([failback.body.id, exists.body.id, started.body.id]);
  }, 300_000);

  test("split brain: the failback job fails with the command's SPLIT_BRAIN answer and the attachment runs again; with keep primary it is done and the primary keeps its writes", async () => {
    const sys = (system = await startSystem({ sizeBytes, client: false, replicaFlags: ["--retention", "1h"] }));
    const socket = join(sys.dir, "agent-export.sock");
    const uri = `nbd+unix:///disk0?socket=${socket}`;
    const primary = sys.primaryPath("disk0");
    const attachment = oneDeviceAttachment("pair-b", { primary, staging: sys.stagingListen, wrl: sys.wrlName, socket, changemap: join(sys.dir, "pair-b.map") });
    const { call } = await fleet.start(join(sys.dir, "agent"));
    await commitConfig(call, "tx-1", 1, { attachments: [attachment] });
    expect((await qemuIo(uri, ["write -P 0x11 0 2M"])).exitCode).toBe(0);
    await sys.waitDrained();

    const drSocket = join(sys.dir, "dr.sock");
    await druvaaOk(["failover", "--connect", sys.replicaControl, "--device", "disk0", "--export", `unix:${drSocket}`]);
    // Both sides written: the primary through the attachment (its records wait in staging), the DR side directly.
    expect((await qemuIo(uri, ["write -P 0x22 6M 512k"])).exitCode).toBe(0);
    expect((await qemuIo(`nbd+unix:///disk0?socket=${drSocket}`, ["write -P 0x33 1M 256k"])).exitCode).toBe(0);
    const before = (await call("/status")).body.attachments[0];

    const jobArgs = { kind: "failback", attachment: "pair-b", replica: sys.replicaControl, staging: sys.stagingControl };
    const refused = await ended(call, (await call("/jobs", jobArgs)).body.id);
    expect(refused).toMatchObject({ state: "failed", exitCode: 4, error: { code: "SPLIT_BRAIN" }, result: { ok: false, error: { code: "SPLIT_BRAIN" } } });
    expect(refused.error.message).toContain("both sides were written");
    expect(refused.error.hint).toContain("--keep dr");
    expect(refused.error.hint).toContain("--keep primary");
    const restarted = await runningAgain(call);
    expect(restarted.pid).not.toBe(before.pid);
    const primaryBefore = new Uint8Array(await readFile(primary));

    const kept = await ended(call, (await call("/jobs", { ...jobArgs, keep: "primary" })).body.id);
    if (kept.state !== "done") console.log(readFileSync(kept.logPath, "utf8"));
    expect(kept).toMatchObject({ state: "done", exitCode: 0, result: { ok: true, keep: "primary", direction: "primary-to-dr", splitBrain: true } });
    expect(Buffer.compare(new Uint8Array(await readFile(primary)), primaryBefore)).toBe(0);
    await runningAgain(call);
    await expectReplicaEqualsPrimary(sys);
  }, 300_000);
});
