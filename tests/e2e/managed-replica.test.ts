/**
 * `druvaa replica apply --managed` as real processes: devices come from POST /config/prepare +
 * /config/commit (docs/panel.md "Replica"), a real staging server relays to it and real clients
 * write with qemu-io and fio. A device added while another replicates: the first keeps
 * replicating, the second (whose records waited at staging, refused DEVICE_UNKNOWN meanwhile)
 * catches up. An abort keeps the old version; SIGKILL + restart with the same state dir applies
 * the committed config again (devices served, GET /config at its version) and keeps a pending
 * prepare pending.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RoleProcess } from "../../src/demo/processes.ts";
import { replicaDeviceSizeBytes } from "../../src/sizing.ts";
import { createImage, druvaaOk, expectFioOk, fio, MiB, plainSha256, qemuIo, replicaReserveBytes, sha256File, startTracked } from "./helpers.ts";
import { getJson as get, postJson as post } from "../helpers/control-http.ts";

const sizeBytes = 8 * MiB;
const replicaBytes = replicaDeviceSizeBytes(sizeBytes, replicaReserveBytes);

const started: RoleProcess[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const role of started.splice(0).reverse()) {
    if (role.proc.exitCode === null && role.proc.signalCode === null) role.proc.kill("SIGKILL");
    await role.proc.exited;
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function start(name: string, args: string[]): Promise<RoleProcess> {
  const role = await startTracked(name, args);
  started.push(role);
  return role;
}

/** Prepares and commits `devices` as config `version`; expects both ok and the apply without error. */
async function commitDevices(control: string, txid: string, version: number, devices: unknown[]): Promise<void> {
  const prepared = await post(control, "/config/prepare", { txid, version, config: { devices } });
  expect(prepared).toEqual({ status: 200, body: { ok: true, txid, version } });
  const committed = await post(control, "/config/commit", { txid });
  expect(committed.status).toBe(200);
  expect(committed.body).toMatchObject({ ok: true, txid, version, applied: { version } });
  expect(committed.body.applied.error).toBeUndefined();
}

