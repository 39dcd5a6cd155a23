/**
 * RPO as a target for one relay (`druvaa staging serve --rpo 30s`, per WRL): every
 * rpoSampleIntervalMs of the relay's Clock the WRL's lag (lag.ts: the age of the oldest record the
 * replica has not acknowledged, the bytes behind, the running totals appended and acknowledged)
 * goes into an RpoTracker (rpo.ts), which gives the status `rpo {targetSeconds, rpoSeconds, trend,
 * drainEtaSeconds, state}` and one event per change of state.
 *
 * On each change of state:
 *   to at-risk or missed    logged as a warning; the event is kept (RecentEvents, the staging
 *                             status `events`, for the panel); compression is boosted
 *                             (compression.ts: auto at level 3 at least, never paused)
 *   back to ok              logged as info; the event is kept; the boost is lifted
 * Without a target the figures are still sampled (status), and there are never events.
 *
 * Span adaptation: while the target is at risk, the relay's coalescing (relay-coalesce.ts) takes
 * its largest spans (fewer bytes on the wire) when the replica takes coalesced shipments.
 */
import type { ConsolaInstance } from "consola/basic";
import { assert } from "../../assert.ts";
import type { LagTracker } from "./lag.ts";
import type { Clock } from "./relay-clock.ts";
import { RpoTracker, type RpoEvent, type RpoStatus } from "./rpo.ts";

/** How often the RPO is sampled (relay Clock). */
export const rpoSampleIntervalMs = 1000;
/** Events the staging status keeps (the oldest are dropped first). */
export const stagingEventsMax = 100;

assert(rpoSampleIntervalMs > 0 && stagingEventsMax > 0, "RPO sampling bounds are positive");

/** The most recent events, oldest first, at most `max`. */
export class RecentEvents<T> {
  readonly #events: T[] = [];
  constructor(private readonly max = stagingEventsMax) {}

  push(event: T): void {
    this.#events.push(event);
    if (this.#events.length > this.max) this.#events.splice(0, this.#events.length - this.max);
  }

  list(): T[] {
    return [...this.#events];
  }
}

export interface RpoMonitorOptions {
  wrl: string;
  targetSeconds: number | null;
  lag: LagTracker;
  /** True when the replica acknowledged everything appended (the lag is then 0, as in the status). */
  drained: () => boolean;
  clock: Clock;
  log: ConsolaInstance;
  /** Each change of state (none without a target). */
  onEvent?: (event: RpoEvent) => void;
  /** Called with true when the target becomes at risk or missed, false when it is back to ok. */
  boost: (on: boolean) => void;
}

export class RpoMonitor {
  readonly #o: RpoMonitorOptions;
  readonly #tracker: RpoTracker;
  #cancel: (() => void) | undefined;

  constructor(options: RpoMonitorOptions) {
    this.#o = options;
    this.#tracker = new RpoTracker(options.wrl, options.targetSeconds);
  }

  /** Samples now and then every rpoSampleIntervalMs until stop(). */
  start(): void {
    if (this.#cancel === undefined) this.#sample();
  }

  stop(): void {
    this.#cancel?.();
    this.#cancel = undefined;
  }

  status(): RpoStatus {
    return this.#tracker.status();
  }

  /** The state as of the last sample (what status().state says, without recomputing the trend). */
  get state(): RpoStatus["state"] {
    return this.#tracker.state;
  }

  #sample(): void {
    const { lag, clock } = this.#o;
    const nowMs = clock.now();
    const drained = this.#o.drained();
    const event = this.#tracker.sample({ nowMs, lagSeconds: drained ? 0 : lag.lagSeconds(nowMs), lagBytes: drained ? 0 : lag.lagBytes(), appendedBytes: lag.appendedBytes, ackedBytes: lag.ackedBytes });
    if (event !== undefined) {
      if (event.to === "ok") this.#o.log.info(event.message);
      else this.#o.log.warn(event.message);
      this.#o.onEvent?.(event);
      this.#o.boost(event.to !== "ok");
    }
    this.#cancel = clock.schedule(rpoSampleIntervalMs, () => this.#sample());
  }
}
