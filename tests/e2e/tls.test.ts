/**
 * Issue 5 part 1 with real processes: a whole system on TLS 1.3 with mutual authentication, its
 * certificates made with `druvaa admin ca init` / `druvaa admin cert issue` / `cert revoke`.
 *   - replicates, restores with an admin certificate, and keeps serving legitimate peers while
 *     every TLS port is flooded with garbage and half-open handshakes;
 *   - a client certificate for device A cannot attach device B (DEVICE_NOT_ALLOWED);
 *   - a revoked client certificate is refused (the staging server loaded the CRL);
 *   - a replica refuses a staging server of another CA (the relay reports the TLS refusal);
 *   - plaintext must be asked for (--insecure) and is refused on a non-loopback address.
 * Control ports are HTTPS here, read with the admin certificate (tests/e2e/control-tls.test.ts
 * covers them).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fetchStatus } from "../../src/commands/status-format.ts";
import type { RoleProcess } from "../../src/demo/processes.ts";
import { resolveControlToolSecurity } from "../../src/roles/link-security.ts";
import type { PreparedTls } from "../../src/tls/transport-tls.ts";
import { druvaa as druvaaRaw } from "../helpers/cli.ts";
import { createImage, createReplicaImage, druvaa, druvaaOk, MiB, qemuIo, sha256File, startTracked } from "./helpers.ts";
import { flood } from "./raw-socket.ts";

const sizeBytes = 16 * MiB;
const dir = mkdtempSync(join(tmpdir(), "druvaa-e2e-tls-"));
const caDir = join(dir, "ca");
const otherCaDir = join(dir, "other-ca");
const certs = join(dir, "tls");
const started: RoleProcess[] = [];
let replica: RoleProcess;
let staging: RoleProcess;
let client: RoleProcess;
/** Admin certificates of each CA, for the HTTPS control ports. */
let adminTls: PreparedTls | undefined;
let rogueAdminTls: PreparedTls | undefined;

/** The TLS flags of node `name` (issued into `certs`) trusting the CA in `ca`. */
const tlsOf = (name: string, ca = caDir) => ["--tls-cert", join(certs, `${name}.pem`), "--tls-key", join(certs, `${name}.key`), "--tls-ca", join(ca, "ca.pem"), "--crl", join(ca, "crl.pem")];

async function start(name: string, args: string[]): Promise<RoleProcess> {
  const role = await startTracked(name, args);
  started.push(role);
  return role;
}

const clientArgs = (device: string, cert: string) => [
  "client", "attach", "--device", `${device}=${join(dir, `primary-${device}.img`)}`, "--staging", String(staging.ready.listen), "--wrl", "w0",
  "--export", `unix:${join(dir, `export-${device}-${cert}.sock`)}`, "--control", "127.0.0.1:0", "--state-dir", join(dir, `client-${device}-${cert}-state`), ...tlsOf(cert),
];

beforeAll(async () => {
  await druvaaOk(["admin", "ca", "init", "--dir", caDir, "--name", "e2e-ca", "--json"]);
  await druvaaOk(["admin", "ca", "init", "--dir", otherCaDir, "--name", "someone-elses-ca", "--json"]);
  for (const [role, name, extra, ca] of [
    ["replica", "dr1", [], caDir], ["staging", "stg1", [], caDir], ["client", "db1", ["--device", "diskA"], caDir], ["admin", "ops", [], caDir],
    ["client", "db2", ["--device", "diskA"], caDir], ["staging", "rogue", [], otherCaDir], ["admin", "rogue-ops", [], otherCaDir],
  ] as const) {
    await druvaaOk(["admin", "cert", "issue", "--role", role, "--name", name, ...extra, "--dir", ca, "--out", certs, "--json"]);
  }
  adminTls = await resolveControlToolSecurity({ "tls-cert": join(certs, "ops.pem"), "tls-key": join(certs, "ops.key"), "tls-ca": join(caDir, "ca.pem") });
  rogueAdminTls = await resolveControlToolSecurity({ "tls-cert": join(certs, "rogue-ops.pem"), "tls-key": join(certs, "rogue-ops.key"), "tls-ca": join(otherCaDir, "ca.pem") });
  const revoked = JSON.parse(await druvaaOk(["admin", "cert", "revoke", "--cert", join(certs, "db2.pem"), "--dir", caDir, "--json"]));
  expect(revoked.alreadyRevoked).toBe(false);
  for (const device of ["diskA", "diskB"]) {
    await createImage(join(dir, `primary-${device}.img`), sizeBytes);
    await createReplicaImage(join(dir, `replica-${device}.img`), sizeBytes);
  }
  await druvaaOk(["wrl", "create", "--primary", join(dir, "wrl.img"), "--size", String(64 * MiB)]);
  replica = await start("replica", ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `diskA=${join(dir, "replica-diskA.img")}`, "--device", `diskB=${join(dir, "replica-diskB.img")}`, "--state-dir", join(dir, "replica-state"), ...tlsOf("dr1")]);
  staging = await start("staging", ["staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--wrl", `w0=${join(dir, "wrl.img")}`, "--replica", `w0=${replica.ready.listen}`, "--state-dir", join(dir, "staging-state"), ...tlsOf("stg1")]);
  client = await start("client", clientArgs("diskA", "db1"));
}, 120_000);

