/**
 * Socket transport: druvaa frames over TCP or Unix sockets (Bun.listen / Bun.connect), in
 * plaintext (the default) or over TLS 1.3 with mutual certificate authentication.
 *
 * listen() and connect() wrap every Bun socket in a SocketConnection (src/io/connection-socket.ts),
 * which implements the Connection contract (src/io/connection.ts): a bounded write queue that
 * survives Bun's partial writes, frame reassembly, back-pressure both ways, and graceful
 * half-close. Addresses are parsed in src/io/address.ts. This module re-exports those names, so
 * callers import everything network-related from here.
 *
 * With `tls` (src/tls/transport-tls.ts) a socket becomes a Connection only once the peer is
 * authorized in Bun's `handshake` callback (TLS 1.3, certificate from our CA, current, not
 * revoked, expected role); before that no frame is read. A listener logs every refusal and, when
 * the TLS session is up, tells the peer why in an `error` frame before closing; a refused or failed
 * handshake never affects other connections. connect() rejects with the refusal.
 * When the role's revocation list changes while it runs (src/tls/crl-reload.ts), open sessions
 * whose peer it now revokes are closed, the peer told why (TLS_CERT_REVOKED), on both ends.
 */
import type { Socket } from "bun";
import { existsSync, lstatSync, unlinkSync } from "node:fs";
import { assert } from "../assert.ts";
import { connectTimeoutMs } from "../constants.ts";
import { DruvaaError, exitCodes, fromSystemError } from "../errors.ts";
import { logger } from "../log.ts";
import { encodeFrameBytes, type FrameAllocator } from "../protocol/frame.ts";
import { tlsEarlyDataBytesMax } from "../tls/constants.ts";
import type { PeerIdentity } from "../tls/identity.ts";
import { authorizeTlsPeer, prepareTls, type PreparedTls, type TransportTls } from "../tls/transport-tls.ts";
import { formatAddress, type Address } from "./address.ts";
import type { Connection } from "./connection.ts";
import { errorMessageOf, SocketConnection, type SocketLike } from "./connection-socket.ts";

export { formatAddress, parseAddress, type Address } from "./address.ts";
export type { Connection, FrameHandler } from "./connection.ts";
export { SocketConnection, type SocketLike } from "./connection-socket.ts";
export type { PeerIdentity } from "../tls/identity.ts";
export { prepareTls, type PreparedTls, type TransportTls } from "../tls/transport-tls.ts";

const log = logger("net");

/** A TLS socket not yet authorized: its handshake deadline and what the peer sent meanwhile. */
type PendingTls = { state: "handshaking" | "refused"; peer: string; timer: ReturnType<typeof setTimeout>; early: Uint8Array[]; earlyBytes: number };
type SocketData = { connection: SocketConnection | undefined; tls?: PendingTls | undefined };

function peerName(socket: Socket<SocketData>, address: Address): string {
  return address.kind === "unix" ? formatAddress(address) : `${socket.remoteAddress}:${socket.remotePort}`;
}

export interface ConnectionOptions {
  /**
   * Where frames spanning several socket chunks are assembled (e.g. a BufferPool's take, by a
   * server that gives every frame's payload back once it has answered it). Default: a new buffer
   * per frame.
   */
  allocateFrame?: FrameAllocator;
  /**
   * Run TLS 1.3 with mutual authentication: this node's certificate and key, the CA, the CRL,
   * and the role(s) the peer must have. Plaintext when absent. Checked when listen()/connect()
   * is called (TLS_BAD_OWN_CERT, TLS_BAD_CA, TLS_CRL_INVALID); give a PreparedTls (prepareTls)
   * to check once for many connects.
   */
  tls?: TransportTls | PreparedTls;
}

/** The identity a peer proved with its certificate; undefined on a plaintext connection. */
export function peerIdentityOf(connection: Connection): PeerIdentity | undefined {
  return connection instanceof SocketConnection ? connection.peerIdentity : undefined;
}

/**
 * Ends the open sessions of peers the revocation list of `tls` revokes, whenever that list
 * changes; returns the unsubscribe function (a no-op without a watched list).
 */
function endRevokedSessions(tls: PreparedTls, sessions: () => Iterable<Connection>): () => void {
  return tls.revocations?.onChange((list) => {
    for (const connection of sessions()) {
      const identity = peerIdentityOf(connection);
      if (identity === undefined || !list.serials.has(identity.serial)) continue;
      const error = new DruvaaError("TLS_CERT_REVOKED", `${identity.role} "${identity.name}" (serial ${identity.serial}) was revoked while connected: session closed`, `Issue the node a new certificate: druvaa admin cert issue --role ${identity.role} --name ${identity.name} --force`, exitCodes.refused);
      log.warn(`${connection.peer}: ${error.message}`);
      void connection.close(error);
    }
  }) ?? (() => undefined);
}

