/**
 * The NBD server: listens on a Unix socket or TCP, serves the given exports to any number of
 * connections, each with many requests in flight. One misbehaving client (garbage, absurd lengths,
 * a broken backend call) only ever costs its own connection or request.
 *
 *   const server = await startNbdServer({ listen: "unix:/run/druvaa/vol1.sock", exports: [exp] });
 *   // nbdinfo 'nbd+unix:///?socket=/run/druvaa/vol1.sock'
 *   await server.close();
 */
import { lstat, rm } from "node:fs/promises";
import type { ConsolaInstance } from "consola/basic";
import { DruvaaError, exitCodes } from "../errors.ts";
import { logger } from "../log.ts";
import { nbdCloseGraceMs, unixSocketPathBytesMax } from "../constants.ts";
import type { NbdExport } from "./backend.ts";
import { NbdConnection } from "./connection.ts";
import { ExportTable } from "./exports.ts";

export interface NbdServerOptions {
  /** "unix:/path/to.sock", or "host:port" ("127.0.0.1:10809", "[::1]:10809"; port 0 = any free port). */
  listen: string;
  exports: readonly NbdExport[];
  /** Where connection events and refusals are logged; default logger("client:nbd"). */
  log?: ConsolaInstance;
}

export interface NbdServer {
  /** Where it listens, in the `listen` syntax, with the real port when 0 was asked for. */
  readonly address: string;
  /** An NBD URI for an export (default: the default export ""), for nbdinfo, qemu, nbdcopy. */
  uri(exportName?: string): string;
  /** Open client connections. */
  connections(): number;
  /**
   * Stops listening, lets in-flight requests finish and their replies go out (buffered but
   * unstarted requests get ESHUTDOWN), closes every connection, removes the Unix socket file.
   * Connections still busy after nbdCloseGraceMs are cut. Idempotent.
   */
  close(): Promise<void>;
}

export type ListenAddress = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

/** Parses the `listen` syntax; bad input is a usage error with a hint. */
export function parseListenAddress(text: string): ListenAddress {
  const hint = 'Use "unix:/path/to.sock" or "host:port", e.g. "unix:/run/druvaa/nbd.sock" or "127.0.0.1:10809"';
  if (text.startsWith("unix:")) {
    const path = text.slice("unix:".length);
    if (path.length === 0) throw badAddress(`"${text}" has no socket path`, hint);
    if (Buffer.byteLength(path) > unixSocketPathBytesMax) {
      throw badAddress(`Unix socket path is longer than ${unixSocketPathBytesMax} bytes: ${path}`, "Use a shorter path, e.g. under /run or /tmp");
    }
    return { kind: "unix", path };
  }
  const match = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(text);
  const port = match === null ? NaN : Number(match[3]);
  if (match === null || !(port >= 0 && port <= 65535)) throw badAddress(`cannot read "${text}" as a listen address`, hint);
  return { kind: "tcp", host: match[1] ?? match[2]!, port };
}

