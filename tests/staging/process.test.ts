/**
 * `druvaa staging serve` as a real process between a test client (real transport and handshake)
 * and a real `druvaa replica apply`: drain with `druvaa status --wait-drained`, compare with
 * `druvaa restore`; SIGKILL and restart mid-stream; garbage on its ports; SIGTERM.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { encodeFrameBytes } from "../../src/protocol/frame.ts";
import { buildHello } from "../../src/protocol/handshake.ts";
import { druvaa } from "../helpers/cli.ts";
import { rawExchange } from "../helpers/raw-exchange.ts";
import { startRole, type RoleProcess } from "../helpers/role-process.ts";
import { MiB } from "./helpers.ts";
import { SlotWorkload, sha256 } from "./process.ts";
import { TestClient } from "./test-client.ts";
import { processFixture } from "./process-fixture.ts";

const deviceBytes = 8 * MiB;
const fx = processFixture("proc", deviceBytes);
const { scratch, wrlPath, replicaPath, running, clients } = fx;
let stagingStarts = 0;

async function startStaging(): Promise<RoleProcess> {
  stagingStarts += 1;
  const staging = await startRole(
    ["staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--wrl", `w0=${wrlPath}`, "--replica", `w0=${fx.replica.ready.listen}`, "--state-dir", join(scratch, "staging-state"), "--node-id", "staging-test"],
    join(scratch, `staging-${stagingStarts}.log`),
  );
  running.add(staging);
  return staging;
}

async function connectClient(staging: RoleProcess): Promise<TestClient> {
  const client = await TestClient.connect(staging.ready.listen, "proc-client");
  clients.push(client);
  const ack = await client.attach("w0", "d0", deviceBytes);
  expect(ack).toMatchObject({ accepted: true });
  return client;
}

/** `druvaa status --wait-drained` exits 0, then `druvaa restore` gives exactly the model's bytes. */
async function expectReplicaEquals(staging: RoleProcess, model: Uint8Array, tag: string): Promise<void> {
  const drained = await druvaa(["status", "--connect", staging.ready.control, "--wait-drained", "--timeout", "30"]);
  expect(drained.stderr).toBe("");
  expect(drained.exitCode).toBe(0);
  const target = join(scratch, `restored-${tag}.img`);
  const restored = await druvaa(["restore", "--replica", fx.replica.ready.restore, "--device", "d0", "--to", target, "--json"]);
  expect(restored.exitCode).toBe(0);
  expect(sha256(readFileSync(target))).toBe(sha256(model));
}

async function kill(role: RoleProcess, signal: "SIGKILL" | "SIGTERM"): Promise<number> {
  role.proc.kill(signal);
  const code = await role.proc.exited;
  running.delete(role);
  return code;
}