/** The TLS side of socketHandlers: which end we are, and what to do with a refusal. */
interface TlsRole {
  prepared: PreparedTls;
  side: "server" | "client";
  /** Sockets still handshaking or being refused (a listener's stop() terminates them). */
  pending: Set<Socket<SocketData>>;
  /** Called once per refused or failed handshake (connect() rejects with it). */
  refused(error: DruvaaError): void;
}

/** Socket handlers shared by listen() and connect(); `opened` wraps each new (authorized) socket. */
function socketHandlers(address: Address, opened: (connection: SocketConnection) => void, options: ConnectionOptions = {}, tls?: TlsRole) {
  const openConnection = (socket: Socket<SocketData>, identity: PeerIdentity | undefined) => {
    const connection = new SocketConnection(socket as unknown as SocketLike, peerName(socket, address), options.allocateFrame, identity);
    socket.data = { connection };
    opened(connection);
  };
  const refuse = (socket: Socket<SocketData>, pending: PendingTls, error: DruvaaError) => {
    assert(tls !== undefined && pending.state === "handshaking", "refuse once, a handshaking TLS socket");
    pending.state = "refused"; // the handshake timer still ends the socket if the peer lingers
    pending.early = [];
    const where = pending.peer; // taken at open: a socket the peer has closed has no address
    if (tls.side === "server") {
      log.warn(`${where}: refused: ${error.message} (${error.code})`);
      if (error.code === "TLS_HANDSHAKE_FAILED") {
        socket.terminate();
      } else {
        // The session is up: tell the peer why, once, then close (its reply, if any, is dropped).
        socket.write(encodeFrameBytes(errorMessageOf(error)));
        socket.end();
      }
    } else {
      socket.terminate();
    }
    tls.refused(new DruvaaError(error.code, `${where}: ${error.message}`, error.hint, error.exitCode, { cause: error }));
  };
  const handshakeHandler = {
    handshake(socket: Socket<SocketData>, _success: boolean, authorizationError: Error | null) {
      const pending = socket.data.tls;
      if (tls === undefined || pending === undefined || pending.state !== "handshaking") return;
      let identity: PeerIdentity;
      try {
        identity = authorizeTlsPeer(socket, tls.prepared, authorizationError, new Date());
      } catch (error) {
        refuse(socket, pending, error instanceof DruvaaError ? error : new DruvaaError("TLS_PEER_UNTRUSTED", `cannot check the peer's certificate: ${error instanceof Error ? error.message : String(error)}`, undefined, exitCodes.refused, { cause: error }));
        return;
      }
      clearTimeout(pending.timer);
      tls.pending.delete(socket);
      openConnection(socket, identity);
      for (const chunk of pending.early) socket.data.connection?.handleData(chunk);
    },
  };
  return {
    binaryType: "uint8array" as const,
    open(socket: Socket<SocketData>) {
      socket.setNoDelay(true); // acks are small and latency-bound; false (harmless) on Unix sockets
      if (tls === undefined) return openConnection(socket, undefined);
      const pending: PendingTls = { state: "handshaking", peer: peerName(socket, address), early: [], earlyBytes: 0, timer: setTimeout(() => {
        if (pending.state === "handshaking") refuse(socket, pending, new DruvaaError("TLS_HANDSHAKE_FAILED", `no TLS handshake within ${tls.prepared.handshakeTimeoutMs} ms`, "Is the peer a druvaa node started with TLS? A plaintext peer or a port scanner cannot complete it", exitCodes.timeout));
        else socket.terminate();
      }, tls.prepared.handshakeTimeoutMs) };
      socket.data = { connection: undefined, tls: pending };
      tls.pending.add(socket);
    },
    data(socket: Socket<SocketData>, chunk: Uint8Array) {
      const { connection, tls: pending } = socket.data;
      if (connection !== undefined) return connection.handleData(chunk);
      // TLS: bytes before authorization are held (bounded) and delivered once the peer is let in.
      if (pending?.state !== "handshaking") return;
      pending.early.push(chunk);
      pending.earlyBytes += chunk.length;
      if (pending.earlyBytes > tlsEarlyDataBytesMax) refuse(socket, pending, new DruvaaError("TLS_HANDSHAKE_FAILED", `more than ${tlsEarlyDataBytesMax} bytes before authorization`, undefined, exitCodes.refused));
    },
    drain(socket: Socket<SocketData>) {
      socket.data.connection?.handleDrain();
    },
    end(socket: Socket<SocketData>) {
      if (socket.data.connection !== undefined) socket.data.connection.handlePeerEnd();
      else if (socket.data.tls !== undefined) socket.end(); // a refused or silent TLS peer leaves
    },
    close(socket: Socket<SocketData>, error?: Error) {
      const pending = socket.data.tls;
      if (pending !== undefined && tls !== undefined) {
        clearTimeout(pending.timer);
        tls.pending.delete(socket);
        if (pending.state === "handshaking" && socket.data.connection === undefined) {
          pending.state = "refused";
          const detail = error === undefined ? "" : ` (${error.message})`;
          if (tls.side === "server") log.warn(`${pending.peer}: refused: closed during the TLS handshake${detail}`);
          tls.refused(new DruvaaError("TLS_HANDSHAKE_FAILED", `${pending.peer}: the connection closed during the TLS handshake${detail}`, "Does the peer speak TLS, with a certificate from the same CA? (druvaa admin cert issue)", exitCodes.refused));
        }
      }
      socket.data.connection?.handleClose(error);
    },
    error(socket: Socket<SocketData>, error: Error) {
      // Reached if a handler above throws (a bug), or when a TLS session fails (a record that
      // does not decrypt, a fatal alert): close that connection only.
      const pending = socket.data.tls;
      if (socket.data.connection === undefined && pending !== undefined) {
        log.warn(`${pending.peer}: TLS failed before authorization: ${error.message}`);
        socket.terminate();
        return;
      }
      log.error(`${socket.data.connection?.peer ?? formatAddress(address)}: ${error.message}`);
      socket.data.connection?.abort(fromSystemError(error, formatAddress(address)));
    },
    ...(tls === undefined ? {} : handshakeHandler),
  };
}

