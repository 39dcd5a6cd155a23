/**
 * Metric history: after each poll round (Monitor's onRound) the samples history-derive.ts reads
 * from the statuses go into metric_samples (migration 4) as tier 0; whole minutes of tier 0 fold
 * into tier 1 (per-minute averages), whole quarter hours of tier 1 into tier 2. A fold is
 * idempotent (INSERT OR REPLACE of the bucket's average), and starts after the newest bucket the
 * coarser tier holds, so a restart neither loses nor double counts a bucket still in the finer
 * tier. Each tier is kept metricTierKeepMs, and at most metricRowsPerSeriesMax rows per series and
 * tier (only tier 0 can reach it: a fast poll); pruning visits metricPruneSeriesPerRound series per round and deletes at most
 * metricPruneRowsPerRoundMax rows, so a round's work is bounded even after a long outage.
 *
 * Not guaranteed: a sample per round (a component that does not answer has none: gaps show it),
 * nor exact averages across a restart mid-bucket (the bucket averages what tier 0 holds).
 *
 *   GET /api/metrics/series                      viewer  {series: [{name, unit, component}]}
 *   GET /api/metrics?series=&fromMs=&toMs=       viewer  {series, unit, tier, bucketMs, points: [[tMs, value], …]}
 */
import type { Database } from "bun:sqlite";
import { assert } from "../../assert.ts";
import { logger } from "../../log.ts";
import { metricPointsMax, metricPruneRowsPerRoundMax, metricPruneSeriesPerRound, metricRowsPerSeriesMax, metricSeriesMax, metricTierKeepMs, metricTierStepMs } from "./constants.ts";
import { databaseOf } from "./history-db.ts";
import { CounterMemory, deriveSamples, unitOf } from "./history-derive.ts";
import { ApiError, badField } from "./http.ts";
import type { ComponentStatus } from "./monitor.ts";
import type { PanelStore } from "./store.ts";

const log = logger("panel:history");

const tiers = [0, 1, 2] as const;
type Tier = (typeof tiers)[number];

export interface MetricHistoryOptions {
  nowMs?: () => number;
  /** Tests lower it; the default is metricRowsPerSeriesMax. */
  rowsPerSeriesMax?: number;
}

export class MetricHistory {
  private readonly db: Database;
  private readonly nowMs: () => number;
  private readonly rowsPerSeriesMax: number;
  private readonly counters = new CounterMemory();
  /** Known series, sorted (pruning's round robin walks it); loaded from the database once. */
  private known: string[] | undefined;
  private pruneCursor = 0;
  /** foldedToMs[k]: tier k holds every whole bucket before this time (k = 1, 2). */
  private readonly foldedToMs: number[] = [0, 0, 0];
  private warnedSeriesMax = false;

  constructor(store: PanelStore, options: MetricHistoryOptions = {}) {
    this.db = databaseOf(store);
    this.nowMs = options.nowMs ?? Date.now;
    this.rowsPerSeriesMax = options.rowsPerSeriesMax ?? metricRowsPerSeriesMax;
  }

  private loadOnce(): string[] {
    if (this.known !== undefined) return this.known;
    this.known = (this.db.query("SELECT DISTINCT series FROM metric_samples ORDER BY series").all() as { series: string }[]).map((row) => row.series).sort();
    const now = this.nowMs();
    for (const tier of [1, 2] as const) {
      const step = metricTierStepMs[tier];
      // Per series (an index lookup each), not one max over the whole table (a full scan).
      const newest = this.db.query("SELECT max(t_ms) AS t FROM metric_samples WHERE series = $series AND tier = $tier");
      let last: number | undefined;
      for (const series of this.known) {
        const row = newest.get({ series, tier }) as { t: bigint | null };
        if (row.t !== null) last = Math.max(last ?? 0, Number(row.t));
      }
      const floor = Math.floor((now - metricTierKeepMs[tier === 1 ? 0 : 1]) / step) * step;
      this.foldedToMs[tier] = last === undefined ? floor : Math.max(floor, last + step);
    }
    return this.known;
  }

