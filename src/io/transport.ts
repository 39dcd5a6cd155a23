/**
 * Socket transport: druvaa frames over TCP or Unix sockets (Bun.listen / Bun.connect).
 *
 * A Connection owns one socket and:
 *   - queues outgoing frames and writes them as the socket accepts them: Bun's socket.write()
 *     may take only part of a buffer and drops the rest, so the unwritten tail stays queued and
 *     is resent on `drain`; small frames are copied together into one write;
 *   - bounds that queue: send() resolves at once while fewer than connectionSendQueueBytesMax
 *     bytes are queued, later otherwise — callers that await send() get back-pressure;
 *   - reassembles incoming frames with a FrameDecoder and hands them, in order, to a handler
 *     (onFrame) or to receive() callers; unread frames are bounded (the socket stops reading);
 *   - on a ProtocolError logs once, sends the peer an `error` message and closes; a server keeps
 *     serving its other connections;
 *   - closes gracefully: flush the queue, half-close (FIN), wait for the peer's FIN, close; never
 *     ends the socket with data still queued. Sockets are half-open capable (allowHalfOpen) so a
 *     peer that shuts its sending side still gets its replies.
 */
import type { Socket } from "bun";
import { existsSync, lstatSync, unlinkSync } from "node:fs";
import { assert } from "../assert.ts";
import {
  connectTimeoutMs, connectionInboxBytesMax, connectionLingerMs, connectionSendQueueBytesMax, protocolTextLengthMax,
  socketWriteCoalesceBytesMax, unixSocketPathBytesMax,
} from "../constants.ts";
import { DruvaaError, exitCodes, fromSystemError } from "../errors.ts";
import { logger } from "../log.ts";
import { ProtocolError } from "../protocol/errors.ts";
import { encodeFrame, FrameDecoder, type Frame } from "../protocol/frame.ts";
import type { MessageLink } from "../protocol/handshake.ts";
import type { Message } from "../protocol/messages.ts";

const log = logger("net");

// ---- addresses ----------------------------------------------------------------------------------

export type Address = { kind: "tcp"; host: string | undefined; port: number } | { kind: "unix"; path: string };

/**
 * Parses "host:port", ":port", "host", "[ipv6]:port" or "unix:/path". A missing port is
 * `defaultPort`; a missing host means all interfaces when listening, 127.0.0.1 when connecting.
 * Bad input is a NET_BAD_ADDRESS error (exit code 2) with a hint.
 */
export function parseAddress(text: string, defaultPort: number): Address {
  assert(Number.isInteger(defaultPort) && defaultPort >= 0 && defaultPort <= 65535, "default port is a port");
  const bad = (why: string, hint = `Use host:port, :port, [ipv6]:port or unix:/path, e.g. 10.0.0.5:${defaultPort} or unix:/run/druvaa.sock`) =>
    new DruvaaError("NET_BAD_ADDRESS", `address "${text}": ${why}`, hint, exitCodes.usage);
  const trimmed = text.trim();
  if (trimmed === "") throw bad("is empty");
  if (trimmed.startsWith("unix:")) {
    const path = trimmed.slice("unix:".length);
    if (path === "") throw bad("has no socket path after unix:");
    if (path.includes("\0")) throw bad("contains a NUL byte");
    if (Buffer.byteLength(path) > unixSocketPathBytesMax) throw bad(`socket path is longer than ${unixSocketPathBytesMax} bytes`, "Use a shorter path, e.g. unix:/run/druvaa/staging.sock");
    return { kind: "unix", path };
  }
  let host: string | undefined;
  let portText: string | undefined;
  const bracketed = /^\[([0-9A-Fa-f:.]+)\](?::(.*))?$/.exec(trimmed);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
    if (!host.includes(":")) throw bad("brackets are for IPv6 addresses only");
  } else {
    const parts = trimmed.split(":");
    if (parts.length > 2) throw bad("has more than one colon", `Put IPv6 addresses in brackets, e.g. [::1]:${defaultPort}`);
    host = parts[0] === "" ? undefined : parts[0];
    portText = parts[1];
    if (host !== undefined && (host.length > 253 || !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host))) throw bad(`"${host}" is not a host name or IPv4 address`);
  }
  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw bad(`port "${portText}" is not a number from 0 to 65535`);
    port = Number(portText);
  }
  return { kind: "tcp", host, port };
}

