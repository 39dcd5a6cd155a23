/**
 * The HTTPS control port (src/io/control-server.ts with `tls`, src/io/control-https.ts) and the
 * tools' side of it (src/commands/control-client.ts), in process on loopback with certificates
 * made by src/tls: who gets in (admin and panel certificates of our CA), what everyone else is
 * told (403 with the code and a hint, before any route runs; one log line per connection), TLS
 * 1.3 only, a revocation taking effect on a kept-alive connection, bounded bodies, and a tool that
 * refuses a server which is not a druvaa role of its CA.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as nodeTls from "node:tls";
import { controlRequest, fetchStatus } from "../../src/commands/status-format.ts";
import { startControlServer, type ControlRoute, type ControlServer } from "../../src/io/control-server.ts";
import { controlPeerRoles, controlServerRoles } from "../../src/roles/link-security.ts";
import type { IssuedCertificate } from "../../src/tls/ca.ts";
import { loadRevocationList } from "../../src/tls/crl.ts";
import { watchRevocationList, type CrlWatcher } from "../../src/tls/crl-reload.ts";
import { prepareTls, type PreparedTls } from "../../src/tls/transport-tls.ts";
import { capturingLogs, testPki, type TestPki } from "../tls/helpers.ts";

const pki = testPki();
const other = testPki("other-ca");
const dayMs = 86_400_000;
const certs = {
  staging: pki.issue("staging", "staging1"),
  admin: pki.issue("admin", "ops"),
  panel: pki.issue("panel", "panel1"),
  revokedLater: pki.issue("admin", "ops2"),
  client: pki.issue("client", "db1"),
  foreignAdmin: other.issue("admin", "ops"),
  expiredAdmin: pki.issue("admin", "old", { notBefore: new Date(Date.now() - 10 * dayMs), notAfter: new Date(Date.now() - dayMs) }),
};
const dir = mkdtempSync(join(tmpdir(), "druvaa-control-https-"));
const crlPath = join(dir, "crl.pem");
const servers: ControlServer[] = [];
const watchers: CrlWatcher[] = [];
let routeCalls = 0;

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.stop()));
  for (const watcher of watchers.splice(0)) watcher.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const routes: Record<string, ControlRoute> = {
  "/status": () => {
    routeCalls += 1;
    return { role: "staging", nodeId: "staging1", wrls: [] };
  },
  "POST /echo": async (request) => ({ got: await request.json(), query: new URL(request.url).searchParams.get("id") }),
};

function writeCrl(serials: string[]): void {
  writeFileSync(`${crlPath}.tmp`, pki.crl(serials));
  renameSync(`${crlPath}.tmp`, crlPath);
}

/** A control server presenting `cert` (default: a staging role's), with a watched CRL; its HOST:PORT. */
async function start(cert: IssuedCertificate = certs.staging, options: { tls?: boolean; ca?: TestPki } = {}): Promise<string> {
  writeCrl([]);
  const watcher = watchRevocationList(crlPath, pki.ca.anchor, loadRevocationList(pki.crl([]), pki.ca.anchor, crlPath), { intervalMs: 0 });
  watchers.push(watcher);
  const ca = options.ca ?? pki;
  const tls = options.tls === false ? undefined : prepareTls({ ...ca.tls(cert, [...controlPeerRoles]), crl: ca === pki ? watcher : undefined }, new Date());
  const server = await startControlServer({ kind: "tcp", host: "127.0.0.1", port: 0 }, routes, "test", { tls });
  servers.push(server);
  return server.address;
}

/** What a tool holding `cert` of `ca` uses (resolveControlToolSecurity without the files). */
const toolTls = (cert: IssuedCertificate, ca = pki): PreparedTls => prepareTls(ca.tls(cert, [...controlServerRoles]), new Date());

/** A raw HTTPS request presenting any certificate (even one prepareTls would not use): status and JSON. */
async function rawRequest(address: string, cert?: IssuedCertificate, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(`https://${address}/status`, { ...init, tls: { ...(cert === undefined ? {} : { cert: cert.certPem, key: cert.keyPem }), rejectUnauthorized: false } } as RequestInit);
  return { status: response.status, body: await response.json().catch(() => undefined) };
}

