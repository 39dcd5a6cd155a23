/**
 * What a config (with its command-line overrides) must get right before a role may start, so a
 * service never half-starts: required flags present, addresses readable by the role's own parser,
 * no two listening addresses of the role on one port of one host, NAME=VALUE lists well formed,
 * and every path the role opens at start there (devices, WRLs, TLS files, a state directory's
 * parent). It does not open anything: a device that exists may still be the wrong size or busy,
 * which the role itself reports when it opens it.
 */
import { existsSync } from "node:fs";
import type { ArgsDef } from "citty";
import { DruvaaError } from "../errors.ts";
import { formatAddress, type Address } from "../io/address.ts";
import { parseNamedValues } from "../roles/common.ts";
import { commandFlags, type ConfigProblem, type EffectiveFlag } from "./role-config.ts";
import { parentOf, type RoleSpec } from "./roles.ts";

/** Where a flag's value came from, for messages: "line 4", "the command line", "default". */
function origin(flag: EffectiveFlag): string {
  return flag.line !== null ? `line ${flag.line}` : flag.source === "default" ? "the default" : "the command line";
}

function errorText(error: unknown): { message: string; hint: string } {
  if (error instanceof DruvaaError) return { message: error.message, hint: error.hint ?? "" };
  return { message: error instanceof Error ? error.message : String(error), hint: "" };
}

/** 0.0.0.0, :: and no host (a listener that binds every interface) overlap every host. */
function anyHost(host: string | undefined): boolean {
  return host === undefined || host === "0.0.0.0" || host === "::";
}

function clash(a: Address, b: Address): boolean {
  if (a.kind === "unix" || b.kind === "unix") return a.kind === "unix" && b.kind === "unix" && a.path === b.path;
  if (a.port === 0 || a.port !== b.port) return false; // port 0: the system picks a free one
  return anyHost(a.host) || anyHost(b.host) || a.host!.toLowerCase() === b.host!.toLowerCase();
}

/** Every problem of the effective flags (from the file, the command line and the defaults). */
export function checkEffective(spec: RoleSpec, args: ArgsDef, effective: Map<string, EffectiveFlag>): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const add = (flag: EffectiveFlag | null, key: string, code: string, message: string, hint: string) => problems.push({ line: flag?.line ?? null, key, code, message, hint });
  const command = `druvaa ${spec.command.join(" ")}`;

  for (const [name, def] of commandFlags(args)) {
    if ((def as { required?: boolean }).required === true && !effective.has(name)) add(null, name, "CONFIG_MISSING_KEY", `${command} needs '${name}', and neither the file nor the command line gives it`, `Add ${name} = "${(def as { valueHint?: string }).valueHint ?? "VALUE"}" to the file`);
  }

  const listening: { flag: EffectiveFlag; address: Address; text: string }[] = [];
  for (const spec_ of spec.addresses) {
    const flag = effective.get(spec_.flag);
    if (flag === undefined || flag.values === true) continue;
    for (const value of flag.values) {
      const text = spec_.named === true ? value.slice(value.indexOf("=") + 1) : value;
      if (spec_.named === true && !value.includes("=")) continue; // reported with the NAME=VALUE checks below
      try {
        const address = spec_.parse(text);
        if (spec_.listens) listening.push({ flag, address, text });
      } catch (error) {
        const { message, hint } = errorText(error);
        add(flag, spec_.flag, "CONFIG_BAD_VALUE", `${spec_.flag}: ${message}`, hint);
      }
    }
  }
  for (let i = 0; i < listening.length; i += 1) {
    for (let j = i + 1; j < listening.length; j += 1) {
      const [a, b] = [listening[i]!, listening[j]!];
      if (!clash(a.address, b.address)) continue;
      // Named at the line of the one the file sets (the later one when both are in the file).
      const [here, there] = b.flag.line !== null || a.flag.line === null ? [b, a] : [a, b];
      const what = here.address.kind === "unix" ? `the same socket ${formatAddress(here.address)}` : `the same port ${here.address.kind === "tcp" ? here.address.port : ""} on the same host`;
      add(here.flag, here.flag.flag, "CONFIG_PORT_CONFLICT", `${here.flag.flag} ${formatAddress(here.address)} and ${there.flag.flag} ${formatAddress(there.address)} (${origin(there.flag)}) listen on ${what}`, `Give ${here.flag.flag} and ${there.flag.flag} different ports (defaults: ${defaultsOf(args, [here.flag.flag, there.flag.flag])})`);
    }
  }
  for (const { address, flag } of listening) {
    if (address.kind !== "unix") continue;
    const dir = parentOf(address.path);
    if (!existsSync(dir)) add(flag, flag.flag, "CONFIG_MISSING_PATH", `${flag.flag} ${formatAddress(address)}: no directory ${dir} for the socket`, `Create it: mkdir -p ${dir}`);
  }

  for (const path of spec.paths) {
    const flag = effective.get(path.flag);
    if (flag === undefined || flag.values === true) continue;
    let entries: { name: string | undefined; path: string }[];
    if (path.form === "path") entries = flag.values.map((value) => ({ name: undefined, path: value }));
    else {
      try {
        const named = parseNamedValues(flag.values, `--${path.flag}`, path.form === "named" ? "disk0=/dev/sdb" : "fast=/dev/sdb");
        entries = [...named].flatMap(([name, value]) => (path.form === "named-list" ? value.split(",") : [value]).map((p) => ({ name, path: p })));
      } catch (error) {
        const { message, hint } = errorText(error);
        add(flag, path.flag, "CONFIG_BAD_VALUE", message.replace(/^--/, ""), hint);
        continue;
      }
    }
    for (const entry of entries) {
      const target = path.need === "parent" ? parentOf(entry.path) : entry.path;
      if (existsSync(target)) continue;
      const label = `${path.flag}${entry.name === undefined ? "" : ` ${entry.name}`}`;
      const message = path.need === "parent" ? `${label}: no directory ${target} to hold the ${path.what} ${entry.path}` : `${label}: no such ${path.what} ${entry.path}`;
      add(flag, path.flag, "CONFIG_MISSING_PATH", message, path.hint(entry.path));
    }
  }
  // In file order, lines before problems without one.
  return problems.sort((a, b) => (a.line ?? Number.MAX_SAFE_INTEGER) - (b.line ?? Number.MAX_SAFE_INTEGER));
}

function defaultsOf(args: ArgsDef, names: string[]): string {
  const flags = commandFlags(args);
  const defaults = names.map((name) => `${name} ${typeof flags.get(name)?.default === "string" ? flags.get(name)!.default : "none"}`);
  return defaults.join(", ");
}
