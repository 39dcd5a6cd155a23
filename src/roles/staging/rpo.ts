/**
 * RPO as a target (`--rpo 30s` per WRL): what the current recovery point is, where it is heading,
 * when the backlog will be gone, and whether the target is at risk.
 *
 * Fed once per sample (the relay's status tick, or any call) with the WRL's lag — lagSeconds is
 * the age of the oldest record the replica has not made durable, i.e. the data a disaster now
 * would lose — and the running totals of bytes appended and acknowledged. Keeps the last
 * rpoWindowSamples samples (a sliding window, memory bounded).
 *
 *   rpoSeconds     the current RPO (= lagSeconds)
 *   trend          "rising" | "falling" | "steady": least-squares slope of the RPO over the window,
 *                  steady within ±rpoSteadySlope seconds per second
 *   drainEtaSeconds  lagBytes / (ack rate − append rate) over the window when the backlog shrinks;
 *                  0 when there is none; null when it is not shrinking
 *   state          "ok" | "at-risk" | "missed": missed when rpoSeconds > target; at risk when
 *                  above rpoRiskFraction of the target and not falling, or when the ETA to drain
 *                  is longer than the target
 * Transitions of `state` are returned by sample() as events (for the log, the panel, /metrics),
 * once per change: never a stream of the same alert.
 */
export const rpoWindowSamples = 30;
export const rpoSteadySlope = 0.05;
export const rpoRiskFraction = 0.5;

export type RpoState = "ok" | "at-risk" | "missed";

export interface RpoSample {
  nowMs: number;
  lagSeconds: number;
  lagBytes: number;
  /** Running totals since start. */
  appendedBytes: number;
  ackedBytes: number;
}

export interface RpoStatus {
  targetSeconds: number | null;
  rpoSeconds: number;
  trend: "rising" | "falling" | "steady";
  drainEtaSeconds: number | null;
  state: RpoState;
}

export interface RpoEvent {
  /** What kind of event (the staging status' `events` may hold other kinds later). */
  kind: "rpo";
  at: string;
  wrl: string;
  from: RpoState;
  to: RpoState;
  rpoSeconds: number;
  targetSeconds: number;
  message: string;
}

export class RpoTracker {
  readonly #samples: RpoSample[] = [];
  #state: RpoState = "ok";

  constructor(private readonly wrl: string, readonly targetSeconds: number | null) {}

  /** Adds a sample; answers the state change it caused, if any. */
  sample(sample: RpoSample): RpoEvent | undefined {
    const last = this.#samples[this.#samples.length - 1];
    if (last !== undefined && sample.nowMs <= last.nowMs) this.#samples.pop(); // same instant: the newer wins
    this.#samples.push(sample);
    if (this.#samples.length > rpoWindowSamples) this.#samples.shift();
    const status = this.status();
    if (this.targetSeconds === null || status.state === this.#state) return undefined;
    const from = this.#state;
    this.#state = status.state;
    const what = status.state === "ok" ? "back within" : status.state === "at-risk" ? "at risk of missing" : "missed";
    return {
      kind: "rpo",
      at: new Date(sample.nowMs).toISOString(),
      wrl: this.wrl,
      from,
      to: status.state,
      rpoSeconds: status.rpoSeconds,
      targetSeconds: this.targetSeconds,
      message: `WRL ${this.wrl}: RPO ${status.rpoSeconds.toFixed(1)} s, ${what} the ${this.targetSeconds} s target (trend ${status.trend}${status.drainEtaSeconds === null ? ", not draining" : `, drained in ~${Math.ceil(status.drainEtaSeconds)} s`})`,
    };
  }

  get state(): RpoState {
    return this.#state;
  }

  status(): RpoStatus {
    const samples = this.#samples;
    const last = samples[samples.length - 1];
    const rpoSeconds = last?.lagSeconds ?? 0;
    const trend = trendOf(samples);
    const drainEtaSeconds = etaOf(samples);
    const target = this.targetSeconds;
    let state: RpoState = "ok";
    if (target !== null) {
      if (rpoSeconds > target) state = "missed";
      else if ((rpoSeconds > target * rpoRiskFraction && trend !== "falling") || (drainEtaSeconds === null && rpoSeconds > target * rpoRiskFraction) || (drainEtaSeconds !== null && drainEtaSeconds > target)) state = "at-risk";
    }
    return { targetSeconds: target, rpoSeconds, trend, drainEtaSeconds, state };
  }
}

/** Least-squares slope of lagSeconds over time (seconds per second), as a trend. */
function trendOf(samples: readonly RpoSample[]): RpoStatus["trend"] {
  if (samples.length < 3) return "steady";
  const t0 = samples[0]!.nowMs;
  const xs = samples.map((s) => (s.nowMs - t0) / 1000);
  const ys = samples.map((s) => s.lagSeconds);
  const n = samples.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i += 1) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  const slope = den === 0 ? 0 : num / den;
  return slope > rpoSteadySlope ? "rising" : slope < -rpoSteadySlope ? "falling" : "steady";
}

/** Seconds until the backlog is gone at the window's net drain rate; null when it does not shrink. */
function etaOf(samples: readonly RpoSample[]): number | null {
  const last = samples[samples.length - 1];
  if (last === undefined || last.lagBytes === 0) return 0;
  const first = samples[0]!;
  const seconds = (last.nowMs - first.nowMs) / 1000;
  if (seconds <= 0) return null;
  const netBytesPerSecond = (last.ackedBytes - first.ackedBytes - (last.appendedBytes - first.appendedBytes)) / seconds;
  return netBytesPerSecond > 0 ? last.lagBytes / netBytesPerSecond : null;
}