describe("who gets in", () => {
  test("admin and panel certificates of our CA: routes answer as over plain HTTP", async () => {
    const address = await start();
    for (const cert of [certs.admin, certs.panel]) {
      expect(await fetchStatus(address, 6002, toolTls(cert))).toMatchObject({ role: "staging", nodeId: "staging1" });
    }
    const echoed = await controlRequest(address, "/echo?id=7", { method: "POST", body: JSON.stringify({ device: "d0" }), headers: { "content-type": "application/json" } }, 6002, toolTls(certs.admin));
    expect(await echoed.json()).toEqual({ got: { device: "d0" }, query: "7" });
    const metrics = await controlRequest(address, "/metrics", {}, 6002, toolTls(certs.admin));
    expect(metrics.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(await metrics.text()).toContain('druvaa_info{role="staging"');
  });

  const refused: [string, IssuedCertificate | undefined, string][] = [
    ["no certificate", undefined, "TLS_PEER_UNTRUSTED"],
    ["a client certificate", certs.client, "TLS_ROLE_NOT_ALLOWED"],
    ["an admin certificate of another CA", certs.foreignAdmin, "TLS_PEER_UNTRUSTED"],
    ["an expired admin certificate", certs.expiredAdmin, "TLS_CERT_EXPIRED"],
  ];
  for (const [what, cert, code] of refused) {
    test(`${what}: 403 ${code} with a hint, no route run, one log line for the connection`, async () => {
      const address = await start();
      const callsBefore = routeCalls;
      await capturingLogs("test:control", async (lines) => {
        const { status, body } = await rawRequest(address, cert);
        expect(status).toBe(403);
        expect(body).toMatchObject({ ok: false, error: { code } });
        expect(body.error.hint).toContain(code === "TLS_CERT_EXPIRED" ? "druvaa admin cert issue --role admin|panel --name old" : "druvaa admin cert issue --role admin");
        await Bun.sleep(20);
        expect(lines.filter((line) => line.startsWith("warn:") && line.includes("refused"))).toEqual([expect.stringContaining(code)]);
      });
      expect(routeCalls).toBe(callsBefore);
    });
  }

  test("a tool given a refused certificate gets the server's code, exit 4", async () => {
    const address = await start();
    const error = await fetchStatus(address, 6002, toolTls(certs.client)).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: "TLS_ROLE_NOT_ALLOWED", exitCode: 4 });
    expect((error as Error).message).toContain("refused this tool");
  });

  test("TLS 1.2 is refused in the handshake", async () => {
    const address = await start();
    const [host, port] = address.split(":") as [string, string];
    const outcome = await new Promise<string>((resolve) => {
      const socket = nodeTls.connect({ host, port: Number(port), maxVersion: "TLSv1.2", cert: certs.admin.certPem, key: certs.admin.keyPem, rejectUnauthorized: false }, () => resolve(`connected with ${socket.getProtocol()}`));
      socket.on("error", (error: Error & { code?: string }) => resolve(`error ${error.code ?? error.message}`));
    });
    expect(outcome).toStartWith("error");
  });

  test("a certificate revoked while its connection is kept alive: the next request is refused, TLS_CERT_REVOKED", async () => {
    const address = await start();
    const tls = toolTls(certs.revokedLater);
    await fetchStatus(address, 6002, tls); // the connection stays in fetch's pool
    writeCrl([certs.revokedLater.serial]);
    await expect(fetchStatus(address, 6002, tls)).rejects.toMatchObject({ code: "TLS_CERT_REVOKED", exitCode: 4 });
    expect(await fetchStatus(address, 6002, toolTls(certs.admin))).toMatchObject({ role: "staging" });
  });

  test("a request body over the bound answers 413 and the server goes on", async () => {
    const address = await start();
    const response = await controlRequest(address, "/echo", { method: "POST", body: new Uint8Array(1024 * 1024 + 1) }, 6002, toolTls(certs.admin));
    expect(response.status).toBe(413);
    expect(await fetchStatus(address, 6002, toolTls(certs.admin))).toMatchObject({ role: "staging" });
  });
});

describe("the tool's side", () => {
  test("plain HTTP to an HTTPS control port: CONTROL_TLS_REQUIRED with the hint to pass an admin certificate", async () => {
    const address = await start();
    const error = await fetchStatus(address).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: "CONTROL_TLS_REQUIRED", exitCode: 4 });
    expect((error as { hint: string }).hint).toContain("--tls-cert");
  });

  test("HTTPS to a plain HTTP control port: CONTROL_TLS_NOT_SPOKEN", async () => {
    const address = await start(certs.staging, { tls: false });
    await expect(fetchStatus(address, 6002, toolTls(certs.admin))).rejects.toMatchObject({ code: "CONTROL_TLS_NOT_SPOKEN", exitCode: 4 });
  });

  test("a server of another CA, or one showing an admin certificate (not a role's), is not trusted", async () => {
    const foreign = await start(other.issue("staging", "rogue"), { ca: other });
    await expect(fetchStatus(foreign, 6002, toolTls(certs.admin))).rejects.toMatchObject({ code: "TLS_PEER_UNTRUSTED", exitCode: 4 });
    const impostor = await start(pki.issue("admin", "impostor"));
    await expect(fetchStatus(impostor, 6002, toolTls(certs.admin))).rejects.toMatchObject({ code: "TLS_ROLE_NOT_ALLOWED", exitCode: 4 });
  });
});
