/**
 * The client agent's jobs under TLS (src/roles/client/agent-tls.ts), with real processes and a CA
 * made by `druvaa admin ca init` / `druvaa admin cert issue`: a replica (with retention, so it can
 * fail over) and a staging server on TLS, the agent with its client certificate, and the test
 * calling the agent's HTTPS control port with a panel certificate, as the panel does.
 *   - Without --job-tls-cert, a failback job (and a restore job) is refused up front: 409
 *     JOB_CERT_MISSING naming the flags, the attachment left running, no job started.
 *   - With an admin job certificate: a restore job equals the primary; after a failover and DR
 *     writes, a failback job (keep dr) brings them to the primary, and the attachment replicates
 *     again.
 *   - At start the agent refuses a job certificate that is a client one, of another CA, or
 *     without its key, and job flags with --insecure (exit 2, with a hint).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RoleProcess } from "../../src/demo/processes.ts";
import { resolveControlToolSecurity } from "../../src/roles/link-security.ts";
import type { PreparedTls } from "../../src/tls/transport-tls.ts";
import { AgentFleet, commitConfig, expectDrWritesOnPrimary, failOverAndWriteDr, jobEnded, oneDeviceAttachment, runningAgain } from "./agent-jobs-setup.ts";
import { createImage, createReplicaImage, druvaa, druvaaOk, isAlive, MiB, qemuIo, sha256File, startTracked } from "./helpers.ts";

const sizeBytes = 8 * MiB;
const dir = mkdtempSync(join(tmpdir(), "druvaa-e2e-agent-tls-"));
const caDir = join(dir, "ca");
const otherCaDir = join(dir, "other-ca");
const certs = join(dir, "tls");
const fleet = new AgentFleet();
/** The replica and staging of the running test: stopped after each test. */
const roles: RoleProcess[] = [];
/** The panel's certificate: the test calls the agent's control port with it. */
let panelTls: PreparedTls | undefined;

/** A role's TLS flags (node `name`, issued into `certs`) with the CA and its CRL. */
const tlsOf = (name: string) => ["--tls-cert", join(certs, `${name}.pem`), "--tls-key", join(certs, `${name}.key`), "--tls-ca", join(caDir, "ca.pem"), "--crl", join(caDir, "crl.pem")];
/** The agent's job flags for certificate `name`. */
const jobTlsOf = (name: string) => ["--job-tls-cert", join(certs, `${name}.pem`), "--job-tls-key", join(certs, `${name}.key`)];

beforeAll(async () => {
  await druvaaOk(["admin", "ca", "init", "--dir", caDir, "--name", "agent-ca", "--json"]);
  await druvaaOk(["admin", "ca", "init", "--dir", otherCaDir, "--name", "someone-elses-ca", "--json"]);
  for (const [role, name, extra, ca] of [
    ["replica", "dr1", [], caDir], ["staging", "stg1", [], caDir], ["client", "db1", ["--device", "disk0"], caDir],
    ["admin", "db1-jobs", [], caDir], ["panel", "panel1", [], caDir], ["admin", "rogue-jobs", [], otherCaDir],
  ] as const) {
    await druvaaOk(["admin", "cert", "issue", "--role", role, "--name", name, ...extra, "--dir", ca, "--out", certs, "--json"]);
  }
  panelTls = await resolveControlToolSecurity({ "tls-cert": join(certs, "panel1.pem"), "tls-key": join(certs, "panel1.key"), "tls-ca": join(caDir, "ca.pem") });
}, 60_000);

