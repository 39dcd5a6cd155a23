/**
 * One direction of the WAN link emulator (src/io/wan-link.ts), in two layers:
 *
 *   - LinkShaper, the timing model: pure, no sockets, no timers. The caller passes the clock in
 *     (`nowMs`), so a schedule is a deterministic function of its inputs and tests check exact
 *     numbers;
 *   - ShapedPipe, which applies it to the byte stream of one direction of one connection: holds
 *     each segment until its arrival time (a timer), then writes it to the receiving socket
 *     through a SendQueue (Bun's partial writes), and pauses the sending socket while too much is
 *     inside. It never touches Bun: wan-link.ts hands it the sockets and feeds it their events.
 *
 * One LinkShaper models one direction of a full-duplex link, like one netem qdisc on one
 * interface: a chunk that enters the link at `nowMs` starts serializing when the link is free
 * (the previous chunk has finished), takes sizeBytes * 8 / rateBitsPerSecond to serialize, then
 * arrives delayMs later, give or take a uniform jitter in [-jitterMs, +jitterMs]. Unlike netem,
 * jitter never reorders: the emulator carries a TCP byte stream, so an arrival is held back to
 * the previous one's (which is what TCP's in-order delivery makes of reordered segments anyway).
 *
 * Not modelled: packet loss and retransmission, a bounded router queue (tail drop), congestion
 * control. Changing the rate or the delay affects chunks scheduled afterwards only.
 */
import { assert } from "../assert.ts";
import type { Random } from "./random.ts";
import { SendQueue } from "./send-queue.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
/** Default bound on the bytes of one direction of one connection inside the link. */
export const wanLinkQueueBytesMax = 4 * MiB;
/** Received chunks are cut into segments of at most this size, each scheduled on its own. */
export const wanLinkSegmentBytesMax = 64 * KiB;
/** A delivery timer delivers what is due within this much (timers fire late or early by ~1 ms). */
const wanLinkTimerSlackMs = 1;
assert(wanLinkSegmentBytesMax * 2 <= wanLinkQueueBytesMax, "a paused direction resumes after whole segments");

export interface LinkShape {
  /** One-way propagation delay. */
  delayMs: number;
  /** Each arrival moves by a uniform amount in [-jitterMs, +jitterMs] (order is kept). */
  jitterMs: number;
  /** Serialization rate; Infinity means no bandwidth limit (delay only). */
  rateBitsPerSecond: number;
}

/** When a chunk finishes serializing (leaves the sender) and when it reaches the receiver. */
export interface ChunkTiming {
  departMs: number;
  arriveMs: number;
}

export class LinkShaper {
  #shape: LinkShape;
  /** When the link finishes serializing what is scheduled so far. */
  #linkFreeMs = Number.NEGATIVE_INFINITY;
  #lastArriveMs = Number.NEGATIVE_INFINITY;

  /** `random` is needed only with jitter (a seeded source: the same seed, the same schedule). */
  constructor(shape: LinkShape, readonly random?: Random) {
    assertShape(shape);
    assert(shape.jitterMs === 0 || random !== undefined, "jitter needs a random source");
    this.#shape = { ...shape };
  }

  get shape(): Readonly<LinkShape> {
    return this.#shape;
  }

