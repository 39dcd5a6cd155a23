/**
 * A role's config file as flags. Contract (docs/admin.md "Config files"; packaged configs and
 * systemd units are written against it):
 *   - an optional top-level `role = "staging" | "replica" | "client" | "agent" | "panel"`, which
 *     must match the command the file is used with;
 *   - every other top-level key is a long flag of that command, spelled as on the command line;
 *     a string, an integer for flags that take a number, a boolean for boolean flags (true: given,
 *     false: not given), an array of strings for repeatable flags; no tables; not json, help, config.
 * The file becomes the flags it stands for (fileArgv); flags on the command line override it key by
 * key, and a repeatable flag given on the command line replaces the file's whole list (mergeFlags).
 */
import type { ArgsDef } from "citty";
import { keySuggestionEditsMax } from "./constants.ts";
import { configRoles, isConfigRole, type ConfigRole, type RoleSpec } from "./roles.ts";
import { parseToml, tomlPath, type TomlValue } from "./toml.ts";

export interface ConfigProblem {
  /** The file's line the problem is on; null when it is about something not in the file. */
  line: number | null;
  key: string | null;
  code: string;
  message: string;
  hint: string;
}

/** One flag set by the file. */
export interface FileSetting {
  flag: string;
  /** true: a boolean flag given; a list for repeatable flags. */
  value: string | string[] | true;
  line: number;
}

export interface ParsedConfig {
  /** `role = ...` as written (valid or not), with its line. */
  role: { value: string; line: number } | undefined;
  settings: FileSetting[];
  problems: ConfigProblem[];
}

type FlagDef = { type?: string; valueHint?: string; options?: readonly string[]; alias?: string | string[]; required?: boolean; default?: unknown };

const notInFiles = new Set(["json", "help", "config"]);
const syntaxHint = 'TOML: key = "text", key = 123, key = true, key = ["a", "b"]; one key per line (see docs/admin.md, "Config files")';

/** The flags a command takes (no positionals), by long name. */
export function commandFlags(args: ArgsDef): Map<string, FlagDef> {
  const flags = new Map<string, FlagDef>();
  for (const [name, def] of Object.entries(args)) if (def.type !== "positional") flags.set(name, def as FlagDef);
  return flags;
}

/** A flag that takes a number may be written as a TOML integer (--protect-headers, --compression, ...). */
function takesNumber(def: FlagDef): boolean {
  return /^(BYTES|SIZE)$|\d/.test(def.valueHint ?? "");
}

/** The closest known name at most keySuggestionEditsMax edits away. */
export function closestName(name: string, known: Iterable<string>): string | undefined {
  let best: { name: string; edits: number } | undefined;
  for (const candidate of known) {
    const edits = editDistance(name, candidate);
    if (edits <= Math.min(keySuggestionEditsMax, Math.max(1, Math.floor(candidate.length / 2))) && (best === undefined || edits < best.edits)) best = { name: candidate, edits };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    previous = current;
  }
  return previous[b.length]!;
}

function describe(value: TomlValue): string {
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "a table";
  if (typeof value === "number") return Number.isInteger(value) ? "an integer" : "a float";
  return typeof value === "boolean" ? "a boolean" : "a string";
}

/**
 * Reads the file's text against a role's flags: syntax, role, keys and types. `expected` is the
 * role the file is used as (the command, or --role); undefined takes it from the file.
 */
