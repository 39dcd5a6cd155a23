/**
 * A TOML 1.0 reader (minus dates and times; plus what TOML 1.1 relaxed and Bun.TOML.parse takes:
 * newlines and a trailing comma in inline tables, \e and \xHH escapes) that knows where everything is: Bun.TOML.parse gives
 * the same values but no line numbers, and a config error without its line is half an error.
 * parseToml returns the values, the line each key was defined on, and every syntax error found:
 * after an error it skips to the next line and goes on, so one run names all the bad lines (a
 * broken multi-line value may hide what follows it; nothing promises more than the first error is
 * exact). Tables follow TOML's rules on redefinition: a [table] once, no dotted key into a table
 * defined elsewhere, no change to an inline table, [[array]] elements appended.
 */
import { tomlErrorsMax, tomlFileBytesMax, tomlNestingDepthMax } from "./constants.ts";
import { Cursor, readAtom, readBareKey, readString, TomlSyntaxError } from "./toml-scalars.ts";

export type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

export interface TomlError {
  /** 1-based. */
  line: number;
  /** 1-based, in UTF-16 code units. */
  column: number;
  message: string;
  /** Set when a key (or [table]) is defined twice: that key, dotted. */
  duplicateKey?: string;
}

export interface TomlParseResult {
  /** What was read; partial when there are errors. */
  value: TomlTable;
  /** The line each key (or [table]) was first defined on, by tomlPath(...keys). */
  lines: Map<string, number>;
  errors: TomlError[];
}

/** The key of `lines` for a path of keys (array elements of [[tables]] as their index). */
export function tomlPath(...keys: (string | number)[]): string {
  return JSON.stringify(keys);
}

/** How a table came to be, which decides what may still be added to it. */
type TableKind = "root" | "implicit" | "header" | "dotted" | "inline";

class Reader {
  readonly c: Cursor;
  readonly root: TomlTable = {};
  readonly lines = new Map<string, number>();
  readonly errors: TomlError[] = [];
  private readonly kinds = new WeakMap<object, TableKind>();
  /** Arrays made by [[header]]: only these take more elements from headers. */
  private readonly tableArrays = new WeakSet<TomlValue[]>();
  private readonly lineStarts: number[] = [0];

  constructor(text: string) {
    this.c = new Cursor(text);
    for (let i = 0; i < text.length; i += 1) if (text[i] === "\n") this.lineStarts.push(i + 1);
    this.kinds.set(this.root, "root");
  }

  lineOf(offset: number): number {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  }

  error(error: TomlSyntaxError): void {
    const line = this.lineOf(error.offset);
    const column = error.offset - this.lineStarts[line - 1]! + 1;
    this.errors.push(error.duplicateKey === undefined ? { line, column, message: error.message } : { line, column, message: error.message, duplicateKey: error.duplicateKey });
  }

  read(): void {
    const c: Cursor = this.c;
    if (c.peek() === "\uFEFF") c.pos += 1;
    let table = this.root;
    let path: (string | number)[] | null = [];
    while (!c.eof && this.errors.length < tomlErrorsMax) {
      let isHeader = false;
      try {
        c.skipWs();
        c.skipComment();
        if (c.newline() || c.eof) continue;
        isHeader = c.peek() === "[";
        if (isHeader) ({ table, path } = this.header());
        else this.keyValue(table, path, 0);
        c.skipWs();
        c.skipComment();
        if (!c.eof && !c.newline()) c.fail(c.peek() === "\r" ? "a carriage return must be followed by a newline" : `unexpected '${c.peek()}' after the value (one key = value per line)`);
      } catch (error) {
        if (!(error instanceof TomlSyntaxError)) throw error;
        this.error(error);
        // Keys under a broken [header] go nowhere rather than into the table before it.
        if (isHeader) ({ table, path } = { table: {}, path: null });
        // Go on at the next line from wherever reading stopped.
        c.pos = Math.max(c.pos, error.offset);
        while (!c.eof && c.peek() !== "\n") c.pos += 1;
      }
    }
  }

