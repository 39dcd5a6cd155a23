/**
 * What the packaged files say, taken from the amd64 .deb: the systemd units pass
 * `systemd-analyze verify` (no warning at all) and carry the restart policy, hardening and
 * ordering; every default config key is a flag of the command its unit runs; the cron examples
 * are commented out and name real flags; the man page renders without warnings; the bash and zsh
 * completions complete sub-commands, flags and aliases.
 */
import { expect, test } from "bun:test";
import { cpSync, linkSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { allCommands, cliTree, type CliCommand } from "../../packaging/lib/cli-tree.ts";
import { unitFiles } from "./expected.ts";
import { must, sh, type Built, testTimeoutMs } from "./fixture.ts";

/** Unit → [config file, command words] it runs. */
const roles: Record<string, [string, string[]]> = {
  "druvaa-staging.service": ["/etc/druvaa/staging.toml", ["staging", "serve"]],
  "druvaa-replica.service": ["/etc/druvaa/replica.toml", ["replica", "apply"]],
  "druvaa-panel.service": ["/etc/druvaa/panel.toml", ["panel"]],
  "druvaa-agent.service": ["/etc/druvaa/agent.toml", ["client", "agent"]],
  "druvaa-client@.service": ["/etc/druvaa/client/%i.toml", ["client", "attach"]],
};
const roleKeys: Record<string, string> = { staging: "staging", replica: "replica", panel: "panel", agent: "agent", "client/example": "client" };

/** Key=value lines of a unit (repeated keys keep every value). */
function unitKeys(text: string): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (match) keys.set(match[1]!, [...(keys.get(match[1]!) ?? []), match[2]!]);
  }
  return keys;
}