export function parseRoleConfig(text: string, spec: RoleSpec, args: ArgsDef, expected: { role: ConfigRole; by: string } | undefined): ParsedConfig {
  const toml = parseToml(text);
  const problems: ConfigProblem[] = toml.errors.map((error) =>
    error.duplicateKey === undefined
      ? { line: error.line, key: null, code: "CONFIG_SYNTAX", message: error.message, hint: syntaxHint }
      : { line: error.line, key: error.duplicateKey, code: "CONFIG_DUPLICATE_KEY", message: error.message, hint: "Give each key once; a repeatable flag takes a list: key = [\"a\", \"b\"]" },
  );
  const flags = commandFlags(args);
  const command = `druvaa ${spec.command.join(" ")}`;
  const allowed = [...flags.keys()].filter((name) => !notInFiles.has(name));
  const settings: FileSetting[] = [];
  let role: ParsedConfig["role"];
  const roleValue = toml.value.role;
  if (typeof roleValue === "string" && isConfigRole(roleValue) && expected !== undefined && roleValue !== expected.role) {
    // The wrong role's keys would all look wrong: the mismatch is the one thing to fix.
    const line = toml.lines.get(tomlPath("role")) ?? 1;
    problems.push({ line, key: "role", code: "CONFIG_ROLE_MISMATCH", message: `role = "${roleValue}", but the file is used ${expected.by}`, hint: `Use it with druvaa ${roleCommandOf(roleValue)}, or fix the role key` });
    return { role: { value: roleValue, line }, settings: [], problems };
  }
  for (const [key, value] of Object.entries(toml.value)) {
    const line = toml.lines.get(tomlPath(key)) ?? 1;
    const problem = (code: string, message: string, hint: string) => problems.push({ line, key, code, message, hint });
    if (key === "role") {
      if (typeof value !== "string") {
        problem("CONFIG_WRONG_TYPE", `role must be a string, not ${describe(value)}`, `e.g. role = "${spec.role}"`);
        continue;
      }
      role = { value, line };
      if (!isConfigRole(value)) problem("CONFIG_BAD_ROLE", `role "${value}" is not a role`, `Roles: ${configRoles.join(", ")}${closestName(value, configRoles) ? ` (did you mean "${closestName(value, configRoles)}"?)` : ""}`);
      continue;
    }
    const def = flags.get(key);
    if (def === undefined || notInFiles.has(key)) {
      if (notInFiles.has(key)) problem("CONFIG_KEY_NOT_ALLOWED", `'${key}' cannot be set in a config file`, key === "json" ? "Give --json on the command line" : `Keys of ${command}: ${allowed.join(", ")}`);
      else {
        const near = closestName(key, allowed) ?? closestName(key.replace(/_/g, "-").replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), allowed);
        problem("CONFIG_UNKNOWN_KEY", `unknown key '${key}' for ${command}${near === undefined ? "" : ` (did you mean '${near}'?)`}`, `Keys of ${command}: ${allowed.join(", ")}`);
      }
      continue;
    }
    const checked = checkValue(key, value, def, spec.repeatable.includes(key));
    if ("error" in checked) problem("CONFIG_WRONG_TYPE", checked.error, typeHint(key, def, spec.repeatable.includes(key)));
    else if (checked.value !== false) settings.push({ flag: key, value: checked.value, line });
  }
  return { role, settings, problems };
}

function roleCommandOf(role: string): string {
  return role === "staging" ? "staging serve" : role === "replica" ? "replica apply" : role === "client" ? "client attach" : role === "agent" ? "client agent" : "panel";
}

/** The setting's value (false: a boolean flag not given), or what is wrong with it. */
function checkValue(key: string, value: TomlValue, def: FlagDef, repeatable: boolean): { value: FileSetting["value"] | false } | { error: string } {
  const wrong = (what: string) => ({ error: `${key} must be ${what}, not ${describe(value)}` });
  if (def.type === "boolean") return typeof value === "boolean" ? { value } : wrong("true or false");
  const scalar = (item: TomlValue): string | undefined => {
    if (typeof item === "string") return item;
    if (typeof item === "number" && Number.isInteger(item) && takesNumber(def)) return String(item);
    return undefined;
  };
  const what = takesNumber(def) ? "a string or an integer" : "a string";
  if (Array.isArray(value)) {
    if (!repeatable) return { error: `${key} takes one value, not an array (only repeatable flags take a list)` };
    const items = value.map(scalar);
    const bad = items.findIndex((item) => item === undefined);
    if (bad >= 0) return { error: `${key}[${bad}] must be ${what}, not ${describe(value[bad]!)}` };
    const list = items as string[];
    const option = list.find((item) => def.options !== undefined && !def.options.includes(item));
    return option === undefined ? { value: list } : { error: `${key}: "${option}" is not one of ${def.options!.join(", ")}` };
  }
  const single = scalar(value);
  if (single === undefined) return wrong(repeatable ? `${what} or an array of them` : what);
  if (def.options !== undefined && !def.options.includes(single)) return { error: `${key}: "${single}" is not one of ${def.options.join(", ")}` };
  return { value: repeatable ? [single] : single };
}

