/**
 * `druvaa replica apply --wrl PATH` as a real process: a missing RS-WRL is refused with the
 * command that makes one; with one, a resync set fed by a fake staging relay stays off the device
 * (status shows it, restore returns the point before it), survives SIGKILL, and completes.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Connection } from "../../src/io/transport.ts";
import { druvaa } from "../helpers/cli.ts";
import { startRole, type RoleProcess } from "../helpers/role-process.ts";
import { createReplicaImageSync, readPlain } from "../helpers/replica-image.ts";
import { applyModel, ask, fakeStaging, dataRecord, sha256, shipment, wrlUuid, type TestRecord } from "./helpers.ts";
import { KiB, MiB, resyncEnd, resyncRecord } from "./resync-helpers.ts";

const scratch = mkdtempSync(join(tmpdir(), "druvaa-rswrl-proc-"));
const diskPath = join(scratch, "disk0.img");
const rsWrlPath = join(scratch, "rswrl.img");
const stateDir = join(scratch, "state");
const diskBytes = 1 * MiB;
const running = new Set<RoleProcess>();
const connections: Connection[] = [];

afterAll(async () => {
  for (const connection of connections) connection.abort();
  for (const entry of running) entry.proc.kill("SIGKILL");
  await Promise.all([...running].map((entry) => entry.proc.exited));
  rmSync(scratch, { recursive: true, force: true });
});

async function startReplica(tag: string): Promise<RoleProcess> {
  const replica = await startRole(
    ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `disk0=${diskPath}`, "--wrl", rsWrlPath, "--state-dir", stateDir, "--node-id", "replica-rswrl"],
    join(scratch, `replica-${tag}.log`),
  );
  running.add(replica);
  return replica;
}

async function restoredSha(replica: RoleProcess, tag: string): Promise<{ sha256: string; appliedLsn: number }> {
  const result = await druvaa(["restore", "--replica", replica.ready.restore, "--device", "disk0", "--to", join(scratch, `restored-${tag}.img`), "--json"]);
  expect(result.exitCode).toBe(0);
  return JSON.parse(result.stdout) as { sha256: string; appliedLsn: number };
}

function imageSha(records: TestRecord[]): string {
  const images = new Map([["disk0", new Uint8Array(diskBytes)]]);
  applyModel(images, records);
  return sha256(images.get("disk0")!);
}

describe("druvaa replica apply --wrl (real process)", () => {
  test("a missing replica WRL is refused at start, with the command that creates one", async () => {
    createReplicaImageSync(diskPath, diskBytes);
    const missing = join(scratch, "no-such-rswrl.img");
    const result = await druvaa(["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `disk0=${diskPath}`, "--wrl", missing, "--state-dir", stateDir, "--json"]);
    expect(result.exitCode).toBe(3);
    const error = JSON.parse(result.stdout).error as { code: string; message: string; hint: string };
    expect(error.code).toBe("RS_WRL_NOT_FOUND");
    expect(error.message).toContain(missing);
    expect(error.hint).toContain(`druvaa wrl create --primary ${missing} --size`);
    expect(existsSync(missing)).toBe(false);
  });

  test("a resync set stays off the device until its end, across a SIGKILL; status shows the replica WRL and the set", async () => {
    const created = await druvaa(["wrl", "create", "--primary", rsWrlPath, "--size", "4M", "--json"]);
    expect(created.exitCode).toBe(0);
    let replica = await startReplica("first");
    expect(replica.ready.rsWrl).toBe(rsWrlPath);
    let staging = await fakeStaging(replica.ready.listen, connections);
    expect(await ask(staging, { type: "resume", wrl: "wrl0", wrlUuid })).toMatchObject({ type: "resumeAck", appliedLsn: 0 });
    const before: TestRecord[] = [dataRecord(1, "disk0", 0, 64 * KiB)];
    const during: TestRecord[] = [resyncRecord(2, "disk0", 32 * KiB, 64 * KiB), dataRecord(3, "disk0", 512 * KiB, 16 * KiB)];
    for (const records of [before, during]) {
      const built = shipment(records);
      expect(await ask(staging, built.message, built.payload)).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: records[records.length - 1]!.lsn });
    }
    const status = await druvaa(["status", "--connect", replica.ready.control, "--json"]);
    const body = JSON.parse(status.stdout) as { rsWrl: { path: string; sizeBytes: number; usedBytes: number }; wrls: { appliedLsn: number; resync?: { state: string; loggedLsn: number } }[]; devices: { consistent: boolean }[] };
    expect(body.rsWrl.path).toBe(rsWrlPath);
    expect(body.rsWrl.usedBytes).toBeGreaterThan(80 * KiB);
    expect(body.wrls[0]).toMatchObject({ appliedLsn: 1, resync: { state: "open", loggedLsn: 3 } });
    const human = await druvaa(["status", "--connect", replica.ready.control]);
    expect(human.stdout).toContain(`replica WRL ${rsWrlPath}`);
    expect(human.stdout).toContain("resync set open since LSN 2, logged through LSN 3");
    expect(await restoredSha(replica, "during")).toMatchObject({ sha256: imageSha(before), appliedLsn: 1 });

    // Power cut while the set is open: the logged records are in the RS-WRL, and acknowledged again.
    replica.proc.kill("SIGKILL");
    await replica.proc.exited;
    running.delete(replica);
    staging.abort();
    replica = await startReplica("second");
    staging = await fakeStaging(replica.ready.listen, connections);
    expect(await ask(staging, { type: "resume", wrl: "wrl0", wrlUuid })).toMatchObject({ type: "resumeAck", appliedLsn: 3 });
    const end = shipment([resyncEnd(4, "disk0")]);
    expect(await ask(staging, end.message, end.payload)).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: 4 });
    expect(await restoredSha(replica, "after")).toMatchObject({ sha256: imageSha([...before, ...during]), appliedLsn: 4 });
    expect(sha256(await readPlain(diskPath))).toBe(imageSha([...before, ...during]));
    staging.abort();
  });
});
