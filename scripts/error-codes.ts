/**
 * Writes docs/errors.md: every error code druvaa raises, with what it means (the message) and what
 * to do (the hint), read from the source with the TypeScript compiler's parser. A code is "raised"
 * where a string literal like "WRL_FULL" is the code argument of a call or `new` (DruvaaError,
 * ConfigRefusal, ApiError, the roles' refuse() helpers…) or the `code` of an object literal that
 * also has a `message`. The message and hint are the string or template arguments (or `message`
 * and `hint` properties) that follow it; a template's `${…}` parts show as `…`.
 *
 * Usage: bun scripts/error-codes.ts           # rewrites docs/errors.md
 *        bun scripts/error-codes.ts --check   # exits 1 if docs/errors.md is not what it would write
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import ts from "typescript";
import { curated } from "./error-fixes.ts";

const root = resolve(import.meta.dir, "..");
const outPath = join(root, "docs", "errors.md");
const codePattern = /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$/;
/** A field path argument (`devices[1].path`, `${field}.name`): skipped between the code and the message. */
const fieldPattern = /^[\w.[\]…]+$/;

export interface Occurrence {
  file: string;
  line: number;
  message: string | undefined;
  hint: string | undefined;
}

/** String values of the file's `const NAME = "…"` declarations (a default hint kept in a constant). */
type Constants = Map<string, string>;

function textOf(node: ts.Node | undefined, constants: Constants = new Map()): string | undefined {
  if (node === undefined) return undefined;
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return node.text;
  if (ts.isTemplateExpression(node)) return node.head.text + node.templateSpans.map((span) => `…${span.literal.text}`).join("");
  if (ts.isParenthesizedExpression(node)) return textOf(node.expression, constants);
  if (ts.isIdentifier(node)) return constants.get(node.text);
  if (ts.isConditionalExpression(node)) {
    const [yes, no] = [textOf(node.whenTrue, constants), textOf(node.whenFalse, constants)];
    return yes !== undefined && no !== undefined ? `${yes}; or: ${no}` : (yes ?? no);
  }
  if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.PlusToken) {
    const left = textOf(node.left, constants);
    const right = textOf(node.right, constants);
    return left === undefined && right === undefined ? undefined : `${left ?? "…"}${right ?? "…"}`;
  }
  return undefined;
}

const isCodeLiteral = (node: ts.Node): node is ts.StringLiteral | ts.NoSubstitutionTemplateLiteral => (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) && codePattern.test(node.text);

/** The codes an argument stands for: a code literal, or `cond ? "A_CODE" : "B_CODE"`. */
function codesOf(node: ts.Node): string[] {
  if (isCodeLiteral(node)) return [node.text];
  if (ts.isConditionalExpression(node) && isCodeLiteral(node.whenTrue) && isCodeLiteral(node.whenFalse)) return [node.whenTrue.text, node.whenFalse.text];
  return [];
}

interface Found {
  codes: string[];
  message: ts.Expression | undefined;
  hint: ts.Expression | undefined;
}

function fromArguments(args: readonly ts.Expression[], constants: Constants): Found | undefined {
  const index = args.findIndex((arg) => codesOf(arg).length > 0);
  if (index < 0) return undefined;
  // The code last (FieldError(field, message, hint, status, code)): the texts before it.
  const rest = index === args.length - 1 ? args.slice(0, index).filter((arg) => textOf(arg, constants) !== undefined || /field|message|hint/i.test(arg.getText())) : args.slice(index + 1);
  // A field path between the code and the message (refuse(code, field, message, hint)): skipped.
  const first = rest[0];
  const firstText = textOf(first, constants);
  if (rest.length > 1 && first !== undefined && ((firstText !== undefined && fieldPattern.test(firstText)) || (firstText === undefined && /field/i.test(first.getText())))) rest.shift();
  return { codes: codesOf(args[index]!), message: rest[0], hint: rest[1] };
}

