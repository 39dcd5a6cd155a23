/**
 * `druvaa client agent` under TLS, with real processes and a CA made by `druvaa admin`: the agent
 * holds a client certificate, the panel's side (here an admin certificate) pushes the config over
 * HTTPS, the child attaches to a TLS staging server with the agent's certificate, and the agent
 * still reads the child's status (through the child's plain control socket in the 0700 run
 * directory: the child's HTTPS control port would refuse the agent's client certificate). Writes
 * replicate; the restored replica equals the primary; the agent's SIGTERM leaves no child.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { controlRequest } from "../../src/commands/status-format.ts";
import type { RoleProcess } from "../../src/demo/processes.ts";
import { resolveControlToolSecurity } from "../../src/roles/link-security.ts";
import type { PreparedTls } from "../../src/tls/transport-tls.ts";
import { createImage, createReplicaImage, druvaaOk, isAlive, MiB, qemuIo, sha256File, startTracked } from "../e2e/helpers.ts";

const sizeBytes = 8 * MiB;
const dir = mkdtempSync(join(tmpdir(), "druvaa-agent-tls-"));
const caDir = join(dir, "ca");
const certs = join(dir, "tls");
const tlsOf = (name: string) => ["--tls-cert", join(certs, `${name}.pem`), "--tls-key", join(certs, `${name}.key`), "--tls-ca", join(caDir, "ca.pem")];
const started: RoleProcess[] = [];
const childPids = new Set<number>();
let staging: RoleProcess;
let replica: RoleProcess;
let adminTls: PreparedTls | undefined;

beforeAll(async () => {
  await druvaaOk(["admin", "ca", "init", "--dir", caDir, "--name", "agent-ca", "--json"]);
  for (const [role, name, extra] of [["replica", "dr1", []], ["staging", "stg1", []], ["client", "db1", ["--device", "disk0"]], ["admin", "ops", []]] as const) {
    await druvaaOk(["admin", "cert", "issue", "--role", role, "--name", name, ...extra, "--dir", caDir, "--out", certs, "--json"]);
  }
  adminTls = await resolveControlToolSecurity({ "tls-cert": join(certs, "ops.pem"), "tls-key": join(certs, "ops.key"), "tls-ca": join(caDir, "ca.pem") });
  await createImage(join(dir, "primary-disk0.img"), sizeBytes);
  await createReplicaImage(join(dir, "replica-disk0.img"), sizeBytes);
  await druvaaOk(["wrl", "create", "--primary", join(dir, "wrl.img"), "--size", String(64 * MiB)]);
  replica = await startTracked("replica", ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `disk0=${join(dir, "replica-disk0.img")}`, "--state-dir", join(dir, "replica-state"), ...tlsOf("dr1")]);
  started.push(replica);
  staging = await startTracked("staging", ["staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--wrl", `w0=${join(dir, "wrl.img")}`, "--replica", `w0=${replica.ready.listen}`, "--state-dir", join(dir, "staging-state"), ...tlsOf("stg1")]);
  started.push(staging);
}, 120_000);

afterAll(async () => {
  for (const role of started.reverse()) await role.stop("SIGTERM");
  for (const pid of childPids) if (isAlive(pid)) process.kill(pid, "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

describe("client agent with TLS", () => {
  test("config over HTTPS with an admin certificate; the child attaches with the agent's certificate; the agent reads its status; writes replicate", async () => {
    const agent = await startTracked("agent", ["client", "agent", "--control", "127.0.0.1:0", "--state-dir", join(dir, "agent"), "--node-id", "db1", ...tlsOf("db1")]);
    started.push(agent);
    const control = String(agent.ready.control);
    const call = async (path: string, body?: unknown) => {
      const response = await controlRequest(control, path, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) }, 6007, adminTls);
      const answer = (await response.json()) as any;
      for (const attachment of answer.attachments ?? []) if (typeof attachment.pid === "number") childPids.add(attachment.pid);
      return answer;
    };
    const socket = join(dir, "export.sock");
    const attachment = { name: "pair-tls", devices: [{ name: "disk0", path: join(dir, "primary-disk0.img") }], staging: String(staging.ready.listen), wrl: "w0", export: `unix:${socket}`, changemap: join(dir, "pair-tls.map"), initialSync: "none", enabled: true };
    expect(await call("/config/prepare", { txid: "tx-1", version: 1, config: { attachments: [attachment] } })).toMatchObject({ ok: true });
    const committed = await call("/config/commit", { txid: "tx-1" });
    expect(committed).toMatchObject({ ok: true, version: 1 });
    expect(committed.applied.error).toBeUndefined();

    const status = await call("/status");
    expect(status).toMatchObject({ role: "client", security: "tls" });
    const child = status.attachments[0];
    expect(child).toMatchObject({ name: "pair-tls", state: "running", status: { role: "client", staging: { connected: true }, devices: [{ name: "disk0" }] } });
    // The run directory holding the children's plain control sockets is the agent user's alone.
    expect(statSync(join(dir, "agent", "run")).mode & 0o777).toBe(0o700);
    // The child's own TCP control port is HTTPS for admin certificates, like every role's.
    const direct = await controlRequest(String(child.addresses.control), "/status", {}, 6007, adminTls);
    expect(((await direct.json()) as { devices: { name: string }[] }).devices[0]!.name).toBe("disk0");

    expect((await qemuIo(`nbd+unix:///disk0?socket=${socket}`, ["write -P 0x5a 0 2M", "write -P 0xc3 6M 128k"])).exitCode).toBe(0);
    await druvaaOk(["status", "--connect", String(staging.ready.control), "--wait-drained", "--timeout", "60", ...tlsOf("ops")], 75_000);
    const restored = join(dir, "restored.img");
    await druvaaOk(["restore", "--replica", String(replica.ready.restore), "--device", "disk0", "--to", restored, ...tlsOf("ops")]);
    expect(await sha256File(restored, sizeBytes)).toBe(await sha256File(join(dir, "primary-disk0.img"), sizeBytes));

    expect(await agent.stop("SIGTERM")).toBe(0);
    expect(isAlive(child.pid)).toBe(false);
  }, 180_000);
});