  /** Changes the rate for chunks scheduled from now on. */
  setRate(rateBitsPerSecond: number): void {
    assertShape({ ...this.#shape, rateBitsPerSecond });
    this.#shape.rateBitsPerSecond = rateBitsPerSecond;
  }

  /** Changes the delay for chunks scheduled from now on (never before an earlier arrival). */
  setDelay(delayMs: number): void {
    assertShape({ ...this.#shape, delayMs });
    this.#shape.delayMs = delayMs;
  }

  /** Forgets what is scheduled (the line is idle from now on); the shape stays. */
  forget(): void {
    this.#linkFreeMs = Number.NEGATIVE_INFINITY;
    this.#lastArriveMs = Number.NEGATIVE_INFINITY;
  }

  /** How long `sizeBytes` occupy the link at the current rate. */
  serializationMs(sizeBytes: number): number {
    return serializationMs(sizeBytes, this.#shape.rateBitsPerSecond);
  }

  /**
   * Schedules `sizeBytes` (0 for a FIN: it takes no link time but waits behind the data before
   * it) entering the link at `nowMs`. Calls must come with non-decreasing `nowMs`.
   */
  schedule(sizeBytes: number, nowMs: number): ChunkTiming {
    assert(Number.isInteger(sizeBytes) && sizeBytes >= 0, "size is a byte count");
    assert(Number.isFinite(nowMs), "now is a time");
    const startMs = Math.max(nowMs, this.#linkFreeMs);
    const departMs = startMs + this.serializationMs(sizeBytes);
    this.#linkFreeMs = departMs;
    const { delayMs, jitterMs } = this.#shape;
    const jitter = jitterMs === 0 ? 0 : (this.random!.nextFloat() * 2 - 1) * jitterMs;
    const arriveMs = Math.max(departMs + Math.max(0, delayMs + jitter), this.#lastArriveMs);
    this.#lastArriveMs = arriveMs;
    return { departMs, arriveMs };
  }
}

export function serializationMs(sizeBytes: number, rateBitsPerSecond: number): number {
  return rateBitsPerSecond === Number.POSITIVE_INFINITY ? 0 : (sizeBytes * 8 * 1000) / rateBitsPerSecond;
}

/**
 * Time to the next random connection cut when cuts come at random with a mean interval of
 * `meanMs` (a Poisson process: exponential intervals, so cuts are memoryless — a link that has
 * just flapped is as likely to flap again as one that has been stable for an hour).
 */
export function nextCutIntervalMs(random: Random, meanMs: number): number {
  assert(meanMs > 0 && Number.isFinite(meanMs), "mean cut interval is a positive duration");
  // 1 - u is in (0, 1]: the log is finite.
  return -Math.log(1 - random.nextFloat()) * meanMs;
}

function assertShape(shape: LinkShape): void {
  assert(Number.isFinite(shape.delayMs) && shape.delayMs >= 0, "delay is a duration");
  assert(Number.isFinite(shape.jitterMs) && shape.jitterMs >= 0, "jitter is a duration");
  assert(shape.rateBitsPerSecond > 0, "rate is positive (Infinity: unlimited)");
}

/** What a ShapedPipe is connected to (sockets are undefined while not connected yet). */
export interface PipeEnds {
  /** The sending socket: paused while more than queueBytesMax bytes are inside. */
  source(): { pause(): void; resume(): void } | undefined;
  /** The receiving socket: write() as SendQueue expects it (count taken, -1 when closed). */
  dest(): { write(data: Uint8Array): number } | undefined;
  delivered(bytes: number): void;
  /** The FIN has arrived and every byte before it has been written: half-close the receiver. */
  finDelivered(): void;
}

/**
 * One direction of one proxied connection: shaped in-flight segments, then the write queue.
 * Memory is bounded by queueBytesMax plus one received chunk (the sender is paused past it).
 */
export class ShapedPipe {
  /** Segments in arrival order; `undefined` bytes stand for the FIN. */
  #inFlight: { bytes: Uint8Array | undefined; arriveMs: number }[] = [];
  #head = 0;
  #inFlightBytes = 0;
  readonly #out = new SendQueue();
  #awaitingDrain = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #sourcePaused = false;
  #finPushed = false;
  #finArrived = false;
  #finDelivered = false;
  /** Nothing more goes anywhere: the receiving socket has closed, or the connection is done. */
  #stopped = false;

  constructor(readonly shaper: LinkShaper, readonly queueBytesMax: number, readonly ends: PipeEnds) {
    assert(queueBytesMax >= 2 * wanLinkSegmentBytesMax, "the queue bound holds whole segments");
  }

  /** Bytes inside: in flight, or arrived and waiting for the receiving socket. */
  get queuedBytes(): number {
    return this.#inFlightBytes + this.#out.bytes;
  }

  push(chunk: Uint8Array): void {
    if (this.#stopped) return;
    const nowMs = performance.now();
    for (let offset = 0; offset < chunk.length; offset += wanLinkSegmentBytesMax) {
      const bytes = chunk.subarray(offset, offset + wanLinkSegmentBytesMax);
      this.#inFlight.push({ bytes, arriveMs: this.shaper.schedule(bytes.length, nowMs).arriveMs });
      this.#inFlightBytes += bytes.length;
    }
    this.#updatePause();
    this.#arm();
  }

  pushFin(): void {
    if (this.#stopped || this.#finPushed) return;
    this.#finPushed = true;
    this.#inFlight.push({ bytes: undefined, arriveMs: this.shaper.schedule(0, performance.now()).arriveMs });
    this.#arm();
  }

  handleDrain(): void {
    this.#awaitingDrain = false;
    this.flush();
  }

  /** Writes what has arrived to the receiving socket, as much as it takes now. */
  flush(): void {
    const dest = this.ends.dest();
    if (this.#stopped || dest === undefined || this.#awaitingDrain) return;
    const before = this.#out.bytes;
    const outcome = this.#out.writeTo(dest);
    this.ends.delivered(before - this.#out.bytes);
    if (outcome === "closed") return; // its close handler follows
    if (outcome === "partial") this.#awaitingDrain = true;
    this.#out.compact();
    this.#updatePause();
    if (this.#finArrived && this.#out.bytes === 0 && !this.#finDelivered) {
      this.#finDelivered = true;
      this.ends.finDelivered();
    }
  }

  /** Drops everything queued and stops: the receiving socket is gone, or the connection is. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#inFlight = [];
    this.#head = 0;
    this.#inFlightBytes = 0;
    this.#out.clear();
    if (this.#sourcePaused) {
      this.#sourcePaused = false;
      this.ends.source()?.resume(); // keep reading (and discarding), so the sender's FIN still arrives
    }
  }

  #arm(): void {
    const next = this.#inFlight[this.#head];
    if (this.#timer !== undefined || next === undefined) return;
    this.#timer = setTimeout(() => this.#tick(), Math.max(0, next.arriveMs - performance.now()));
  }

  #tick(): void {
    this.#timer = undefined;
    const dueMs = performance.now() + wanLinkTimerSlackMs;
    for (let next = this.#inFlight[this.#head]; next !== undefined && next.arriveMs <= dueMs; next = this.#inFlight[this.#head]) {
      this.#head += 1;
      if (next.bytes === undefined) {
        this.#finArrived = true;
      } else {
        this.#inFlightBytes -= next.bytes.length;
        this.#out.push([next.bytes]);
      }
    }
    if (this.#head === this.#inFlight.length) {
      this.#inFlight = [];
      this.#head = 0;
    } else if (this.#head > 1024) {
      this.#inFlight = this.#inFlight.slice(this.#head);
      this.#head = 0;
    }
    this.flush();
    this.#arm();
  }

  #updatePause(): void {
    const queuedBytes = this.queuedBytes;
    if (!this.#sourcePaused && queuedBytes > this.queueBytesMax) {
      this.#sourcePaused = true;
      this.ends.source()?.pause();
    } else if (this.#sourcePaused && queuedBytes <= this.queueBytesMax / 2) {
      this.#sourcePaused = false;
      this.ends.source()?.resume();
    }
  }
}