function typeHint(key: string, def: FlagDef, repeatable: boolean): string {
  if (def.type === "boolean") return `e.g. ${key} = true`;
  const example = def.valueHint ?? "VALUE";
  return repeatable ? `e.g. ${key} = ["${example}", "${example}"]` : `e.g. ${key} = "${example}"`;
}

/** The command-line flags a file's settings stand for. */
export function fileArgv(settings: readonly FileSetting[]): string[] {
  return settings.flatMap(({ flag, value }) => (value === true ? [`--${flag}`] : typeof value === "string" ? [`--${flag}`, value] : value.flatMap((item) => [`--${flag}`, item])));
}

/** A flag as it takes effect: from the file (with its line), the command line, or the default. */
export interface EffectiveFlag {
  flag: string;
  values: string[] | true;
  line: number | null;
  source: "file" | "command line" | "default";
}

/** The long names of the flags given on a command line (aliases and --no-X resolved). */
export function flagsOnCommandLine(args: ArgsDef, rest: readonly string[]): Map<string, string[] | boolean> {
  const names = new Map<string, { name: string; def: FlagDef; negated: boolean }>();
  for (const [name, def] of commandFlags(args)) {
    const alias = def.alias === undefined ? [] : Array.isArray(def.alias) ? def.alias : [def.alias];
    for (const n of [name, ...alias]) names.set(n, { name, def, negated: false });
    if (def.type === "boolean") names.set(`no-${name}`, { name, def, negated: true });
  }
  const given = new Map<string, string[] | boolean>();
  for (let i = 0; i < rest.length; i += 1) {
    const arg = rest[i]!;
    if (arg === "--") break;
    if (!arg.startsWith("-") || arg === "-") continue;
    const [name, inline] = arg.replace(/^--?/, "").split(/=(.*)/s) as [string, string | undefined];
    const found = names.get(name);
    if (found === undefined) continue;
    if (found.def.type === "boolean") {
      given.set(found.name, inline === undefined ? !found.negated : inline !== "false");
      continue;
    }
    const value = inline ?? rest[(i += 1)];
    if (value === undefined) continue;
    const before = given.get(found.name);
    given.set(found.name, [...(Array.isArray(before) ? before : []), value]);
  }
  return given;
}

/**
 * File settings under a command line: a flag on the command line wins over the file's key (a
 * repeatable flag's list as a whole). Returns the file flags still to add, and every flag in
 * effect with where it came from.
 */
export function mergeFlags(settings: readonly FileSetting[], args: ArgsDef, rest: readonly string[]): { added: string[]; effective: Map<string, EffectiveFlag> } {
  const onCommandLine = flagsOnCommandLine(args, rest);
  const kept = settings.filter((setting) => !onCommandLine.has(setting.flag));
  const effective = new Map<string, EffectiveFlag>();
  for (const [flag, def] of commandFlags(args)) {
    if (typeof def.default === "string") effective.set(flag, { flag, values: [def.default], line: null, source: "default" });
  }
  for (const setting of kept) {
    effective.set(setting.flag, { flag: setting.flag, values: setting.value === true ? true : typeof setting.value === "string" ? [setting.value] : setting.value, line: setting.line, source: "file" });
  }
  for (const [flag, value] of onCommandLine) {
    if (value === false) effective.delete(flag);
    else effective.set(flag, { flag, values: value === true ? true : value, line: null, source: "command line" });
  }
  return { added: fileArgv(kept), effective };
}
