/**
 * Certificates and revocation lists built by our own DER encoder: read back by our parser, by
 * node:crypto's X509Certificate, and by openssl (x509 -text, verify -CAfile, verify -crl_check),
 * which none of us wrote. Then verifyPeer's decisions, one test per refusal code.
 */
import { describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DruvaaError } from "../../src/errors.ts";
import { loadRevocationList } from "../../src/tls/crl.ts";
import { fromPem } from "../../src/tls/pem.ts";
import { checkDevice, verifyPeer } from "../../src/tls/verify-peer.ts";
import { parseCertificate } from "../../src/tls/x509-parse.ts";
import { testPki } from "./helpers.ts";

const opensslPath = Bun.which("openssl");
const pki = testPki("round-trip-ca");
const client = pki.issue("client", "db1", { devices: ["disk0", "disk-1.b", "*"], hosts: [{ kind: "dns", name: "db1.example.com" }, { kind: "ip", address: "10.0.0.5" }, { kind: "ip", address: "fd00::1:2" }] });
const der = (pem: string) => fromPem(pem, "CERTIFICATE", "test certificate");

function openssl(args: string[], files: Record<string, string>): { exitCode: number; stdout: string; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), "druvaa-x509-"));
  try {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    const result = Bun.spawnSync({ cmd: [opensslPath!, ...args], cwd: dir, stdout: "pipe", stderr: "pipe" });
    return { exitCode: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("certificates read back", () => {
  test("our parser: role, devices, hosts, serial, dates, key identifiers", () => {
    const parsed = parseCertificate(der(client.certPem));
    expect(parsed.serial).toBe(client.serial);
    expect(parsed.subjectCommonName).toBe("db1");
    expect(parsed.isCa).toBe(false);
    expect(parsed.uris).toEqual(["druvaa://role/client", "druvaa://device/disk0", "druvaa://device/disk-1.b", "druvaa://device/*"]);
    expect(parsed.dnsNames).toEqual(["db1.example.com"]);
    expect(parsed.ipAddresses).toEqual(["10.0.0.5", "fd00:0:0:0:0:0:1:2"]);
    expect(parsed.notAfter.getTime()).toBe(client.notAfter.getTime());
    expect(Buffer.from(parsed.authorityKeyId!).equals(Buffer.from(pki.ca.anchor.certificate.subjectKeyId!))).toBe(true);
    expect(parsed.unknownCriticalExtensions).toEqual([]);
  });

  test("node:crypto X509Certificate: subject, SAN, serial, signature by the CA", () => {
    const certificate = new X509Certificate(client.certPem);
    const ca = new X509Certificate(pki.ca.certPem);
    expect(certificate.subject.split("\n")).toEqual(["O=druvaa", "OU=client", "CN=db1"]);
    expect(certificate.subjectAltName).toBe("URI:druvaa://role/client, URI:druvaa://device/disk0, URI:druvaa://device/disk-1.b, URI:druvaa://device/*, DNS:db1.example.com, IP Address:10.0.0.5, IP Address:FD00:0:0:0:0:0:1:2");
    expect(certificate.serialNumber.toLowerCase()).toBe(client.serial);
    expect(certificate.checkIssued(ca)).toBe(true);
    expect(certificate.verify(ca.publicKey)).toBe(true);
    expect(certificate.ca).toBe(false);
    expect(ca.ca).toBe(true);
    expect(ca.verify(ca.publicKey)).toBe(true);
    expect(certificate.checkPrivateKey(require("node:crypto").createPrivateKey(client.keyPem))).toBe(true);
  });

  test.skipIf(opensslPath === null)("openssl x509 -text shows the extensions; openssl verify accepts the chain", () => {
    const text = openssl(["x509", "-in", "db1.pem", "-noout", "-text"], { "db1.pem": client.certPem });
    expect(text.exitCode).toBe(0);
    for (const expected of ["Version: 3 (0x2)", "ecdsa-with-SHA256", "Issuer: O = druvaa, CN = round-trip-ca", "Subject: O = druvaa, OU = client, CN = db1", "CA:FALSE", "Digital Signature", "TLS Web Server Authentication, TLS Web Client Authentication", "URI:druvaa://role/client", "URI:druvaa://device/*", "DNS:db1.example.com", "IP Address:10.0.0.5", "X509v3 Authority Key Identifier"]) {
      expect(text.stdout).toContain(expected);
    }
    const caText = openssl(["x509", "-in", "ca.pem", "-noout", "-text"], { "ca.pem": pki.ca.certPem });
    expect(caText.stdout).toContain("CA:TRUE, pathlen:0");
    expect(caText.stdout).toContain("Certificate Sign, CRL Sign");
    const verified = openssl(["verify", "-CAfile", "ca.pem", "db1.pem"], { "ca.pem": pki.ca.certPem, "db1.pem": client.certPem });
    expect(verified.stdout.trim()).toBe("db1.pem: OK");
    const other = testPki("other-ca");
    const foreign = openssl(["verify", "-CAfile", "ca.pem", "db1.pem"], { "ca.pem": other.ca.certPem, "db1.pem": client.certPem });
    expect(foreign.exitCode).not.toBe(0);
  });

  test.skipIf(opensslPath === null)("openssl reads our CRL, and verify -crl_check refuses the revoked certificate only", () => {
    const revoked = pki.issue("staging", "stolen");
    const crl = pki.crl([revoked.serial]);
    const files = { "ca.pem": pki.ca.certPem, "crl.pem": crl, "stolen.pem": revoked.certPem, "db1.pem": client.certPem };
    const text = openssl(["crl", "-in", "crl.pem", "-noout", "-text", "-CAfile", "ca.pem"], files);
    expect(text.stdout).toContain(`Serial Number: ${revoked.serial.toUpperCase()}`);
    expect(text.stdout).toContain("X509v3 CRL Number");
    expect(text.stderr + text.stdout).toContain("verify OK"); // the CRL's signature
    expect(openssl(["verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "ca.pem", "stolen.pem"], files).stdout + openssl(["verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "ca.pem", "stolen.pem"], files).stderr).toContain("certificate revoked");
    expect(openssl(["verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "ca.pem", "db1.pem"], files).stdout.trim()).toBe("db1.pem: OK");
  });

  test("a certificate valid past 2049 uses GeneralizedTime and still reads back", () => {
    const far = testPki("far-ca", 40 * 366).issue("replica", "far", { notBefore: new Date("2049-12-31T23:59:59Z"), notAfter: new Date("2051-06-01T00:00:00Z") });
    const parsed = parseCertificate(der(far.certPem));
    expect(parsed.notBefore.toISOString()).toBe("2049-12-31T23:59:59.000Z");
    expect(parsed.notAfter.toISOString()).toBe("2051-06-01T00:00:00.000Z");
    expect(new X509Certificate(far.certPem).validTo).toContain("2051");
  });
});

describe("verifyPeer", () => {
  const now = new Date();
  const refusal = (run: () => unknown): DruvaaError => {
    try {
      run();
    } catch (error) {
      return error as DruvaaError;
    }
    throw new Error("expected a refusal");
  };

  test("a good client certificate gives its identity", () => {
    expect(verifyPeer(der(client.certPem), { ca: pki.ca.anchor, now, role: ["client", "admin"], device: "disk0" })).toMatchObject({ role: "client", name: "db1", serial: client.serial, devices: ["disk0", "disk-1.b", "*"] });
  });

  const cases: [string, () => unknown, string][] = [
    ["no certificate", () => verifyPeer(undefined, { ca: pki.ca.anchor, now }), "TLS_PEER_UNTRUSTED"],
    ["garbage bytes", () => verifyPeer(Uint8Array.of(0x30, 0x82, 0xff, 0xff, 1, 2), { ca: pki.ca.anchor, now }), "TLS_PEER_UNTRUSTED"],
    ["another CA's certificate", () => { const other = testPki("other-ca"); return verifyPeer(der(other.issue("client", "db1").certPem), { ca: pki.ca.anchor, now }); }, "TLS_PEER_UNTRUSTED"],
    ["a signature bit flipped", () => { const bytes = new Uint8Array(der(client.certPem)); bytes[bytes.length - 5]! ^= 0x01; return verifyPeer(bytes, { ca: pki.ca.anchor, now }); }, "TLS_PEER_UNTRUSTED"],
    ["the CA certificate itself", () => verifyPeer(der(pki.ca.certPem), { ca: pki.ca.anchor, now }), "TLS_PEER_UNTRUSTED"],
    ["an expired certificate", () => verifyPeer(der(pki.issue("client", "old", { notBefore: new Date(now.getTime() - 2e9), notAfter: new Date(now.getTime() - 1e9) }).certPem), { ca: pki.ca.anchor, now }), "TLS_CERT_EXPIRED"],
    ["a certificate not yet valid", () => verifyPeer(der(pki.issue("client", "new", { notBefore: new Date(now.getTime() + 1e9), notAfter: new Date(now.getTime() + 2e9) }).certPem), { ca: pki.ca.anchor, now }), "TLS_CERT_NOT_YET_VALID"],
    ["a revoked certificate", () => verifyPeer(der(client.certPem), { ca: pki.ca.anchor, now, crl: loadRevocationList(pki.crl(["abc", client.serial]), pki.ca.anchor, "crl") }), "TLS_CERT_REVOKED"],
    ["the wrong role", () => verifyPeer(der(client.certPem), { ca: pki.ca.anchor, now, role: "staging" }), "TLS_ROLE_NOT_ALLOWED"],
    ["a device it does not list", () => verifyPeer(der(pki.issue("client", "db2", { devices: ["disk0"] }).certPem), { ca: pki.ca.anchor, now, device: "disk9" }), "TLS_DEVICE_NOT_ALLOWED"],
  ];
  for (const [what, run, code] of cases) {
    test(`${what}: ${code} with a hint`, () => {
      const error = refusal(run);
      expect(error.code).toBe(code);
      expect(error.hint).toBeTruthy();
      expect(error.exitCode).toBe(4);
    });
  }

  test("checkDevice: '*' allows every device; a list allows only its devices; other roles none", () => {
    const star = verifyPeer(der(client.certPem), { ca: pki.ca.anchor, now });
    expect(() => checkDevice(star, "anything")).not.toThrow();
    const listed = verifyPeer(der(pki.issue("client", "db3", { devices: ["a", "b"] }).certPem), { ca: pki.ca.anchor, now });
    expect(() => checkDevice(listed, "b")).not.toThrow();
    expect(() => checkDevice(listed, "c")).toThrow(expect.objectContaining({ code: "TLS_DEVICE_NOT_ALLOWED" }));
    const staging = verifyPeer(der(pki.issue("staging", "s1").certPem), { ca: pki.ca.anchor, now });
    expect(staging.devices).toEqual([]);
    expect(() => checkDevice(staging, "a")).toThrow(expect.objectContaining({ code: "TLS_DEVICE_NOT_ALLOWED" }));
  });

  test("a CRL altered after signing, or of another CA, is refused when loaded", () => {
    const crl = pki.crl([client.serial]);
    const bytes = new Uint8Array(fromPem(crl, "X509 CRL", "crl"));
    bytes[bytes.length - 3]! ^= 0x01;
    const altered = `-----BEGIN X509 CRL-----\n${Buffer.from(bytes).toString("base64")}\n-----END X509 CRL-----\n`;
    expect(() => loadRevocationList(altered, pki.ca.anchor, "crl")).toThrow(expect.objectContaining({ code: "TLS_CRL_INVALID" }));
    expect(() => loadRevocationList(testPki("other").crl([]), pki.ca.anchor, "crl")).toThrow(expect.objectContaining({ code: "TLS_CRL_INVALID" }));
  });
});