  /** Stores one round's samples, folds whole buckets, prunes a bounded share. One transaction. */
  record(statuses: readonly ComponentStatus[]): void {
    const now = this.nowMs();
    const known = this.loadOnce();
    const samples = deriveSamples(statuses, this.counters, now);
    const insert = this.db.query("INSERT OR REPLACE INTO metric_samples (series, tier, t_ms, value) VALUES ($series, 0, $t, $value)");
    this.db.transaction(() => {
      for (const sample of samples) {
        if (!this.isKnown(sample.series)) {
          if (known.length >= metricSeriesMax) {
            if (!this.warnedSeriesMax) log.warn(`metric history holds ${metricSeriesMax} series; new ones (${sample.series}) are not recorded`);
            this.warnedSeriesMax = true;
            continue;
          }
          known.splice(sortedIndex(known, sample.series), 0, sample.series);
        }
        insert.run({ series: sample.series, t: now, value: sample.value });
      }
      this.fold(1, now);
      this.fold(2, now);
      this.prune(now);
    })();
  }

  private isKnown(series: string): boolean {
    const known = this.known!;
    const index = sortedIndex(known, series);
    return known[index] === series;
  }

  /** Folds the whole buckets of tier `tier - 1` not yet folded into `tier`. */
  private fold(tier: 1 | 2, now: number): void {
    const step = metricTierStepMs[tier];
    assert(Number.isInteger(step) && step > 0, "tier step");
    const to = Math.floor(now / step) * step;
    // Not clamped to the finer tier's age: its rows past that age are pruned only after this fold.
    const from = this.foldedToMs[tier]!;
    if (to <= from) return;
    const fold = this.db.query(`INSERT OR REPLACE INTO metric_samples (series, tier, t_ms, value)
      SELECT series, ${tier}, (t_ms / ${step}) * ${step}, avg(value) FROM metric_samples
      WHERE series = $series AND tier = ${tier - 1} AND t_ms >= $from AND t_ms < $to GROUP BY t_ms / ${step}`);
    for (const series of this.known!) fold.run({ series, from, to });
    this.foldedToMs[tier] = to;
  }

  /** Deletes rows past their tier's age or over the per-series cap, for a few series (round robin). */
  private prune(now: number): void {
    const known = this.known!;
    let budget = metricPruneRowsPerRoundMax;
    const expire = this.db.query(`DELETE FROM metric_samples WHERE series = $series AND tier = $tier AND t_ms IN
      (SELECT t_ms FROM metric_samples WHERE series = $series AND tier = $tier AND t_ms < $cutoff ORDER BY t_ms LIMIT $limit)`);
    const capAt = this.db.query("SELECT t_ms FROM metric_samples WHERE series = $series AND tier = $tier ORDER BY t_ms DESC LIMIT 1 OFFSET $cap");
    const any = this.db.query("SELECT 1 FROM metric_samples WHERE series = $series LIMIT 1");
    const visits = Math.min(metricPruneSeriesPerRound, known.length);
    for (let visited = 0; visited < visits && budget > 0; visited += 1) {
      if (this.pruneCursor >= known.length) this.pruneCursor = 0;
      const series = known[this.pruneCursor]!;
      for (const tier of tiers) {
        budget -= expire.run({ series, tier, cutoff: now - metricTierKeepMs[tier], limit: budget }).changes;
      }
      // Only tier 0 can pass the cap (a fast poll): tiers 1 and 2 get one row per step, and their
      // age bound keeps them under it (constants.ts asserts so). The check costs O(cap).
      const over = capAt.get({ series, tier: 0, cap: this.rowsPerSeriesMax }) as { t_ms: bigint } | null;
      if (over !== null && budget > 0) budget -= expire.run({ series, tier: 0, cutoff: Number(over.t_ms) + 1, limit: budget }).changes;
      if (any.get({ series }) === null) known.splice(this.pruneCursor, 1); // every row aged out: the series is gone
      else this.pruneCursor += 1;
    }
  }

  seriesList(): { name: string; unit: string; component: string }[] {
    return this.loadOnce().map((name) => ({ name, unit: unitOf(name), component: name.slice(0, name.indexOf("/")) }));
  }

