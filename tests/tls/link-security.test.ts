/**
 * The address rules of src/roles/link-security.ts now that control ports are HTTPS under TLS: a
 * role with TLS may serve its control port on any address (it is authenticated), while with
 * --insecure a control port stays on loopback; the NBD export, which never carries TLS, stays
 * local in every mode. And the tools' side: no TLS flags, plain HTTP; with them, a certificate to
 * present and a druvaa role's certificate expected of the server.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Address } from "../../src/io/address.ts";
import { resolveControlToolSecurity, resolveLinkSecurity } from "../../src/roles/link-security.ts";
import { testPki } from "./helpers.ts";

const pki = testPki();
const dir = mkdtempSync(join(tmpdir(), "druvaa-link-security-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function files(name: string, role: "staging" | "admin"): { "tls-cert": string; "tls-key": string; "tls-ca": string; crl: string } {
  const issued = pki.issue(role, name);
  const paths = { "tls-cert": join(dir, `${name}.pem`), "tls-key": join(dir, `${name}.key`), "tls-ca": join(dir, "ca.pem"), crl: join(dir, "crl.pem") };
  writeFileSync(paths["tls-cert"], issued.certPem);
  writeFileSync(paths["tls-key"], issued.keyPem);
  writeFileSync(paths["tls-ca"], pki.ca.certPem);
  writeFileSync(paths.crl, pki.crl([]));
  return paths;
}

const tcp = (host: string, port: number): Address => ({ kind: "tcp", host, port });
const staging = files("staging1", "staging");

describe("a role's control port", () => {
  test("with TLS: HTTPS for admin and panel certificates, on any address", async () => {
    const security = await resolveLinkSecurity(staging, { links: [tcp("10.0.0.5", 6001)], controls: [tcp("10.0.0.5", 6002)] }, { tool: true });
    expect(security.mode).toBe("tls");
    expect(security.forControl()?.expectRole).toEqual(["admin", "panel"]);
    expect(security.forControl()?.identity.name).toBe("staging1");
  });

  test("with --insecure: plain HTTP, and refused on a non-loopback address unless --insecure-allow-remote", async () => {
    const local = await resolveLinkSecurity({ insecure: true }, { links: [], controls: [tcp("127.0.0.1", 6002)] });
    expect(local.forControl()).toBeUndefined();
    await expect(resolveLinkSecurity({ insecure: true }, { links: [], controls: [tcp("10.0.0.5", 6002)] })).rejects.toMatchObject({ code: "USAGE", message: expect.stringContaining("10.0.0.5:6002 is not a loopback address") });
    const allowed = await resolveLinkSecurity({ insecure: true, "insecure-allow-remote": true }, { links: [], controls: [tcp("10.0.0.5", 6002)] });
    expect(allowed.mode).toBe("insecure");
  });

  test("the NBD export carries no TLS: a non-loopback export is refused even with TLS", async () => {
    await expect(resolveLinkSecurity(staging, { links: [], controls: [], plaintextPorts: [tcp("10.0.0.5", 10809)] }, { tool: true })).rejects.toMatchObject({ code: "USAGE", message: expect.stringContaining("NBD export carries no TLS") });
    const unix = await resolveLinkSecurity(staging, { links: [], controls: [], plaintextPorts: [{ kind: "unix", path: "/run/druvaa/d0.sock" }] }, { tool: true });
    expect(unix.mode).toBe("tls");
  });
});

describe("a tool talking to a control port", () => {
  test("without TLS flags: plain HTTP", async () => {
    expect(await resolveControlToolSecurity({})).toBeUndefined();
  });

  test("with them: presents its certificate and expects a druvaa role's", async () => {
    const tls = await resolveControlToolSecurity(files("ops", "admin"));
    expect(tls?.identity).toMatchObject({ role: "admin", name: "ops" });
    expect(tls?.expectRole).toEqual(["client", "staging", "replica"]);
  });

  test("half the flags: a usage error naming what is missing", async () => {
    const { "tls-cert": cert } = files("ops3", "admin");
    await expect(resolveControlToolSecurity({ "tls-cert": cert })).rejects.toMatchObject({ code: "USAGE", message: expect.stringContaining("--tls-key and --tls-ca") });
  });
});
