/**
 * `druvaa staging serve --managed` with real processes: a staging server started without any
 * --wrl takes its WRLs from the panel's two-phase commit on its control port (docs/panel.md
 * "Staging"). A WRL committed there is created, served to a real `druvaa client attach` and
 * relayed to a real `druvaa replica apply`: qemu-io writes through the client's NBD export end up
 * on the replica byte for byte. Abort, CONFIG_STALE, a SIGKILL and restart (committed WRL open
 * again, pending prepare still pending), a second WRL added beside a busy one and removed again,
 * a changed RPO target, and the refusal to drop a WRL whose records the replica has not acknowledged.
 */
import { afterAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RoleProcess } from "../../src/demo/processes.ts";
import { createImage, createReplicaImage, druvaaOk, MiB, qemuIo, sha256File, startTracked } from "./helpers.ts";
import { getJson as get, postJson as post } from "../helpers/control-http.ts";

const sizeBytes = 16 * MiB;
const dir = mkdtempSync(join(tmpdir(), "druvaa-managed-staging-"));
const started: RoleProcess[] = [];

afterAll(async () => {
  // Every process this file started, by pid; then its files.
  await Promise.allSettled(started.map((role) => role.stop("SIGKILL")));
  rmSync(dir, { recursive: true, force: true });
});

async function start(name: string, args: string[]): Promise<RoleProcess> {
  const role = await startTracked(name, args);
  started.push(role);
  return role;
}

const primaryPath = join(dir, "primary-disk0.img");
const replicaPath = join(dir, "replica-disk0.img");
const fastPath = join(dir, "wrl-fast.img");
const bulkPath = join(dir, "wrl-bulk.img");
const stagingState = join(dir, "staging-state");
const socket = join(dir, "export.sock");
const uri = `nbd+unix:///disk0?socket=${socket}`;

/** The replica device, restored through the replica's restore port, equals the primary (sha256). */
async function expectReplicaEqualsPrimary(stagingControl: string, replicaRestore: string): Promise<void> {
  await druvaaOk(["status", "--connect", stagingControl, "--wait-drained", "--timeout", "60"], 75_000);
  const restored = join(dir, "restored.img");
  rmSync(restored, { force: true });
  await druvaaOk(["restore", "--replica", replicaRestore, "--device", "disk0", "--to", restored]);
  expect(await sha256File(restored, sizeBytes)).toBe(await sha256File(primaryPath, sizeBytes));
  rmSync(restored, { force: true });
}

