/**
 * TLS in the socket transport: real Bun sockets on loopback, mutual authentication with
 * certificates made by src/tls. Every refusal is checked on both ends: what the refused peer is
 * told (the error code it sees) and that the listener never handed the socket to its handler,
 * logged why, and went on serving.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as nodeTls from "node:tls";
import type { DruvaaError } from "../../src/errors.ts";
import { connect, listen, peerIdentityOf, prepareTls, type Connection, type Listener, type PreparedTls, type TransportTls } from "../../src/io/transport.ts";
import type { CertRole } from "../../src/tls/identity.ts";
import { rawExchange } from "../helpers/raw-exchange.ts";
import { capturingLogs, testPki } from "./helpers.ts";

const pki = testPki();
const stagingCert = pki.issue("staging", "staging1", { hosts: [{ kind: "ip", address: "127.0.0.1" }] });
const clientCert = pki.issue("client", "db1", { devices: ["sda", "sdb"] });

const listeners: Listener[] = [];
const connections: Connection[] = [];
afterEach(async () => {
  for (const connection of connections.splice(0)) connection.abort();
  await Promise.all(listeners.splice(0).map((listener) => listener.stop()));
});

/** A TLS echo server (ping → pong, write → same write back) that counts what it accepted. */
async function startServer(tls: TransportTls | undefined): Promise<{ listener: Listener; accepted: Connection[] }> {
  const accepted: Connection[] = [];
  const listener = await listen({ kind: "tcp", host: "127.0.0.1", port: 0 }, (connection) => {
    accepted.push(connection);
    connection.onFrame((frame, peer) => {
      const { message } = frame;
      if (message.type === "ping") void peer.send({ type: "pong", nonce: message.nonce });
      else if (message.type === "write") void peer.send(message, frame.payload);
    });
  }, tls === undefined ? {} : { tls });
  listeners.push(listener);
  return { listener, accepted };
}

const stagingTls = (crl?: string) => pki.tls(stagingCert, "client", crl);

async function tlsConnect(listener: Listener, tls: TransportTls | PreparedTls): Promise<Connection> {
  const connection = await connect(listener.address, 10_000, { tls });
  connections.push(connection);
  return connection;
}

/**
 * What a client whose certificate the server refuses sees: the TLS session comes up (TLS 1.3
 * clients finish before the server has judged them), then an `error` frame and the close.
 */
async function refusedCode(listener: Listener, tls: TransportTls | PreparedTls): Promise<string | undefined> {
  const connection = await tlsConnect(listener, tls);
  await connection.send({ type: "ping", nonce: 1 }).catch(() => undefined);
  const first = await connection.receive().then((frame) => frame.message, () => undefined);
  if (first !== undefined) expect(first.type).toBe("error"); // never a pong
  const reason = await connection.closed;
  if (first?.type === "error") expect(reason?.code).toBe(first.code);
  return reason?.code;
}

async function pingPong(connection: Connection, nonce: number): Promise<void> {
  await connection.send({ type: "ping", nonce });
  const frame = await connection.receive();
  expect(frame.message).toEqual({ type: "pong", nonce });
}