  /** Reads a dotted key: its parts and where each starts. */
  private key(): { parts: string[]; offset: number } {
    const c: Cursor = this.c;
    const offset = c.pos;
    const parts: string[] = [];
    for (;;) {
      c.skipWs();
      const ch = c.peek();
      parts.push(ch === '"' || ch === "'" ? (c.startsWith(ch.repeat(3)) ? c.fail("multi-line strings cannot be keys") : readString(c)) : readBareKey(c));
      c.skipWs();
      if (c.peek() !== ".") return { parts, offset };
      c.pos += 1;
    }
  }

  private header(): { table: TomlTable; path: (string | number)[] } {
    const c: Cursor = this.c;
    const start = c.pos;
    const isArray = c.startsWith("[[");
    c.pos += isArray ? 2 : 1;
    const { parts } = this.key();
    if (!c.startsWith(isArray ? "]]" : "]")) c.fail(`expected '${isArray ? "]]" : "]"}' to close the table header`);
    c.pos += isArray ? 2 : 1;
    const line = this.lineOf(start);
    let table = this.root;
    const path: (string | number)[] = [];
    for (let i = 0; i < parts.length; i += 1) {
      const part = parts[i]!;
      const last = i === parts.length - 1;
      const existing = own(table, part);
      path.push(part);
      const where = () => `'${parts.slice(0, i + 1).join(".")}' (line ${this.lines.get(tomlPath(...path)) ?? "?"})`;
      if (existing === undefined) {
        if (last && isArray) {
          const array: TomlValue[] = [];
          this.tableArrays.add(array);
          set(table, part, array);
          this.lines.set(tomlPath(...path), line);
          return this.newElement(array, path, line);
        }
        const created: TomlTable = {};
        this.kinds.set(created, last ? "header" : "implicit");
        set(table, part, created);
        this.lines.set(tomlPath(...path), line);
        table = created;
        continue;
      }
      if (Array.isArray(existing)) {
        if (!this.tableArrays.has(existing)) c.fail(`${where()} is an array of values, not of tables`, start);
        if (last && isArray) return this.newElement(existing, path, line);
        if (last) c.fail(`${where()} is an array of tables: use [[${parts.join(".")}]] for another element`, start);
        path.push(existing.length - 1);
        table = existing[existing.length - 1] as TomlTable;
        continue;
      }
      if (!isTable(existing)) c.fail(`${where()} is already a value, not a table`, start);
      const kind = this.kinds.get(existing);
      if (kind === "inline") c.fail(`${where()} is an inline table: it cannot be extended`, start);
      if (last) {
        if (isArray) c.fail(`${where()} is already a table, not an array of tables`, start);
        if (kind !== "implicit") throw new TomlSyntaxError(`table ${where()} is defined twice`, start, parts.join("."));
        this.kinds.set(existing, "header");
      }
      table = existing;
    }
    return { table, path };
  }

  private newElement(array: TomlValue[], path: (string | number)[], line: number): { table: TomlTable; path: (string | number)[] } {
    const element: TomlTable = {};
    this.kinds.set(element, "header");
    array.push(element);
    const elementPath = [...path, array.length - 1];
    this.lines.set(tomlPath(...elementPath), line);
    return { table: element, path: elementPath };
  }

  /** `key = value` into `table` (whose own path is `path`; null: keep no lines, as in inline tables). */
  keyValue(table: TomlTable, path: (string | number)[] | null, depth: number): void {
    const c: Cursor = this.c;
    const { parts, offset } = this.key();
    if (c.peek() !== "=") c.fail(c.eof || c.peek() === "\n" || c.peek() === "\r" ? `expected '=' after the key '${parts.join(".")}'` : `unexpected '${c.peek()}' after the key '${parts.join(".")}' (expected '=')`);
    c.pos += 1;
    c.skipWs();
    const value = this.value(depth);
    const line = this.lineOf(offset);
    let target = table;
    const lines = path === null ? new Map<string, number>() : this.lines;
    const keyPath = [...(path ?? [])];
    for (let i = 0; i < parts.length; i += 1) {
      const part = parts[i]!;
      keyPath.push(part);
      const existing = own(target, part);
      const first = lines.get(tomlPath(...keyPath));
      const name = parts.slice(0, i + 1).join(".");
      if (i === parts.length - 1) {
        if (existing !== undefined) throw new TomlSyntaxError(`duplicate key '${name}' (first defined on line ${first ?? "?"})`, offset, name);
        set(target, part, value);
        lines.set(tomlPath(...keyPath), line);
        return;
      }
      if (existing === undefined) {
        const created: TomlTable = {};
        this.kinds.set(created, "dotted");
        set(target, part, created);
        lines.set(tomlPath(...keyPath), line);
        target = created;
      } else if (isTable(existing) && this.kinds.get(existing) === "dotted") {
        target = existing;
      } else {
        c.fail(isTable(existing) ? `'${name}' is a table defined on line ${first ?? "?"}: dotted keys cannot add to it from here` : `duplicate key '${name}' (first defined on line ${first ?? "?"})`, offset);
      }
    }
  }

