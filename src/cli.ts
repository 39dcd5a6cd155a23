#!/usr/bin/env bun
/**
 * The only entry point of druvaa. Each command is its own file, loaded lazily with a
 * string-literal import() so `bun build --compile` bundles it. The binary also answers to
 * `drresync`, `drrestore` and `dradmin` (argv[0]) for scripts written for the original product.
 * A role command given `--config FILE` runs with the file's flags added (src/config/load.ts).
 */
import "./protocol/cbor-pure.ts"; // first: disables cbor-x's native addon before anything loads cbor-x
import { runCommand, type ArgsDef, type CommandDef } from "citty";
import { checkFlags, command, renderHelp, takeExitCode, withoutColors } from "./cli-support.ts";
import { DruvaaError, exitCodes } from "./errors.ts";
import { druvaaVersion } from "./version.ts";

export const main = command({
  meta: {
    name: "druvaa",
    version: druvaaVersion,
    description: "Block-level continuous disaster-recovery replicator",
  },
  subCommands: {
    demo: () => import("./commands/demo.ts").then((m) => m.default),
    wrl: () => import("./commands/wrl.ts").then((m) => m.default),
    changemap: () => import("./commands/changemap.ts").then((m) => m.default),
    sizing: () => import("./commands/sizing.ts").then((m) => m.default),
    status: () => import("./commands/status.ts").then((m) => m.default),
    version: () => import("./commands/version.ts").then((m) => m.default),
    replica: () => import("./roles/replica/command.ts").then((m) => m.default),
    restore: () => import("./commands/restore.ts").then((m) => m.default),
    failover: () => import("./commands/failover.ts").then((m) => m.default),
    failback: () => import("./commands/failback.ts").then((m) => m.default),
    resync: () => import("./commands/resync.ts").then((m) => m.default),
    verify: () => import("./commands/verify.ts").then((m) => m.default),
    checkpoint: () => import("./commands/checkpoint.ts").then((m) => m.default),
    client: () => import("./roles/client/command.ts").then((m) => m.default),
    staging: () => import("./roles/staging/command.ts").then((m) => m.default),
    admin: () => import("./commands/admin.ts").then((m) => m.default),
    panel: () => import("./roles/panel/command.ts").then((m) => m.default),
  },
  examples: [
    "druvaa demo                                  # a whole client→staging→replica system on image files",
    "druvaa wrl create --primary /dev/sdb         # make /dev/sdb a write log",
    "druvaa wrl info /dev/sdb --json",
    "druvaa sizing --avg-update-rate 10MB/h --outage-hours 24 ...",
  ],
});

/** Names the binary answers to, and the command each stands for. */
const aliases: Record<string, string[]> = {
  drresync: ["resync"],
  drrestore: ["restore"],
  dradmin: ["admin"],
};

/** The name we were invoked as: a link named drresync etc. runs that command. */
export function invokedAs(argv0: string | undefined, script: string | undefined): string[] {
  for (const candidate of [argv0, script]) {
    if (!candidate) continue;
    const base = candidate.split(/[\\/]/).pop()!.replace(/\.(exe|ts|js)$/i, "");
    const prefix = aliases[base];
    if (prefix) return prefix;
  }
  return [];
}

type Resolved = { cmd: CommandDef<any>; parent?: CommandDef<any>; rest: string[]; path: string[] };

/** Walks the sub-command chain the way citty does, to find the command that will run. */
async function resolveLeaf(cmd: CommandDef<any>, rawArgs: string[], path: string[], parent?: CommandDef<any>): Promise<Resolved> {
  const subCommands = typeof cmd.subCommands === "function" ? await cmd.subCommands() : await cmd.subCommands;
  if (subCommands) {
    const index = rawArgs.findIndex((a) => !a.startsWith("-"));
    const name = index >= 0 ? rawArgs[index] : undefined;
    if (name !== undefined) {
      const entry = subCommands[name];
      if (entry === undefined) {
        throw new DruvaaError("USAGE", `unknown command '${[...path, name].join(" ")}'`, `See: ${path.join(" ")} --help`, exitCodes.usage);
      }
      const sub = typeof entry === "function" ? await (entry as () => Promise<CommandDef<any>>)() : await entry;
      return resolveLeaf(sub, rawArgs.slice(index + 1), [...path, name], cmd);
    }
  }
  return parent === undefined ? { cmd, rest: rawArgs, path } : { cmd, parent, rest: rawArgs, path };
}