function fromObject(node: ts.ObjectLiteralExpression): Found | undefined {
  const props = new Map<string, ts.Expression>();
  for (const prop of node.properties) if (ts.isPropertyAssignment(prop) && (ts.isIdentifier(prop.name) || ts.isStringLiteral(prop.name))) props.set(prop.name.text, prop.initializer);
  const codeNode = props.get("code");
  if (codeNode === undefined || codesOf(codeNode).length === 0 || !props.has("message")) return undefined;
  return { codes: codesOf(codeNode), message: props.get("message"), hint: props.get("hint") };
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [path] : [];
  });
}

/** A function that raises a code with its own parameters as message and hint (`badRegion(message, hint)`). */
interface Wrapper {
  codes: string[];
  messageIndex: number;
  hintIndex: number;
  hintDefault: string | undefined;
}

/** The named function `node` sits in, if `parameter` is one of its parameters: the function's name, the parameter's index and default. */
function enclosingParameter(node: ts.Node, parameter: ts.Expression | undefined, constants: Constants): { name: string; index: number; initial: string | undefined } | undefined {
  if (parameter === undefined || !ts.isIdentifier(parameter)) return undefined;
  for (let at: ts.Node | undefined = node.parent; at !== undefined; at = at.parent) {
    if (!ts.isFunctionDeclaration(at) && !ts.isArrowFunction(at) && !ts.isFunctionExpression(at)) continue;
    const index = at.parameters.findIndex((p) => ts.isIdentifier(p.name) && p.name.text === parameter.text);
    if (index < 0) return undefined;
    const name = ts.isFunctionDeclaration(at) ? at.name?.text : ts.isVariableDeclaration(at.parent) && ts.isIdentifier(at.parent.name) ? at.parent.name.text : undefined;
    return name === undefined ? undefined : { name, index, initial: textOf(at.parameters[index]!.initializer, constants) };
  }
  return undefined;
}