  private value(depth: number): TomlValue {
    const c: Cursor = this.c;
    if (depth > tomlNestingDepthMax) c.fail(`arrays and inline tables nest deeper than ${tomlNestingDepthMax}`);
    const ch = c.peek();
    if (ch === '"' || ch === "'") return readString(c);
    if (ch === "[") return this.array(depth + 1);
    if (ch === "{") return this.inlineTable(depth + 1);
    return readAtom(c);
  }

  private array(depth: number): TomlValue[] {
    const c: Cursor = this.c;
    const start = c.pos;
    c.pos += 1;
    const items: TomlValue[] = [];
    for (;;) {
      c.skipBlank();
      if (c.eof) c.fail("unterminated array (no closing ']')", start);
      if (c.peek() === "]") break;
      items.push(this.value(depth));
      c.skipBlank();
      if (c.peek() === ",") {
        c.pos += 1;
        continue;
      }
      if (c.peek() === "]") break;
      c.fail(c.eof ? "unterminated array (no closing ']')" : `expected ',' or ']' in the array, found '${c.peek()}'`, c.eof ? start : c.pos);
    }
    c.pos += 1;
    return items;
  }

  private inlineTable(depth: number): TomlTable {
    const c: Cursor = this.c;
    c.pos += 1;
    const table: TomlTable = {};
    this.kinds.set(table, "inline");
    const start = c.pos - 1;
    // TOML 1.1 (and Bun): newlines, comments and a trailing comma are allowed inside.
    for (;;) {
      c.skipBlank();
      if (c.eof) c.fail("unterminated inline table (no closing '}')", start);
      if (c.peek() === "}") break;
      // Keys inside an inline table keep no lines of their own.
      this.keyValue(table, null, depth);
      c.skipBlank();
      if (c.peek() === ",") {
        c.pos += 1;
        continue;
      }
      if (c.peek() === "}") break;
      c.fail(c.eof ? "unterminated inline table (no closing '}')" : `expected ',' or '}' in the inline table, found '${c.peek()}'`, c.eof ? start : c.pos);
    }
    c.pos += 1;
    return table;
  }
}

function isTable(value: TomlValue | undefined): value is TomlTable {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function own(table: TomlTable, key: string): TomlValue | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

/** Defines rather than assigns: a key named __proto__ is a key like any other. */
function set(table: TomlTable, key: string, value: TomlValue): void {
  Object.defineProperty(table, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Reads a TOML document: its values, the line of every key, and every syntax error (with its line). */
export function parseToml(text: string): TomlParseResult {
  const reader = new Reader(text);
  if (text.length > tomlFileBytesMax) {
    reader.errors.push({ line: 1, column: 1, message: `the file is larger than ${tomlFileBytesMax} bytes` });
    return { value: reader.root, lines: reader.lines, errors: reader.errors };
  }
  reader.read();
  return { value: reader.root, lines: reader.lines, errors: reader.errors };
}

/** Like parseToml but throws the first error (for tests and callers that want plain values). */
export function parseTomlStrict(text: string): TomlTable {
  const result = parseToml(text);
  const first = result.errors[0];
  if (first !== undefined) throw new Error(`line ${first.line}, column ${first.column}: ${first.message}`);
  return result.value;
}
