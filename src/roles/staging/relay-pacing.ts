/**
 * What a relay (relay.ts) may send, and when: the bandwidth cap (`druvaa staging serve
 * --rate-limit 20Mbit`) and the transfer windows (`--schedule "Mon-Fri 19:00-07:00, Sat-Sun"`,
 * src/schedule.ts). Both run on the relay's Clock, so a simulation or a test moves time itself.
 *
 * Rate limit: a token bucket over whole frames — preamble, CBOR header and payload, of every
 * message the relay sends (resume and pong too, not only shipment payloads) — in GCRA form: one
 * number, readyAtMs, the instant the bucket is back at zero tokens. A frame may go when the bucket
 * is not in debt (now >= readyAtMs); sending it costs its bytes, which may put the bucket into
 * debt (a frame is never split, so a big one goes at once and the next waits for it to drain):
 *
 *   take(bytes, now):   readyAtMs = max(readyAtMs, now - burstMs) + bytes * 1000 / bytesPerSecond
 *   delayMs(now):       max(0, readyAtMs - now)
 *
 * So while shipments queue up, frame k+1 leaves exactly bytes(k) / rate after frame k, whatever
 * the time it took to prepare it; after an idle spell the bucket holds at most burstMs of the
 * rate (relayRateBurstMs: a small burst, so a link that was idle is not flooded). One
 * RateLimiter may be shared by several relays (the server-wide --rate-limit, relay-flags.ts):
 * they then take turns on the same bucket.
 *
 * Schedule: isOpen() says whether a window is open now (cached until the schedule's next change);
 * untilOpen() sleeps until the next opening, re-checking at least every relayScheduleRecheckMsMax
 * (a wall clock that jumps — NTP, a suspended VM — is caught up with). What the relay does at a
 * window's edges is in relay.ts.
 *
 * Not guaranteed: a rate on the wire. The bucket paces what the relay hands to its connection;
 * the socket and the kernel still send each frame as fast as the link takes it.
 */
import type { ConsolaInstance } from "consola/basic";
import { assert } from "../../assert.ts";
import type { Message } from "../../protocol/messages.ts";
import { encodeFrame } from "../../protocol/frame.ts";
import type { Schedule } from "../../schedule.ts";
import { Signal, type Clock } from "./relay-clock.ts";

/** The burst a rate limit allows after an idle spell: this long of its rate. */
export const relayRateBurstMs = 100;
/** The lowest --rate-limit (8 kbit/s): below it a full shipment (2 MiB) would take over half an hour. */
export const relayRateBytesPerSecondMin = 1000;
/** A relay waiting for a window to open looks at the wall clock again at least this often. */
export const relayScheduleRecheckMsMax = 60 * 60 * 1000;

assert(relayRateBurstMs > 0 && relayScheduleRecheckMsMax > 0, "pacing bounds are positive");

/** The window of a relay without a schedule (one object: isOpen() runs on every turn of the shipping loop). */
const alwaysOpen: { readonly open: true; readonly untilMs: number } = { open: true, untilMs: Number.POSITIVE_INFINITY };

/** Bytes of the frame `message` + `payload` on the wire (what the peer's decoder reads). */
export function frameBytesOf(message: Message, payload?: Uint8Array): number {
  return encodeFrame(message, payload).reduce((sum, chunk) => sum + chunk.length, 0);
}

/** A token bucket (GCRA, see above) with a rate in bytes per second; times are Clock milliseconds. */
export class RateLimiter {
  readonly burstMs: number;
  #readyAtMs = Number.NEGATIVE_INFINITY;

  /** `scope`: "server" when every WRL without its own limit shares it, "wrl" when it is one WRL's own. */
  constructor(readonly bytesPerSecond: number, readonly scope: "server" | "wrl" = "wrl", burstMs = relayRateBurstMs) {
    assert(bytesPerSecond > 0 && Number.isFinite(bytesPerSecond), "a rate limit is a positive rate");
    assert(burstMs >= 0, "the burst is not negative");
    this.burstMs = burstMs;
  }

  get burstBytes(): number {
    return (this.bytesPerSecond * this.burstMs) / 1000;
  }

