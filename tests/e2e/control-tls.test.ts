/**
 * Issue 5: the control port of a role running with TLS is HTTPS with mutual authentication, and
 * the role follows its CRL while it runs. One replica (the cheapest role to start) with a CA made
 * by `druvaa admin`, driven through the real CLI:
 *   - `druvaa status` with an admin certificate answers (text and --json); GET /metrics over HTTPS
 *     is Prometheus text;
 *   - without a certificate: refused, exit 4, with the hint to give an admin certificate; with a
 *     client certificate: TLS_ROLE_NOT_ALLOWED, exit 4; each refusal logged once by the replica;
 *   - garbage and stalled TLS handshakes on the control port do not stop a legitimate status;
 *   - an admin certificate revoked with `druvaa admin cert revoke` while the replica runs is refused
 *     at its next request (the CRL reloaded at runtime), without a restart; a crl.pem that does not
 *     parse, written meanwhile, keeps the list in use (logged with a hint).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { controlRequest } from "../../src/commands/status-format.ts";
import type { RoleProcess } from "../../src/demo/processes.ts";
import { resolveControlToolSecurity } from "../../src/roles/link-security.ts";
import { createReplicaImage, druvaa, druvaaOk, isAlive, MiB, startTracked } from "./helpers.ts";
import { errorOf, flood } from "./raw-socket.ts";

const dir = mkdtempSync(join(tmpdir(), "druvaa-e2e-control-tls-"));
const caDir = join(dir, "ca");
const certs = join(dir, "tls");
let replica: RoleProcess;
let control: string;

/** A role's TLS flags (with the CRL). */
const roleTls = (name: string) => ["--tls-cert", join(certs, `${name}.pem`), "--tls-key", join(certs, `${name}.key`), "--tls-ca", join(caDir, "ca.pem"), "--crl", join(caDir, "crl.pem")];
/** A tool's TLS flags: its certificate and the CA (a tool needs no CRL; the role checks ours). */
const toolTls = (name: string) => ["--tls-cert", join(certs, `${name}.pem`), "--tls-key", join(certs, `${name}.key`), "--tls-ca", join(caDir, "ca.pem")];

/** Waits until the replica's log has a line containing every one of `parts`; returns how many such lines. */
async function logLines(parts: string[], timeoutMs = 5_000): Promise<number> {
  const count = () => replica.stderrText().split("\n").filter((line) => parts.every((part) => line.includes(part))).length;
  for (const deadline = Date.now() + timeoutMs; count() === 0 && Date.now() < deadline; ) await Bun.sleep(50);
  await Bun.sleep(200); // a second line, if the replica were to log one per request, would be there by now
  return count();
}

beforeAll(async () => {
  await druvaaOk(["admin", "ca", "init", "--dir", caDir, "--name", "control-ca", "--json"]);
  for (const [role, name, extra] of [["replica", "dr1", []], ["admin", "ops", []], ["admin", "ops2", []], ["client", "db1", ["--device", "d0"]]] as const) {
    await druvaaOk(["admin", "cert", "issue", "--role", role, "--name", name, ...extra, "--dir", caDir, "--out", certs, "--json"]);
  }
  await createReplicaImage(join(dir, "replica-d0.img"), 4 * MiB);
  replica = await startTracked("replica", ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `d0=${join(dir, "replica-d0.img")}`, "--state-dir", join(dir, "replica-state"), ...roleTls("dr1")]);
  control = String(replica.ready.control);
}, 60_000);

