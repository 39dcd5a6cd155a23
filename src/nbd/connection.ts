/**
 * One NBD client connection: a socket, the handshake, then the transmission phase. Owns reading
 * (reassembly, pause/resume for back-pressure) and the end of the connection:
 *   - handshake refused / OPT_ABORT / timeout       -> send what is queued, close
 *   - NBD_CMD_DISC, bad request magic, peer's FIN   -> finish in-flight requests, send their replies, close
 *   - server close()                                -> stop reading, refuse buffered requests with
 *                                                      ESHUTDOWN, finish in-flight, close
 * Nothing here throws into Bun's callbacks: an unexpected exception is a bug, logged, and ends
 * this connection only.
 */
import type { ConsolaInstance } from "consola/basic";
import { nbdHandshakeTimeoutMs } from "../constants.ts";
import { ByteQueue } from "./byte-queue.ts";
import type { ExportTable } from "./exports.ts";
import { Handshake } from "./handshake.ts";
import { ReplyWriter, type WritableSocket } from "./reply-writer.ts";
import { Transmission } from "./transmission.ts";

/** The part of a Bun socket a connection uses. */
export interface ConnectionSocket extends WritableSocket {
  pause(): void;
  resume(): void;
  terminate(): void;
}

type Phase = "handshake" | "transmission" | "closing" | "closed";

export class NbdConnection {
  private readonly input = new ByteQueue();
  private readonly writer: ReplyWriter;
  private readonly handshake: Handshake;
  private transmission: Transmission | undefined;
  private phase: Phase = "handshake";
  private paused = false;
  private peerEnded = false;
  private pumping = false;
  private handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  private resolveClosed!: () => void;
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void> = new Promise((resolve) => {
    this.resolveClosed = resolve;
  });

  constructor(
    private readonly socket: ConnectionSocket,
    exports: ExportTable,
    private readonly log: ConsolaInstance,
    readonly peer: string,
  ) {
    this.writer = new ReplyWriter(socket, () => this.onProgress());
    this.handshake = new Handshake(exports, this.writer, log, peer);
  }

  onOpen(): void {
    this.guard(() => {
      this.log.debug(`${this.peer}: connected`);
      this.handshake.start();
      this.handshakeTimer = setTimeout(() => {
        if (this.phase !== "handshake") return;
        this.log.warn(`${this.peer}: no export chosen within ${nbdHandshakeTimeoutMs} ms, closing`);
        this.closeNow();
      }, nbdHandshakeTimeoutMs);
    });
  }

  onData(chunk: Uint8Array): void {
    this.guard(() => {
      if (this.phase === "closing" || this.phase === "closed") return;
      this.input.push(chunk);
      this.pump();
    });
  }

  onDrain(): void {
    this.guard(() => this.writer.drain());
  }

  /** The peer sent FIN: it will send nothing more but may still read our replies. */
  onEnd(): void {
    this.guard(() => {
      this.peerEnded = true;
      this.pump();
    });
  }

  onClose(): void {
    if (this.phase === "closed") return;
    this.phase = "closed";
    clearTimeout(this.handshakeTimer);
    this.writer.discard();
    this.input.clear();
    const refused = this.transmission?.rejectionCount ?? 0;
    this.log.debug(`${this.peer}: closed${refused > 0 ? ` (${refused} request(s) refused)` : ""}`);
    this.resolveClosed();
  }

  /** Server close(): stop reading, finish what runs, close. Resolves when the socket is closed. */
  shutdown(): Promise<void> {
    this.guard(() => {
      if (this.phase === "handshake") {
        this.closeNow();
        return;
      }
      if (this.transmission !== undefined) this.transmission.shuttingDown = true;
      this.pauseReading();
      this.pump();
    });
    return this.closed;
  }

  /** Last resort when shutdown overruns its grace period. */
  terminate(): void {
    if (this.phase !== "closed") this.socket.terminate();
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      this.pumpOnce();
    } finally {
      this.pumping = false;
    }
  }

  private pumpOnce(): void {
    if (this.phase === "handshake") {
      const step = this.handshake.step(this.input);
      if (step.kind === "close") {
        this.finish();
        return;
      }
      if (step.kind === "need-more") {
        if (this.peerEnded) this.finish();
        return;
      }
      clearTimeout(this.handshakeTimer);
      this.phase = "transmission";
      this.log.info(`${this.peer}: serving export ${JSON.stringify(step.terms.backend.name)}`);
      this.transmission = new Transmission(step.terms, this.writer, this.log, this.peer, () => this.onProgress());
    }
    if (this.phase === "transmission") {
      const transmission = this.transmission!;
      const step = transmission.step(this.input);
      if (step === "blocked") {
        this.pauseReading();
        return;
      }
      if (step === "stop" || this.peerEnded || transmission.shuttingDown) {
        // Requests not yet parsed are dropped: after DISC or a bad magic there are none legitimately.
        this.finish();
        return;
      }
      this.resumeReading();
      return;
    }
    if (this.phase === "closing" && (this.transmission?.idle ?? true)) this.writer.endWhenFlushed();
  }

  /** Stop parsing; close once in-flight requests have replied and the replies are sent. */
  private finish(): void {
    if (this.phase === "closed") return;
    this.phase = "closing";
    // Keep reading (and dropping) input: a paused Bun socket would not report the peer's close.
    this.resumeReading();
    this.input.clear();
    this.transmission?.abandonPartial();
    if (this.transmission?.idle ?? true) this.writer.endWhenFlushed();
  }

  /** A request finished or replies reached the kernel: maybe read again, maybe close. */
  private onProgress(): void {
    this.guard(() => {
      if (this.phase === "transmission" || this.phase === "closing") this.pump();
    });
  }

  private closeNow(): void {
    this.writer.discard();
    this.phase = "closing";
    this.socket.end();
  }

  private pauseReading(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket.pause();
  }

  private resumeReading(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket.resume();
  }

  private guard(action: () => void): void {
    try {
      action();
    } catch (error) {
      this.log.error(`${this.peer}: internal error, closing this connection:`, error);
      try {
        this.closeNow();
      } catch {
        // The socket is already unusable; its close callback finishes the cleanup.
      }
    }
  }
}
