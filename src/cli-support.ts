/**
 * Helpers every command uses: examples in --help, strict flag checking, repeated flags, --json
 * output. citty parses leniently (unknown flags pass silently); a DR tool must not, so the entry
 * point checks every flag against the command's definition before running it.
 */
import { defineCommand, renderUsage, type ArgsDef, type CommandDef } from "citty";
import { usageError } from "./errors.ts";

const examplesByCommand = new WeakMap<object, string[]>();

/** defineCommand plus usage examples shown at the end of `--help`. */
export function command<const T extends ArgsDef>(def: CommandDef<T> & { examples?: string[] }): CommandDef<T> {
  const { examples, ...rest } = def;
  const defined = defineCommand(rest as CommandDef<T>);
  if (examples) examplesByCommand.set(defined, examples);
  return defined;
}

/** `text` without its terminal colour codes (citty colours its usage and its argument errors). */
export const withoutColors = (text: string): string => text.replace(/\u001b\[[0-9;]*m/g, "");

/** The command's --help text with its examples; plain (no colour codes) unless `color` (stdout is a terminal). */
export async function renderHelp(cmd: CommandDef<any>, parent?: CommandDef<any>, color = process.stdout.isTTY === true): Promise<string> {
  const rendered = await renderUsage(cmd, parent);
  const usage = color ? rendered : withoutColors(rendered);
  const examples = examplesByCommand.get(cmd);
  if (!examples?.length) return usage;
  return `${usage}\nEXAMPLES\n\n${examples.map((line) => `  ${line}`).join("\n")}\n`;
}

/** Flags common to all commands that are handled by the entry point itself. */
const globalFlags = new Set(["help", "h", "json", "verbose", "quiet"]);

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Refuses flags the command does not define, with the command's --help as hint. */
export function checkFlags(args: ArgsDef, rawArgs: string[], commandPath: string): void {
  const known = new Map<string, { type: string | undefined }>();
  for (const [name, def] of Object.entries(args)) {
    if (def.type === "positional") continue;
    const alias = (def as { alias?: string | string[] }).alias;
    const aliases = alias === undefined ? [] : Array.isArray(alias) ? alias : [alias];
    for (const n of [name, kebab(name), ...aliases]) known.set(n, { type: def.type });
    if (def.type === "boolean") known.set(`no-${kebab(name)}`, { type: "boolean" });
  }
  for (let i = 0; i < rawArgs.length; i += 1) {
    const arg = rawArgs[i]!;
    if (arg === "--") break;
    if (!arg.startsWith("-") || arg === "-") continue;
    const name = arg.replace(/^--?/, "").split("=")[0]!;
    const def = known.get(name);
    if (def === undefined) {
      if (globalFlags.has(name)) continue;
      throw usageError(`unknown option --${name} for '${commandPath}'`, `See: ${commandPath} --help`);
    }
    if ((def.type === "string" || def.type === "enum") && !arg.includes("=")) {
      const value = rawArgs[i + 1];
      if (value === undefined) throw usageError(`option --${name} needs a value`, `See: ${commandPath} --help`);
      i += 1;
    }
  }
}

/** All values of a flag that may be given more than once (`--secondary A --secondary B`). */
export function repeatedFlag(rawArgs: string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < rawArgs.length; i += 1) {
    const arg = rawArgs[i]!;
    if (arg === "--") break;
    if (arg === `--${name}`) {
      const value = rawArgs[i + 1];
      if (value !== undefined) values.push(value);
      i += 1;
    } else if (arg.startsWith(`--${name}=`)) {
      values.push(arg.slice(name.length + 3));
    }
  }
  return values;
}

/** The `--json` flag definition, shared so every command spells it the same. */
export const jsonFlag = { type: "boolean", description: "Print the result as one JSON object on stdout (for scripts)" } as const;

/** Prints a command's result: JSON for scripts, or the human text. */
export function output(json: boolean | undefined, result: unknown, human: () => string): void {
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else process.stdout.write(`${human()}\n`);
}

/**
 * The exit code of a command that ends without an error but must not exit 0 (`druvaa verify`
 * found differences: its result is printed normally, then exit 1). citty drops what a
 * sub-command's run() returns, so the command leaves it here and cli.ts takes it.
 */
let pendingExitCode: number | undefined;

export function setExitCode(code: number): void {
  pendingExitCode = code;
}

/** The code set by setExitCode() since the last call (cli.ts, once per command run). */
export function takeExitCode(): number | undefined {
  const code = pendingExitCode;
  pendingExitCode = undefined;
  return code;
}
