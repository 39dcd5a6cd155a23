/**
 * The lexical half of the TOML reader (toml.ts): a cursor over the text, and the scalar values
 * TOML 1.0 has — basic, literal and multi-line strings with their escapes (and 1.1's \e, \xHH), integers (decimal with
 * `_`, hex, octal, binary), floats (with inf and nan), booleans. Dates and times are refused with
 * a clear message: druvaa's config files have none. Every error carries the offset it is about,
 * so the caller can name the line.
 */

/** A syntax error at `offset` in the text (the caller turns it into a line and column). */
export class TomlSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
    /** Set when the error is a key (or [table]) defined twice: that key, dotted. */
    readonly duplicateKey?: string,
  ) {
    super(message);
  }
}

const bareKeyChar = /[A-Za-z0-9_-]/;
/** Characters a number, boolean or (refused) date token is made of. */
const tokenChar = /[A-Za-z0-9_+\-.:]/;

export class Cursor {
  pos = 0;
  constructor(readonly text: string) {}

  get eof(): boolean {
    return this.pos >= this.text.length;
  }
  peek(ahead = 0): string {
    return this.text[this.pos + ahead] ?? "";
  }
  startsWith(s: string): boolean {
    return this.text.startsWith(s, this.pos);
  }
  fail(message: string, offset = this.pos): never {
    throw new TomlSyntaxError(message, offset);
  }
  /** Spaces and tabs (not newlines). */
  skipWs(): void {
    while (this.peek() === " " || this.peek() === "\t") this.pos += 1;
  }
  /** A comment up to (not including) the end of the line; refuses control characters in it. */
  skipComment(): void {
    if (this.peek() !== "#") return;
    while (!this.eof && this.peek() !== "\n" && !this.startsWith("\r\n")) {
      checkChar(this, this.pos, "a comment");
      this.pos += 1;
    }
  }
  /** Consumes one newline (LF or CRLF) if there is one. */
  newline(): boolean {
    if (this.peek() === "\n") return (this.pos += 1), true;
    if (this.startsWith("\r\n")) return (this.pos += 2), true;
    return false;
  }
  /** Whitespace, newlines and comments (inside arrays). */
  skipBlank(): void {
    for (;;) {
      this.skipWs();
      this.skipComment();
      if (!this.newline()) return;
    }
  }
}

/** Control characters other than tab are not allowed in strings or comments. */
function checkChar(c: Cursor, offset: number, where: string): void {
  const code = c.text.charCodeAt(offset);
  if ((code < 0x20 && code !== 0x09) || code === 0x7f) c.fail(`control character U+${code.toString(16).padStart(4, "0").toUpperCase()} is not allowed in ${where}`, offset);
}

export function readBareKey(c: Cursor): string {
  const start = c.pos;
  while (bareKeyChar.test(c.peek())) c.pos += 1;
  if (c.pos === start) c.fail(c.eof || c.peek() === "\n" ? "expected a key" : `unexpected character '${c.peek()}' where a key should be`);
  return c.text.slice(start, c.pos);
}

/** Any string form; the cursor is on its first quote. */
export function readString(c: Cursor): string {
  if (c.startsWith('"""')) return readMultiline(c, '"');
  if (c.startsWith("'''")) return readMultiline(c, "'");
  return readSingleLine(c, c.peek() as '"' | "'");
}

function readSingleLine(c: Cursor, quote: '"' | "'"): string {
  const start = c.pos;
  c.pos += 1;
  let out = "";
  for (;;) {
    if (c.eof || c.peek() === "\n" || c.peek() === "\r") c.fail("unterminated string (a single-line string ends on its own line)", start);
    const ch = c.peek();
    if (ch === quote) {
      c.pos += 1;
      return out;
    }
    if (quote === '"' && ch === "\\") {
      out += readEscape(c);
      continue;
    }
    checkChar(c, c.pos, "a string");
    out += ch;
    c.pos += 1;
  }
}

