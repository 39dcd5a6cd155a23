/**
 * Random TOML documents for the parser's property test: a random value tree (strings with
 * quotes, escapes, control characters and non-ASCII; integers; floats; booleans; mixed arrays;
 * nested tables; arrays of tables) written out in randomly chosen styles (bare or quoted keys;
 * basic, literal and multi-line strings; decimal, underscored, hex, octal and binary integers;
 * inline tables, [sections], dotted keys, [[arrays of tables]]; comments, blank lines, spacing).
 */
import fc from "fast-check";
import type { TomlTable, TomlValue } from "../../src/config/toml.ts";

export function propertySeed(name: string): number {
  const fromEnv = process.env.CONFIG_PROPERTY_SEED;
  const seed = fromEnv === undefined ? Math.floor(Math.random() * 0x7fff_ffff) : Number(fromEnv);
  console.log(`[${name}] fast-check seed=${seed}; replay with: CONFIG_PROPERTY_SEED=${seed} node_modules/.bin/bun test tests/config`);
  return seed;
}

const specialChars = ['"', "\\", "'", "\n", "\t", "\r", "\u0001", "\u001f", "\u007f", "#", "=", ".", " ", "[", "]", "{", "}", ",", "é", "😀", "\u2028"];
const textUnit = fc.oneof(fc.constantFrom(...specialChars), fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 }));
const text = fc.string({ unit: textUnit, maxLength: 12 });
const key = fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/), fc.string({ unit: textUnit, maxLength: 6 }));
const float = fc.oneof(fc.double({ noNaN: true }), fc.constantFrom(Number.NaN, 0.5, -1.25, 1e21, 5e-324));
const scalar: fc.Arbitrary<TomlValue> = fc.oneof(text, fc.boolean(), fc.maxSafeInteger(), fc.integer({ min: -1000, max: 1000 }), float);

const { value: valueArb } = fc.letrec<{ value: TomlValue; table: TomlTable }>((tie) => ({
  value: fc.oneof({ depthSize: "small", withCrossShrink: true }, scalar, fc.array(tie("value"), { maxLength: 4 }), tie("table")),
  table: fc.dictionary(key, tie("value"), { maxKeys: 4 }) as fc.Arbitrary<TomlTable>,
}));

/** A document: its value, and the style choices its writer draws from. */
export const tomlDocument = fc.record({
  value: fc.dictionary(key, valueArb, { maxKeys: 6 }) as fc.Arbitrary<TomlTable>,
  choices: fc.array(fc.nat({ max: 1000 }), { minLength: 16, maxLength: 64 }),
});

class Choices {
  private index = 0;
  constructor(private readonly list: number[]) {}
  pick(count: number): number {
    const value = this.list[this.index % this.list.length]! + Math.floor(this.index / this.list.length);
    this.index += 1;
    return value % count;
  }
}

const isTable = (value: TomlValue): value is TomlTable => typeof value === "object" && !Array.isArray(value);

