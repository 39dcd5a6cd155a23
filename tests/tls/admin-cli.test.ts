/**
 * `druvaa admin ca init`, `admin cert issue` and `admin cert revoke` run as real subprocesses, the
 * way scripts use them: JSON output, exit codes, hints, refusing to overwrite, file modes. The
 * files they write are then used for a mutual-TLS connection.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, listen } from "../../src/io/transport.ts";
import { loadRevocationList } from "../../src/tls/crl.ts";
import { loadTrustAnchor } from "../../src/tls/trust.ts";
import { druvaa, expectHelp } from "../helpers/cli.ts";
import { testPki } from "./helpers.ts";

const scratch = mkdtempSync(join(tmpdir(), "druvaa-admin-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const caDir = join(scratch, "ca");
const outDir = join(scratch, "certs");
const opensslPath = Bun.which("openssl");

async function json(args: string[]): Promise<{ exitCode: number; body: Record<string, any>; stderr: string }> {
  const result = await druvaa([...args, "--json"]);
  return { exitCode: result.exitCode, body: JSON.parse(result.stdout), stderr: result.stderr };
}

const mode = (path: string) => statSync(path).mode & 0o777;
const read = (path: string) => readFileSync(path, "utf8");

describe("druvaa admin (sequential: one CA through its life)", () => {
  let caFingerprint = "";
  let clientSerial = "";

  test("ca init makes key (0600), certificate and empty CRL", async () => {
    const { exitCode, body } = await json(["admin", "ca", "init", "--dir", caDir, "--name", "acme-dr", "--days", "365"]);
    expect(exitCode).toBe(0);
    expect(body).toMatchObject({ ok: true, name: "acme-dr", certFile: join(caDir, "ca.pem"), keyFile: join(caDir, "ca.key"), crlFile: join(caDir, "crl.pem") });
    expect(mode(body.keyFile)).toBe(0o600);
    const certificate = new X509Certificate(read(body.certFile));
    expect(certificate.ca).toBe(true);
    expect(certificate.subject).toContain("CN=acme-dr");
    expect(certificate.fingerprint256.replaceAll(":", "").toLowerCase()).toBe(body.fingerprint);
    expect(loadRevocationList(read(body.crlFile), loadTrustAnchor(read(body.certFile), "ca"), "crl").entries).toEqual([]);
    caFingerprint = body.fingerprint;
  });

  test("ca init again is refused without --force and changes nothing", async () => {
    const before = read(join(caDir, "ca.pem"));
    const { exitCode, body, stderr } = await json(["admin", "ca", "init", "--dir", caDir]);
    expect(exitCode).toBe(4);
    expect(body.error.code).toBe("TLS_FILE_EXISTS");
    expect(body.error.hint).toContain("--force");
    expect(stderr).toContain("hint:");
    expect(read(join(caDir, "ca.pem"))).toBe(before);
  });

  test("cert issue writes NAME.pem and NAME.key (0600) with role, devices and hosts", async () => {
    const { exitCode, body } = await json(["admin", "cert", "issue", "--dir", caDir, "--out", outDir, "--role", "client", "--name", "db1", "--device", "disk0", "--device", "disk1", "--host", "db1.example.com", "--host", "10.1.2.3", "--days", "30"]);
    expect(exitCode).toBe(0);
    expect(body).toMatchObject({ ok: true, role: "client", name: "db1", devices: ["disk0", "disk1"], hosts: ["db1.example.com", "10.1.2.3"], certFile: join(outDir, "db1.pem"), keyFile: join(outDir, "db1.key") });
    expect(mode(body.keyFile)).toBe(0o600);
    const certificate = new X509Certificate(read(body.certFile));
    expect(certificate.serialNumber.toLowerCase()).toBe(body.serial);
    expect(certificate.subjectAltName).toBe("URI:druvaa://role/client, URI:druvaa://device/disk0, URI:druvaa://device/disk1, DNS:db1.example.com, IP Address:10.1.2.3");
    expect(certificate.verify(new X509Certificate(read(join(caDir, "ca.pem"))).publicKey)).toBe(true);
    expect(JSON.parse(read(join(caDir, "issued.jsonl")).trim().split("\n").at(-1)!)).toMatchObject({ serial: body.serial, role: "client", name: "db1" });
    clientSerial = body.serial;
  });

  test.skipIf(opensslPath === null)("openssl verify -CAfile accepts the issued certificate", () => {
    const result = Bun.spawnSync({ cmd: [opensslPath!, "verify", "-CAfile", join(caDir, "ca.pem"), join(outDir, "db1.pem")], stdout: "pipe", stderr: "pipe" });
    expect(result.stdout.toString().trim()).toBe(`${join(outDir, "db1.pem")}: OK`);
  });

  test("cert issue refuses to overwrite without --force; with --force issues a new serial", async () => {
    const before = read(join(outDir, "db1.pem"));
    const refused = await json(["admin", "cert", "issue", "--dir", caDir, "--out", outDir, "--role", "client", "--name", "db1", "--device", "disk0"]);
    expect(refused.exitCode).toBe(4);
    expect(refused.body.error.code).toBe("TLS_FILE_EXISTS");
    expect(read(join(outDir, "db1.pem"))).toBe(before);
    const forced = await json(["admin", "cert", "issue", "--dir", caDir, "--out", outDir, "--role", "client", "--name", "db1", "--device", "disk0", "--device", "disk1", "--force"]);
    expect(forced.exitCode).toBe(0);
    expect(forced.body.serial).not.toBe(clientSerial);
    clientSerial = forced.body.serial;
  });

  test("the issued files give a working mutual-TLS connection", async () => {
    const staging = await json(["admin", "cert", "issue", "--dir", caDir, "--out", outDir, "--role", "staging", "--name", "staging1"]);
    expect(staging.exitCode).toBe(0);
    const files = (name: string) => ({ cert: read(join(outDir, `${name}.pem`)), key: read(join(outDir, `${name}.key`)), ca: read(join(caDir, "ca.pem")), crl: read(join(caDir, "crl.pem")) });
    const listener = await listen({ kind: "tcp", host: "127.0.0.1", port: 0 }, (connection) => {
      connection.onFrame((frame, peer) => {
        if (frame.message.type === "ping") void peer.send({ type: "pong", nonce: frame.message.nonce });
      });
    }, { tls: { ...files("staging1"), expectRole: "client" } });
    try {
      const client = await connect(listener.address, 10_000, { tls: { ...files("db1"), expectRole: "staging" } });
      try {
        await client.send({ type: "ping", nonce: 42 });
        expect((await client.receive()).message).toEqual({ type: "pong", nonce: 42 });
      } finally {
        client.abort();
      }
    } finally {
      await listener.stop();
    }
  });

  test("cert revoke --cert adds the serial to crl.pem; again is a no-op", async () => {
    const first = await json(["admin", "cert", "revoke", "--dir", caDir, "--cert", join(outDir, "db1.pem")]);
    expect(first.exitCode).toBe(0);
    expect(first.body).toMatchObject({ ok: true, serial: clientSerial, alreadyRevoked: false, crlNumber: 2, revokedCount: 1 });
    const crl = loadRevocationList(read(join(caDir, "crl.pem")), loadTrustAnchor(read(join(caDir, "ca.pem")), "ca"), "crl");
    expect(crl.entries.map((entry) => entry.serial)).toEqual([clientSerial]);
    const again = await json(["admin", "cert", "revoke", "--dir", caDir, "--serial", clientSerial.toUpperCase()]);
    expect(again.exitCode).toBe(0);
    expect(again.body).toMatchObject({ alreadyRevoked: true, crlNumber: 2, revokedCount: 1 });
  });

  test("cert revoke --serial of a serial never issued: TLS_SERIAL_UNKNOWN; --force revokes it", async () => {
    const unknown = await json(["admin", "cert", "revoke", "--dir", caDir, "--serial", "0a:bc:de"]);
    expect(unknown.exitCode).toBe(3);
    expect(unknown.body.error.code).toBe("TLS_SERIAL_UNKNOWN");
    const forced = await json(["admin", "cert", "revoke", "--dir", caDir, "--serial", "0a:bc:de", "--force"]);
    expect(forced.body).toMatchObject({ ok: true, serial: "abcde", crlNumber: 3, revokedCount: 2 });
  });

  test("cert revoke --cert of another CA's certificate: TLS_NOT_ISSUED_HERE", async () => {
    const other = testPki("other");
    const path = join(scratch, "foreign.pem");
    await Bun.write(path, other.issue("client", "x").certPem);
    const result = await json(["admin", "cert", "revoke", "--dir", caDir, "--cert", path]);
    expect(result.exitCode).toBe(4);
    expect(result.body.error.code).toBe("TLS_NOT_ISSUED_HERE");
  });

  test("ca init --force replaces the CA", async () => {
    const { exitCode, body } = await json(["admin", "ca", "init", "--dir", caDir, "--force"]);
    expect(exitCode).toBe(0);
    expect(body.fingerprint).not.toBe(caFingerprint);
    expect(body.name).toBe("druvaa-ca");
  });
});

test("invoked as dradmin, the binary runs the admin commands", async () => {
  const dir = join(scratch, "dradmin-ca");
  const result = await druvaa(["ca", "init", "--dir", dir, "--json"], { argv0: "dradmin" });
  expect(result.exitCode).toBe(0);
  expect(JSON.parse(result.stdout)).toMatchObject({ ok: true, certFile: join(dir, "ca.pem") });
});

describe("druvaa admin: bad input is a usage error with a hint", () => {
  const issue = ["admin", "cert", "issue", "--dir", caDir, "--out", join(scratch, "never")];
  const cases: [string, string[], number, string][] = [
    ["an unknown role", [...issue, "--role", "superuser", "--name", "x"], 2, "USAGE"],
    ["a client without devices", [...issue, "--role", "client", "--name", "x"], 2, "USAGE"],
    ["devices on a staging certificate", [...issue, "--role", "staging", "--name", "x", "--device", "disk0"], 2, "USAGE"],
    ["a name that is a path", [...issue, "--role", "replica", "--name", "../etc/x"], 2, "USAGE"],
    ["a bad device name", [...issue, "--role", "client", "--name", "x", "--device", "a b"], 2, "USAGE"],
    ["a bad host", [...issue, "--role", "replica", "--name", "x", "--host", "not a host"], 2, "USAGE"],
    ["--days 0", [...issue, "--role", "replica", "--name", "x", "--days", "0"], 2, "USAGE"],
    ["--days 10 years past the CA", [...issue, "--role", "replica", "--name", "x", "--days", "9000"], 2, "TLS_CERT_OUTLIVES_CA"],
    ["an unknown option", [...issue, "--role", "replica", "--name", "x", "--validity", "3"], 2, "USAGE"],
    ["a missing --name", [...issue, "--role", "replica"], 2, "USAGE"],
    ["a CA directory that does not exist", ["admin", "cert", "issue", "--dir", join(scratch, "nope"), "--role", "replica", "--name", "x"], 3, "TLS_CA_NOT_FOUND"],
    ["revoke with both --serial and --cert", ["admin", "cert", "revoke", "--dir", caDir, "--serial", "ab", "--cert", "x.pem"], 2, "USAGE"],
    ["revoke with neither", ["admin", "cert", "revoke", "--dir", caDir], 2, "USAGE"],
    ["revoke --serial that is not hex", ["admin", "cert", "revoke", "--dir", caDir, "--serial", "xyz"], 2, "USAGE"],
    ["ca init --name with a space", ["admin", "ca", "init", "--dir", join(scratch, "ca2"), "--name", "my ca"], 2, "USAGE"],
  ];
  for (const [what, args, exitCode, code] of cases) {
    test(`${what}: exit ${exitCode}, ${code}`, async () => {
      const result = await json(args);
      expect(result.exitCode).toBe(exitCode);
      expect(result.body).toMatchObject({ ok: false, error: { code } });
      expect(result.body.error.hint).toBeTruthy();
    });
  }

  test("nothing was written by the refused commands", () => {
    expect(existsSync(join(scratch, "never"))).toBe(false);
    expect(existsSync(join(scratch, "ca2"))).toBe(false);
  });

  for (const path of [["admin"], ["admin", "ca", "init"], ["admin", "cert", "issue"], ["admin", "cert", "revoke"]]) {
    test(`druvaa ${path.join(" ")} --help shows options and an example`, async () => {
      await expectHelp(path);
    });
  }
});