afterAll(async () => {
  await Promise.allSettled(started.reverse().map(async (role) => {
    if (role.proc.exitCode !== null || role.proc.signalCode !== null) return;
    role.proc.kill("SIGTERM");
    const timer = setTimeout(() => role.proc.kill("SIGKILL"), 10_000);
    await role.proc.exited;
    clearTimeout(timer);
  }));
  rmSync(dir, { recursive: true, force: true });
});

describe("TLS between every role", () => {
  test("replicates and restores over mutual TLS, and keeps serving while its TLS ports are flooded", async () => {
    const sockets = [
      ...(await flood(String(staging.ready.listen), 40)),
      ...(await flood(String(replica.ready.listen), 40)),
      ...(await flood(String(replica.ready.restore), 20)),
    ];
    try {
      const uri = `nbd+unix:///diskA?socket=${join(dir, "export-diskA-db1.sock")}`;
      const written = await qemuIo(uri, ["write -P 0x5a 0 4M", "write -P 0xa5 8M 1M"]);
      expect(written.exitCode).toBe(0);
      await druvaaOk(["status", "--connect", String(staging.ready.control), "--wait-drained", "--timeout", "60", ...tlsOf("ops")], 75_000);
      const target = join(dir, "restored-diskA.img");
      // The restore port wants an admin (or panel) certificate, and shows a replica one.
      await druvaaOk(["restore", "--replica", String(replica.ready.restore), "--device", "diskA", "--to", target, ...tlsOf("ops")]);
      expect(await sha256File(target, sizeBytes)).toBe(await sha256File(join(dir, "primary-diskA.img"), sizeBytes));
      const status = (await fetchStatus(String(staging.ready.control), undefined, adminTls)) as any;
      expect(status.wrls[0].replica).toMatchObject({ connected: true, lastError: null });
      // A plaintext restore against the TLS port does not get a byte of the device.
      const plain = await druvaa(["restore", "--replica", String(replica.ready.restore), "--device", "diskA", "--to", join(dir, "plain.img")]);
      expect(plain.exitCode).not.toBe(0);
    } finally {
      for (const socket of sockets) socket.terminate();
    }
  }, 120_000);

  test("a client certificate for diskA cannot attach diskB: refused with DEVICE_NOT_ALLOWED, nothing exported", async () => {
    const result = await druvaa([...clientArgs("diskB", "db1"), "--json"], 30_000);
    expect(result.exitCode).not.toBe(0);
    expect(`${result.stdout}${result.stderr}`).toContain("DEVICE_NOT_ALLOWED");
    expect(`${result.stdout}${result.stderr}`).toContain("does not allow device diskB");
  }, 60_000);

  test("a revoked client certificate is refused by a staging server that loaded the CRL", async () => {
    const result = await druvaa([...clientArgs("diskA", "db2"), "--json"], 30_000);
    expect(result.exitCode).not.toBe(0);
    expect(`${result.stdout}${result.stderr}`).toContain("TLS_CERT_REVOKED");
  }, 60_000);

  test("a replica refuses a staging server of another CA; the relay reports why", async () => {
    await druvaaOk(["wrl", "create", "--primary", join(dir, "wrl-rogue.img"), "--size", String(64 * MiB)]);
    const rogue = await start("staging-rogue", ["staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--wrl", `w0=${join(dir, "wrl-rogue.img")}`, "--replica", `w0=${replica.ready.listen}`, "--state-dir", join(dir, "rogue-state"), ...tlsOf("rogue", otherCaDir)]);
    let relay: { connected: boolean; lastError: { code: string; message: string } | null } = { connected: false, lastError: null };
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; await Bun.sleep(100)) {
      relay = ((await fetchStatus(String(rogue.ready.control), undefined, rogueAdminTls)) as any).wrls[0].replica;
      if (relay.lastError !== null) break;
    }
    expect(relay.connected).toBe(false);
    expect(relay.lastError?.code ?? "").toMatch(/^TLS_/);
  }, 60_000);

  test("plaintext must be asked for, and is refused on a non-loopback address without --insecure-allow-remote", async () => {
    const base = ["staging", "serve", "--wrl", `w0=${join(dir, "wrl.img")}`, "--replica", "w0=127.0.0.1:6003", "--state-dir", join(dir, "never-state")];
    const none = await druvaaRaw([...base, "--listen", "127.0.0.1:0"], { asIs: true });
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toContain("no TLS credentials");
    expect(none.stderr).toContain("druvaa admin ca init");
    const remote = await druvaaRaw(["staging", "serve", "--wrl", `w0=${join(dir, "wrl.img")}`, "--replica", "w0=10.9.8.7:6003", "--listen", "127.0.0.1:0", "--insecure"], { asIs: true });
    expect(remote.exitCode).toBe(2);
    expect(remote.stderr).toContain("10.9.8.7:6003");
    expect(remote.stderr).toContain("not a loopback address");
    const client = await druvaaRaw(["client", "attach", "--device", `diskA=${join(dir, "primary-diskA.img")}`, "--staging", "10.9.8.7:6001", "--wrl", "w0", "--export", `unix:${join(dir, "never.sock")}`, "--insecure"], { asIs: true });
    expect(client.exitCode).toBe(2);
    expect(client.stderr).toContain("not a loopback address");
    const mixed = await druvaaRaw([...base, "--listen", "127.0.0.1:0", ...tlsOf("stg1"), "--insecure"], { asIs: true });
    expect(mixed.exitCode).toBe(2);
    expect(mixed.stderr).toContain("contradict");
  }, 60_000);
});
