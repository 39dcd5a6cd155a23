/**
 * Socket transport: druvaa frames over TCP or Unix sockets (Bun.listen / Bun.connect).
 *
 * listen() and connect() wrap every Bun socket in a SocketConnection (src/io/connection-socket.ts),
 * which implements the Connection contract (src/io/connection.ts): a bounded write queue that
 * survives Bun's partial writes, frame reassembly, back-pressure both ways, and graceful
 * half-close. Addresses are parsed in src/io/address.ts. This module re-exports those names, so
 * callers import everything network-related from here.
 */
import type { Socket } from "bun";
import { existsSync, lstatSync, unlinkSync } from "node:fs";
import { assert } from "../assert.ts";
import { connectTimeoutMs } from "../constants.ts";
import { DruvaaError, exitCodes, fromSystemError } from "../errors.ts";
import { logger } from "../log.ts";
import { formatAddress, type Address } from "./address.ts";
import type { Connection } from "./connection.ts";
import { SocketConnection, type SocketLike } from "./connection-socket.ts";
import type { FrameAllocator } from "../protocol/frame.ts";

export { formatAddress, parseAddress, type Address } from "./address.ts";
export type { Connection, FrameHandler } from "./connection.ts";
export { SocketConnection, type SocketLike } from "./connection-socket.ts";

const log = logger("net");

type SocketData = { connection: SocketConnection | undefined };

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
}

/** Socket handlers shared by listen() and connect(); `opened` wraps each new socket. */
function socketHandlers(address: Address, opened: (connection: SocketConnection) => void, options: ConnectionOptions = {}) {
  return {
    binaryType: "uint8array" as const,
    open(socket: Socket<SocketData>) {
      socket.setNoDelay(true); // acks are small and latency-bound; false (harmless) on Unix sockets
      const connection = new SocketConnection(socket as unknown as SocketLike, peerName(socket, address), options.allocateFrame);
      socket.data = { connection };
      opened(connection);
    },
    data(socket: Socket<SocketData>, chunk: Uint8Array) {
      socket.data.connection?.handleData(chunk);
    },
    drain(socket: Socket<SocketData>) {
      socket.data.connection?.handleDrain();
    },
    end(socket: Socket<SocketData>) {
      socket.data.connection?.handlePeerEnd();
    },
    close(socket: Socket<SocketData>, error?: Error) {
      socket.data.connection?.handleClose(error);
    },
    error(socket: Socket<SocketData>, error: Error) {
      // Only reached if one of the handlers above throws: a bug. Close that connection only.
      log.error(`${socket.data.connection?.peer ?? formatAddress(address)}: ${error.message}`);
      socket.data.connection?.abort(fromSystemError(error, formatAddress(address)));
    },
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
  const handlers = socketHandlers(address, (connection) => {
    connections.add(connection);
    void connection.closed.then(() => connections.delete(connection));
    try {
      onConnection(connection);
    } catch (error) {
      log.error(`${connection.peer}: connection handler failed: ${error instanceof Error ? error.message : String(error)}`);
      connection.abort(error instanceof DruvaaError ? error : undefined);
    }
  }, options);
  const start = () =>
    address.kind === "unix"
      ? Bun.listen<SocketData>({ unix: address.path, allowHalfOpen: true, data: { connection: undefined }, socket: handlers })
      : Bun.listen<SocketData>({ hostname: address.host ?? "0.0.0.0", port: address.port, allowHalfOpen: true, data: { connection: undefined }, socket: handlers });
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
  return {
    address: bound,
    connections,
    async stop() {
      server.stop(false);
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
 * NET_CONNECT_TIMEOUT, or NET_CONNECT_FAILED, each with a hint.
 */
export async function connect(address: Address, timeoutMs = connectTimeoutMs): Promise<Connection> {
  const where = formatAddress(address);
  if (address.kind === "tcp" && address.port === 0) throw new DruvaaError("NET_BAD_ADDRESS", `cannot connect to ${where}: port 0`, "Give the port the peer listens on", exitCodes.usage);
  let connection: SocketConnection | undefined;
  const handlers = socketHandlers(address, (opened) => (connection = opened));
  const connecting =
    address.kind === "unix"
      ? Bun.connect<SocketData>({ unix: address.path, allowHalfOpen: true, data: { connection: undefined }, socket: handlers })
      : Bun.connect<SocketData>({ hostname: address.host ?? "127.0.0.1", port: address.port, allowHalfOpen: true, data: { connection: undefined }, socket: handlers });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new DruvaaError("NET_CONNECT_TIMEOUT", `cannot connect to ${where}: no answer within ${timeoutMs} ms`, "Check the address, that the peer runs, and firewalls between", exitCodes.timeout));
    }, timeoutMs);
  });
  try {
    await Promise.race([connecting, timeout]);
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
  assert(connection !== undefined, "open() runs before Bun.connect resolves");
  return connection;
}