describe("druvaa replica apply --managed with real staging and clients", () => {
  test("devices committed by the panel replicate; one added while another replicates; abort, SIGKILL and restart keep the committed config", async () => {
    const dir = mkdtempSync(join(tmpdir(), "druvaa-managed-replica-"));
    dirs.push(dir);
    const primary = (name: string) => join(dir, `primary-${name}.img`);
    const replicaImage = (name: string) => join(dir, `replica-${name}.img`);
    const deviceSpec = (name: string) => ({ name, path: replicaImage(name), sizeBytes: replicaBytes, primarySizeBytes: sizeBytes });
    const expectReplicated = async (names: string[]) => {
      await druvaaOk(["status", "--connect", String(staging.ready.control), "--wait-drained", "--timeout", "60"], 75_000);
      for (const name of names) expect({ name, sha256: await plainSha256(replicaImage(name), sizeBytes) }).toEqual({ name, sha256: await sha256File(primary(name), sizeBytes) });
    };

    const replicaArgs = (listen: string, control: string, restore: string) => ["replica", "apply", "--managed", "--insecure", "--listen", listen, "--control", control, "--restore", restore, "--state-dir", join(dir, "replica-state")];
    let replica = await start("replica", replicaArgs("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"));
    const control = String(replica.ready.control);
    expect(replica.ready.devices).toEqual([]);
    expect(await get(control, "/config")).toMatchObject({ ok: true, version: 0, pending: null, config: { devices: [] } });

    // Version 1: disk0, its image missing (created sparse at commit).
    await createImage(primary("disk0"), sizeBytes);
    await createImage(primary("disk1"), sizeBytes);
    expect(existsSync(replicaImage("disk0"))).toBe(false);
    await commitDevices(control, "tx-1", 1, [deviceSpec("disk0")]);
    expect(existsSync(replicaImage("disk0"))).toBe(true);

    const wrlArgs: string[] = [];
    for (const wrl of ["wrl0", "wrl1"]) {
      await druvaaOk(["wrl", "create", "--primary", join(dir, `${wrl}.img`), "--size", String(64 * MiB)]);
      wrlArgs.push("--wrl", `${wrl}=${join(dir, `${wrl}.img`)}`, "--replica", `${wrl}=${replica.ready.listen}`);
    }
    const staging = await start("staging", ["staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", ...wrlArgs, "--state-dir", join(dir, "staging-state")]);
    const socket = (name: string) => join(dir, `export-${name}.sock`);
    const uri = (name: string) => `nbd+unix:///${name}?socket=${socket(name)}`;
    const attach = (name: string, wrl: string) => start(`client-${name}`, ["client", "attach", "--device", `${name}=${primary(name)}`, "--staging", String(staging.ready.listen), "--wrl", wrl, "--export", `unix:${socket(name)}`, "--control", "127.0.0.1:0", "--state-dir", join(dir, `client-${name}-state`)]);
    const client0 = await attach("disk0", "wrl0");

    expect((await qemuIo(uri("disk0"), ["write -P 0x5a 0 1M", `write -P 0xa5 ${sizeBytes - 64 * 1024} 64k`, "write -z 256k 64k", "flush"])).exitCode).toBe(0);
    await expectReplicated(["disk0"]);

    // disk1 on its own WRL, written before the replica has it: its records wait at staging.
    await attach("disk1", "wrl1");
    expect((await qemuIo(uri("disk1"), ["write -P 0x11 0 2M", `write -P 0x22 ${4 * MiB} 512k`, "flush"])).exitCode).toBe(0);
    // Version 2 adds disk1 while fio writes disk0.
    let fioDone = false;
    const running = fio(uri("disk0"), "busy", ["--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=8M", "--loops=3", "--verify=crc32c", "--do_verify=1", "--randseed=3"], { timeoutMs: 90_000, cwd: dir }).finally(() => (fioDone = true));
    while (!fioDone && (((await get(String(client0.ready.control), "/status")).devices as { writes: number }[])[0]!.writes ?? 0) < 300) await Bun.sleep(20);
    await commitDevices(control, "tx-2", 2, [deviceSpec("disk0"), deviceSpec("disk1")]);
    const committedMidWorkload = !fioDone;
    expectFioOk(await running);
    expect(committedMidWorkload).toBe(true);
    await expectReplicated(["disk0", "disk1"]);
    expect(((await get(control, "/status")).devices as { name: string }[]).map((device) => device.name)).toEqual(["disk0", "disk1"]);

    // An aborted version 3 changes nothing.
    const prepared3 = await post(control, "/config/prepare", { txid: "tx-3", version: 3, config: { devices: [deviceSpec("disk0"), deviceSpec("disk1"), deviceSpec("disk2")] } });
    expect(prepared3.body).toMatchObject({ ok: true });
    expect((await get(control, "/config")).pending).toEqual({ txid: "tx-3", version: 3 });
    expect((await post(control, "/config/abort", { txid: "tx-3" })).body).toEqual({ ok: true, txid: "tx-3" });
    expect(await get(control, "/config")).toMatchObject({ version: 2, txid: "tx-2", pending: null });
    expect(existsSync(replicaImage("disk2"))).toBe(false);
    expect((await post(control, "/config/commit", { txid: "tx-3" })).body.error).toMatchObject({ code: "CONFIG_NOT_PREPARED" });

    // A refusal names the field; a pending version 4 survives SIGKILL.
    const refused = await post(control, "/config/prepare", { txid: "tx-4", version: 4, config: { devices: [deviceSpec("disk0"), { ...deviceSpec("disk2"), sizeBytes: undefined }] } });
    expect(refused).toMatchObject({ status: 409, body: { ok: false, error: { code: "NOT_FOUND", field: "devices[1].path" } } });
    expect((await post(control, "/config/prepare", { txid: "tx-4", version: 4, config: { devices: [deviceSpec("disk0"), deviceSpec("disk1"), deviceSpec("disk2")] } })).status).toBe(200);
    replica.proc.kill("SIGKILL");
    await replica.proc.exited;
    expect((await qemuIo(uri("disk0"), ["write -P 0x77 1M 1M", "flush"])).exitCode).toBe(0);
    expect((await qemuIo(uri("disk1"), ["write -P 0x88 3M 1M", "flush"])).exitCode).toBe(0);
    replica = await start("replica", replicaArgs(String(replica.ready.listen), control, String(replica.ready.restore)));
    expect((replica.ready.devices as { name: string }[]).map((device) => device.name)).toEqual(["disk0", "disk1"]);
    expect(await get(control, "/config")).toMatchObject({ ok: true, version: 2, txid: "tx-2", pending: { txid: "tx-4", version: 4 }, applied: { version: 2 } });
    expect((await get(control, "/status")).managed).toMatchObject({ version: 2, pending: { txid: "tx-4", version: 4 } });
    await expectReplicated(["disk0", "disk1"]);
    expect(existsSync(replicaImage("disk2"))).toBe(false);

    // The panel re-sends the commit: version 4 applies on the restarted replica.
    const committed4 = await post(control, "/config/commit", { txid: "tx-4" });
    expect(committed4.body).toMatchObject({ ok: true, version: 4, applied: { version: 4 } });
    expect(((await get(control, "/status")).devices as { name: string }[]).map((device) => device.name)).toEqual(["disk0", "disk1", "disk2"]);
    expect(existsSync(replicaImage("disk2"))).toBe(true);
  }, 240_000);
});