export function formatAddress(address: Address): string {
  if (address.kind === "unix") return `unix:${address.path}`;
  const host = address.host === undefined ? "" : address.host.includes(":") ? `[${address.host}]` : address.host;
  return `${host}:${address.port}`;
}

// ---- connection -------------------------------------------------------------------------------

/** What a Connection needs from a socket (Bun's Socket has it; tests use a fake). */
export interface SocketLike {
  /** Writes as much as the socket takes now; returns the count (-1 when closed). */
  write(data: Uint8Array): number;
  /** Half-close: send FIN, keep reading. */
  shutdown(): void;
  /** Close both directions (after the queue is flushed and the peer's FIN seen). */
  end(): void;
  /** Close at once, dropping anything unsent (RST). */
  terminate(): void;
  pause(): void;
  resume(): void;
}

export type FrameHandler = (frame: Frame, connection: Connection) => void;

export interface Connection extends MessageLink {
  /** The peer, for messages: "10.0.0.5:40122" or "unix:/run/druvaa.sock". */
  readonly peer: string;
  /** Bytes accepted by send() but not yet written to the socket. */
  readonly queuedBytes: number;
  /** True until close() or abort() is called or the socket closes. */
  readonly isOpen: boolean;
  /** Resolves when the socket is closed, with the reason: this side's, else what the peer's
   * `error` message said, else NET_RESET for an abrupt close; undefined for an orderly close. */
  readonly closed: Promise<DruvaaError | undefined>;
  /**
   * Queues a frame. Resolves when the caller may send more (at once while the queue is under
   * connectionSendQueueBytesMax), NOT when the peer has it: delivery is confirmed by the
   * protocol's acks. Rejects with ProtocolError for an invalid message, NET_CLOSED (or the close
   * reason) when the connection is closing — a rejection that may be left unhandled, since
   * `closed` reports the close. The payload must not change until it is written.
   */
  send(message: Message, payload?: Uint8Array): Promise<void>;
  /** Delivers every frame, in order, to `handler` (frames already received first). A handler
   * that throws closes the connection. Once set, receive() may not be used. */
  onFrame(handler: FrameHandler): void;
  /** The next frame (when no handler is set). Rejects with NET_TIMEOUT after timeoutMs, or with
   * the close reason; frames received before a close are still returned first. */
  receive(timeoutMs?: number): Promise<Frame>;
  /** Called when the peer shuts its sending side; by default the connection then closes. */
  onPeerEnd(handler: () => void): void;
  /** Stop / restart reading from the socket (inbound back-pressure for slow consumers). */
  pauseReading(): void;
  resumeReading(): void;
  /** Graceful close: if `reason` is given the peer is first sent an `error` message; queued
   * frames are flushed (within connectionLingerMs), then FIN. Resolves when closed. */
  close(reason?: DruvaaError): Promise<void>;
  /** Closes at once, dropping queued frames. */
  abort(reason?: DruvaaError): void;
}

type Waiter<T> = { resolve: (value: T) => void; reject: (error: DruvaaError) => void };