export function contentTests(get: () => Built): void {
  let root = "";
  let tree: CliCommand;
  const commandAt = (words: string[]) => allCommands(tree).find((c) => c.path.join(" ") === words.join(" "));
  const extracted = async () => {
    if (root === "") {
      root = join(get().dir, "content-root");
      await must(["dpkg-deb", "--extract", get().deb.x64, root]);
      tree = await cliTree();
    }
    return root;
  };

  test("systemd-analyze verify passes on every unit (and a client instance) without a warning", async () => {
    const installed = await extracted();
    // A root with the host's systemd units (targets the druvaa units refer to) plus the package's
    // units and binary: verify then checks the ExecStart binaries and the man: documentation too.
    const verifyRoot = join(get().dir, "verify-root");
    mkdirSync(join(verifyRoot, "usr/bin"), { recursive: true });
    cpSync("/usr/lib/systemd/system", join(verifyRoot, "usr/lib/systemd/system"), { recursive: true, verbatimSymlinks: true });
    for (const unit of unitFiles) cpSync(join(installed, "usr/lib/systemd/system", unit), join(verifyRoot, "usr/lib/systemd/system", unit));
    linkSync(join(installed, "usr/bin/druvaa"), join(verifyRoot, "usr/bin/druvaa"));
    const env = { MANPATH: join(installed, "usr/share/man"), SYSTEMD_LOG_LEVEL: "notice" };
    const names = [...unitFiles.filter((u) => !u.includes("@")), "druvaa-client@disk0.service"];
    for (const unit of names) {
      const result = await sh(["systemd-analyze", "verify", `--root=${verifyRoot}`, unit], { env });
      expect({ unit, exitCode: result.exitCode, output: `${result.stdout}${result.stderr}`.trim() }).toEqual({ unit, exitCode: 0, output: "" });
    }
  }, testTimeoutMs);

  test("units: restart policy, hardening, the druvaa user where the role allows, config checked before start", async () => {
    const installed = await extracted();
    for (const unit of unitFiles) {
      const text = readFileSync(join(installed, "usr/lib/systemd/system", unit), "utf8");
      const keys = unitKeys(text);
      const [config, words] = roles[unit]!;
      const one = (key: string) => keys.get(key)?.join(" | ");
      expect({ unit, execStart: one("ExecStart"), execStartPre: one("ExecStartPre") }).toEqual({
        unit,
        execStart: `/usr/bin/druvaa ${words.join(" ")} --config ${config}`,
        execStartPre: `/usr/bin/druvaa admin config check ${config}`,
      });
      expect({ unit, restart: one("Restart"), protect: one("ProtectSystem"), nnp: one("NoNewPrivileges"), tmp: one("PrivateTmp"), home: one("ProtectHome"), mounts: one("RequiresMountsFor"), type: one("Type") })
        .toEqual({ unit, restart: "on-failure", protect: "strict", nnp: "yes", tmp: "yes", home: "yes", mounts: "/var/lib/druvaa", type: "simple" });
      expect(Number.parseInt(one("StartLimitBurst") ?? "0", 10)).toBeGreaterThan(0);
      expect(one("After")).toContain("network-online.target");
      // Writable: only state under /var/lib/druvaa.
      for (const path of (one("ReadWritePaths") ?? "").split(/[ |]+/)) expect(path.startsWith("/var/lib/druvaa")).toBe(true);
      const rootRole = unit === "druvaa-agent.service" || unit === "druvaa-client@.service";
      expect({ unit, user: one("User") }).toEqual({ unit, user: rootRole ? "root" : "druvaa" });
      if (rootRole) expect(text).toMatch(/# Root[:,]/); // says why
      expect(text).not.toContain("MemoryDenyWriteExecute=yes"); // the JIT needs W+X pages
    }
    const client = readFileSync(join(installed, "usr/lib/systemd/system/druvaa-client@.service"), "utf8");
    expect(unitKeys(client).get("After")!.join(" ")).toMatch(/local-fs\.target.*remote-fs\.target|remote-fs\.target.*local-fs\.target/);
  }, testTimeoutMs);

  test("default configs: valid TOML, the right role, every key a flag of the command the unit runs", async () => {
    const installed = await extracted();
    const files: [string, string[]][] = [["staging", ["staging", "serve"]], ["replica", ["replica", "apply"]], ["panel", ["panel"]], ["agent", ["client", "agent"]], ["client/example", ["client", "attach"]]];
    for (const [name, words] of files) {
      const config = Bun.TOML.parse(readFileSync(join(installed, "etc/druvaa", `${name}.toml`), "utf8")) as Record<string, unknown>;
      expect({ name, role: config.role }).toEqual({ name, role: roleKeys[name] });
      const flags = new Set(commandAt(words)!.flags.map((f) => f.name));
      for (const [key, value] of Object.entries(config)) {
        if (key === "role") continue;
        expect({ name, key, known: flags.has(key) }).toEqual({ name, key, known: true });
        const ok = typeof value === "string" || typeof value === "boolean" || Number.isInteger(value) || (Array.isArray(value) && value.every((v) => typeof v === "string"));
        expect({ name, key, ok }).toEqual({ name, key, ok: true });
      }
      for (const key of ["state-dir", "db"]) {
        if (typeof config[key] === "string") expect((config[key] as string).startsWith("/var/lib/druvaa/")).toBe(true);
      }
    }
  }, testTimeoutMs);

  test("default configs pass the packaged `druvaa admin config check` but for the paths the admin fills in", async () => {
    const installed = await extracted();
    for (const name of ["staging", "replica", "panel", "agent", "client/example"]) {
      const result = await sh([join(installed, "usr/bin/druvaa"), "admin", "config", "check", join(installed, "etc/druvaa", `${name}.toml`), "--json"]);
      const report = JSON.parse(result.stdout) as { role: string; problems: { code: string; key: string; message: string }[] };
      expect({ name, role: report.role }).toEqual({ name, role: roleKeys[name]! });
      // Only CONFIG_MISSING_PATH: FILL-IN devices, TLS files, directories made at install or
      // service start. No unknown key, wrong type, missing key or port conflict.
      expect({ name, codes: [...new Set(report.problems.map((p) => p.code))] }).toEqual({ name, codes: ["CONFIG_MISSING_PATH"] });
      expect(result.exitCode).not.toBe(0); // nothing half-starts from an unfilled default
      // Every packaged file marks what the admin must fill in (dradmin components counts it as not set up until then).
      expect({ name, fillIn: report.problems.some((p) => p.message.includes("FILL-IN")) }).toEqual({ name, fillIn: true });
    }
  }, testTimeoutMs);

  test("cron examples: all commented out, for drresync, drrestore and druvaa verify, with real flags", async () => {
    const installed = await extracted();
    const lines = readFileSync(join(installed, "etc/cron.d/druvaa"), "utf8").split("\n").filter((l) => l.trim() !== "");
    expect(lines.filter((l) => !l.startsWith("#"))).toEqual([]);
    // A commented job: "# m h dom mon dow user command ..."
    const jobs = lines.map((l) => /^# ((?:\S+\s+){5})root\s+(.*)$/.exec(l)).filter((m) => m !== null).map((m) => m[2]!);
    const commandOf: Record<string, string[]> = { drresync: ["resync"], drrestore: ["restore"], druvaa: [] };
    const seen = new Set<string>();
    for (const job of jobs) {
      const words = job.split(/\s+/);
      const path = [...commandOf[words[0]!]!, ...words.slice(1).filter((w, i, all) => !w.startsWith("-") && all.slice(0, i).every((p) => !p.startsWith("-")))];
      const command = commandAt(path);
      expect({ job, found: command !== undefined }).toEqual({ job, found: true });
      seen.add([words[0], ...path].join(" "));
      const known = new Set(command!.flags.map((f) => `--${f.name}`));
      for (const flag of words.filter((w) => w.startsWith("--"))) expect({ job, flag, known: known.has(flag) }).toEqual({ job, flag, known: true });
    }
    expect([...seen].sort()).toEqual(["drresync resync", "drrestore restore", "druvaa verify"].sort());
  }, testTimeoutMs);

  test("man page druvaa(1) renders without warnings and covers every command", async () => {
    const installed = await extracted();
    const page = join(get().dir, "druvaa.1");
    await Bun.write(page, gunzipSync(readFileSync(join(installed, "usr/share/man/man1/druvaa.1.gz"))));
    const rendered = await sh(["man", "--warnings", "-l", page], { env: { MANWIDTH: "100", LC_ALL: "C.UTF-8", MAN_KEEP_FORMATTING: "0" } });
    expect({ exitCode: rendered.exitCode, warnings: rendered.stderr }).toEqual({ exitCode: 0, warnings: "" });
    const text = rendered.stdout.replace(/.\u0008/g, "");
    for (const command of allCommands(tree).filter((c) => c.path.length > 0 && c.subcommands.length === 0)) {
      expect(text).toContain(`druvaa ${command.path.join(" ")}`);
    }
    for (const word of ["drresync", "drrestore", "dradmin", "/etc/druvaa/staging.toml", "druvaa-client@.service", "/var/lib/druvaa"]) expect(text).toContain(word);
  }, testTimeoutMs);

  test("bash completion: sub-commands, each command's flags, aliases", async () => {
    const installed = await extracted();
    const script = join(installed, "usr/share/bash-completion/completions/druvaa");
    const complete = async (...words: string[]) => {
      const program = `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _druvaa; printf '%s\\n' "\${COMPREPLY[@]}"`;
      const result = await sh(["bash", "-c", program, "bash", script, ...words]);
      expect(result.stderr).toBe("");
      return result.stdout.trim().split("\n").filter(Boolean).sort();
    };
    expect(await complete("druvaa", "")).toEqual(tree.subcommands.map((c) => c.path[0]!).sort());
    expect(await complete("druvaa", "client", "")).toEqual(["agent", "attach"]);
    expect(await complete("druvaa", "client", "attach", "--device", "d0=/dev/sdb", "--ch")).toEqual(["--changemap"]);
    expect(await complete("drresync", "--t")).toEqual(["--timeout", "--tls-ca", "--tls-cert", "--tls-key"]);
    expect(await complete("dradmin", "")).toEqual(commandAt(["admin"])!.subcommands.map((c) => c.path.at(-1)!).sort());
    for (const command of allCommands(tree).filter((c) => c.subcommands.length === 0 && c.path.length > 0)) {
      const expected = [...command.flags.filter((f) => f.type !== "positional").map((f) => `--${f.name}`), "--help"].sort();
      expect(await complete("druvaa", ...command.path, "--")).toEqual(expected);
    }
  }, testTimeoutMs);

  test("zsh completion: parses, and completes sub-commands, flags and aliases", async () => {
    const installed = await extracted();
    const dir = join(installed, "usr/share/zsh/vendor-completions");
    expect(readdirSync(dir)).toEqual(["_druvaa"]);
    const script = join(dir, "_druvaa");
    expect(readFileSync(script, "utf8").startsWith("#compdef druvaa drresync drrestore dradmin\n")).toBe(true);
    expect((await sh(["zsh", "-n", script])).exitCode).toBe(0);
    // zsh's completion widgets replaced by stubs that print what they were given.
    const complete = async (...words: string[]) => {
      const program = `_describe() { print -l -- \${(P)\${@[-1]}} }; compadd() { shift; print -l -- "$@" }; _files() { print FILES }
        script=$1; shift; words=("$@"); CURRENT=$#; source $script`;
      const result = await sh(["zsh", "-f", "-c", program, "zsh", script, ...words]);
      expect(result.stderr).toBe("");
      return result.stdout.trim().split("\n").map((l) => l.split(":")[0]!).sort();
    };
    expect(await complete("druvaa", "")).toEqual(tree.subcommands.map((c) => c.path[0]!).sort());
    expect(await complete("druvaa", "staging", "serve", "--")).toEqual([...commandAt(["staging", "serve"])!.flags.map((f) => `--${f.name}`), "--help"].sort());
    expect(await complete("drrestore", "--to", "")).toEqual(["FILES"]);
    expect(await complete("dradmin", "cert", "")).toEqual(commandAt(["admin", "cert"])!.subcommands.map((c) => c.path.at(-1)!).sort());
  }, testTimeoutMs);
}