  /** Milliseconds until a frame may go, at `nowMs` (0: now). */
  delayMs(nowMs: number): number {
    return Math.max(0, this.#readyAtMs - nowMs);
  }

  /** A frame of `bytes` goes at `nowMs`: the bucket pays for it (it may go into debt). */
  take(bytes: number, nowMs: number): void {
    this.#readyAtMs = Math.max(this.#readyAtMs, nowMs - this.burstMs) + (bytes * 1000) / this.bytesPerSecond;
  }

  /** Tokens at `nowMs` in bytes: up to burstBytes, negative while in debt. */
  tokens(nowMs: number): number {
    return Math.min(this.burstBytes, ((nowMs - this.#readyAtMs) * this.bytesPerSecond) / 1000);
  }
}

export interface RateLimitStatus {
  bytesPerSecond: number;
  burstBytes: number;
  /** "server": shared by every WRL without a limit of its own; "wrl": this WRL's own. */
  scope: "server" | "wrl";
  /** Frame bytes this relay sent through the limit (headers and control messages included). */
  frameBytes: number;
  /** Time this relay waited for the limit (ms, its Clock). */
  waitedMs: number;
}

export interface ScheduleStatus {
  schedule: string;
  open: boolean;
  /** When the window opens or closes next (ISO), null if never. */
  nextChangeAt: string | null;
}

/** One relay's rate limit and schedule; the waits end early on interrupt() (session end, stop). */
export class RelayGate {
  readonly #rate: RateLimiter | undefined;
  readonly #schedule: Schedule | undefined;
  readonly #clock: Clock;
  readonly #log: ConsolaInstance | undefined;
  readonly #wake = new Signal();
  #window: { open: boolean; fromMs: number; untilMs: number } | undefined;
  #frameBytes = 0;
  #waitedMs = 0;

  /** `log`: where the waits for a window are told (the relay's). */
  constructor(clock: Clock, rate?: RateLimiter, schedule?: Schedule, log?: ConsolaInstance) {
    this.#clock = clock;
    this.#log = log;
    this.#rate = rate;
    this.#schedule = schedule;
  }

  /** Whether the schedule lets the relay ship now (always, without one). */
  isOpen(): boolean {
    return this.#windowNow().open;
  }

  /** Milliseconds until the window opens or closes (Infinity without a schedule). */
  msUntilChange(): number {
    return this.#windowNow().untilMs - this.#clock.now();
  }

  /** Resolves once a window is open, or as soon as `stopped()` after an interrupt(). */
  async untilOpen(stopped: () => boolean): Promise<void> {
    if (this.isOpen()) return;
    this.#log?.info(`outside the windows of --schedule "${this.#schedule?.text}": nothing is shipped (the WRL buffers) until ${this.status().schedule?.nextChangeAt}`);
    while (!stopped() && !this.isOpen()) {
      await this.#wake.wait(this.#clock, Math.min(this.msUntilChange(), relayScheduleRecheckMsMax));
    }
    if (!stopped()) this.#log?.info(`a window of --schedule "${this.#schedule?.text}" opened: shipping until ${this.status().schedule?.nextChangeAt ?? "further notice"}`);
  }

  /**
   * Waits until the rate limit lets the frame go, then pays for it; answers the milliseconds
   * waited. Returns without paying when `cancelled()` after an interrupt(). No limit: 0 at once.
   */
  async pace(message: Message, payload: Uint8Array | undefined, cancelled: () => boolean): Promise<number> {
    const rate = this.#rate;
    if (rate === undefined) return 0;
    const bytes = frameBytesOf(message, payload);
    const startedMs = this.#clock.now();
    for (;;) {
      if (cancelled()) return this.#clock.now() - startedMs;
      const delayMs = rate.delayMs(this.#clock.now());
      if (delayMs <= 0) break;
      await this.#wake.wait(this.#clock, delayMs);
    }
    const nowMs = this.#clock.now();
    rate.take(bytes, nowMs);
    this.#frameBytes += bytes;
    this.#waitedMs += nowMs - startedMs;
    return nowMs - startedMs;
  }

  /** Pays for a frame sent without waiting (a pong: the replica's liveness check must not queue). */
  charge(message: Message, payload?: Uint8Array): void {
    if (this.#rate === undefined) return;
    const bytes = frameBytesOf(message, payload);
    this.#rate.take(bytes, this.#clock.now());
    this.#frameBytes += bytes;
  }

  /** Ends the current wait early (its caller then checks why). */
  interrupt(): void {
    this.#wake.wake();
  }

  status(): { rateLimit: RateLimitStatus | null; schedule: ScheduleStatus | null } {
    const rate = this.#rate;
    return {
      rateLimit: rate === undefined ? null : { bytesPerSecond: rate.bytesPerSecond, burstBytes: rate.burstBytes, scope: rate.scope, frameBytes: this.#frameBytes, waitedMs: this.#waitedMs },
      schedule: this.#schedule === undefined ? null : this.#schedule.status(this.#clock.now()),
    };
  }

  #windowNow(): { open: boolean; untilMs: number } {
    const schedule = this.#schedule;
    if (schedule === undefined) return alwaysOpen;
    const nowMs = this.#clock.now();
    const cached = this.#window;
    if (cached !== undefined && cached.fromMs <= nowMs && nowMs < cached.untilMs) return cached;
    this.#window = { open: schedule.isOpen(nowMs), fromMs: nowMs, untilMs: schedule.nextChange(nowMs) ?? Number.POSITIVE_INFINITY };
    return this.#window;
  }
}
