/**
 * The revocation list followed at runtime (src/tls/crl-reload.ts), one test per row of its
 * decision table, on real files rewritten the way `druvaa admin cert revoke` does (temp file,
 * rename); and, through the socket transport, a TLS session of a peer revoked while connected is
 * closed with TLS_CERT_REVOKED on both ends while other sessions go on.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, listen, type Connection, type Listener } from "../../src/io/transport.ts";
import { revocationListPem } from "../../src/tls/ca.ts";
import { loadRevocationList, type RevocationList } from "../../src/tls/crl.ts";
import { watchRevocationList, type CrlWatcher } from "../../src/tls/crl-reload.ts";
import { fromPem, toPem } from "../../src/tls/pem.ts";
import { capturingLogs, testPki } from "./helpers.ts";

const pki = testPki();
const dir = mkdtempSync(join(tmpdir(), "druvaa-crl-reload-"));
let fileIndex = 0;
const watchers: CrlWatcher[] = [];

afterEach(() => {
  for (const watcher of watchers.splice(0)) watcher.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Replaces `path` whole, as ca-store's writeDurable does (a new inode every time). */
function replaceFile(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

/** Our CA's CRL revoking `serials`, numbered `crlNumber`. */
const crlPem = (serials: string[], crlNumber = serials.length + 1) => revocationListPem(pki.ca, serials.map((serial) => ({ serial, revokedAt: new Date() })), crlNumber, new Date());

/** A CRL file listing `serials` and a watcher of it (no timer unless `intervalMs`). */
function watched(serials: string[], options: { intervalMs?: number; sighup?: boolean } = {}): { path: string; watcher: CrlWatcher } {
  const path = join(dir, `crl-${(fileIndex += 1)}.pem`);
  const pem = crlPem(serials);
  writeFileSync(path, pem);
  const watcher = watchRevocationList(path, pki.ca.anchor, loadRevocationList(pem, pki.ca.anchor, path), { intervalMs: options.intervalMs ?? 0, sighup: options.sighup });
  watchers.push(watcher);
  return { path, watcher };
}

const serialsOf = (list: RevocationList) => [...list.serials].sort();

/** `pem` with one bit of its signature flipped (the last DER byte is the signature's last byte). */
function tampered(pem: string): string {
  const der = fromPem(pem, "X509 CRL", "crl");
  der[der.length - 1]! ^= 0x01;
  return toPem("X509 CRL", der);
}

describe("a watched revocation list", () => {
  test("a new list written while running is used at the next look, and listeners are told", async () => {
    const { path, watcher } = watched(["aa"]);
    const seen: RevocationList[] = [];
    watcher.onChange((list) => seen.push(list));
    expect(serialsOf(watcher.current())).toEqual(["aa"]);
    await capturingLogs("tls:crl", async (lines) => {
      replaceFile(path, crlPem(["aa", "bb"]));
      expect(serialsOf(watcher.current())).toEqual(["aa", "bb"]);
      await Bun.sleep(0);
      expect(seen.map(serialsOf)).toEqual([["aa", "bb"]]);
      expect(lines.filter((line) => line.startsWith("info:") && line.includes("reloaded: CRL number 3, 2 revoked serial(s)"))).toHaveLength(1);
      expect(watcher.check()).toBe(false); // unchanged file: nothing read, nothing told
    });
  });

  const badFiles: [string, (path: string) => void, string][] = [
    ["a file that is not a CRL", (path) => replaceFile(path, "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n"), "was not taken: the new file: malformed"],
    ["another CA's CRL", (path) => replaceFile(path, testPki("other").crl(["aa", "bb", "cc"])), "was not taken: the new file: issued by another CA"],
    ["a CRL whose signature does not verify", (path) => replaceFile(path, tampered(crlPem(["bb"]))), "does not verify"],
    ["a missing file", (path) => unlinkSync(path), "the new file cannot be read (ENOENT)"],
    ["an older CRL (a lower CRL number)", (path) => replaceFile(path, crlPem([], 1)), "the new file's CRL number 1 is older than number 2 in use"],
  ];
  for (const [what, spoil, logged] of badFiles) {
    test(`${what}: the list in use stays; one error with a hint per version of the file; a later good file is taken`, async () => {
      const { path, watcher } = watched(["aa"]);
      const seen: RevocationList[] = [];
      watcher.onChange((list) => seen.push(list));
      await capturingLogs("tls:crl", async (lines) => {
        spoil(path);
        for (let look = 0; look < 3; look += 1) expect(serialsOf(watcher.current())).toEqual(["aa"]);
        const errors = lines.filter((line) => line.startsWith("error:"));
        expect(errors).toHaveLength(1);
        expect(errors[0]).toContain(logged);
        expect(errors[0]).toContain("still refusing the 1 serial(s) of CRL number 2");
        expect(errors[0]).toContain("druvaa admin cert revoke rewrites it");
        replaceFile(path, crlPem(["aa", "cc"]));
        expect(serialsOf(watcher.current())).toEqual(["aa", "cc"]);
      });
      await Bun.sleep(0);
      expect(seen.map(serialsOf)).toEqual([["aa", "cc"]]);
    });
  }

  test("the timer looks at the file by itself; SIGHUP makes it look now; close() stops both", async () => {
    const timed = watched([], { intervalMs: 20 });
    const changed = Promise.withResolvers<RevocationList>();
    timed.watcher.onChange(changed.resolve);
    replaceFile(timed.path, crlPem(["dd"]));
    expect(serialsOf(await changed.promise)).toEqual(["dd"]); // nobody called current()

    const handlers = process.listenerCount("SIGHUP");
    const hup = watched([], { sighup: true });
    expect(process.listenerCount("SIGHUP")).toBe(handlers + 1);
    const told = Promise.withResolvers<RevocationList>();
    hup.watcher.onChange(told.resolve);
    replaceFile(hup.path, crlPem(["ee"]));
    process.emit("SIGHUP", "SIGHUP");
    expect(serialsOf(await told.promise)).toEqual(["ee"]);
    hup.watcher.close();
    expect(process.listenerCount("SIGHUP")).toBe(handlers);
  });
});

describe("TLS sessions of a peer revoked while connected", () => {
  const staging = pki.issue("staging", "staging1");
  const [revokedClient, keptClient] = [pki.issue("client", "db1"), pki.issue("client", "db2")];
  let listener: Listener | undefined;
  const opened: Connection[] = [];
  afterEach(async () => {
    for (const connection of opened.splice(0)) connection.abort();
    await listener?.stop();
  });

  test("are closed with TLS_CERT_REVOKED on both ends when the list changes; other sessions go on", async () => {
    const { path, watcher } = watched([]);
    const accepted: Connection[] = [];
    listener = await listen({ kind: "tcp", host: "127.0.0.1", port: 0 }, (connection) => {
      accepted.push(connection);
      connection.onFrame((frame, peer) => {
        if (frame.message.type === "ping") void peer.send({ type: "pong", nonce: frame.message.nonce });
      });
    }, { tls: { ...pki.tls(staging, "client"), crl: watcher } });
    const doomed = await connect(listener.address, 10_000, { tls: pki.tls(revokedClient, "staging") });
    const kept = await connect(listener.address, 10_000, { tls: pki.tls(keptClient, "staging") });
    opened.push(doomed, kept);
    for (const connection of [doomed, kept]) {
      await connection.send({ type: "ping", nonce: 1 });
      expect((await connection.receive()).message).toEqual({ type: "pong", nonce: 1 });
    }
    await capturingLogs("net", async (lines) => {
      replaceFile(path, crlPem([revokedClient.serial]));
      expect(watcher.check()).toBe(true);
      expect((await doomed.closed)?.code).toBe("TLS_CERT_REVOKED"); // the error frame the listener sent
      expect(lines.some((line) => line.startsWith("warn:") && line.includes(`"db1" (serial ${revokedClient.serial}) was revoked while connected`))).toBe(true);
    });
    await kept.send({ type: "ping", nonce: 2 });
    expect((await kept.receive()).message).toEqual({ type: "pong", nonce: 2 });
    expect(accepted).toHaveLength(2);
    // A new connection with the revoked certificate is refused at once.
    const again = await connect(listener.address, 10_000, { tls: pki.tls(revokedClient, "staging") });
    opened.push(again);
    await again.send({ type: "ping", nonce: 3 }).catch(() => undefined);
    expect((await again.closed)?.code).toBe("TLS_CERT_REVOKED");
  });
});
