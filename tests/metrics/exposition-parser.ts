/**
 * A strict parser of the Prometheus text format 0.0.4, for the metrics tests: written from the
 * format's description (not from src/metrics/prometheus.ts), so reading back what the writer
 * wrote checks the writer. Stricter than Prometheus where druvaa's writer has no reason to do
 * otherwise; it throws (with the line number) on:
 * - text not ending in a newline, empty lines, comments other than `# HELP` / `# TYPE`;
 * - a bad metric or label name, a label name starting with `__`, a label named twice;
 * - an escape other than `\\`, `\n` (HELP) or `\\`, `\"`, `\n` (label values); a value Go's
 *   ParseFloat would not read; a timestamp (druvaa never sends one);
 * - a second HELP or TYPE for one name, HELP/TYPE after the family's samples, a sample without a
 *   TYPE, a family without samples, a family's samples not together, the same label set twice;
 * - a counter whose name does not end in `_total` or whose value is negative or not finite.
 */

export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface ParsedFamily {
  name: string;
  type: string;
  help: string | undefined;
  samples: ParsedSample[];
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const floatText = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const types = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

export class ExpositionError extends Error {}

export function parseValue(text: string): number {
  if (text === "NaN") return Number.NaN;
  if (text === "+Inf" || text === "Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  if (!floatText.test(text)) throw new ExpositionError(`bad value ${JSON.stringify(text)}`);
  return Number(text);
}

function unescape(text: string, allowed: Record<string, string>, what: string): string {
  let out = "";
  for (let index = 0; index < text.length; index += 1) {
    const char = text[index]!;
    if (char !== "\\") {
      out += char;
      continue;
    }
    const next = text[index + 1];
    if (next === undefined || allowed[next] === undefined) throw new ExpositionError(`bad escape \\${next ?? ""} in ${what}`);
    out += allowed[next];
    index += 1;
  }
  return out;
}

/** Reads `{name="value",...}` from `text` at `start` (the `{`); returns the labels and the index after `}`. */
function parseLabels(text: string, start: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let index = start + 1;
  if (text[index] === "}") throw new ExpositionError("empty label braces");
  for (;;) {
    const name = labelName.exec(text.slice(index))?.[0];
    if (name === undefined) throw new ExpositionError(`bad label name at ${JSON.stringify(text.slice(index, index + 20))}`);
    if (name.startsWith("__")) throw new ExpositionError(`reserved label name ${name}`);
    if (Object.hasOwn(labels, name)) throw new ExpositionError(`label ${name} twice`);
    index += name.length;
    if (text.slice(index, index + 2) !== '="') throw new ExpositionError(`label ${name}: expected ="`);
    index += 2;
    let raw = "";
    for (;;) {
      const char = text[index];
      if (char === undefined) throw new ExpositionError(`label ${name}: unterminated value`);
      if (char === '"') break;
      if (char === "\\") {
        raw += char + (text[index + 1] ?? "");
        index += 2;
        continue;
      }
      raw += char;
      index += 1;
    }
    labels[name] = unescape(raw, { "\\": "\\", '"': '"', n: "\n" }, `label ${name}`);
    index += 1; // the closing quote
    if (text[index] === "}") return { labels, end: index + 1 };
    if (text[index] !== ",") throw new ExpositionError(`label ${name}: expected , or } after the value`);
    index += 1;
  }
}

function parseSample(line: string): ParsedSample {
  const name = metricName.exec(line)?.[0];
  if (name === undefined) throw new ExpositionError("bad metric name");
  let index = name.length;
  let labels: Record<string, string> = {};
  if (line[index] === "{") ({ labels, end: index } = parseLabels(line, index));
  if (line[index] !== " ") throw new ExpositionError("expected one space before the value");
  const rest = line.slice(index + 1);
  if (rest.includes(" ")) throw new ExpositionError(`a timestamp or extra text after the value: ${JSON.stringify(rest)}`);
  return { name, labels, value: parseValue(rest) };
}

function labelKey(labels: Record<string, string>): string {
  return JSON.stringify(Object.keys(labels).toSorted().map((key) => [key, labels[key]]));
}

/** Parses `text`, throwing ExpositionError ("line N: …") on the first thing the format forbids. */
export function parseExposition(text: string): Map<string, ParsedFamily> {
  const families = new Map<string, ParsedFamily>();
  if (text === "") return families;
  if (!text.endsWith("\n")) throw new ExpositionError("the text does not end with a newline");
  const lines = text.slice(0, -1).split("\n");
  const helps = new Map<string, string>();
  const closed = new Set<string>();
  const seen = new Map<string, Set<string>>();
  let current: string | undefined;
  const enter = (name: string) => {
    if (current === name) return;
    if (current !== undefined) closed.add(current);
    if (closed.has(name)) throw new ExpositionError(`${name}: family continues after another one`);
    current = name;
  };
  lines.forEach((line, lineIndex) => {
    try {
      if (line === "") throw new ExpositionError("empty line");
      if (line.startsWith("#")) {
        // [^]: help texts may hold \r, U+2028 and U+2029, which `.` does not match.
        const match = /^# (HELP|TYPE) ([^ ]+) ?([^]*)$/.exec(line);
        if (match === null) throw new ExpositionError("a comment other than # HELP / # TYPE");
        const [, keyword, name, rest] = match as unknown as [string, string, string, string];
        if (metricName.exec(name)?.[0] !== name) throw new ExpositionError(`bad metric name ${JSON.stringify(name)}`);
        enter(name);
        if ((families.get(name)?.samples.length ?? 0) > 0) throw new ExpositionError(`${keyword} for ${name} after its samples`);
        if (keyword === "HELP") {
          if (helps.has(name)) throw new ExpositionError(`second HELP for ${name}`);
          helps.set(name, unescape(rest, { "\\": "\\", n: "\n" }, `HELP of ${name}`));
          const family = families.get(name);
          if (family !== undefined) family.help = helps.get(name);
        } else {
          if (families.has(name)) throw new ExpositionError(`second TYPE for ${name}`);
          if (!types.has(rest)) throw new ExpositionError(`unknown type ${JSON.stringify(rest)}`);
          if (rest === "counter" && !name.endsWith("_total")) throw new ExpositionError(`counter ${name} does not end in _total`);
          families.set(name, { name, type: rest, help: helps.get(name), samples: [] });
        }
        return;
      }
      const sample = parseSample(line);
      enter(sample.name);
      const family = families.get(sample.name);
      if (family === undefined) throw new ExpositionError(`sample of ${sample.name} without a TYPE`);
      if (family.type === "counter" && !(Number.isFinite(sample.value) && sample.value >= 0)) throw new ExpositionError(`counter ${sample.name} = ${sample.value}`);
      const keys = seen.get(sample.name) ?? new Set<string>();
      const key = labelKey(sample.labels);
      if (keys.has(key)) throw new ExpositionError(`${sample.name}${key}: the same label set twice`);
      keys.add(key);
      seen.set(sample.name, keys);
      family.samples.push(sample);
    } catch (error) {
      if (error instanceof ExpositionError) throw new ExpositionError(`line ${lineIndex + 1}: ${error.message}: ${JSON.stringify(line)}`);
      throw error;
    }
  });
  for (const family of families.values()) if (family.samples.length === 0) throw new ExpositionError(`${family.name}: TYPE without samples`);
  for (const name of helps.keys()) if (!families.has(name)) throw new ExpositionError(`${name}: HELP without TYPE`);
  return families;
}

/** The value of the sample of `name` whose labels include `labels`; throws unless exactly one matches. */
export function sampleValue(families: Map<string, ParsedFamily>, name: string, labels: Record<string, string> = {}): number {
  const family = families.get(name);
  if (family === undefined) throw new Error(`no family ${name}; families: ${[...families.keys()].join(", ")}`);
  const matches = family.samples.filter((sample) => Object.entries(labels).every(([key, value]) => sample.labels[key] === value));
  if (matches.length !== 1) throw new Error(`${name}${JSON.stringify(labels)}: ${matches.length} samples match (of ${JSON.stringify(family.samples)})`);
  return matches[0]!.value;
}