export class SocketConnection implements Connection {
  readonly #socket: SocketLike;
  readonly #decoder = new FrameDecoder();
  #state: "open" | "closing" | "closed" = "open";
  #reason: DruvaaError | undefined;
  /** What the peer's `error` message said: the close reason when it then closes. */
  #peerReason: DruvaaError | undefined;
  #resolveClosed!: (reason: DruvaaError | undefined) => void;
  readonly closed = new Promise<DruvaaError | undefined>((resolve) => (this.#resolveClosed = resolve));
  // Outgoing: chunks from #queueHead on, #queuedBytes in total.
  #queue: Uint8Array[] = [];
  #queueHead = 0;
  #queuedBytes = 0;
  #flushScheduled = false;
  #awaitingDrain = false;
  #sendWaiters: Waiter<void>[] = [];
  #finSent = false;
  #peerEnded = false;
  #lingerTimer: ReturnType<typeof setTimeout> | undefined;
  // Incoming.
  #handler: FrameHandler | undefined;
  #peerEndHandler: (() => void) | undefined;
  #inbox: Frame[] = [];
  #inboxBytes = 0;
  #receivers: (Waiter<Frame> & { timer?: ReturnType<typeof setTimeout> })[] = [];
  // Reading is paused while the user asks or the inbox is over its bound.
  #userPaused = false;
  #inboxPaused = false;
  #socketPaused = false;
  /** Socket writes that took less than offered (the drain path), for tests and stats. */
  partialWrites = 0;

  constructor(socket: SocketLike, readonly peer: string) {
    this.#socket = socket;
  }

  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  get isOpen(): boolean {
    return this.#state === "open";
  }

  send(message: Message, payload?: Uint8Array): Promise<void> {
    if (this.#state !== "open") return handled(Promise.reject(this.#closedError()));
    let chunks: Uint8Array[];
    try {
      chunks = encodeFrame(message, payload);
    } catch (error) {
      return Promise.reject(error); // an invalid message is a bug in the sender: stays loud
    }
    this.#enqueue(chunks);
    if (this.#queuedBytes <= connectionSendQueueBytesMax) return Promise.resolve();
    return handled(new Promise((resolve, reject) => this.#sendWaiters.push({ resolve, reject })));
  }

  onFrame(handler: FrameHandler): void {
    assert(this.#handler === undefined && this.#receivers.length === 0, "one consumer per connection");
    this.#handler = handler;
    const pending = this.#inbox;
    this.#inbox = [];
    this.#inboxBytes = 0;
    for (const frame of pending) this.#callHandler(frame);
    this.#setInboxPaused(false);
  }

  receive(timeoutMs = Number.POSITIVE_INFINITY): Promise<Frame> {
    assert(this.#handler === undefined, "receive() on a connection with a frame handler");
    const frame = this.#inbox.shift();
    if (frame !== undefined) {
      this.#inboxBytes -= frameBytes(frame);
      if (this.#inboxBytes <= connectionInboxBytesMax) this.#setInboxPaused(false);
      return Promise.resolve(frame);
    }
    if (this.#state !== "open") return Promise.reject(this.#closedError());
    return new Promise((resolve, reject) => {
      const receiver: Waiter<Frame> & { timer?: ReturnType<typeof setTimeout> } = { resolve, reject };
      if (Number.isFinite(timeoutMs)) {
        receiver.timer = setTimeout(() => {
          this.#receivers = this.#receivers.filter((other) => other !== receiver);
          reject(new DruvaaError("NET_TIMEOUT", `${this.peer}: no message within ${timeoutMs} ms`, "Is the peer alive and reachable?", exitCodes.timeout));
        }, timeoutMs);
      }
      this.#receivers.push(receiver);
    });
  }

  onPeerEnd(handler: () => void): void {
    this.#peerEndHandler = handler;
  }

  pauseReading(): void {
    this.#userPaused = true;
    this.#applyPause();
  }

  resumeReading(): void {
    this.#userPaused = false;
    this.#applyPause();
  }

  close(reason?: DruvaaError): Promise<void> {
    if (this.#state === "open") {
      this.#reason = reason;
      if (reason !== undefined) {
        const message = reason.message.slice(0, protocolTextLengthMax);
        const hint = reason.hint?.slice(0, protocolTextLengthMax);
        try {
          this.#enqueue(encodeFrame(hint === undefined ? { type: "error", code: reason.code, message } : { type: "error", code: reason.code, message, hint }));
        } catch {
          // A code that is not UPPER_SNAKE cannot be sent; the FIN alone still tells the peer.
        }
      }
      this.#state = "closing";
      this.#rejectReceivers();
      this.#lingerTimer = setTimeout(() => {
        log.warn(`${this.peer}: could not flush and close within ${connectionLingerMs} ms; dropping the connection`);
        this.abort();
      }, connectionLingerMs);
      this.#scheduleFlush();
    }
    return this.closed.then(() => undefined);
  }

  abort(reason?: DruvaaError): void {
    if (this.#state === "closed") return;
    this.#reason ??= reason;
    this.#state = "closing";
    this.#socket.terminate();
    this.handleClose(); // Bun may or may not call close() synchronously; handleClose is idempotent
  }

  // ---- socket events (called by the Bun handlers, or by a test's fake socket) ----

  handleData(chunk: Uint8Array): void {
    // While closing, keep reading (so the peer's FIN arrives and the kernel does not answer
    // unread data with RST) but drop what arrives.
    if (this.#state !== "open") return;
    try {
      for (const frame of this.#decoder.push(chunk)) {
        if (this.#state !== "open") return;
        this.#deliver(frame);
      }
    } catch (error) {
      this.#fail(error);
    }
  }

  handleDrain(): void {
    this.#awaitingDrain = false;
    this.#flush();
  }

  handlePeerEnd(): void {
    this.#peerEnded = true;
    if (this.#state === "open") {
      try {
        this.#decoder.finish();
      } catch (error) {
        this.#fail(error);
        return;
      }
      if (this.#peerEndHandler === undefined) {
        void this.close();
        return;
      }
      try {
        this.#peerEndHandler();
      } catch (error) {
        this.#fail(error);
      }
    } else if (this.#finSent) {
      this.#socket.end();
    }
  }

  handleClose(error?: Error): void {
    if (this.#state === "closed") return;
    const wasOpen = this.#state === "open";
    this.#state = "closed";
    clearTimeout(this.#lingerTimer);
    this.#reason ??= this.#peerReason;
    if (this.#reason === undefined && (error !== undefined || (wasOpen && !this.#peerEnded))) {
      this.#reason = error !== undefined ? fromSystemError(error, this.peer) : new DruvaaError("NET_RESET", `${this.peer}: connection closed by the peer without shutdown`);
    }
    this.#queue = [];
    this.#queueHead = 0;
    this.#queuedBytes = 0;
    this.#rejectReceivers();
    for (const waiter of this.#sendWaiters.splice(0)) waiter.reject(this.#closedError());
    this.#resolveClosed(this.#reason);
  }

  // ---- internals ----

  #closedError(): DruvaaError {
    return this.#reason ?? new DruvaaError("NET_CLOSED", `${this.peer}: connection is closed`);
  }

  #rejectReceivers(): void {
    for (const receiver of this.#receivers.splice(0)) {
      clearTimeout(receiver.timer);
      receiver.reject(this.#closedError());
    }
  }

  #fail(error: unknown): void {
    if (error instanceof ProtocolError) {
      log.warn(`${this.peer}: ${error.message} (${error.code}); closing the connection`);
      void this.close(error);
      return;
    }
    const reason = error instanceof DruvaaError ? error : new DruvaaError("NET_HANDLER_FAILED", `${this.peer}: ${error instanceof Error ? error.message : String(error)}`, undefined, 1, { cause: error });
    log.error(`${this.peer}: ${reason.message} (${reason.code}); closing the connection`);
    void this.close(reason);
  }

  #deliver(frame: Frame): void {
    if (frame.message.type === "error") {
      const { code, message, hint } = frame.message;
      this.#peerReason ??= new DruvaaError(code, `${this.peer} closed the connection: ${message}`, hint);
    }
    if (this.#handler !== undefined) return this.#callHandler(frame);
    const receiver = this.#receivers.shift();
    if (receiver !== undefined) {
      clearTimeout(receiver.timer);
      return receiver.resolve(frame);
    }
    this.#inbox.push(frame);
    this.#inboxBytes += frameBytes(frame);
    if (this.#inboxBytes > connectionInboxBytesMax) this.#setInboxPaused(true);
  }

  #callHandler(frame: Frame): void {
    try {
      this.#handler!(frame, this);
    } catch (error) {
      this.#fail(error);
    }
  }

  #setInboxPaused(paused: boolean): void {
    this.#inboxPaused = paused;
    this.#applyPause();
  }

  #applyPause(): void {
    const paused = this.#userPaused || this.#inboxPaused;
    if (paused === this.#socketPaused || this.#state === "closed") return;
    this.#socketPaused = paused;
    if (paused) this.#socket.pause();
    else this.#socket.resume();
  }

  #enqueue(chunks: Uint8Array[]): void {
    for (const chunk of chunks) {
      this.#queue.push(chunk);
      this.#queuedBytes += chunk.length;
    }
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    // A microtask: frames sent in the same tick go out together (coalesced), but without delay.
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    if (this.#state === "closed") return;
    while (!this.#awaitingDrain && this.#queueHead < this.#queue.length) {
      const chunk = this.#coalesceHead();
      const written = this.#socket.write(chunk);
      if (written < 0) return; // closed under us: handleClose follows
      this.#queuedBytes -= written;
      if (written < chunk.length) {
        this.#queue[this.#queueHead] = chunk.subarray(written);
        this.#awaitingDrain = true;
        this.partialWrites += 1;
      } else {
        this.#queueHead += 1;
      }
    }
    if (this.#queueHead === this.#queue.length) {
      this.#queue = [];
      this.#queueHead = 0;
    } else if (this.#queueHead > 1024) {
      this.#queue = this.#queue.slice(this.#queueHead);
      this.#queueHead = 0;
    }
    if (this.#queuedBytes <= connectionSendQueueBytesMax) for (const waiter of this.#sendWaiters.splice(0)) waiter.resolve();
    if (this.#state === "closing" && this.#queuedBytes === 0 && !this.#finSent) {
      this.#finSent = true;
      if (this.#peerEnded) this.#socket.end();
      else this.#socket.shutdown(); // the peer's FIN (handlePeerEnd) then ends the socket
    }
  }

  /** The chunk at the head, merged with following small chunks into one write when they fit. */
  #coalesceHead(): Uint8Array {
    const first = this.#queue[this.#queueHead]!;
    let end = this.#queueHead + 1;
    let total = first.length;
    while (end < this.#queue.length && total + this.#queue[end]!.length <= socketWriteCoalesceBytesMax) {
      total += this.#queue[end]!.length;
      end += 1;
    }
    if (end === this.#queueHead + 1) return first;
    const merged = new Uint8Array(total);
    let position = 0;
    for (let index = this.#queueHead; index < end; index += 1) {
      merged.set(this.#queue[index]!, position);
      position += this.#queue[index]!.length;
    }
    this.#queueHead = end - 1;
    this.#queue[this.#queueHead] = merged;
    return merged;
  }
}

/**
 * Marks a promise's rejection as handled while still rejecting for whoever awaits it: a reply sent
 * fire-and-forget (`void connection.send(ack)`) on a connection that has just closed must not
 * become an unhandled rejection; the close itself is reported once, through `closed`.
 */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

function frameBytes(frame: Frame): number {
  return frame.payload.length + 64; // the header's size is not kept; 64 bytes stands for it
}

// ---- Bun sockets ------------------------------------------------------------------------------

type SocketData = { connection: SocketConnection | undefined };

function peerName(socket: Socket<SocketData>, address: Address): string {
  return address.kind === "unix" ? formatAddress(address) : `${socket.remoteAddress}:${socket.remotePort}`;
}

/** Socket handlers shared by listen() and connect(); `opened` wraps each new socket. */
function socketHandlers(address: Address, opened: (connection: SocketConnection) => void) {
  return {
    binaryType: "uint8array" as const,
    open(socket: Socket<SocketData>) {
      socket.setNoDelay(true); // acks are small and latency-bound; false (harmless) on Unix sockets
      const connection = new SocketConnection(socket as unknown as SocketLike, peerName(socket, address));
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
export async function listen(address: Address, onConnection: (connection: Connection) => void): Promise<Listener> {
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
  });
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
