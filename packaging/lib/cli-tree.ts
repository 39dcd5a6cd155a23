/**
 * The druvaa command tree as data, read from src/cli.ts itself (every sub-command loaded, the
 * way `--help` loads it): the man page and the shell completions are generated from it, so they
 * cannot drift from the CLI. Does not run any command.
 */
import type { ArgsDef, CommandDef } from "citty";
import { main } from "../../src/cli.ts";

export type CliFlag = {
  /** Long name as typed, kebab-case, without dashes. */
  name: string;
  type: "boolean" | "string" | "enum" | "positional";
  description: string;
  valueHint?: string;
  /** Allowed values of an enum flag. */
  options?: string[];
  required: boolean;
  defaultValue?: string;
};

export type CliCommand = {
  /** Words after `druvaa`, e.g. ["client", "attach"]; [] for the root. */
  path: string[];
  description: string;
  flags: CliFlag[];
  subcommands: CliCommand[];
};

/** Sub-commands nested deeper than this are a bug in the tree (a cycle), not a CLI. */
const commandDepthMax = 8;

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

async function resolve<T>(value: T | (() => T | Promise<T>) | Promise<T>): Promise<T> {
  return typeof value === "function" ? await (value as () => T | Promise<T>)() : await value;
}

async function walk(cmd: CommandDef<any>, path: string[]): Promise<CliCommand> {
  if (path.length > commandDepthMax) throw new Error(`command tree deeper than ${commandDepthMax}: ${path.join(" ")}`);
  const meta = (await resolve(cmd.meta)) ?? {};
  const args = ((await resolve(cmd.args)) ?? {}) as ArgsDef;
  const flags: CliFlag[] = Object.entries(args).map(([name, def]) => {
    const d = def as { type?: CliFlag["type"]; description?: string; valueHint?: string; options?: string[]; required?: boolean; default?: unknown };
    const flag: CliFlag = { name: kebab(name), type: d.type ?? "string", description: d.description ?? "", required: d.required === true };
    if (d.valueHint !== undefined) flag.valueHint = d.valueHint;
    if (d.options !== undefined) flag.options = [...d.options];
    if (d.default !== undefined && d.type !== "boolean") flag.defaultValue = String(d.default);
    return flag;
  });
  const subs = (await resolve(cmd.subCommands)) as Record<string, CommandDef<any> | (() => Promise<CommandDef<any>>)> | undefined;
  const subcommands: CliCommand[] = [];
  for (const [name, entry] of Object.entries(subs ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    subcommands.push(await walk(await resolve(entry as CommandDef<any>), [...path, name]));
  }
  return { path, description: (meta as { description?: string }).description ?? "", flags, subcommands };
}

/** The whole tree from the root `druvaa` command. */
export async function cliTree(): Promise<CliCommand> {
  return walk(main, []);
}

/** Every command of the tree, depth first, root first. */
export function allCommands(root: CliCommand): CliCommand[] {
  return [root, ...root.subcommands.flatMap(allCommands)];
}
