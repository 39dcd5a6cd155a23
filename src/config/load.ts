/**
 * A config file from disk to flags: read it, take its role (from the command it is used with,
 * --role, or its own `role` key), check keys, types and what the role needs to start
 * (role-config.ts, checks.ts), and either give the flags it stands for or every problem with its
 * line. Used by `druvaa admin config check` and, before any role runs with --config, by cli.ts.
 */
import { readFileSync, statSync } from "node:fs";
import type { ArgsDef } from "citty";
import { DruvaaError, exitCodes, usageError } from "../errors.ts";
import { checkEffective } from "./checks.ts";
import { defaultConfigPath } from "./paths.ts";
import { flagsOnCommandLine, mergeFlags, parseRoleConfig, type ConfigProblem, type EffectiveFlag } from "./role-config.ts";
import { configRoles, isConfigRole, roleOfCommand, roleSpecs, type ConfigRole } from "./roles.ts";
import { tomlFileBytesMax } from "./constants.ts";
import { parseToml } from "./toml.ts";

export interface ConfigCheck {
  ok: boolean;
  /** null when the file names no valid role and none was given. */
  role: ConfigRole | null;
  file: string;
  /** The command line the file stands for, after `druvaa` (command-line overrides included). */
  args: string[];
  problems: ConfigProblem[];
  /** The flags the file adds to the command line it is used with (overridden ones left out). */
  added: string[];
  effective: Map<string, EffectiveFlag>;
}

function readConfigText(file: string, role: ConfigRole | undefined): string {
  const stat = statSync(file, { throwIfNoEntry: false });
  const where = role === undefined || file === defaultConfigPath(role) ? "" : ` (the packaged one is ${defaultConfigPath(role)})`;
  if (stat === undefined) throw new DruvaaError("CONFIG_NOT_FOUND", `config file ${file}: no such file`, `Check the path${where}`, exitCodes.notFound);
  if (!stat.isFile()) throw new DruvaaError("CONFIG_INVALID", `config file ${file}: not a regular file`, `Give the path of a TOML file${where}`, exitCodes.usage);
  if (stat.size > tomlFileBytesMax) throw new DruvaaError("CONFIG_INVALID", `config file ${file}: larger than ${tomlFileBytesMax} bytes: not a config file`, "Give the path of a TOML file", exitCodes.usage);
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    throw new DruvaaError("CONFIG_UNREADABLE", `config file ${file}: ${error instanceof Error ? error.message : String(error)}`, "Check its permissions: the role's user must be able to read it", exitCodes.refused);
  }
}

/**
 * Checks `file` as the config of `use.role` (or of the role it names itself). `rest` is the rest
 * of the command line it is used with: its flags override the file's.
 */
export async function checkConfigFile(file: string, use: { role?: ConfigRole; by?: string; rest?: readonly string[] }): Promise<ConfigCheck> {
  const text = readConfigText(file, use.role);
  let role = use.role;
  if (role === undefined) {
    const named = parseToml(text);
    const value = named.value.role;
    if (typeof value === "string" && isConfigRole(value)) role = value;
    else if (typeof value === "string") {
      const line = named.lines.get(JSON.stringify(["role"])) ?? 1;
      const problem = { line, key: "role", code: "CONFIG_BAD_ROLE", message: `role "${value}" is not a role`, hint: `Roles: ${configRoles.join(", ")}` };
      return { ok: false, role: null, file, args: [], problems: [problem], added: [], effective: new Map() };
    } else {
      throw new DruvaaError("CONFIG_ROLE_UNKNOWN", `config file ${file} does not say which role it is for`, `Add a line role = "staging" (or ${configRoles.filter((r) => r !== "staging").join(", ")}) to it, or give --role ROLE`, exitCodes.usage);
    }
  }
  const spec = roleSpecs[role];
  const command = await spec.load();
  const args = ((typeof command.args === "function" ? await command.args() : await command.args) ?? {}) as ArgsDef;
  const parsed = parseRoleConfig(text, spec, args, use.role === undefined ? undefined : { role: use.role, by: use.by ?? `as --role ${use.role}` });
  const rest = use.rest ?? [];
  const { added, effective } = mergeFlags(parsed.settings, args, rest);
  // Semantic checks only on a file that reads cleanly: on a broken one they would guess.
  const semantic = parsed.problems.some((problem) => problem.code === "CONFIG_SYNTAX") ? [] : checkEffective(spec, args, effective);
  const problems = [...parsed.problems, ...semantic].sort((a, b) => (a.line ?? Number.MAX_SAFE_INTEGER) - (b.line ?? Number.MAX_SAFE_INTEGER));
  const restWithoutConfig = dropConfigFlag(rest);
  return { ok: problems.length === 0, role, file, args: [...spec.command, ...restWithoutConfig, ...added], problems, added, effective };
}

/** The command line without its --config FILE (for showing what a file stands for). */
function dropConfigFlag(rest: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < rest.length; i += 1) {
    if (rest[i] === "--config") i += 1;
    else if (!rest[i]!.startsWith("--config=")) out.push(rest[i]!);
  }
  return out;
}

/** `FILE:LINE: message` (FILE: when the problem is not on a line of the file). */
export function problemText(file: string, problem: ConfigProblem): string {
  return `${file}${problem.line === null ? "" : `:${problem.line}`}: ${problem.message}`;
}

/** Every problem as one error: each `FILE:LINE: message` followed by its hint (the last one's is the error's hint). */
export function configInvalid(file: string, problems: readonly ConfigProblem[]): DruvaaError {
  const lines = problems.map((problem, index) => (index === problems.length - 1 || problem.hint === "" ? problemText(file, problem) : `${problemText(file, problem)}\n  hint: ${problem.hint}`));
  const last = problems[problems.length - 1];
  return new DruvaaError("CONFIG_INVALID", lines.join("\n"), last?.hint === "" ? `Check it with: druvaa admin config check ${file}` : last?.hint, exitCodes.usage);
}

/**
 * For cli.ts: when a role command is given --config FILE, the flags the file adds to its command
 * line (after checking file and overrides as a whole: a service never half-starts on a bad one).
 * undefined when the command is not a role command or has no --config.
 */
export async function configFlagsFor(path: readonly string[], args: ArgsDef, rest: readonly string[]): Promise<string[] | undefined> {
  const role = roleOfCommand(path.slice(1));
  if (role === undefined) return undefined;
  const given = flagsOnCommandLine(args, rest).get("config");
  if (!Array.isArray(given)) return undefined;
  if (given.length > 1) throw usageError("--config is given more than once", "Give one config file; flags on the command line override its keys");
  const file = given[0]!;
  const check = await checkConfigFile(file, { role, by: `with ${path.join(" ")}`, rest });
  if (!check.ok) throw configInvalid(file, check.problems);
  return check.added;
}
