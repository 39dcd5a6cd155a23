/**
 * Reading a role's status JSON defensively, for the metrics: the status is the role's to shape
 * (docs/pipeline.md "Status": fields are added, never renamed), so every reader here answers
 * `undefined` for a field that is absent, null or of another type, and the metric is then not
 * emitted at all (never reported as 0).
 *
 * A FieldMetric table names, for one family, the status fields tried in order: the first that
 * holds a finite number (or a boolean, as 1/0) gives the value. A second name is a fallback
 * with its own meaning (e.g. `rpoSeconds`, else `lagSeconds`), not an alternate spelling: the
 * status field names are the producers' (src/roles/*), so a table names exactly those.
 */
import type { Labels, MetricSet, MetricType } from "./prometheus.ts";

export type StatusObject = Readonly<Record<string, unknown>>;

export function asObject(value: unknown): StatusObject | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as StatusObject) : undefined;
}

/** The objects in list field `key` (entries that are not objects are skipped). */
export function objectList(source: StatusObject, key: string): StatusObject[] {
  const value = source[key];
  if (!Array.isArray(value)) return [];
  return value.flatMap((entry) => {
    const object = asObject(entry);
    return object === undefined ? [] : [object];
  });
}

export function stringField(source: StatusObject, key: string): string | undefined {
  const value = source[key];
  return typeof value === "string" ? value : undefined;
}

/** The first of `keys` holding a finite number, or a boolean (1/0). */
export function numberField(source: StatusObject, ...keys: string[]): number | undefined {
  for (const key of keys) {
    const value = source[key];
    if (typeof value === "number" && Number.isFinite(value)) return value;
    if (typeof value === "boolean") return value ? 1 : 0;
  }
  return undefined;
}

/** An ISO-8601 time (e.g. `lastAppliedAt`, `lastError.at`) as seconds since the epoch. */
export function timestampSeconds(value: unknown): number | undefined {
  if (typeof value !== "string") return undefined;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms / 1000 : undefined;
}

export interface FieldMetric {
  /** Family name: `druvaa_…`, unit last (`_bytes`, `_seconds`, `_ratio`), `_total` for counters. */
  name: string;
  type: MetricType;
  help: string;
  /** Status fields tried in order (see numberField). */
  fields: readonly string[];
}

/** Emits every metric of `table` whose field `source` has, with `labels`. */
export function emitFields(metrics: MetricSet, source: StatusObject, labels: Labels, table: readonly FieldMetric[]): void {
  for (const spec of table) {
    const value = numberField(source, ...spec.fields);
    if (value === undefined) continue;
    const family = spec.type === "counter" ? metrics.counter(spec.name, spec.help) : metrics.gauge(spec.name, spec.help);
    family.set(labels, value);
  }
}

/**
 * A state set: one sample per known state (1 for the current one, 0 for the others), so alerts
 * can test `== 1` and graphs see a state end. A state druvaa adds later is still shown (as 1).
 */
export function emitStateSet(metrics: MetricSet, name: string, help: string, labels: Labels, label: string, known: readonly string[], current: string | undefined): void {
  if (current === undefined) return;
  const family = metrics.gauge(name, help);
  for (const state of known.includes(current) ? known : [...known, current]) family.set({ ...labels, [label]: state }, state === current ? 1 : 0);
}

/** `lastError {code, message, hint?, at}` of a link: when it happened, and its code as an info metric. */
export function emitLastError(metrics: MetricSet, prefix: string, what: string, labels: Labels, lastError: unknown): void {
  const error = asObject(lastError);
  if (error === undefined) return;
  const at = timestampSeconds(error.at);
  if (at !== undefined) metrics.gauge(`${prefix}_last_error_timestamp_seconds`, `When the ${what} last failed (seconds since the epoch); absent while it never did`).set(labels, at);
  const code = stringField(error, "code");
  if (code !== undefined) metrics.gauge(`${prefix}_last_error_info`, `The ${what}'s last error code (always 1; see the role's log for the message)`).set({ ...labels, code }, 1);
}
