/**
 * `druvaa admin config show FILE`: the config a role would run with, as TOML with the defaults
 * filled in (marked) — or, with --json, {ok, role, file, config: {flag: value}, sources: {flag:
 * "file" | "default"}}. A file with problems is refused like `config check` refuses it.
 */
import { command, output } from "../cli-support.ts";
import { configInvalid } from "../config/load.ts";
import { roleSpecs } from "../config/roles.ts";
import { checkNamedFile, configFileArgs } from "./admin-config-support.ts";

const hidden = new Set(["json", "help", "config"]);

export default command({
  meta: { name: "show", description: "Show the config a role would run with: the file's keys and the defaults" },
  args: configFileArgs,
  examples: ["druvaa admin config show /etc/druvaa/replica.toml", "druvaa admin config show --role staging --json"],
  async run({ args }) {
    const check = await checkNamedFile(args);
    if (!check.ok) throw configInvalid(check.file, check.problems);
    const repeatable: readonly string[] = check.role === null ? [] : roleSpecs[check.role].repeatable;
    // The file's keys in its order, then the defaults.
    const entries = [...check.effective.values()].filter((flag) => !hidden.has(flag.flag)).sort((a, b) => (a.line ?? Number.MAX_SAFE_INTEGER) - (b.line ?? Number.MAX_SAFE_INTEGER));
    const config = Object.fromEntries(entries.map((flag) => [flag.flag, flag.values === true ? true : flag.values.length === 1 && !repeatable.includes(flag.flag) ? flag.values[0]! : flag.values]));
    const sources = Object.fromEntries(entries.map((flag) => [flag.flag, flag.source]));
    output(args.json, { ok: true, role: check.role, file: check.file, config, sources }, () =>
      [`# druvaa ${check.args.slice(0, check.role === "panel" ? 1 : 2).join(" ")}: ${check.file} with the defaults filled in`, `role = "${check.role}"`, ...Object.entries(config).map(([key, value]) => `${key} = ${JSON.stringify(value)}${sources[key] === "default" ? "  # default" : ""}`)].join("\n"),
    );
  },
});