/** Every raised code in src/, with each place it is raised. */
export function collectCodes(): Map<string, Occurrence[]> {
  const codes = new Map<string, Occurrence[]>();
  const add = (code: string, occurrence: Occurrence) => codes.set(code, [...(codes.get(code) ?? []), occurrence]);
  for (const path of sourceFiles(join(root, "src")).sort()) {
    const source = ts.createSourceFile(path, readFileSync(path, "utf8"), ts.ScriptTarget.Latest, true);
    const file = relative(root, path);
    const lineOf = (node: ts.Node) => source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
    const constants: Constants = new Map();
    const wrappers = new Map<string, Wrapper>();
    const collectConstants = (node: ts.Node): void => {
      if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer !== undefined) {
        const text = textOf(node.initializer);
        if (text !== undefined) constants.set(node.name.text, text);
      }
      ts.forEachChild(node, collectConstants);
    };
    collectConstants(source);
    const visit = (node: ts.Node): void => {
      let found: Found | undefined;
      if ((ts.isCallExpression(node) || ts.isNewExpression(node)) && node.arguments !== undefined) found = fromArguments(node.arguments, constants);
      else if (ts.isObjectLiteralExpression(node)) found = fromObject(node);
      if (found !== undefined) {
        const message = textOf(found.message, constants);
        const hint = textOf(found.hint, constants);
        const wrappedMessage = message === undefined ? enclosingParameter(node, found.message, constants) : undefined;
        if (wrappedMessage !== undefined) {
          const wrappedHint = hint === undefined ? enclosingParameter(node, found.hint, constants) : undefined;
          wrappers.set(wrappedMessage.name, { codes: found.codes, messageIndex: wrappedMessage.index, hintIndex: wrappedHint?.index ?? -1, hintDefault: wrappedHint?.initial ?? hint });
        } else {
          for (const code of found.codes) add(code, { file, line: lineOf(node), message, hint });
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
    // The wrappers' callers, each with its own message and hint.
    const callers = (node: ts.Node): void => {
      if ((ts.isCallExpression(node) || ts.isNewExpression(node)) && ts.isIdentifier(node.expression) && wrappers.has(node.expression.text)) {
        const wrapper = wrappers.get(node.expression.text)!;
        const args = node.arguments ?? ts.factory.createNodeArray();
        const message = textOf(args[wrapper.messageIndex], constants);
        const hint = (wrapper.hintIndex >= 0 ? textOf(args[wrapper.hintIndex], constants) : undefined) ?? wrapper.hintDefault;
        for (const code of wrapper.codes) add(code, { file, line: lineOf(node), message, hint });
      }
      ts.forEachChild(node, callers);
    };
    callers(source);
    for (const [name, wrapper] of wrappers) for (const code of wrapper.codes) if (!codes.has(code)) add(code, { file, line: 0, message: undefined, hint: `(see ${name}() in ${file})` });
  }
  return codes;
}

const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\s*\n\s*/g, " ").trim();

function distinct(values: (string | undefined)[], most: number): string {
  const unique = [...new Set(values.filter((value): value is string => value !== undefined && value.trim() !== "").map(cell))];
  if (unique.length === 0) return "—";
  const shown = unique.slice(0, most).join(" · ");
  return unique.length > most ? `${shown} · (and ${unique.length - most} more wordings)` : shown;
}

export function render(codes: Map<string, Occurrence[]>): string {
  const lines = [
    "# Error codes",
    "",
    "<!-- Generated by `bun scripts/error-codes.ts` from the source; do not edit by hand. -->",
    "",
    "Every error druvaa reports carries a code, a message and, where there is one, a hint. A command",
    "prints `druvaa: error: MESSAGE` and `hint: HINT` on stderr (with `--json`, `{ok: false, error:",
    "{code, message, hint}}` on stdout); a role's control port and the panel's API answer",
    "`{ok: false, error: {code, message, hint, field?}}`. This page lists every code in the source:",
    "what it means (the message, `…` standing for the parts filled in at run time), what to do (the",
    "hint), and where it is raised. The [administrator's guide](admin.md) explains the common ones at",
    "more length (Troubleshooting, Alerts and what to do).",
    "",
    `${codes.size} codes.`,
    "",
    "| Code | Cause | Fix | Raised in |",
    "| --- | --- | --- | --- |",
  ];
  for (const code of Object.keys(curated)) if (!codes.has(code)) throw new Error(`scripts/error-fixes.ts: ${code} is raised nowhere in src/: drop its entry`);
  for (const code of [...codes.keys()].sort()) {
    const places = codes.get(code)!;
    const files = [...new Set(places.map((place) => place.file.replace(/^src\//, "")))];
    const where = files.slice(0, 3).map((file) => `\`${file}\``).join(", ") + (files.length > 3 ? ` (+${files.length - 3})` : "");
    const extra = curated[code];
    const hints = distinct(places.map((p) => p.hint), 3);
    if (extra?.fix !== undefined && hints !== "—") throw new Error(`scripts/error-fixes.ts: ${code} has a hint in the source (${hints}): drop its fix`);
    const cause = distinct([...places.map((p) => p.message), extra?.cause], 3);
    const fix = extra?.fix === undefined ? hints : cell(extra.fix);
    lines.push(`| \`${code}\` | ${cause} | ${fix} | ${where} |`);
  }
  return `${lines.join("\n")}\n`;
}

if (import.meta.main) {
  const text = render(collectCodes());
  if (process.argv.includes("--check")) {
    const current = readFileSync(outPath, "utf8");
    if (current !== text) {
      console.error("docs/errors.md is out of date: run `bun scripts/error-codes.ts`");
      process.exit(1);
    }
  } else {
    writeFileSync(outPath, text);
    console.error(`error-codes: ${outPath}`);
  }
}