test("a committed WRL serves a real client and relays to a real replica; abort, CONFIG_STALE, restart, add/remove, WRL_NOT_EMPTY", async () => {
  await createImage(primaryPath, sizeBytes);
  await createReplicaImage(replicaPath, sizeBytes);
  const replica = await start("replica", ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `disk0=${replicaPath}`, "--state-dir", join(dir, "replica-state")]);
  const replicaListen = String(replica.ready.listen);
  const stagingArgs = (listen: string, control: string) => ["staging", "serve", "--managed", "--listen", listen, "--control", control, "--state-dir", stagingState];
  let staging = await start("staging", stagingArgs("127.0.0.1:0", "127.0.0.1:0"));
  const listen = String(staging.ready.listen);
  const control = String(staging.ready.control);
  expect(staging.ready.wrls).toEqual([]);
  expect(await get(control, "/config")).toMatchObject({ ok: true, version: 0, pending: null, config: { wrls: [] } });

  const fast = { name: "fast", paths: [fastPath], sizeBytes: 64 * MiB, replica: replicaListen, rpo: "30s" };
  // Prepared and aborted: nothing changes, nothing is created.
  expect(await post(control, "/config/prepare", { txid: "tx-0", version: 1, config: { wrls: [fast] } })).toMatchObject({ status: 200, body: { ok: true } });
  expect((await get(control, "/config")).pending).toEqual({ txid: "tx-0", version: 1 });
  expect((await post(control, "/config/abort", { txid: "tx-0" })).body.ok).toBe(true);
  expect(await get(control, "/config")).toMatchObject({ version: 0, pending: null, config: { wrls: [] } });
  expect(existsSync(fastPath)).toBe(false);
  expect((await post(control, "/config/commit", { txid: "tx-0" })).body.error.code).toBe("CONFIG_NOT_PREPARED");

  // Prepared and committed: the WRL is created, served and relays.
  expect((await post(control, "/config/prepare", { txid: "tx-1", version: 1, config: { wrls: [fast] } })).body.ok).toBe(true);
  const committed = await post(control, "/config/commit", { txid: "tx-1" });
  expect(committed).toMatchObject({ status: 200, body: { ok: true, version: 1 } });
  expect(committed.body.applied.error).toBeUndefined();
  expect(existsSync(fastPath)).toBe(true);
  const status = await get(control, "/status");
  expect(status.wrls.map((wrl: any) => ({ name: wrl.name, devicePaths: wrl.devicePaths, replica: wrl.replica.address, rpo: wrl.rpo.targetSeconds }))).toEqual([{ name: "fast", devicePaths: [fastPath], replica: replicaListen, rpo: 30 }]);
  expect(status.managed).toMatchObject({ version: 1, txid: "tx-1", pending: null, applied: { version: 1 } });

  const stale = await post(control, "/config/prepare", { txid: "tx-old", version: 1, config: { wrls: [fast] } });
  expect(stale).toMatchObject({ status: 409, body: { ok: false, error: { code: "CONFIG_STALE", field: "version" } } });

  // A real client attaches to the managed WRL; its writes reach the replica.
  await start("client", ["client", "attach", "--device", `disk0=${primaryPath}`, "--staging", listen, "--wrl", "fast", "--export", `unix:${socket}`, "--control", "127.0.0.1:0", "--state-dir", join(dir, "client-state")]);
  expect((await qemuIo(uri, ["write -P 0xa1 0 1M", "write -P 0xb2 512k 1M", "write -z 768k 128k", `write -P 0xc3 ${sizeBytes - 64 * 1024} 64k`, "flush"])).exitCode).toBe(0);
  await expectReplicaEqualsPrimary(control, String(replica.ready.restore));

  // A second WRL prepared, then the staging server SIGKILLed: after the restart the committed WRL
  // is open again, the prepare still pending; its commit adds the WRL beside the busy one.
  const bulk = { name: "bulk", paths: [bulkPath], sizeBytes: 32 * MiB, replica: replicaListen };
  expect((await post(control, "/config/prepare", { txid: "tx-2", version: 2, config: { wrls: [fast, bulk] } })).body.ok).toBe(true);
  staging.proc.kill("SIGKILL");
  await staging.proc.exited;
  staging = await start("staging", stagingArgs(listen, control));
  expect((staging.ready.wrls as { name: string }[]).map((wrl) => wrl.name)).toEqual(["fast"]);
  expect(await get(control, "/config")).toMatchObject({ version: 1, txid: "tx-1", pending: { txid: "tx-2", version: 2 }, applied: { version: 1 } });
  expect((await post(control, "/config/commit", { txid: "tx-2" })).body).toMatchObject({ ok: true, version: 2 });
  expect((await get(control, "/status")).wrls.map((wrl: any) => wrl.name)).toEqual(["fast", "bulk"]);
  // The client reconnected to the restarted server: more writes still replicate.
  expect((await qemuIo(uri, ["write -P 0xd4 2M 1M", "flush"])).exitCode).toBe(0);
  await expectReplicaEqualsPrimary(control, String(replica.ready.restore));

  // The empty WRL is removed; the busy one gets a new RPO target (its relay restarts with it)
  // and keeps serving its client.
  expect((await post(control, "/config/prepare", { txid: "tx-3", version: 3, config: { wrls: [{ ...fast, rpo: "2m" }] } })).body.ok).toBe(true);
  expect((await post(control, "/config/commit", { txid: "tx-3" })).body).toMatchObject({ ok: true, version: 3 });
  expect((await get(control, "/status")).wrls.map((wrl: any) => ({ name: wrl.name, rpo: wrl.rpo.targetSeconds }))).toEqual([{ name: "fast", rpo: 120 }]);
  expect((await qemuIo(uri, ["write -P 0xf6 6M 512k", "flush"])).exitCode).toBe(0);
  await expectReplicaEqualsPrimary(control, String(replica.ready.restore));

  // With the replica stopped, records stay unrelayed: dropping the WRL is refused.
  expect(await replica.stop("SIGTERM")).toBe(0);
  expect((await qemuIo(uri, ["write -P 0xe5 4M 256k", "flush"])).exitCode).toBe(0);
  const refused = await post(control, "/config/prepare", { txid: "tx-4", version: 4, config: { wrls: [] } });
  expect(refused).toMatchObject({ status: 409, body: { ok: false, error: { code: "WRL_NOT_EMPTY", field: "wrls" } } });
  expect(refused.body.error.hint).toContain("drain");
  expect(await get(control, "/config")).toMatchObject({ version: 3, pending: null });
  expect((await get(control, "/status")).wrls.map((wrl: any) => wrl.name)).toEqual(["fast"]);
}, 240_000);

