/**
 * The Prometheus text writer (src/metrics/prometheus.ts): exact text for known inputs (escaping,
 * HELP/TYPE, value spelling), the asserts on what would make a scrape invalid, a property that
 * whatever labels, help texts and values go in, the strict parser (exposition-parser.ts) reads
 * exactly them back, and checks that the parser itself rejects what the format forbids.
 *
 * Replay a property failure with the seed it prints: METRICS_PROPERTY_SEED=<seed>.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { AssertionError } from "../../src/assert.ts";
import { escapeHelp, escapeLabelValue, formatValue, MetricSet, prometheusContentType } from "../../src/metrics/prometheus.ts";
import { ExpositionError, parseExposition, sampleValue } from "./exposition-parser.ts";

describe("Prometheus text writer", () => {
  test("families render HELP and TYPE once, then their samples, in the order first asked for", () => {
    const metrics = new MetricSet();
    metrics.gauge("druvaa_b_bytes", "B").set({ wrl: "w0" }, 5);
    metrics.counter("druvaa_a_total", "A").set({}, 3);
    metrics.gauge("druvaa_b_bytes", "B").set({ wrl: "w1" }, 6);
    expect(metrics.render()).toBe(
      ["# HELP druvaa_b_bytes B", "# TYPE druvaa_b_bytes gauge", 'druvaa_b_bytes{wrl="w0"} 5', 'druvaa_b_bytes{wrl="w1"} 6', "# HELP druvaa_a_total A", "# TYPE druvaa_a_total counter", "druvaa_a_total 3", ""].join("\n"),
    );
    expect(prometheusContentType).toBe("text/plain; version=0.0.4; charset=utf-8");
  });

  test("label values escape backslash, double quote and newline; help escapes backslash and newline only", () => {
    expect(escapeLabelValue('C:\\dir "x"\nnext')).toBe('C:\\\\dir \\"x\\"\\nnext');
    expect(escapeHelp('a "quoted" \\ path\nline')).toBe('a "quoted" \\\\ path\\nline');
    const metrics = new MetricSet();
    metrics.gauge("druvaa_x", 'help with "quotes" and \\ and\nnewline').set({ path: 'a\\b"c\nd' }, 1);
    const text = metrics.render();
    expect(text).toContain('druvaa_x{path="a\\\\b\\"c\\nd"} 1\n');
    expect(text).toContain('# HELP druvaa_x help with "quotes" and \\\\ and\\nnewline\n');
    const family = parseExposition(text).get("druvaa_x")!;
    expect(family.help).toBe('help with "quotes" and \\ and\nnewline');
    expect(family.samples[0]!.labels).toEqual({ path: 'a\\b"c\nd' });
  });

  test("values are spelled the way Go's ParseFloat reads them", () => {
    expect([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 0.25, 1e21, 5e-7, 2 ** 53 + 2].map(formatValue)).toEqual(["NaN", "+Inf", "-Inf", "0", "0.25", "1e+21", "5e-7", "9007199254740994"]);
  });

  test("a family without samples is left out; an empty set renders nothing", () => {
    const metrics = new MetricSet();
    metrics.gauge("druvaa_empty", "nothing");
    expect(metrics.render()).toBe("");
    metrics.gauge("druvaa_one", "one").set({}, 1);
    expect(metrics.render()).toBe("# HELP druvaa_one one\n# TYPE druvaa_one gauge\ndruvaa_one 1\n");
  });

  test("what would make the scrape invalid fails an assert", () => {
    const metrics = new MetricSet();
    expect(() => metrics.gauge("druvaa-bad", "x")).toThrow(AssertionError);
    expect(() => metrics.gauge("1druvaa", "x")).toThrow(AssertionError);
    expect(() => metrics.gauge("druvaa:rule", "x")).toThrow(AssertionError);
    expect(() => metrics.counter("druvaa_writes", "x")).toThrow(/end in _total/);
    expect(() => metrics.gauge("druvaa_writes_total", "x")).toThrow(/end in _total/);
    const gauge = metrics.gauge("druvaa_g", "g");
    expect(() => gauge.set({ "bad-name": "x" }, 1)).toThrow(AssertionError);
    expect(() => gauge.set({ __reserved: "x" }, 1)).toThrow(AssertionError);
    gauge.set({ a: "1", b: "2" }, 1);
    expect(() => gauge.set({ b: "2", a: "1" }, 2)).toThrow(/set twice/);
    expect(() => metrics.counter("druvaa_g_total", "g").set({}, -1)).toThrow(/finite count/);
    expect(() => metrics.counter("druvaa_h_total", "h").set({}, Number.NaN)).toThrow(/finite count/);
    expect(() => metrics.counter("druvaa_g", "g")).toThrow(/asked for as counter/);
    expect(() => metrics.gauge("druvaa_g", "other help")).toThrow(/asked for as gauge/);
  });
});

/** Text rich in what the format treats specially, plus any code point. */
const trickyChar = fc.oneof(fc.constantFrom("\\", '"', "\n", "\r", "{", "}", ",", "=", " ", "#", "\u2028", "n"), fc.string({ unit: "binary", minLength: 1, maxLength: 1 }));
const trickyText = (maxLength: number) => fc.string({ unit: trickyChar, maxLength });
const labelNameArbitrary = fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,12}$/).filter((name) => !name.startsWith("__"));
const familyArbitrary = fc.record({
  counter: fc.boolean(),
  help: trickyText(40),
  samples: fc.array(fc.record({ labels: fc.dictionary(labelNameArbitrary, trickyText(30), { maxKeys: 4 }), value: fc.double() }), { minLength: 1, maxLength: 5 }),
});