function readMultiline(c: Cursor, quote: '"' | "'"): string {
  const start = c.pos;
  c.pos += 3;
  c.newline(); // a newline right after the opening delimiter is trimmed
  let out = "";
  for (;;) {
    if (c.eof) c.fail(`unterminated multi-line string (no closing ${quote.repeat(3)})`, start);
    const ch = c.peek();
    if (ch === quote && c.startsWith(quote.repeat(3))) {
      let run = 3;
      while (c.peek(run) === quote) run += 1;
      if (run > 5) c.fail(`too many ${quote} in a row at the end of a multi-line string`);
      out += quote.repeat(run - 3); // up to two quotes may end the content
      c.pos += run;
      return out;
    }
    if (c.newline()) {
      out += "\n";
      continue;
    }
    if (quote === '"' && ch === "\\") {
      const after = c.pos + 1;
      let look = after;
      while (c.text[look] === " " || c.text[look] === "\t") look += 1;
      if (c.text[look] === "\n" || c.text.startsWith("\r\n", look)) {
        // Line-ending backslash: trims the newline and all whitespace up to the next content.
        c.pos = look;
        for (;;) {
          if (c.peek() === " " || c.peek() === "\t") c.pos += 1;
          else if (!c.newline()) break;
        }
        continue;
      }
      out += readEscape(c);
      continue;
    }
    checkChar(c, c.pos, "a string");
    out += ch;
    c.pos += 1;
  }
}

const simpleEscapes: Record<string, string> = { b: "\b", t: "\t", n: "\n", f: "\f", r: "\r", e: "\u001b", '"': '"', "\\": "\\" };

function readEscape(c: Cursor): string {
  const start = c.pos;
  const kind = c.peek(1);
  const simple = simpleEscapes[kind];
  if (simple !== undefined) {
    c.pos += 2;
    return simple;
  }
  if (kind === "u" || kind === "U" || kind === "x") {
    const digits = kind === "x" ? 2 : kind === "u" ? 4 : 8;
    const hex = c.text.slice(c.pos + 2, c.pos + 2 + digits);
    if (!new RegExp(`^[0-9A-Fa-f]{${digits}}$`).test(hex)) c.fail(`\\${kind} needs ${digits} hex digits`, start);
    const code = Number.parseInt(hex, 16);
    if (code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) c.fail(`\\${kind}${hex} is not a Unicode scalar value`, start);
    c.pos += 2 + digits;
    return String.fromCodePoint(code);
  }
  return c.fail(`invalid escape '\\${kind}' (valid: \\b \\t \\n \\f \\r \\e \\" \\\\ \\xHH \\uXXXX \\UXXXXXXXX)`, start);
}

const decimalInt = /^[+-]?(0|[1-9](_?[0-9])*)$/;
const radixInt: Record<string, { pattern: RegExp; radix: number }> = {
  "0x": { pattern: /^0x[0-9A-Fa-f](_?[0-9A-Fa-f])*$/, radix: 16 },
  "0o": { pattern: /^0o[0-7](_?[0-7])*$/, radix: 8 },
  "0b": { pattern: /^0b[01](_?[01])*$/, radix: 2 },
};
const float = /^[+-]?(0|[1-9](_?[0-9])*)(\.[0-9](_?[0-9])*)?([eE][+-]?[0-9](_?[0-9])*)?$/;
const dateLike = /^(\d{4}-\d{2}-\d{2}|\d{2}:\d{2})/;

/** A boolean, integer or float; the cursor is on its first character. */
export function readAtom(c: Cursor): boolean | number {
  const start = c.pos;
  while (tokenChar.test(c.peek())) c.pos += 1;
  const token = c.text.slice(start, c.pos);
  if (token === "") c.fail(c.eof || c.peek() === "\n" ? "expected a value" : `unexpected character '${c.peek()}' where a value should be`);
  if (token === "true") return true;
  if (token === "false") return false;
  if (/^[+-]?inf$/.test(token)) return token.startsWith("-") ? -Infinity : Infinity;
  if (/^[+-]?nan$/.test(token)) return Number.NaN;
  const radix = radixInt[token.slice(0, 2)];
  if (radix !== undefined && radix.pattern.test(token)) return safeInteger(c, BigInt(`0${token[1]}${token.slice(2).replaceAll("_", "")}`), start);
  if (decimalInt.test(token)) return safeInteger(c, BigInt(token.replaceAll("_", "")), start);
  if (float.test(token)) return Number(token.replaceAll("_", ""));
  if (dateLike.test(token)) return c.fail("dates and times are not supported in druvaa config files (write them as strings)", start);
  return c.fail(/^[A-Za-z]/.test(token) ? `'${token}' is not a value (strings need quotes: "${token}")` : `'${token}' is not a valid number`, start);
}

function safeInteger(c: Cursor, value: bigint, start: number): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(-Number.MAX_SAFE_INTEGER)) c.fail("integer out of range (beyond ±2^53−1)", start);
  return Number(value);
}