test("beside --wrl flags and with --encrypt-at-rest: flag names are refused, new WRLs are created encrypted, SIGTERM closes them all", async () => {
  const keyPath = join(dir, "wrl.key");
  writeFileSync(keyPath, randomBytes(32), { mode: 0o600 });
  const flaggedPath = join(dir, "flagged.img");
  const sealedPath = join(dir, "sealed.img");
  await druvaaOk(["wrl", "create", "--primary", flaggedPath, "--size", "16M", "--encrypt-at-rest", keyPath]);
  // The replicas are never reached here (nothing listens on port 1): records just wait.
  const args = (listen: string, control: string) => ["staging", "serve", "--managed", "--listen", listen, "--control", control, "--state-dir", join(dir, "staging2-state"), "--wrl", `flagged=${flaggedPath}`, "--replica", "flagged=127.0.0.1:1", "--encrypt-at-rest", keyPath];
  const staging = await start("staging2", args("127.0.0.1:0", "127.0.0.1:0"));
  const control = String(staging.ready.control);
  const taken = await post(control, "/config/prepare", { txid: "tx-1", version: 1, config: { wrls: [{ name: "flagged", paths: [sealedPath], sizeBytes: 16 * MiB, replica: "127.0.0.1:1" }] } });
  expect(taken).toMatchObject({ status: 409, body: { error: { code: "WRL_NAME_TAKEN", field: "wrls[0].name" } } });
  const pathTaken = await post(control, "/config/prepare", { txid: "tx-1", version: 1, config: { wrls: [{ name: "sealed", paths: [flaggedPath], replica: "127.0.0.1:1" }] } });
  expect(pathTaken).toMatchObject({ status: 409, body: { error: { code: "WRL_PATH_TAKEN", field: "wrls[0].paths[0]" } } });
  expect((await post(control, "/config/prepare", { txid: "tx-1", version: 1, config: { wrls: [{ name: "sealed", paths: [sealedPath], sizeBytes: 16 * MiB, replica: "127.0.0.1:1", compression: "off" }] } })).body.ok).toBe(true);
  const committed = await post(control, "/config/commit", { txid: "tx-1" });
  expect(committed.body).toMatchObject({ ok: true, version: 1 });
  expect(committed.body.applied.error).toBeUndefined();
  const info = JSON.parse(await druvaaOk(["wrl", "info", sealedPath, "--json"]));
  expect(info.payloadEncryption).toBe("aes-256-ctr");
  expect((await get(control, "/status")).wrls.map((wrl: any) => wrl.name)).toEqual(["flagged", "sealed"]);
  expect(await staging.stop("SIGTERM")).toBe(0);
  const again = await start("staging2", args(String(staging.ready.listen), control));
  expect((again.ready.wrls as { name: string }[]).map((wrl) => wrl.name)).toEqual(["flagged", "sealed"]);
  expect(again.ready.managed).toMatchObject({ version: 1, applied: { version: 1 } });
  expect((again.ready.managed as { applied: { error?: unknown } }).applied.error).toBeUndefined();

  // A --wrl flag given since under a committed WRL's name: the managed one is not opened (that
  // would open the log twice); the failed apply is reported and the server serves the rest.
  expect(await again.stop("SIGTERM")).toBe(0);
  const otherPath = join(dir, "other.img");
  await druvaaOk(["wrl", "create", "--primary", otherPath, "--size", "16M", "--encrypt-at-rest", keyPath]);
  const clash = await start("staging2", [...args(String(staging.ready.listen), control), "--wrl", `sealed=${otherPath}`, "--replica", "sealed=127.0.0.1:1"]);
  expect((clash.ready.wrls as { name: string; devicePaths: string[] }[]).map((wrl) => [wrl.name, wrl.devicePaths[0]])).toEqual([["flagged", flaggedPath], ["sealed", otherPath]]);
  expect((await get(control, "/config")).applied).toMatchObject({ version: 1, error: { code: "WRL_NAME_TAKEN" } });
}, 120_000);