function escapeBasic(s: string, multiLine: boolean): string {
  let out = "";
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (multiLine && ch === "\n") out += "\n";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (code < 0x20 || code === 0x7f) out += `\\u${code.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return out;
}

const literalSafe = (s: string, multiLine: boolean) => !/[\u0000-\u0008\u000a-\u001f\u007f]/.test(multiLine ? s.replaceAll("\n", "") : s) && (multiLine ? !s.includes("'''") && !s.endsWith("''") : !s.includes("'"));

function writeString(s: string, c: Choices): string {
  switch (c.pick(4)) {
    case 1:
      if (literalSafe(s, false)) return `'${s}'`;
      break;
    case 2:
      return `"""\n${escapeBasic(s, true)}"""`;
    case 3:
      if (literalSafe(s, true)) return `'''\n${s}'''`;
      break;
  }
  return `"${escapeBasic(s, false)}"`;
}

function writeKey(k: string, c: Choices): string {
  if (/^[A-Za-z0-9_-]+$/.test(k) && c.pick(4) > 0) return k;
  if (!k.includes("'") && !/[\u0000-\u001f\u007f]/.test(k) && c.pick(2) === 0) return `'${k}'`;
  return `"${escapeBasic(k, false)}"`;
}

function underscored(digits: string, c: Choices): string {
  if (digits.length < 2 || c.pick(3) > 0) return digits;
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, "_");
}

function writeNumber(n: number, c: Choices): string {
  if (Number.isNaN(n)) return ["nan", "+nan", "-nan"][c.pick(3)]!;
  if (!Number.isFinite(n)) return n > 0 ? ["inf", "+inf"][c.pick(2)]! : "-inf";
  if (Number.isInteger(n) && !Object.is(n, -0) && Math.abs(n) <= Number.MAX_SAFE_INTEGER && c.pick(5) > 0) {
    const sign = n < 0 ? "-" : c.pick(4) === 0 ? "+" : "";
    const abs = Math.abs(n);
    if (n >= 0 && c.pick(3) === 0) return [`0x${abs.toString(16)}`, `0o${abs.toString(8)}`, `0b${abs.toString(2)}`][c.pick(3)]!;
    return `${sign}${underscored(String(abs), c)}`;
  }
  const text = String(n);
  if (Object.is(n, -0)) return "-0.0";
  return /[.e]/.test(text) ? text : `${text}.0`;
}

function writeInline(value: TomlValue, c: Choices): string {
  if (typeof value === "string") return writeString(value, c);
  if (typeof value === "number") return writeNumber(value, c);
  if (typeof value === "boolean") return String(value);
  if (Array.isArray(value)) {
    if (value.length === 0) return c.pick(2) === 0 ? "[]" : "[ ]";
    if (c.pick(2) === 0) return `[${value.map((item) => writeInline(item, c)).join(", ")}]`;
    return `[\n${value.map((item) => `  ${writeInline(item, c)},${c.pick(3) === 0 ? " # item" : ""}\n`).join("")}]`;
  }
  const entries = Object.entries(value);
  return entries.length === 0 ? "{}" : `{ ${entries.map(([k, v]) => `${writeKey(k, c)} = ${writeInline(v, c)}`).join(", ")} }`;
}

const headerPath = (path: string[], c: Choices) => path.map((k) => writeKey(k, c)).join(c.pick(3) === 0 ? " . " : ".");

/** Writes `table` (at `path`) as key = value lines, then its sub-sections. */
function writeSection(table: TomlTable, path: string[], c: Choices, out: string[]): void {
  const later: (() => void)[] = [];
  for (const [k, v] of Object.entries(table)) {
    const sep = [" = ", "=", "  =\t"][c.pick(3)]!;
    const comment = c.pick(4) === 0 ? "  # note" : "";
    if (c.pick(6) === 0) out.push(c.pick(2) === 0 ? "" : "# a comment line");
    const tableArray = Array.isArray(v) && v.length > 0 && v.every(isTable);
    if (isTable(v) && c.pick(3) === 0) {
      later.push(() => {
        out.push(`[${headerPath([...path, k], c)}]`);
        writeSection(v, [...path, k], c, out);
      });
    } else if (tableArray && c.pick(2) === 0) {
      later.push(() => {
        for (const element of v) {
          out.push(`[[${headerPath([...path, k], c)}]]`);
          writeSection(element as TomlTable, [...path, k], c, out);
        }
      });
    } else if (isTable(v) && Object.keys(v).length > 0 && Object.values(v).every((x) => !isTable(x)) && c.pick(2) === 0) {
      for (const [k2, v2] of Object.entries(v)) out.push(`${writeKey(k, c)}.${writeKey(k2, c)}${sep}${writeInline(v2, c)}${comment}`);
    } else {
      out.push(`${writeKey(k, c)}${sep}${writeInline(v, c)}${comment}`);
    }
  }
  for (const write of later) write();
}

export function writeToml(value: TomlTable, choices: number[]): string {
  const out: string[] = [];
  writeSection(value, [], new Choices(choices), out);
  return `${out.join("\n")}\n`;
}
