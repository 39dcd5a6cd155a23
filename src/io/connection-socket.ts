/**
 * SocketConnection: the Connection contract (src/io/connection.ts) over one Bun TCP or Unix socket.
 *
 *   - queues outgoing frames and writes them as the socket accepts them: Bun's socket.write()
 *     may take only part of a buffer and drops the rest, so the unwritten tail stays queued and
 *     is resent on `drain`; small frames are copied together into one write (send-queue.ts);
 *   - bounds that queue: send() resolves at once while fewer than connectionSendQueueBytesMax
 *     bytes are queued, later otherwise — callers that await send() get back-pressure;
 *   - reassembles incoming frames with a FrameDecoder and hands them, in order, to a handler
 *     (onFrame) or to receive() callers; unread frames are bounded (the socket stops reading);
 *   - on a ProtocolError logs once, sends the peer an `error` message and closes; a server keeps
 *     serving its other connections;
 *   - closes gracefully: flush the queue, half-close (FIN), wait for the peer's FIN, close; never
 *     ends the socket with data still queued. Sockets are half-open capable (allowHalfOpen) so a
 *     peer that shuts its sending side still gets its replies.
 *
 * It never touches Bun directly: the socket events are fed to it by src/io/transport.ts (or by a
 * test's fake socket), through the handle*() methods.
 */
import { assert } from "../assert.ts";
import { connectionInboxBytesMax, connectionLingerMs, connectionSendQueueBytesMax, gcNudgeReceivedBytes, gcRssBytesThreshold, protocolTextLengthMax } from "../constants.ts";
import { DruvaaError, exitCodes, fromSystemError } from "../errors.ts";
import { logger } from "../log.ts";
import { ProtocolError } from "../protocol/errors.ts";
import { encodeFrame, FrameDecoder, type Frame, type FrameAllocator } from "../protocol/frame.ts";
import type { ErrorMessage, Message } from "../protocol/messages.ts";
import type { PeerIdentity } from "../tls/identity.ts";
import type { Connection, FrameHandler } from "./connection.ts";
import { SendQueue } from "./send-queue.ts";

const log = logger("net");

/** What a SocketConnection needs from a socket (Bun's Socket has it; tests use a fake). */
/** The `error` message telling the peer why its connection ends (texts cut to what the protocol carries). */
export function errorMessageOf(reason: DruvaaError): ErrorMessage {
  const message = reason.message.slice(0, protocolTextLengthMax);
  const hint = reason.hint?.slice(0, protocolTextLengthMax);
  return hint === undefined ? { type: "error", code: reason.code, message } : { type: "error", code: reason.code, message, hint };
}

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

type Waiter<T> = { resolve: (value: T) => void; reject: (error: DruvaaError) => void };

export class SocketConnection implements Connection {
  readonly #socket: SocketLike;
  readonly #decoder: FrameDecoder;
  #state: "open" | "closing" | "closed" = "open";
  #reason: DruvaaError | undefined;
  /** What the peer's `error` message said: the close reason when it then closes. */
  #peerReason: DruvaaError | undefined;
  #resolveClosed!: (reason: DruvaaError | undefined) => void;
  readonly closed = new Promise<DruvaaError | undefined>((resolve) => (this.#resolveClosed = resolve));
  // Outgoing.
  readonly #queue = new SendQueue();
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

  /**
   * `allocateFrame`: see FrameDecoder (where frames spanning several chunks are assembled).
   * `peerIdentity`: who the peer proved to be with its certificate (TLS), undefined in plaintext.
   */
  constructor(socket: SocketLike, readonly peer: string, allocateFrame?: FrameAllocator, readonly peerIdentity?: PeerIdentity) {
    this.#socket = socket;
    this.#decoder = new FrameDecoder(allocateFrame);
  }

  get queuedBytes(): number {
    return this.#queue.bytes;
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
    if (this.#queue.bytes <= connectionSendQueueBytesMax) return Promise.resolve();
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
        try {
          this.#enqueue(encodeFrame(errorMessageOf(reason)));
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
    nudgeGarbageCollector(chunk.length);
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
    this.#queue.clear();
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
    this.#queue.push(chunks);
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
    if (!this.#awaitingDrain) {
      const outcome = this.#queue.writeTo(this.#socket);
      if (outcome === "closed") return; // closed under us: handleClose follows
      if (outcome === "partial") {
        this.#awaitingDrain = true;
        this.partialWrites += 1;
      }
    }
    this.#queue.compact();
    if (this.#queue.bytes <= connectionSendQueueBytesMax) for (const waiter of this.#sendWaiters.splice(0)) waiter.resolve();
    if (this.#state === "closing" && this.#queue.bytes === 0 && !this.#finSent) {
      this.#finSent = true;
      if (this.#peerEnded) this.#socket.end();
      else this.#socket.shutdown(); // the peer's FIN (handlePeerEnd) then ends the socket
    }
  }
}

/** Bytes received by every connection of this process since the last nudge. */
let receivedSinceNudgeBytes = 0;

/**
 * Every received chunk is a fresh buffer (Bun never reuses them) that becomes garbage as soon as
 * its frames are decoded. At hundreds of MB/s the collector, which paces itself by the JS heap,
 * let a staging server's RSS swing to 450 MB with dead chunks (a hint, Bun.gc(false), did not
 * bound it). So every gcNudgeReceivedBytes received, if the process's RSS is over
 * gcRssBytesThreshold, a full collection runs right here: a few ms at most once per 32 MiB, and
 * measured without a throughput loss; the staging peak stayed near 230 MB.
 */
function nudgeGarbageCollector(bytes: number): void {
  receivedSinceNudgeBytes += bytes;
  if (receivedSinceNudgeBytes < gcNudgeReceivedBytes) return;
  receivedSinceNudgeBytes = 0;
  if (process.memoryUsage.rss() > gcRssBytesThreshold) Bun.gc(true);
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
