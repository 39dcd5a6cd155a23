/**
 * A small writer of the Prometheus text exposition format, version 0.0.4 (what every Prometheus
 * server and agent scrapes; served as `prometheusContentType`). Counters and gauges only: druvaa
 * reports no histograms or summaries.
 *
 * What it guarantees, for any label values and help texts:
 * - one `# HELP` and one `# TYPE` line per family, before its samples, and a family's samples
 *   together (families in the order they were first asked for, samples in the order set);
 * - label values escaped (backslash, double quote, newline), help texts escaped (backslash,
 *   newline); values as Go's ParseFloat reads them (`NaN`, `+Inf`, `-Inf`, JS number text);
 * - a family with no sample is left out entirely (a status field that is absent is not reported
 *   as 0), and the text ends with a newline (no `# EOF`: that is OpenMetrics, not 0.0.4).
 *
 * Names are druvaa's own, so a bad one is a bug and fails an assert, as do: a counter whose name
 * does not end in `_total` (or a gauge whose name does), a counter that is negative or not
 * finite, the same name asked for with another type or help, and a label set set twice in one
 * family (Prometheus would drop the scrape's duplicate samples).
 */
import { assert } from "../assert.ts";

export const prometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

export type MetricType = "counter" | "gauge";
export type Labels = Readonly<Record<string, string>>;

/** Metric names: the spec's `[a-zA-Z_:][a-zA-Z0-9_:]*`, without colons (kept for recording rules). */
const metricNamePattern = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** Label names: `[a-zA-Z_][a-zA-Z0-9_]*`; names starting with `__` are reserved for Prometheus. */
const labelNamePattern = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function isMetricName(name: string): boolean {
  return metricNamePattern.test(name);
}

export function isLabelName(name: string): boolean {
  return labelNamePattern.test(name) && !name.startsWith("__");
}

/** A label value inside its double quotes: `\` → `\\`, `"` → `\"`, newline → `\n`. */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (char) => (char === "\\" ? "\\\\" : char === '"' ? '\\"' : "\\n"));
}

/** A HELP text: `\` → `\\`, newline → `\n` (quotes stay as they are). */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (char) => (char === "\\" ? "\\\\" : "\\n"));
}

/** A sample value as the text format spells it (Go ParseFloat syntax). */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value); // "1e+21", "5e-7": ParseFloat reads both; -0 prints as "0"
}

interface Sample {
  labelText: string;
  value: number;
}

export class MetricFamily {
  readonly #samples: Sample[] = [];
  /** Label sets already set, as sorted `name=value` lists (order of the labels does not matter). */
  readonly #labelSets = new Set<string>();

  constructor(
    readonly name: string,
    readonly type: MetricType,
    readonly help: string,
  ) {
    assert(isMetricName(name), `metric name ${JSON.stringify(name)} is not [a-zA-Z_][a-zA-Z0-9_]*`);
    assert(type === "counter" ? name.endsWith("_total") : !name.endsWith("_total"), `${type} ${name}: counters, and only counters, end in _total`);
  }

  get sampleCount(): number {
    return this.#samples.length;
  }

  /** Adds one sample; each label set once per family. */
  set(labels: Labels, value: number): this {
    assert(typeof value === "number", `${this.name}: value ${String(value)} is not a number`);
    if (this.type === "counter") assert(Number.isFinite(value) && value >= 0, `counter ${this.name}: ${value} is not a finite count >= 0`);
    const names = Object.keys(labels);
    for (const label of names) {
      assert(isLabelName(label), `${this.name}: label name ${JSON.stringify(label)} is not [a-zA-Z_][a-zA-Z0-9_]* (or starts with __)`);
      assert(typeof labels[label] === "string", `${this.name}: label ${label} is not a string`);
    }
    const key = JSON.stringify(names.toSorted().map((label) => [label, labels[label]]));
    assert(!this.#labelSets.has(key), `${this.name}: label set ${key} set twice`);
    this.#labelSets.add(key);
    const labelText = names.length === 0 ? "" : `{${names.map((label) => `${label}="${escapeLabelValue(labels[label]!)}"`).join(",")}}`;
    this.#samples.push({ labelText, value });
    return this;
  }

  /** The family's lines (HELP, TYPE, samples), each ending in a newline; "" without samples. */
  render(): string {
    if (this.#samples.length === 0) return "";
    let text = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
    for (const sample of this.#samples) text += `${this.name}${sample.labelText} ${formatValue(sample.value)}\n`;
    return text;
  }
}

/** The families of one scrape, rendered in the order they were first asked for. */
export class MetricSet {
  readonly #families = new Map<string, MetricFamily>();

  counter(name: string, help: string): MetricFamily {
    return this.#family(name, "counter", help);
  }

  gauge(name: string, help: string): MetricFamily {
    return this.#family(name, "gauge", help);
  }

  family(name: string): MetricFamily | undefined {
    return this.#families.get(name);
  }

  render(): string {
    let text = "";
    for (const family of this.#families.values()) text += family.render();
    return text;
  }

  #family(name: string, type: MetricType, help: string): MetricFamily {
    const known = this.#families.get(name);
    if (known !== undefined) {
      assert(known.type === type && known.help === help, `metric ${name} asked for as ${type} "${help}" after ${known.type} "${known.help}"`);
      return known;
    }
    const family = new MetricFamily(name, type, help);
    this.#families.set(name, family);
    return family;
  }
}