/** `args` with `flags` added before any `--` (the role commands take no positionals). */
function withFlags(args: string[], flags: string[]): string[] {
  const end = args.indexOf("--");
  return end < 0 ? [...args, ...flags] : [...args.slice(0, end), ...flags, ...args.slice(end)];
}

function printError(error: unknown, json: boolean): number {
  if (error instanceof DruvaaError) {
    if (json) process.stdout.write(`${JSON.stringify({ ok: false, error: error.toJSON() })}\n`);
    process.stderr.write(`druvaa: error: ${error.message}\n`);
    if (error.hint) process.stderr.write(`  hint: ${error.hint}\n`);
    return error.exitCode;
  }
  if (json) process.stdout.write(`${JSON.stringify({ ok: false, error: { code: "INTERNAL", message: String(error) } })}\n`);
  process.stderr.write(`druvaa: internal error (a bug; please report it with this output):\n${error instanceof Error ? error.stack : String(error)}\n`);
  return exitCodes.failure;
}

export async function run(rawArgs: string[]): Promise<number> {
  const json = rawArgs.includes("--json");
  try {
    if (rawArgs.length === 1 && (rawArgs[0] === "--version" || rawArgs[0] === "-v")) {
      process.stdout.write(`${druvaaVersion}\n`);
      return exitCodes.ok;
    }
    const leaf = await resolveLeaf(main, rawArgs, ["druvaa"]);
    const wantsHelp = rawArgs.some((a) => a === "--help" || a === "-h");
    const hasSubCommands = leaf.cmd.subCommands !== undefined;
    if (wantsHelp || (hasSubCommands && leaf.cmd.run === undefined)) {
      // The usage line names the whole command path ("druvaa client attach"), not just its parent.
      const parent = leaf.path.length > 1 ? { meta: { name: leaf.path.slice(0, -1).join(" "), version: druvaaVersion } } : undefined;
      process.stdout.write(`${await renderHelp(leaf.cmd, parent)}\n`);
      return wantsHelp || leaf.path.length === 1 && rawArgs.length === 0 ? exitCodes.ok : exitCodes.usage;
    }
    const args = (typeof leaf.cmd.args === "function" ? await leaf.cmd.args() : await leaf.cmd.args) as ArgsDef | undefined;
    let argv = rawArgs;
    let rest = leaf.rest;
    if (rest.some((a) => a === "--config" || a.startsWith("--config="))) {
      // A role with --config FILE runs as if the file's flags were typed (those not typed already),
      // once the file and the overrides check out as a whole (src/config/load.ts).
      const { configFlagsFor } = await import("./config/load.ts");
      const added = await configFlagsFor(leaf.path, args ?? {}, rest);
      if (added !== undefined) [argv, rest] = [withFlags(rawArgs, added), withFlags(rest, added)];
    }
    checkFlags(args ?? {}, rest, leaf.path.join(" "));
    takeExitCode();
    const { result } = await runCommand(main, { rawArgs: argv });
    return typeof result === "number" ? result : (takeExitCode() ?? exitCodes.ok);
  } catch (error) {
    // citty's own argument errors (missing required flag, bad enum value) are usage errors.
    if (error instanceof Error && (error as { code?: string }).code === "EARG") {
      return printError(new DruvaaError("USAGE", withoutColors(error.message), "Add --help to the command to see its options", exitCodes.usage), json);
    }
    return printError(error, json);
  }
}

if (import.meta.main) {
  const prefix = invokedAs(process.argv0, process.argv[1]);
  const code = await run([...prefix, ...process.argv.slice(2)]);
  process.exitCode = code;
}