  /** The rows of `series` in [fromMs, toMs] from the finest tier holding fromMs, then the finer tiers' rows not yet folded into it. */
  private rowsOf(series: string, fromMs: number, toMs: number): { tier: Tier; rows: { t_ms: bigint; value: number }[] } {
    this.loadOnce();
    const now = this.nowMs();
    const tier: Tier = tiers.find((k) => fromMs >= now - metricTierKeepMs[k]) ?? 2;
    const select = this.db.query("SELECT t_ms, value FROM metric_samples WHERE series = $series AND tier = $tier AND t_ms >= $lo AND t_ms < $hi ORDER BY t_ms");
    const rows: { t_ms: bigint; value: number }[] = [];
    for (let k = tier; k >= 0; k -= 1) {
      const lo = k === tier ? fromMs : Math.max(fromMs, this.foldedToMs[k + 1]!);
      const hi = k === 0 ? toMs + 1 : Math.min(toMs + 1, this.foldedToMs[k]!);
      if (lo < hi) rows.push(...(select.all({ series, tier: k, lo, hi }) as { t_ms: bigint; value: number }[]));
    }
    return { tier, rows };
  }

  /**
   * The points of `series` in [fromMs, toMs]: from the finest tier that still holds fromMs, with
   * the newest part not yet folded into it taken from the finer tiers; averaged into at most
   * metricPointsMax buckets of equal width (each point: the bucket's first time, its mean).
   */
  query(series: string, fromMs: number, toMs: number): { tier: Tier; bucketMs: number; points: [number, number][] } {
    assert(fromMs <= toMs, "query range");
    const { tier, rows } = this.rowsOf(series, fromMs, toMs);
    const bucketMs = Math.max(1, Math.ceil((toMs - fromMs + 1) / metricPointsMax));
    const points: [number, number][] = [];
    let bucket = -1;
    let sum = 0;
    let count = 0;
    for (const row of rows) {
      const t = Number(row.t_ms);
      const index = Math.floor((t - fromMs) / bucketMs);
      if (index !== bucket) {
        if (count > 0) points[points.length - 1]![1] = sum / count;
        points.push([t, 0]);
        bucket = index;
        sum = 0;
        count = 0;
      }
      sum += row.value;
      count += 1;
    }
    if (count > 0) points[points.length - 1]![1] = sum / count;
    assert(points.length <= metricPointsMax, "points bound");
    return { tier, bucketMs, points };
  }

  /** min/avg/max of `series` since `fromMs` (the digest's summary): over the rows a query of that range reads. */
  summary(series: string, fromMs: number): { min: number; avg: number; max: number; samples: number } | undefined {
    const { rows } = this.rowsOf(series, fromMs, this.nowMs());
    if (rows.length === 0) return undefined;
    let [min, max, sum] = [Infinity, -Infinity, 0];
    for (const row of rows) {
      min = Math.min(min, row.value);
      max = Math.max(max, row.value);
      sum += row.value;
    }
    return { min, avg: sum / rows.length, max, samples: rows.length };
  }

  // Routes

  seriesRoute(): unknown {
    return { ok: true, series: this.seriesList() };
  }

  metricsRoute(url: URL): unknown {
    const series = url.searchParams.get("series");
    if (series === null || series === "") throw badField("series", "is required", "GET /api/metrics/series lists them");
    if (series.length > 1024 || !this.isKnownLoaded(series)) throw new ApiError(404, "NOT_FOUND", `series: no metric series "${series.slice(0, 200)}"`, "GET /api/metrics/series lists them");
    const toMs = timeParam(url, "toMs") ?? this.nowMs();
    const fromMs = timeParam(url, "fromMs") ?? toMs - metricTierKeepMs[0];
    if (fromMs > toMs) throw badField("fromMs", "must not be after toMs");
    const result = this.query(series, fromMs, toMs);
    return { ok: true, series, unit: unitOf(series), fromMs, toMs, ...result };
  }

  private isKnownLoaded(series: string): boolean {
    this.loadOnce();
    return this.isKnown(series);
  }
}

function sortedIndex(list: readonly string[], value: string): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A ?name= time in epoch ms, or undefined when absent. */
function timeParam(url: URL, name: string): number | undefined {
  const text = url.searchParams.get(name);
  if (text === null || text === "") return undefined;
  if (!/^\d{1,15}$/.test(text)) throw badField(name, "must be a time in milliseconds since 1970 (a whole number)", `e.g. ${name}=${Date.now()}`);
  return Number(text);
}