function formatAddress(address: ListenAddress): string {
  if (address.kind === "unix") return `unix:${address.path}`;
  return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

/** The NBD URI (libnbd/qemu syntax) of an export at a listen address. */
export function nbdUri(address: ListenAddress, exportName = ""): string {
  const name = encodeURIComponent(exportName);
  if (address.kind === "unix") return `nbd+unix:///${name}?socket=${encodeURIComponent(address.path)}`;
  const host = address.host.includes(":") ? `[${address.host}]` : address.host;
  return `nbd://${host}:${address.port}/${name}`;
}

export async function startNbdServer(options: NbdServerOptions): Promise<NbdServer> {
  const exports = new ExportTable(options.exports);
  const log = options.log ?? logger("client:nbd");
  const requested = parseListenAddress(options.listen);
  if (requested.kind === "unix") await removeStaleSocket(requested.path);

  const open = new Set<NbdConnection>();
  let connectionCount = 0;
  const handlers = {
    binaryType: "uint8array" as const,
    open(socket: Bun.Socket<NbdConnection | undefined>) {
      connectionCount += 1;
      const peer = requested.kind === "unix" ? `nbd#${connectionCount}` : `nbd#${connectionCount} ${socket.remoteAddress}:${socket.remotePort}`;
      const connection = new NbdConnection(socket, exports, log, peer);
      socket.data = connection;
      open.add(connection);
      void connection.closed.then(() => open.delete(connection));
      connection.onOpen();
    },
    data(socket: Bun.Socket<NbdConnection | undefined>, chunk: Uint8Array) {
      socket.data?.onData(chunk);
    },
    drain(socket: Bun.Socket<NbdConnection | undefined>) {
      socket.data?.onDrain();
    },
    end(socket: Bun.Socket<NbdConnection | undefined>) {
      socket.data?.onEnd();
    },
    close(socket: Bun.Socket<NbdConnection | undefined>) {
      socket.data?.onClose();
    },
    error(socket: Bun.Socket<NbdConnection | undefined>, error: Error) {
      log.warn(`${socket.data?.peer ?? "nbd"}: socket error: ${error.message}`);
    },
  };

  let listener: Bun.SocketListener<NbdConnection | undefined>;
  let actual: ListenAddress;
  try {
    if (requested.kind === "unix") {
      listener = Bun.listen<NbdConnection | undefined>({ unix: requested.path, allowHalfOpen: true, data: undefined, socket: handlers });
      actual = requested;
    } else {
      const tcp = Bun.listen<NbdConnection | undefined>({ hostname: requested.host, port: requested.port, allowHalfOpen: true, data: undefined, socket: handlers });
      listener = tcp;
      actual = { kind: "tcp", host: requested.host, port: tcp.port };
    }
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const detail = error instanceof Error ? error.message : String(error);
    if (code === "EADDRINUSE") {
      throw new DruvaaError("NBD_ADDRESS_IN_USE", `cannot listen on ${options.listen}: address in use`, "Is another druvaa or NBD server running there? Pick another port or socket path", exitCodes.refused, { cause: error });
    }
    throw new DruvaaError("NBD_LISTEN_FAILED", `cannot listen on ${options.listen}: ${detail}`, "Check the address and that its directory exists and is writable", exitCodes.failure, { cause: error });
  }
  const address = formatAddress(actual);
  log.info(`NBD server listening on ${address} (${exports.all.map((terms) => JSON.stringify(terms.backend.name)).join(", ")})`);

  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    listener.stop(false);
    const all = [...open];
    const graceTimer = setTimeout(() => {
      log.warn(`NBD server ${address}: ${open.size} connection(s) still busy after ${nbdCloseGraceMs} ms, cutting them`);
      for (const connection of open) connection.terminate();
    }, nbdCloseGraceMs);
    try {
      await Promise.all(all.map((connection) => connection.shutdown()));
    } finally {
      clearTimeout(graceTimer);
    }
    if (actual.kind === "unix") await rm(actual.path, { force: true });
    log.info(`NBD server ${address} closed`);
  };

  return {
    address,
    uri: (exportName = "") => nbdUri(actual, exportName),
    connections: () => open.size,
    close: () => (closing ??= close()),
  };
}

/**
 * A socket file left by a server that died is removed; one that still answers, or a path that is
 * not a socket at all, is refused (never delete a live server's socket or a user's file).
 */
async function removeStaleSocket(path: string): Promise<void> {
  let stats;
  try {
    stats = await lstat(path);
  } catch {
    return;
  }
  if (!stats.isSocket()) {
    throw new DruvaaError("NBD_ADDRESS_IN_USE", `${path} exists and is not a socket`, "Choose another socket path, or remove the file if it is yours", exitCodes.refused);
  }
  const live = await Bun.connect({ unix: path, socket: { data() {} } }).then(
    (socket) => {
      socket.end();
      return true;
    },
    () => false,
  );
  if (live) {
    throw new DruvaaError("NBD_ADDRESS_IN_USE", `${path}: another server is listening on this socket`, "Stop it first, or choose another socket path", exitCodes.refused);
  }
  await rm(path, { force: true });
}

function badAddress(message: string, hint: string): DruvaaError {
  return new DruvaaError("NBD_BAD_LISTEN_ADDRESS", message, hint, exitCodes.usage);
}