afterEach(async () => {
  await fleet.stopAll();
  for (const role of roles.splice(0).reverse()) await role.stop("SIGTERM");
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface TlsSystem {
  primary: string;
  replicaControl: string;
  replicaRestore: string;
  stagingControl: string;
  /** The attachment the panel pushes (a change map, its export on a Unix socket). */
  attachment: Record<string, unknown>;
  exportUri: string;
}

/** A replica (retention 1h) and a staging server on TLS in `dir/NAME`, with a primary image and a WRL. */
async function startTlsSystem(name: string): Promise<TlsSystem> {
  const home = join(dir, name);
  const primary = join(home, "primary.img");
  const replicaImage = join(home, "replica.img");
  const wrl = join(home, "wrl.img");
  mkdirSync(home);
  await druvaaOk(["wrl", "create", "--primary", wrl, "--size", String(64 * MiB)]);
  await createImage(primary, sizeBytes);
  await createReplicaImage(replicaImage, sizeBytes);
  const replica = await startTracked("replica", ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `disk0=${replicaImage}`, "--state-dir", join(home, "replica-state"), "--retention", "1h", ...tlsOf("dr1")]);
  roles.push(replica);
  const staging = await startTracked("staging", ["staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--wrl", `w0=${wrl}`, "--replica", `w0=${replica.ready.listen}`, "--state-dir", join(home, "staging-state"), ...tlsOf("stg1")]);
  roles.push(staging);
  const socket = join(home, "export.sock");
  return {
    primary,
    replicaControl: String(replica.ready.control),
    replicaRestore: String(replica.ready.restore),
    stagingControl: String(staging.ready.control),
    attachment: oneDeviceAttachment("pair-a", { primary, staging: String(staging.ready.listen), wrl: "w0", socket, changemap: join(home, "pair-a.map") }),
    exportUri: `nbd+unix:///disk0?socket=${socket}`,
  };
}

/** Writes through the attachment's export, then waits until the replica applied them (druvaa status with an admin certificate). */
async function writeAndDrain(sys: TlsSystem, commands: string[]): Promise<void> {
  expect((await qemuIo(sys.exportUri, commands)).exitCode).toBe(0);
  await druvaaOk(["status", "--connect", sys.stagingControl, "--wait-drained", "--timeout", "60", ...tlsOf("db1-jobs")], 75_000);
}

/** The agent's start refused (it must exit, not serve): its exit code and --json error. */
async function refusedAtStart(flags: string[]): Promise<{ exitCode: number; error: { code: string; message: string; hint?: string } }> {
  const result = await druvaa(["client", "agent", "--control", "127.0.0.1:0", "--state-dir", join(dir, "refused-agent"), ...flags, "--json"], 30_000);
  expect(result.timedOut).toBe(false);
  const line = result.stdout.split("\n").find((text) => text.includes('"error"'));
  if (line === undefined) throw new Error(`no JSON error from the agent (exit ${result.exitCode}):\n${result.stdout}\n${result.stderr}`);
  return { exitCode: result.exitCode, error: JSON.parse(line).error };
}

describe("client agent jobs under TLS", () => {
  test("without --job-tls-cert a failback or restore job is refused up front (JOB_CERT_MISSING, the flags in its hint); the attachment keeps running", async () => {
    const sys = await startTlsSystem("no-job-cert");
    const { call } = await fleet.start(join(dir, "no-job-cert", "agent"), tlsOf("db1"), panelTls);
    const status = (await call("/status")).body;
    expect(status).toMatchObject({ security: "tls", jobCertificate: null });
    await commitConfig(call, "tx-1", 1, { attachments: [sys.attachment] });
    const before = (await call("/status")).body.attachments[0];
    expect(before).toMatchObject({ name: "pair-a", state: "running" });

    const failback = await call("/jobs", { kind: "failback", attachment: "pair-a", replica: sys.replicaControl, staging: sys.stagingControl, keep: "dr" });
    expect(failback.status).toBe(409);
    expect(failback.body.ok).toBe(false);
    expect(failback.body.error.code).toBe("JOB_CERT_MISSING");
    expect(failback.body.error.message).toContain("no certificate for its jobs");
    expect(failback.body.error.hint).toContain("--job-tls-cert");
    expect(failback.body.error.hint).toContain("--job-tls-key");
    expect(failback.body.error.hint).toContain("druvaa admin cert issue --role admin");
    const restore = await call("/jobs", { kind: "restore", attachment: "pair-a", to: join(dir, "no-job-cert", "restored.img"), replicaRestore: sys.replicaRestore });
    expect(restore.status).toBe(409);
    expect(restore.body.error.code).toBe("JOB_CERT_MISSING");

    // Nothing was started, and the attachment was not stopped for the failback.
    expect((await call("/jobs")).body.jobs).toEqual([]);
    const after = (await call("/status")).body.attachments[0];
    expect(after).toMatchObject({ name: "pair-a", state: "running", pid: before.pid, restarts: 0 });
    expect(isAlive(before.pid)).toBe(true);
    await writeAndDrain(sys, ["write -P 0x21 0 64k"]);
  }, 180_000);

  test("with an admin job certificate: a restore job equals the primary; after a failover and DR writes a failback job (keep dr) completes and the attachment replicates again", async () => {
    const sys = await startTlsSystem("job-cert");
    const { call } = await fleet.start(join(dir, "job-cert", "agent"), [...tlsOf("db1"), ...jobTlsOf("db1-jobs")], panelTls);
    expect((await call("/status")).body.jobCertificate).toMatchObject({ name: "db1-jobs", role: "admin" });
    await commitConfig(call, "tx-1", 1, { attachments: [sys.attachment] });
    const first = (await call("/status")).body.attachments[0];
    expect(first).toMatchObject({ name: "pair-a", state: "running" });
    await writeAndDrain(sys, ["write -P 0x5a 0 1M", "write -P 0xa5 3M 512k", "write -P 0x11 7M 4k"]);

    // Restore job: the replica's restore port takes the job certificate.
    const restored = join(dir, "job-cert", "restored.img");
    const restoreJob = await call("/jobs", { kind: "restore", attachment: "pair-a", to: restored, replicaRestore: sys.replicaRestore });
    expect(restoreJob.status).toBe(202);
    const restore = await jobEnded(call, restoreJob.body.id);
    if (restore.state !== "done") console.log(readFileSync(restore.logPath, "utf8"));
    expect(restore).toMatchObject({ kind: "restore", state: "done", exitCode: 0, error: null });
    expect(await sha256File(restored, sizeBytes)).toBe(await sha256File(sys.primary, sizeBytes));

    // Failover on the replica (an admin's command); the DR side is written.
    await failOverAndWriteDr(sys.replicaControl, join(dir, "job-cert", "dr.sock"), tlsOf("db1-jobs"));

    // The failback job: the replica's and staging's control ports take the job certificate.
    const failbackJob = await call("/jobs", { kind: "failback", attachment: "pair-a", replica: sys.replicaControl, staging: sys.stagingControl, keep: "dr" });
    expect(failbackJob.status).toBe(202);
    const back = await jobEnded(call, failbackJob.body.id);
    if (back.state !== "done") console.log(readFileSync(back.logPath, "utf8"));
    expect(back).toMatchObject({ kind: "failback", state: "done", exitCode: 0, result: { ok: true, keep: "dr", direction: "dr-to-primary", splitBrain: false } });
    expect(readFileSync(back.logPath, "utf8")).toContain(`--tls-cert ${join(certs, "db1-jobs.pem")}`);
    await expectDrWritesOnPrimary(sys.primary);

    // The attachment runs again, on the agent's client certificate, and replicates in the original direction.
    const again = await runningAgain(call);
    expect(again.pid).not.toBe(first.pid);
    await writeAndDrain(sys, ["write -P 0x77 5M 256k"]);
    const final = join(dir, "job-cert", "final.img");
    await druvaaOk(["restore", "--replica", sys.replicaRestore, "--device", "disk0", "--to", final, ...tlsOf("db1-jobs")]);
    expect(await sha256File(final, sizeBytes)).toBe(await sha256File(sys.primary, sizeBytes));
  }, 300_000);

  test("at start the agent refuses a job certificate that is a client one, of another CA or without its key, and job flags with --insecure (exit 2, with a hint)", async () => {
    const client = await refusedAtStart([...tlsOf("db1"), ...jobTlsOf("db1")]);
    expect(client.exitCode).toBe(2);
    expect(client.error.code).toBe("TLS_BAD_JOB_CERT");
    expect(client.error.message).toContain("is a client certificate");
    expect(client.error.hint).toContain("druvaa admin cert issue --role admin");

    const otherCa = await refusedAtStart([...tlsOf("db1"), ...jobTlsOf("rogue-jobs")]);
    expect(otherCa.exitCode).toBe(2);
    expect(otherCa.error.code).toBe("TLS_BAD_JOB_CERT");
    expect(otherCa.error.message).toContain("not signed by our CA");
    expect(otherCa.error.hint).toContain("the CA that issued the agent's --tls-cert");

    const wrongKey = await refusedAtStart([...tlsOf("db1"), "--job-tls-cert", join(certs, "db1-jobs.pem"), "--job-tls-key", join(certs, "panel1.key")]);
    expect(wrongKey.error).toMatchObject({ code: "TLS_BAD_JOB_CERT" });
    expect(wrongKey.error.message).toContain("is not the key of --job-tls-cert");

    const missing = await refusedAtStart([...tlsOf("db1"), "--job-tls-cert", join(certs, "nope.pem"), "--job-tls-key", join(certs, "nope.key")]);
    expect(missing.error.code).toBe("FILE_NOT_FOUND");
    expect(missing.error.message).toContain("--job-tls-cert");

    const halfOnly = await refusedAtStart([...tlsOf("db1"), "--job-tls-cert", join(certs, "db1-jobs.pem")]);
    expect(halfOnly).toMatchObject({ exitCode: 2, error: { code: "USAGE" } });
    expect(halfOnly.error.message).toContain("--job-tls-key");

    const insecure = await refusedAtStart(["--insecure", ...jobTlsOf("db1-jobs")]);
    expect(insecure).toMatchObject({ exitCode: 2, error: { code: "USAGE" } });
    expect(insecure.error.message).toContain("need TLS");
  }, 120_000);
});