function propertySeed(): number {
  const fromEnv = process.env.METRICS_PROPERTY_SEED;
  const seed = fromEnv === undefined ? Math.floor(Math.random() * 0x7fff_ffff) : Number(fromEnv);
  console.log(`[metrics parse-back] fast-check seed=${seed}; replay with: METRICS_PROPERTY_SEED=${seed} node_modules/.bin/bun test tests/metrics`);
  return seed;
}

describe("Prometheus text writer: parse-back (property)", () => {
  test("any label values, help texts and values are read back exactly by a strict parser", () => {
    fc.assert(
      fc.property(fc.array(familyArbitrary, { minLength: 1, maxLength: 6 }), (families) => {
        const metrics = new MetricSet();
        const expected = new Map<string, { type: string; help: string; samples: { labels: Record<string, string>; value: number }[] }>();
        families.forEach((spec, index) => {
          const name = spec.counter ? `druvaa_f${index}_total` : `druvaa_f${index}`;
          const family = spec.counter ? metrics.counter(name, spec.help) : metrics.gauge(name, spec.help);
          const samples: { labels: Record<string, string>; value: number }[] = [];
          const keys = new Set<string>();
          for (const sample of spec.samples) {
            const key = JSON.stringify(Object.entries(sample.labels).toSorted());
            if (keys.has(key)) continue;
            keys.add(key);
            const value = spec.counter ? (Number.isFinite(sample.value) ? Math.abs(sample.value) : 0) : sample.value;
            family.set(sample.labels, value);
            samples.push({ labels: sample.labels, value });
          }
          expected.set(name, { type: spec.counter ? "counter" : "gauge", help: spec.help, samples });
        });
        const parsed = parseExposition(metrics.render());
        expect([...parsed.keys()]).toEqual([...expected.keys()]);
        for (const [name, want] of expected) {
          const got = parsed.get(name)!;
          expect({ type: got.type, help: got.help }).toEqual({ type: want.type, help: want.help });
          // Object.is: NaN equals NaN, and -0 is written as 0.
          expect(got.samples.map((sample) => sample.labels)).toEqual(want.samples.map((sample) => sample.labels));
          expect(got.samples.map((sample) => (Object.is(sample.value, -0) ? 0 : sample.value))).toEqual(want.samples.map((sample) => (Object.is(sample.value, -0) ? 0 : sample.value)));
        }
      }),
      { seed: propertySeed(), numRuns: 300 },
    );
  });
});

describe("the strict test parser rejects what the format forbids", () => {
  const good = "# HELP druvaa_x x\n# TYPE druvaa_x gauge\ndruvaa_x 1\n";
  test.each([
    ["no final newline", good.slice(0, -1)],
    ["empty line", `${good}\n`],
    ["free comment", `# hello\n${good}`],
    ["sample without TYPE", "druvaa_y 1\n"],
    ["second TYPE", `${good}# TYPE druvaa_x gauge\n`],
    ["HELP after samples", `${good}# HELP druvaa_x again\n`],
    ["family split", `${good}# TYPE druvaa_y gauge\ndruvaa_y 1\ndruvaa_x{a="b"} 2\n`],
    ["duplicate series", `${good}druvaa_x 2\n`],
    ["bad label escape", '# TYPE druvaa_x gauge\ndruvaa_x{a="\\t"} 1\n'],
    ["unterminated label value", '# TYPE druvaa_x gauge\ndruvaa_x{a="b} 1\n'],
    ["label twice", '# TYPE druvaa_x gauge\ndruvaa_x{a="b",a="c"} 1\n'],
    ["reserved label", '# TYPE druvaa_x gauge\ndruvaa_x{__name__="b"} 1\n'],
    ["bad value", "# TYPE druvaa_x gauge\ndruvaa_x one\n"],
    ["timestamp", "# TYPE druvaa_x gauge\ndruvaa_x 1 1700000000000\n"],
    ["negative counter", "# TYPE druvaa_x_total counter\ndruvaa_x_total -1\n"],
    ["counter without _total", "# TYPE druvaa_x counter\ndruvaa_x 1\n"],
    ["TYPE without samples", "# TYPE druvaa_x gauge\n"],
  ])("%s", (_what, text) => {
    expect(() => parseExposition(text)).toThrow(ExpositionError);
  });

  test("and reads a valid text", () => {
    const parsed = parseExposition(`${good}# TYPE druvaa_c_total counter\ndruvaa_c_total{a="x\\"y"} 2.5e+3\n`);
    expect(sampleValue(parsed, "druvaa_x")).toBe(1);
    expect(sampleValue(parsed, "druvaa_c_total", { a: 'x"y' })).toBe(2500);
  });
});