export interface Listener {
  /** Where it listens; a requested port 0 is replaced by the port the system chose. */
  readonly address: Address;
  /** Open connections (closed ones leave the set). */
  readonly connections: ReadonlySet<Connection>;
  /** Stops accepting, closes every connection gracefully, resolves when all are closed. */
  stop(): Promise<void>;
}

/**
 * Listens on `address`; calls `onConnection` for every accepted connection (before any frame is
 * delivered). A connection that misbehaves is closed alone. On Unix sockets a stale socket file
 * (left by a killed process: nobody accepts on it) is removed; a live one is refused.
 */
export async function listen(address: Address, onConnection: (connection: Connection) => void, options: ConnectionOptions = {}): Promise<Listener> {
  const connections = new Set<Connection>();
  const tls = options.tls === undefined ? undefined : prepareTls(options.tls, new Date());
  const pending = new Set<Socket<SocketData>>();
  const tlsRole: TlsRole | undefined = tls === undefined ? undefined : { prepared: tls, side: "server", pending, refused: () => undefined };
  const handlers = socketHandlers(address, (connection) => {
    connections.add(connection);
    void connection.closed.then(() => connections.delete(connection));
    try {
      onConnection(connection);
    } catch (error) {
      log.error(`${connection.peer}: connection handler failed: ${error instanceof Error ? error.message : String(error)}`);
      connection.abort(error instanceof DruvaaError ? error : undefined);
    }
  }, options, tlsRole);
  const tlsOption = tls === undefined ? {} : { tls: tls.bunServerOptions };
  const start = () =>
    address.kind === "unix"
      ? Bun.listen<SocketData>({ unix: address.path, allowHalfOpen: true, data: { connection: undefined }, socket: handlers, ...tlsOption })
      : Bun.listen<SocketData>({ hostname: address.host ?? "0.0.0.0", port: address.port, allowHalfOpen: true, data: { connection: undefined }, socket: handlers, ...tlsOption });
  let server: ReturnType<typeof start>;
  try {
    server = start();
  } catch (error) {
    if (address.kind !== "unix" || (error as { code?: unknown }).code !== "EADDRINUSE" || !(await isStaleUnixSocket(address.path))) throw listenError(error, address);
    log.info(`removing stale socket ${address.path}`);
    unlinkSync(address.path);
    try {
      server = start();
    } catch (retryError) {
      throw listenError(retryError, address);
    }
  }
  const bound: Address = address.kind === "unix" ? address : { kind: "tcp", host: address.host, port: (server as { port: number }).port };
  const unwatch = tls === undefined ? () => undefined : endRevokedSessions(tls, () => connections);
  return {
    address: bound,
    connections,
    async stop() {
      unwatch();
      server.stop(false);
      for (const socket of pending) socket.terminate(); // peers still handshaking, or being refused
      await Promise.all([...connections].map((connection) => connection.close()));
    },
  };
}

