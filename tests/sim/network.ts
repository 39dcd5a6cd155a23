/**
 * An in-memory network for the simulation: connections that carry frames in order, like a
 * socket, but only when the test says so. Every frame sent waits in its direction's queue until
 * the scheduler delivers it (SimNetwork.deliverOne picks which queue under a seeded PRNG), so
 * the interleaving of client writes, staging acks, shipments and replica answers is a choice the
 * trace makes, and a run replays exactly from its seed.
 *
 * Every frame goes through the real encoder and decoder (src/protocol/frame.ts): a message the
 * socket transport would refuse fails here too, and the receiver gets its own copy of the bytes.
 *
 * Closing: abort() (either end, or the network on a simulated crash) ends the connection at once
 * for both ends, and frames still queued in either direction are lost — a reset, not a graceful
 * shutdown. That is what a killed process looks like to its peers.
 */
import { DruvaaError } from "../../src/errors.ts";
import type { Random } from "../../src/io/random.ts";
import { decodeFrame, encodeFrameBytes, type Frame } from "../../src/protocol/frame.ts";
import type { Message } from "../../src/protocol/messages.ts";
import type { RelayLink } from "../../src/roles/staging/relay.ts";
import type { Activity } from "./disk.ts";

/** How an end receives timers for receive(timeoutMs): its process's clock. */
export interface TimerSource {
  schedule(delayMs: number, run: () => void): () => void;
}

const empty = new Uint8Array(0);

interface Waiter {
  resolve: (frame: Frame) => void;
  reject: (error: unknown) => void;
  cancelTimer?: () => void;
}

export class SimNetwork {
  readonly #connections = new Set<SimConnection>();

  constructor(readonly activity: Activity) {}

  /** A new connection; `a` is the dialing side. */
  connect(aTimers: TimerSource, bTimers: TimerSource, label: string): SimConnection {
    const connection = new SimConnection(this, aTimers, bTimers, label);
    this.#connections.add(connection);
    return connection;
  }

  /** @internal */
  forget(connection: SimConnection): void {
    this.#connections.delete(connection);
  }

  /** Frames sent and not delivered yet, over every open connection. */
  get queuedFrames(): number {
    let count = 0;
    for (const connection of this.#connections) count += connection.queued;
    return count;
  }

  /**
   * Delivers the oldest frame of one direction chosen by `random` among those `only` accepts
   * (by the connection's label and direction: toB is dialer -> listener); false when none is queued.
   */
  deliverOne(random: Random, only: (label: string, toB: boolean) => boolean = () => true): boolean {
    const candidates: { connection: SimConnection; toB: boolean }[] = [];
    for (const connection of this.#connections) {
      if (connection.queueTo(true).length > 0 && only(connection.label, true)) candidates.push({ connection, toB: true });
      if (connection.queueTo(false).length > 0 && only(connection.label, false)) candidates.push({ connection, toB: false });
    }
    if (candidates.length === 0) return false;
    const pick = candidates[random.nextInt(candidates.length)]!;
    pick.connection.deliver(pick.toB);
    return true;
  }
}

export class SimConnection {
  readonly a: PipeEnd;
  readonly b: PipeEnd;
  readonly #toB: Frame[] = [];
  readonly #toA: Frame[] = [];
  #open = true;

  constructor(private readonly network: SimNetwork, aTimers: TimerSource, bTimers: TimerSource, readonly label: string) {
    this.a = new PipeEnd(this, true, aTimers);
    this.b = new PipeEnd(this, false, bTimers);
  }

  get isOpen(): boolean {
    return this.#open;
  }

  get queued(): number {
    return this.#toA.length + this.#toB.length;
  }

  queueTo(toB: boolean): Frame[] {
    return toB ? this.#toB : this.#toA;
  }

  /** @internal An end sends: through the codec, into the queue towards the other end. */
  enqueue(fromA: boolean, message: Message, payload: Uint8Array): void {
    const frame = decodeFrame(encodeFrameBytes(message, payload));
    this.queueTo(fromA).push(frame);
    this.network.activity.bump();
  }

  /** @internal */
  deliver(toB: boolean): void {
    const frame = this.queueTo(toB).shift();
    if (frame === undefined || !this.#open) return;
    this.network.activity.bump();
    (toB ? this.b : this.a).arrive(frame);
  }

  /** Ends the connection for both ends; queued frames are lost. */
  abort(reason: DruvaaError = new DruvaaError("NET_RESET", `${this.label}: connection reset`)): void {
    if (!this.#open) return;
    this.#open = false;
    this.#toA.length = 0;
    this.#toB.length = 0;
    this.network.forget(this);
    this.network.activity.bump();
    this.a.shut(reason);
    this.b.shut(reason);
  }
}

/**
 * One end of a connection. Push mode (onFrame) or pull mode (receive), as the real Connection;
 * it is a RelayLink, so the staging relay uses it directly.
 */
export class PipeEnd implements RelayLink {
  readonly #inbox: Frame[] = [];
  #handler: ((frame: Frame) => void) | undefined;
  #waiter: Waiter | undefined;
  #reason: DruvaaError | undefined;
  #resolveClosed!: (reason: DruvaaError | undefined) => void;
  readonly closed = new Promise<DruvaaError | undefined>((resolve) => (this.#resolveClosed = resolve));

  constructor(private readonly connection: SimConnection, private readonly isA: boolean, private readonly timers: TimerSource) {}

  get isOpen(): boolean {
    return this.#reason === undefined;
  }

  async send(message: Message, payload: Uint8Array = empty): Promise<void> {
    if (this.#reason !== undefined) throw this.#reason;
    this.connection.enqueue(this.isA, message, payload);
  }

  /** Push mode: every frame goes to `handler` as it arrives (frames already waiting first). */
  onFrame(handler: (frame: Frame) => void): void {
    this.#handler = handler;
    for (const frame of this.#inbox.splice(0)) handler(frame);
  }

  receive(timeoutMs?: number): Promise<Frame> {
    const frame = this.#inbox.shift();
    if (frame !== undefined) return Promise.resolve(frame);
    if (this.#reason !== undefined) return Promise.reject(this.#reason);
    return new Promise<Frame>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject };
      this.#waiter = waiter;
      if (timeoutMs !== undefined) {
        waiter.cancelTimer = this.timers.schedule(timeoutMs, () => {
          if (this.#waiter !== waiter) return;
          this.#waiter = undefined;
          reject(new DruvaaError("NET_TIMEOUT", `no frame within ${timeoutMs} ms`));
        });
      }
    });
  }

  async close(reason?: DruvaaError): Promise<void> {
    this.connection.abort(reason);
  }

  abort(reason?: DruvaaError): void {
    this.connection.abort(reason);
  }

  /** @internal A frame from the peer. */
  arrive(frame: Frame): void {
    if (this.#handler !== undefined) {
      this.#handler(frame);
      return;
    }
    const waiter = this.#waiter;
    if (waiter === undefined) {
      this.#inbox.push(frame);
      return;
    }
    this.#waiter = undefined;
    waiter.cancelTimer?.();
    waiter.resolve(frame);
  }

  /** @internal The connection ended. */
  shut(reason: DruvaaError): void {
    if (this.#reason !== undefined) return;
    this.#reason = reason;
    this.#inbox.length = 0;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter !== undefined) {
      waiter.cancelTimer?.();
      waiter.reject(reason);
    }
    this.#resolveClosed(reason);
  }
}