describe("druvaa staging serve (real processes)", () => {
  const workload = new SlotWorkload(deviceBytes, 64 * 1024, 3);

  test("client writes reach the replica: --wait-drained exits 0 and the restored device equals what was written", async () => {
    const staging = await startStaging();
    expect(staging.ready).toMatchObject({ role: "staging", wrls: [{ name: "w0", replica: fx.replica.ready.listen }] });
    const client = await connectClient(staging);
    const startedMs = performance.now();
    await workload.run(client, 800, 32);
    const seconds = (performance.now() - startedMs) / 1000;
    console.log(`[staging process test] ${workload.acked} writes (${(workload.ackedBytes / MiB).toFixed(1)} MiB, 4-64 KiB, depth 32) acked in ${seconds.toFixed(2)} s: ${(workload.acked / seconds).toFixed(0)} writes/s, ${(workload.ackedBytes / MiB / seconds).toFixed(1)} MiB/s`);
    expect(workload.acked).toBe(800);
    await expectReplicaEquals(staging, workload.model, "first");

    const status = (await (await fetch(`http://${staging.ready.control}/status`)).json()) as any;
    expect(status).toMatchObject({ role: "staging", nodeId: "staging-test", clients: [{ nodeId: "proc-client" }] });
    expect(status.wrls[0]).toMatchObject({ name: "w0", headLsn: 800, tailLsn: 800, recordCount: 0, lagBytes: 0, lagSeconds: 0, replica: { connected: true, appliedLsn: 800, lastError: null } });
    expect(status.wrls[0].devices).toEqual([{ name: "d0", sizeBytes: deviceBytes, clientNodeId: "proc-client", connected: true }]);
    const human = await druvaa(["status", "--connect", staging.ready.control]);
    expect(human.stdout).toContain("WRL w0");
    expect(human.stdout).toContain("applied LSN 800");
  }, 60_000);

  test("SIGKILL mid-stream, restart, keep writing: every acked write reaches the replica", async () => {
    const [staging] = [...running].filter((role) => role !== fx.replica);
    const client = clients[clients.length - 1]!;
    const ackedBefore = workload.acked;
    let killed = false;
    // Killed from inside an ack callback, with up to 32 writes in flight.
    await workload.run(client, 1000, 32, () => {
      if (!killed && workload.acked >= ackedBefore + 300) {
        killed = true;
        staging!.proc.kill("SIGKILL");
      }
    });
    expect(killed).toBe(true);
    expect(await staging!.proc.exited).not.toBe(0);
    running.delete(staging!);
    expect(workload.acked).toBeGreaterThanOrEqual(ackedBefore + 300);

    const restarted = await startStaging();
    const again = await connectClient(restarted);
    const unacked = workload.pending.size;
    await workload.resend(again);
    await workload.run(again, 300, 32);
    await expectReplicaEquals(restarted, workload.model, "after-kill");
    console.log(`[staging process test] SIGKILL with ${unacked} write(s) unanswered; after the restart and resend the replica equals every acked write`);
    const log = readFileSync(restarted.logPath, "utf8");
    expect(log).toContain("resumed WRL w0");
  }, 60_000);

  test("garbage on the data and control ports closes those connections only; the server keeps serving", async () => {
    const [staging] = [...running].filter((role) => role !== fx.replica);
    const garbage = [new Uint8Array([0xff, 0xff, 0xff, 0xff, 1, 2, 3]), encodeFrameBytes(buildHello({ role: "client", nodeId: "x" })).subarray(0, 9), encodeFrameBytes(buildHello({ role: "replica", nodeId: "intruder" }))];
    for (const bytes of garbage) await rawExchange(staging!.ready.listen, bytes, true);
    const answer = await rawExchange(staging!.ready.control, new TextEncoder().encode("\x00\x01GARBAGE \xff\r\n\r\n"), true);
    expect(answer).not.toContain("200 OK");
    // A proper handshake followed by a message that has no business on the data port.
    const rude = await TestClient.connect(staging!.ready.listen, "rude");
    clients.push(rude);
    await rude.connection.send({ type: "resume", wrl: "w0", wrlUuid: "5a1f0c3e-7b2d-4e8f-9a6b-1c0d2e3f4a5b" });
    await rude.connection.closed;

    const client = clients.find((candidate) => candidate.closedReason === undefined && candidate !== rude)!;
    await workload.run(client, 50, 8);
    await expectReplicaEquals(staging!, workload.model, "after-garbage");
    const log = readFileSync(staging!.logPath, "utf8");
    expect(log).toContain("PROTO_ROLE");
    expect(log).toContain("PROTO_UNEXPECTED");
  }, 60_000);

  test("SIGTERM: exit 0 with a final checkpoint (nothing left for recovery to scan)", async () => {
    const [staging] = [...running].filter((role) => role !== fx.replica);
    expect(await kill(staging!, "SIGTERM")).toBe(0);
    const info = await druvaa(["wrl", "info", wrlPath, "--json"]);
    expect(info.exitCode).toBe(0);
    const report = JSON.parse(info.stdout);
    expect(report.recovery.scannedRecordCount).toBe(0);
    expect(report.headLsn).toBe(report.tailLsn);
  }, 30_000);

  test("command-line errors are clear: no WRL at the path, a --replica for no --wrl, a WRL without --replica", async () => {
    const missing = await druvaa(["staging", "serve", "--wrl", `w0=${join(scratch, "none.img")}`, "--replica", "w0=127.0.0.1:6003", "--json"]);
    expect(missing.exitCode).toBe(3);
    expect(JSON.parse(missing.stdout).error.code).toBe("WRL_NOT_FOUND");
    expect(missing.stderr).toContain("druvaa wrl create --primary");
    const notAWrl = await druvaa(["staging", "serve", "--wrl", `w0=${replicaPath}`, "--replica", "w0=127.0.0.1:6003"]);
    expect(notAWrl.exitCode).toBe(3);
    expect(notAWrl.stderr).toContain("druvaa wrl create --primary");
    const stray = await druvaa(["staging", "serve", "--wrl", `w0=${wrlPath}`, "--replica", "w0=127.0.0.1:6003", "--replica", "w9=127.0.0.1:6003"]);
    expect(stray.exitCode).toBe(2);
    expect(stray.stderr).toContain("no --wrl named w9");
    const alone = await druvaa(["staging", "serve", "--wrl", `w0=${wrlPath}`]);
    expect(alone.exitCode).toBe(2);
    expect(alone.stderr).toContain("no --replica w0=HOST:PORT");
  }, 30_000);
});