async function isStaleUnixSocket(path: string): Promise<boolean> {
  // Only ever remove a socket: a typo must not delete a regular file.
  if (!existsSync(path) || !lstatSync(path).isSocket()) return false;
  try {
    const probe = await Bun.connect({ unix: path, socket: { data() {} } });
    probe.terminate();
    return false;
  } catch (error) {
    return (error as { code?: unknown }).code === "ECONNREFUSED";
  }
}

function listenError(error: unknown, address: Address): DruvaaError {
  const where = formatAddress(address);
  if ((error as { code?: unknown })?.code === "EADDRINUSE") {
    return new DruvaaError("NET_ADDRESS_IN_USE", `cannot listen on ${where}: address in use`, "Another process listens there (is druvaa already running? check with: ss -ltnp)", exitCodes.refused, { cause: error });
  }
  const wrapped = fromSystemError(error, `cannot listen on ${where}`);
  return new DruvaaError("NET_LISTEN_FAILED", wrapped.message, wrapped.hint ?? "Check the address; ports below 1024 need root", exitCodes.failure, { cause: error });
}

/**
 * Connects to `address` within `timeoutMs`. Rejects with NET_CONNECT_REFUSED (nobody listens),
 * NET_CONNECT_TIMEOUT, or NET_CONNECT_FAILED, each with a hint. With `options.tls` the timeout
 * covers the TLS handshake too, and a server that is not authorized (verifyPeer's codes) or a
 * handshake that fails (TLS_HANDSHAKE_FAILED) rejects. A server that refuses *us* is seen after
 * connect() resolves: `closed` (and receive()) then give its `error` frame's code, e.g.
 * TLS_CERT_REVOKED.
 */
export async function connect(address: Address, timeoutMs = connectTimeoutMs, options: ConnectionOptions = {}): Promise<Connection> {
  const where = formatAddress(address);
  if (address.kind === "tcp" && address.port === 0) throw new DruvaaError("NET_BAD_ADDRESS", `cannot connect to ${where}: port 0`, "Give the port the peer listens on", exitCodes.usage);
  const tls = options.tls === undefined ? undefined : prepareTls(options.tls, new Date());
  let connection: SocketConnection | undefined;
  const ready = Promise.withResolvers<void>();
  ready.promise.catch(() => undefined); // a refusal after a timeout has nobody waiting
  const tlsRole: TlsRole | undefined = tls === undefined ? undefined : { prepared: tls, side: "client", pending: new Set(), refused: (error) => ready.reject(error) };
  const handlers = socketHandlers(address, (opened) => {
    connection = opened;
    ready.resolve();
  }, options, tlsRole);
  const tlsOption = tls === undefined ? {} : { tls: tls.bunClientOptions };
  const connecting =
    address.kind === "unix"
      ? Bun.connect<SocketData>({ unix: address.path, allowHalfOpen: true, data: { connection: undefined }, socket: handlers, ...tlsOption })
      : Bun.connect<SocketData>({ hostname: address.host ?? "127.0.0.1", port: address.port, allowHalfOpen: true, data: { connection: undefined }, socket: handlers, ...tlsOption });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new DruvaaError("NET_CONNECT_TIMEOUT", `cannot connect to ${where}: no answer within ${timeoutMs} ms`, "Check the address, that the peer runs, and firewalls between", exitCodes.timeout));
    }, timeoutMs);
  });
  try {
    await Promise.race([connecting.then(() => ready.promise), timeout]);
  } catch (error) {
    // A connect that completes after the timeout is closed at once.
    void connecting.then((socket) => socket.terminate(), () => undefined);
    if (error instanceof DruvaaError) throw error;
    const code = (error as { code?: unknown })?.code;
    if (code === "ECONNREFUSED" || code === "ENOENT") {
      throw new DruvaaError("NET_CONNECT_REFUSED", `cannot connect to ${where}: nobody listens there`, "Is the druvaa server running, and on this address and port?", exitCodes.refused, { cause: error });
    }
    const wrapped = fromSystemError(error, `cannot connect to ${where}`);
    throw new DruvaaError("NET_CONNECT_FAILED", wrapped.message, wrapped.hint ?? "Check the address and the network", exitCodes.failure, { cause: error });
  } finally {
    clearTimeout(timer);
  }
  assert(connection !== undefined, "open() (or, with TLS, an authorized handshake) came first");
  if (tls !== undefined) {
    const session = connection;
    const unwatch = endRevokedSessions(tls, () => [session]);
    void session.closed.then(unwatch, unwatch);
  }
  return connection;
}