afterAll(async () => {
  await replica?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("the control port of a role running with TLS", () => {
  test("druvaa status with an admin certificate: text and --json; GET /metrics is Prometheus text", async () => {
    const text = await druvaaOk(["status", "--connect", control, ...toolTls("ops")]);
    expect(text).toContain("replica");
    expect(text).toContain("device d0");
    const json = JSON.parse(await druvaaOk(["status", "--connect", control, "--json", ...toolTls("ops")]));
    expect(json.role).toBe("replica");
    expect(json.devices[0].name).toBe("d0");
    const tls = await resolveControlToolSecurity({ "tls-cert": join(certs, "ops.pem"), "tls-key": join(certs, "ops.key"), "tls-ca": join(caDir, "ca.pem") });
    const metrics = await controlRequest(control, "/metrics", {}, 6004, tls);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(await metrics.text()).toMatch(/^druvaa_info\{.*role="replica".*\} 1$/m);
  }, 60_000);

  test("without a certificate: refused (exit 4) with the hint to give an admin certificate", async () => {
    const result = await druvaa(["status", "--connect", control, "--json"]);
    expect(result.exitCode).toBe(4);
    const error = errorOf(result.stdout);
    expect(error.code).toBe("CONTROL_TLS_REQUIRED");
    expect(error.message).toContain("speaks HTTPS");
    expect(error.hint).toContain("druvaa admin cert issue --role admin");
    expect(result.stderr).toContain("hint:");
    // The replica saw a plain request (a TLS failure) and the tool's unauthenticated probe.
    expect(await logLines(["refused", "no certificate was presented"])).toBe(1);
  }, 60_000);

  test("with a client certificate: TLS_ROLE_NOT_ALLOWED (exit 4), logged once", async () => {
    const result = await druvaa(["status", "--connect", control, "--json", ...toolTls("db1")]);
    expect(result.exitCode).toBe(4);
    expect(errorOf(result.stdout)).toMatchObject({ code: "TLS_ROLE_NOT_ALLOWED" });
    expect(errorOf(result.stdout).message).toContain("accepts admin or panel");
    expect(await logLines(["refused", `"db1"`, "TLS_ROLE_NOT_ALLOWED"])).toBe(1);
  }, 60_000);

  test("garbage and stalled TLS handshakes on the control port do not stop a legitimate druvaa status", async () => {
    const sockets = await flood(control, 24);
    try {
      const started = performance.now();
      const json = JSON.parse(await druvaaOk(["status", "--connect", control, "--json", ...toolTls("ops")], 20_000));
      expect(json.role).toBe("replica");
      expect(performance.now() - started).toBeLessThan(10_000); // well within the 10 s handshake timeout
    } finally {
      for (const socket of sockets) socket.terminate();
    }
  }, 60_000);

  test("an admin certificate revoked while the replica runs is refused at once, without a restart; a bad crl.pem keeps the list in use", async () => {
    const before = JSON.parse(await druvaaOk(["status", "--connect", control, "--json", ...toolTls("ops2")]));
    await druvaaOk(["admin", "cert", "revoke", "--cert", join(certs, "ops2.pem"), "--dir", caDir, "--json"]);
    const revoked = await druvaa(["status", "--connect", control, "--json", ...toolTls("ops2")]);
    expect(revoked.exitCode).toBe(4);
    expect(errorOf(revoked.stdout).code).toBe("TLS_CERT_REVOKED");
    expect(await logLines(["revocation list", "reloaded", "1 revoked serial"])).toBe(1);
    // The same process, still serving the certificates not revoked.
    const after = JSON.parse(await druvaaOk(["status", "--connect", control, "--json", ...toolTls("ops")]));
    expect(after.uptimeSeconds).toBeGreaterThan(before.uptimeSeconds);
    expect(isAlive(replica.pid)).toBe(true);

    // A crl.pem that does not parse (written whole, as an operator's copy would be) changes nothing.
    const crlPath = join(caDir, "crl.pem");
    const good = readFileSync(crlPath);
    writeFileSync(`${crlPath}.tmp`, "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n");
    renameSync(`${crlPath}.tmp`, crlPath);
    try {
      const stillRevoked = await druvaa(["status", "--connect", control, "--json", ...toolTls("ops2")]);
      expect(errorOf(stillRevoked.stdout).code).toBe("TLS_CERT_REVOKED");
      await druvaaOk(["status", "--connect", control, ...toolTls("ops")]);
      expect(await logLines(["revocation list", "changed and was not taken", "still refusing the 1 serial", "druvaa admin cert revoke"])).toBe(1);
    } finally {
      writeFileSync(`${crlPath}.tmp`, good);
      renameSync(`${crlPath}.tmp`, crlPath);
    }
    expect(isAlive(replica.pid)).toBe(true);
  }, 60_000);
});