describe("mutual TLS", () => {
  test("frames go both ways; each end knows the other's certificate identity", async () => {
    const { listener, accepted } = await startServer(stagingTls());
    const client = await tlsConnect(listener, pki.tls(clientCert, "staging"));
    await pingPong(client, 7);
    const payload = new Uint8Array(256 * 1024).map((_, index) => index * 7);
    await client.send({ type: "write", reqId: 1, device: "sda", wrl: "w0", epoch: 1, offset: 0, length: payload.length }, payload);
    const echoed = await client.receive();
    expect(Buffer.from(echoed.payload).equals(Buffer.from(payload))).toBe(true);
    expect(accepted).toHaveLength(1);
    expect(peerIdentityOf(accepted[0]!)).toMatchObject({ role: "client", name: "db1", devices: ["sda", "sdb"], serial: clientCert.serial });
    expect(peerIdentityOf(client)).toMatchObject({ role: "staging", name: "staging1", serial: stagingCert.serial, hosts: ["127.0.0.1"] });
    await client.close();
  });

  test("over a Unix socket too", async () => {
    const dir = mkdtempSync(join(tmpdir(), "druvaa-tls-unix-"));
    try {
      const accepted: Connection[] = [];
      const listener = await listen({ kind: "unix", path: join(dir, "s.sock") }, (connection) => {
        accepted.push(connection);
        connection.onFrame((frame, peer) => {
          if (frame.message.type === "ping") void peer.send({ type: "pong", nonce: frame.message.nonce });
        });
      }, { tls: stagingTls() });
      listeners.push(listener);
      await pingPong(await tlsConnect(listener, pki.tls(clientCert, "staging")), 11);
      expect(peerIdentityOf(accepted[0]!)?.name).toBe("db1");
    } finally {
      await Promise.all(listeners.splice(0).map((listener) => listener.stop()));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("plaintext connections have no peer identity (TLS stays opt-in)", async () => {
    const { listener, accepted } = await startServer(undefined);
    const client = await connect(listener.address);
    connections.push(client);
    await pingPong(client, 1);
    expect(peerIdentityOf(client)).toBeUndefined();
    expect(peerIdentityOf(accepted[0]!)).toBeUndefined();
  });
});

describe("the listener refuses, logs, and keeps serving", () => {
  const cases: [string, () => TransportTls, string][] = [
    ["a certificate from another CA", () => {
      const other = testPki("other-ca");
      return { ...other.tls(other.issue("client", "db1"), "staging"), ca: pki.ca.certPem }; // trusts our CA, holds theirs
    }, "TLS_PEER_UNTRUSTED"],
    ["an expired certificate", () => pki.tls(pki.issue("client", "old", { notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) }), "staging"), "TLS_CERT_EXPIRED"],
    ["a certificate not valid yet", () => pki.tls(pki.issue("client", "early", { notBefore: new Date(Date.now() + 86_400_000), notAfter: new Date(Date.now() + 2 * 86_400_000) }), "staging"), "TLS_CERT_NOT_YET_VALID"],
    ["a certificate for another role", () => pki.tls(pki.issue("replica", "replica1"), "staging"), "TLS_ROLE_NOT_ALLOWED"],
  ];
  for (const [what, tlsOf, code] of cases) {
    test(`${what}: ${code}`, async () => {
      const { listener, accepted } = await startServer(stagingTls());
      await capturingLogs("net", async (lines) => {
        expect(await refusedCode(listener, presenting(tlsOf()))).toBe(code);
        expect(accepted).toHaveLength(0);
        expect(lines.some((line) => line.startsWith("warn:") && line.includes("refused") && line.includes(code))).toBe(true);
      });
      const good = await tlsConnect(listener, pki.tls(clientCert, "staging"));
      await pingPong(good, 2);
      expect(accepted).toHaveLength(1);
    });
  }

  test("a revoked certificate: TLS_CERT_REVOKED; others of the same CA still get in", async () => {
    const revoked = pki.issue("client", "stolen");
    const { listener, accepted } = await startServer(stagingTls(pki.crl([revoked.serial])));
    expect(await refusedCode(listener, pki.tls(revoked, "staging"))).toBe("TLS_CERT_REVOKED");
    expect(accepted).toHaveLength(0);
    await pingPong(await tlsConnect(listener, pki.tls(clientCert, "staging")), 3);
  });

  test("a plaintext druvaa peer is refused before any frame; a TLS peer is served afterwards", async () => {
    const { listener, accepted } = await startServer(stagingTls());
    await capturingLogs("net", async (lines) => {
      const plain = await connect(listener.address);
      connections.push(plain);
      await plain.send({ type: "ping", nonce: 1 }).catch(() => undefined);
      await expect(plain.receive()).rejects.toBeDefined();
      await plain.closed;
      expect(accepted).toHaveLength(0);
      expect(lines.some((line) => line.includes("refused") && line.includes("TLS"))).toBe(true);
    });
    await pingPong(await tlsConnect(listener, pki.tls(clientCert, "staging")), 4);
    expect(accepted).toHaveLength(1);
  });

  test("garbage bytes (and a truncated TLS record) do not stop the listener", async () => {
    const { listener, accepted } = await startServer(stagingTls());
    const port = (listener.address as { port: number }).port;
    const garbage = new Uint8Array(100_000).map((_, index) => (index * 131 + 7) & 0xff);
    await rawExchange(port, garbage, true);
    await rawExchange(port, Uint8Array.of(0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3), true);
    await rawExchange(port, new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"), true);
    expect(accepted).toHaveLength(0);
    await pingPong(await tlsConnect(listener, pki.tls(clientCert, "staging")), 5);
  });

  test("a peer that connects and says nothing is dropped at the handshake deadline, and logged", async () => {
    const { listener, accepted } = await startServer({ ...stagingTls(), handshakeTimeoutMs: 200 });
    await capturingLogs("net", async (lines) => {
      const closed = Promise.withResolvers<void>();
      await Bun.connect({ hostname: "127.0.0.1", port: (listener.address as { port: number }).port, socket: { data() {}, close: () => closed.resolve(), error: () => closed.resolve() } });
      await closed.promise; // the server hangs up; nothing was sent either way
      expect(lines.some((line) => line.includes("refused") && line.includes("no TLS handshake within 200 ms"))).toBe(true);
    });
    expect(accepted).toHaveLength(0);
    await pingPong(await tlsConnect(listener, pki.tls(clientCert, "staging")), 9);
  });

  test("a TLS 1.2 client is refused (TLS 1.3 only)", async () => {
    const { listener, accepted } = await startServer(stagingTls());
    const outcome = await new Promise<string>((resolve) => {
      const socket = nodeTls.connect({ host: "127.0.0.1", port: (listener.address as { port: number }).port, cert: clientCert.certPem, key: clientCert.keyPem, ca: pki.ca.certPem, rejectUnauthorized: false, maxVersion: "TLSv1.2" }, () => resolve(`connected with ${socket.getProtocol()}`));
      socket.on("error", (error) => resolve(`error: ${error.message}`));
      socket.on("close", () => resolve("closed"));
    });
    expect(outcome).not.toStartWith("connected");
    expect(accepted).toHaveLength(0);
    await pingPong(await tlsConnect(listener, pki.tls(clientCert, "staging")), 6);
  });

  test("a TLS client without a certificate is refused: TLS_PEER_UNTRUSTED", async () => {
    const { listener, accepted } = await startServer(stagingTls());
    const said = await new Promise<string>((resolve) => {
      let text = "";
      const socket = nodeTls.connect({ host: "127.0.0.1", port: (listener.address as { port: number }).port, ca: pki.ca.certPem, rejectUnauthorized: false });
      socket.on("data", (chunk: Buffer) => (text += chunk.toString("latin1")));
      socket.on("error", () => resolve(text));
      socket.on("close", () => resolve(text));
    });
    expect(said).toContain("TLS_PEER_UNTRUSTED"); // the error frame's code, in the clear inside TLS
    expect(accepted).toHaveLength(0);
  });
});

describe("the client refuses a server it cannot trust", () => {
  const cases: [string, () => TransportTls, CertRole, string][] = [
    ["a server of another CA", () => { const other = testPki("other-ca"); return other.tls(other.issue("staging", "evil"), "client"); }, "staging", "TLS_PEER_UNTRUSTED"],
    ["a server with the wrong role", () => pki.tls(pki.issue("replica", "replica1"), "client"), "staging", "TLS_ROLE_NOT_ALLOWED"],
  ];
  for (const [what, serverTls, expectRole, code] of cases) {
    test(`${what}: connect() rejects with ${code}`, async () => {
      const { listener, accepted } = await startServer({ ...serverTls(), expectRole: "client" });
      const error = (await connect(listener.address, 10_000, { tls: pki.tls(clientCert, expectRole) }).then(() => undefined, (reason: unknown) => reason)) as DruvaaError | undefined;
      expect(error?.code).toBe(code);
      expect(error?.hint).toBeTruthy();
      expect(accepted).toHaveLength(0);
    });
  }

  test("a plaintext server: TLS_HANDSHAKE_FAILED, and the server keeps serving plaintext peers", async () => {
    const { listener } = await startServer(undefined);
    const error = (await connect(listener.address, 10_000, { tls: pki.tls(clientCert, "staging") }).then(() => undefined, (reason: unknown) => reason)) as DruvaaError | undefined;
    expect(error?.code).toBe("TLS_HANDSHAKE_FAILED");
    const plain = await connect(listener.address);
    connections.push(plain);
    await pingPong(plain, 8);
  });
});

describe("TLS material is checked when listening or connecting", () => {
  test("a key that is not the certificate's: TLS_BAD_OWN_CERT", async () => {
    const other = pki.issue("staging", "other");
    await expect(listen({ kind: "tcp", host: "127.0.0.1", port: 0 }, () => undefined, { tls: { ...stagingTls(), key: other.keyPem } })).rejects.toMatchObject({ code: "TLS_BAD_OWN_CERT" });
  });

  test("an own certificate that has expired: TLS_BAD_OWN_CERT naming the expiry", async () => {
    const expired = pki.issue("staging", "old", { notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    await expect(listen({ kind: "tcp", host: "127.0.0.1", port: 0 }, () => undefined, { tls: pki.tls(expired, "client") })).rejects.toMatchObject({ code: "TLS_BAD_OWN_CERT", message: expect.stringContaining("expired") });
  });

  test("a CRL signed by another CA: TLS_CRL_INVALID", async () => {
    const other = testPki("other-ca");
    await expect(listen({ kind: "tcp", host: "127.0.0.1", port: 0 }, () => undefined, { tls: stagingTls(other.crl([])) })).rejects.toMatchObject({ code: "TLS_CRL_INVALID" });
  });
});

/**
 * TLS options that present `tls`'s certificate without prepareTls's startup checks, which would
 * refuse to use an expired, not yet valid or foreign certificate: prepared with a good one of our
 * CA, then the PEMs handed to Bun are swapped.
 */
function presenting(tls: TransportTls): PreparedTls {
  const base = prepareTls(pki.tls(clientCert, tls.expectRole as CertRole | CertRole[] | undefined), new Date());
  const presented = { cert: tls.cert, key: tls.key };
  return { ...base, bunClientOptions: { ...base.bunClientOptions, ...presented }, bunServerOptions: { ...base.bunServerOptions, ...presented } };
}
