/**
 * `druvaa replica apply --managed` as a real process beside a --device flag, with an RS-WRL
 * (--wrl) and a journal (--retention): a managed device committed while the flag device
 * replicates gets its own WRL's shipments, restores at a journal point, keeps its resync set in
 * the RS-WRL (and cannot be dropped meanwhile), serves a snapshot; dropped, its snapshot ends
 * and its WRL is refused DEVICE_UNKNOWN while the flag device goes on.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Connection } from "../../src/io/transport.ts";
import { druvaa } from "../helpers/cli.ts";
import { createReplicaImageSync, replicaImageBytes } from "../helpers/replica-image.ts";
import { startRole, type RoleProcess } from "../helpers/role-process.ts";
import { applyModel, ask, dataRecord, fakeStaging, otherWrlUuid, sha256, shipment, wrlUuid, type TestRecord } from "./helpers.ts";
import { KiB, MiB, resyncEnd, resyncRecord } from "./resync-helpers.ts";

const scratch = mkdtempSync(join(tmpdir(), "druvaa-managed-proc-"));
const diskBytes = 1 * MiB;
const running = new Set<RoleProcess>();
const connections: Connection[] = [];

afterAll(async () => {
  for (const connection of connections) connection.abort();
  for (const entry of running) entry.proc.kill("SIGKILL");
  await Promise.all([...running].map((entry) => entry.proc.exited));
  rmSync(scratch, { recursive: true, force: true });
});

function imageSha(device: string, records: TestRecord[]): string {
  const images = new Map([[device, new Uint8Array(diskBytes)]]);
  applyModel(images, records);
  return sha256(images.get(device)!);
}

async function restored(replica: RoleProcess, device: string, tag: string, at?: string): Promise<{ sha256: string; appliedLsn: number }> {
  const result = await druvaa(["restore", "--replica", replica.ready.restore, "--device", device, "--to", join(scratch, `restored-${tag}.img`), ...(at === undefined ? [] : ["--at", at]), "--json"]);
  if (result.exitCode !== 0) throw new Error(`druvaa restore exited ${result.exitCode}: ${result.stderr}${result.stdout}`);
  return JSON.parse(result.stdout) as { sha256: string; appliedLsn: number };
}

async function call(replica: RoleProcess, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`http://${replica.ready.control}${path}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) });
  return { status: response.status, body: await response.json() };
}

describe("druvaa replica apply --managed (real process) with --device, --wrl and --retention", () => {
  test("a managed device replicates beside a flag device: journal points, RS-WRL sets, snapshots; dropped, only it goes", async () => {
    const flagPath = join(scratch, "flag0.img");
    const diskPath = join(scratch, "disk0.img");
    const rsWrlPath = join(scratch, "rswrl.img");
    createReplicaImageSync(flagPath, diskBytes);
    expect((await druvaa(["wrl", "create", "--primary", rsWrlPath, "--size", "4M"])).exitCode).toBe(0);
    const refusedStart = await druvaa(["replica", "apply", "--managed", "--retention", "1h", "--state-dir", join(scratch, "other-state"), "--json"]);
    expect(refusedStart.exitCode).toBe(2);
    expect(JSON.parse(refusedStart.stdout).error.message).toContain("--retention-size");

    const replica = await startRole(
      ["replica", "apply", "--managed", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `flag0=${flagPath}`, "--wrl", rsWrlPath, "--retention", "1h", "--retention-size", "16MiB", "--state-dir", join(scratch, "state")],
      join(scratch, "replica.log"),
    );
    running.add(replica);
    const flagStaging = await fakeStaging(replica.ready.listen, connections);
    expect(await ask(flagStaging, { type: "resume", wrl: "wrl0", wrlUuid })).toMatchObject({ type: "resumeAck", appliedLsn: 0 });
    const flagRecords = [dataRecord(1, "flag0", 0, 64 * KiB)];
    const flagShip = shipment(flagRecords);
    expect(await ask(flagStaging, flagShip.message, flagShip.payload)).toMatchObject({ type: "shipAck", appliedLsn: 1 });

    // Version 1: the managed disk0, created at commit.
    const disk0 = { name: "disk0", path: diskPath, sizeBytes: replicaImageBytes(diskBytes), primarySizeBytes: diskBytes };
    expect((await call(replica, "/config/prepare", { txid: "tx-1", version: 1, config: { devices: [disk0] } })).body).toMatchObject({ ok: true });
    expect((await call(replica, "/config/commit", { txid: "tx-1" })).body).toMatchObject({ ok: true, applied: { version: 1 } });
    expect(existsSync(diskPath)).toBe(true);

    const staging = await fakeStaging(replica.ready.listen, connections);
    const resumed = await ask(staging, { type: "resume", wrl: "wrl1", wrlUuid: otherWrlUuid });
    expect(resumed).toMatchObject({ type: "resumeAck", appliedLsn: 0, acceptsCoalesced: true });
    expect((resumed as { devices: { name: string }[] }).devices.map((device) => device.name)).toEqual(["flag0", "disk0"]);
    const first = [dataRecord(1, "disk0", 0, 64 * KiB)];
    const second = [dataRecord(2, "disk0", 32 * KiB, 64 * KiB)];
    for (const records of [first, second]) {
      const built = shipment(records, { wrl: "wrl1", uuid: otherWrlUuid });
      expect(await ask(staging, built.message, built.payload)).toMatchObject({ type: "shipAck", appliedLsn: records[0]!.lsn });
    }
    expect(await restored(replica, "disk0", "at-1", "1")).toMatchObject({ sha256: imageSha("disk0", first), appliedLsn: 1 });
    expect(await restored(replica, "disk0", "now")).toMatchObject({ sha256: imageSha("disk0", [...first, ...second]), appliedLsn: 2 });

    // A resync set of disk0 waits in the RS-WRL: disk0 cannot be dropped meanwhile.
    const during = [resyncRecord(3, "disk0", 0, 128 * KiB), dataRecord(4, "disk0", 512 * KiB, 16 * KiB)];
    const duringShip = shipment(during, { wrl: "wrl1", uuid: otherWrlUuid });
    expect(await ask(staging, duringShip.message, duringShip.payload)).toMatchObject({ type: "shipAck", appliedLsn: 4 });
    const status = (await call(replica, "/status")).body;
    expect(status.wrls.find((wrl: { name: string }) => wrl.name === "wrl1")).toMatchObject({ appliedLsn: 2, resync: { state: "open" } });
    expect(status.managed).toMatchObject({ version: 1, pending: null, applied: { version: 1 } });
    const refused = await call(replica, "/config/prepare", { txid: "tx-2", version: 2, config: { devices: [] } });
    expect(refused).toMatchObject({ status: 409, body: { ok: false, error: { code: "DEVICE_RESYNCING", field: "devices" } } });
    const end = shipment([resyncEnd(5, "disk0")], { wrl: "wrl1", uuid: otherWrlUuid });
    expect(await ask(staging, end.message, end.payload)).toMatchObject({ type: "shipAck", appliedLsn: 5 });
    const whole = [...first, ...second, ...during];
    expect(await restored(replica, "disk0", "after-set")).toMatchObject({ sha256: imageSha("disk0", whole), appliedLsn: 5 });

    // A snapshot of disk0 is served until disk0 is dropped.
    const snapshot = await call(replica, "/snapshots", { device: "disk0", export: `unix:${join(scratch, "snap.sock")}` });
    expect(snapshot.body).toMatchObject({ ok: true });
    expect((await call(replica, "/snapshots")).body.snapshots).toHaveLength(1);
    expect((await call(replica, "/config/prepare", { txid: "tx-2", version: 2, config: { devices: [] } })).body).toMatchObject({ ok: true });
    expect((await call(replica, "/config/commit", { txid: "tx-2" })).body).toMatchObject({ ok: true, applied: { version: 2 } });
    expect((await call(replica, "/snapshots")).body.snapshots).toEqual([]);
    expect(((await call(replica, "/status")).body.devices as { name: string }[]).map((device) => device.name)).toEqual(["flag0"]);
    const late = shipment([dataRecord(6, "disk0", 0, 4 * KiB)], { wrl: "wrl1", uuid: otherWrlUuid });
    expect(await ask(staging, late.message, late.payload)).toMatchObject({ type: "shipNack", code: "DEVICE_UNKNOWN" });

    // The flag device goes on, its journal too.
    const flagMore = [dataRecord(2, "flag0", 128 * KiB, 64 * KiB)];
    const flagMoreShip = shipment(flagMore);
    expect(await ask(flagStaging, flagMoreShip.message, flagMoreShip.payload)).toMatchObject({ type: "shipAck", appliedLsn: 2 });
    expect(await restored(replica, "flag0", "flag-at-1", "1")).toMatchObject({ sha256: imageSha("flag0", flagRecords), appliedLsn: 1 });
    expect(await restored(replica, "flag0", "flag-now")).toMatchObject({ sha256: imageSha("flag0", [...flagRecords, ...flagMore]), appliedLsn: 2 });
  });
});
