/**
 * Role config files (src/config/): keys, types and role checked against the command's own flags,
 * the flags a file stands for, command-line overrides, and the checks made before a role starts
 * (ports, paths, required keys) — each problem with its line, code and hint.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkConfigFile, configFlagsFor, configInvalid } from "../../src/config/load.ts";
import { flagsOnCommandLine, mergeFlags } from "../../src/config/role-config.ts";
import { configRoles, roleSpecs, type ConfigRole } from "../../src/config/roles.ts";
import { DruvaaError, exitCodes } from "../../src/errors.ts";
import { repoRoot } from "../helpers/cli.ts";

let dir = "";
let fileCount = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "druvaa-config-"));
  for (const name of ["wrl.img", "disk0.img", "disk1.img", "cert.pem", "map.img"]) writeFileSync(join(dir, name), "x");
  mkdirSync(join(dir, "state"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes `lines` to a new file in the test dir; returns its path. */
function file(...lines: string[]): string {
  const path = join(dir, `config-${(fileCount += 1)}.toml`);
  writeFileSync(path, `${lines.join("\n")}\n`);
  return path;
}

async function argsOf(role: ConfigRole) {
  const command = await roleSpecs[role].load();
  return (await (typeof command.args === "function" ? command.args() : command.args)) as Record<string, any>;
}

/** The problems of a file as [line, code] pairs, in order. */
async function problemsOf(path: string, role?: ConfigRole): Promise<[number | null, string][]> {
  const check = await checkConfigFile(path, role === undefined ? {} : { role, by: "in the test" });
  return check.problems.map((problem) => [problem.line, problem.code]);
}

describe("a valid file is the command line it stands for", () => {
  test("strings, integers for number flags, booleans (false: not given), lists for repeatable flags", async () => {
    const path = file(
      'role = "staging"',
      "# comment",
      'listen = "127.0.0.1:7001"',
      `wrl = ["w0=${dir}/wrl.img"]`,
      'replica = "w0=127.0.0.1:7003"',
      "compression = 3",
      "insecure = true",
      "managed = false",
      `state-dir = "${dir}/state/staging"`,
    );
    const check = await checkConfigFile(path, {});
    expect(check.problems).toEqual([]);
    expect(check).toMatchObject({ ok: true, role: "staging" });
    expect(check.args).toEqual(["staging", "serve", "--listen", "127.0.0.1:7001", "--wrl", `w0=${dir}/wrl.img`, "--replica", "w0=127.0.0.1:7003", "--compression", "3", "--insecure", "--state-dir", `${dir}/state/staging`]);
  });

  test("the role comes from the command (or --role) when the file has no role key", async () => {
    const path = file(`device = ["d0=${dir}/disk0.img", "d1=${dir}/disk1.img"]`, "protect-headers = 0");
    const check = await checkConfigFile(path, { role: "replica", by: "with druvaa replica apply" });
    expect(check.ok).toBe(true);
    expect(check.args).toEqual(["replica", "apply", "--device", `d0=${dir}/disk0.img`, "--device", `d1=${dir}/disk1.img`, "--protect-headers", "0"]);
    await expect(checkConfigFile(path, {})).rejects.toMatchObject({ code: "CONFIG_ROLE_UNKNOWN", exitCode: exitCodes.usage, hint: expect.stringContaining("--role") });
  });

  test("a missing file is CONFIG_NOT_FOUND with the packaged path as a hint", async () => {
    await expect(checkConfigFile(join(dir, "nope.toml"), { role: "panel" })).rejects.toMatchObject({ code: "CONFIG_NOT_FOUND", hint: expect.stringContaining("panel.toml") });
  });
});

describe("keys, types and role: each problem on its line", () => {
  test("unknown keys suggest the closest flag and list the command's flags", async () => {
    const check = await checkConfigFile(file('role = "replica"', `device = "d0=${dir}/disk0.img"`, 'lisen = ":7003"', "state_dir = 'x'"), {});
    expect(check.problems.map((p) => [p.line, p.code, p.key])).toEqual([
      [3, "CONFIG_UNKNOWN_KEY", "lisen"],
      [4, "CONFIG_UNKNOWN_KEY", "state_dir"],
    ]);
    expect(check.problems[0]!.message).toBe("unknown key 'lisen' for druvaa replica apply (did you mean 'listen'?)");
    expect(check.problems[1]!.message).toContain("did you mean 'state-dir'?");
    expect(check.problems[0]!.hint).toMatch(/^Keys of druvaa replica apply: listen, device, .*restore.*protect-headers/);
  });

  test("wrong types: a string for a boolean, an array for a single flag, a table, an integer for an address", async () => {
    const path = file('role = "staging"', 'insecure = "yes"', 'listen = ["a:1", "b:2"]', "control = 6002", `wrl = ["w0=${dir}/wrl.img", 5]`, "[managed]", "x = 1");
    const check = await checkConfigFile(path, {});
    expect(check.problems.map((p) => [p.line, p.code, p.message])).toEqual([
      [2, "CONFIG_WRONG_TYPE", "insecure must be true or false, not a string"],
      [3, "CONFIG_WRONG_TYPE", "listen takes one value, not an array (only repeatable flags take a list)"],
      [4, "CONFIG_WRONG_TYPE", "control must be a string, not an integer"],
      [5, "CONFIG_WRONG_TYPE", "wrl[1] must be a string, not an integer"],
      [6, "CONFIG_WRONG_TYPE", "managed must be true or false, not a table"],
    ]);
    expect(check.problems[0]!.hint).toBe("e.g. insecure = true");
    expect(check.problems[3]!.hint).toBe('e.g. wrl = ["NAME=PATH[,PATH...]", "NAME=PATH[,PATH...]"]');
  });

  test("duplicate keys, keys not allowed in files, and syntax errors, all at once", async () => {
    const path = file('role = "panel"', 'db = "/tmp/a.db"', "json = true", 'db = "/tmp/b.db"', "config = 'x'", "listen = localhost");
    expect(await problemsOf(path)).toEqual([
      [3, "CONFIG_KEY_NOT_ALLOWED"],
      [4, "CONFIG_DUPLICATE_KEY"],
      [5, "CONFIG_KEY_NOT_ALLOWED"],
      [6, "CONFIG_SYNTAX"],
    ]);
  });

  test("role: must match the command, must be a role, must be a string", async () => {
    const staging = file('role = "staging"', `wrl = "w0=${dir}/wrl.img"`);
    const mismatch = await checkConfigFile(staging, { role: "replica", by: "with druvaa replica apply" });
    // Only the mismatch: the other role's keys would all look wrong.
    expect(mismatch.problems).toEqual([{ line: 1, key: "role", code: "CONFIG_ROLE_MISMATCH", message: 'role = "staging", but the file is used with druvaa replica apply', hint: "Use it with druvaa staging serve, or fix the role key" }]);
    expect(await problemsOf(file('role = "stagin"'))).toEqual([[1, "CONFIG_BAD_ROLE"]]);
    expect(await problemsOf(file("# x", "role = 1"), "agent")).toEqual([[2, "CONFIG_WRONG_TYPE"]]);
  });
});

describe("checks before a role starts", () => {
  test("two listening flags on one port of one host conflict; the line and the other flag are named", async () => {
    const check = await checkConfigFile(file('role = "replica"', `device = "d0=${dir}/disk0.img"`, 'listen = "127.0.0.1:7003"', 'control = ":7003"'), {});
    expect(check.problems).toEqual([
      { line: 4, key: "control", code: "CONFIG_PORT_CONFLICT", message: "control 127.0.0.1:7003 and listen 127.0.0.1:7003 (line 3) listen on the same port 7003 on the same host", hint: "Give control and listen different ports (defaults: control 127.0.0.1:6004, listen 127.0.0.1:6003)" },
    ]);
  });

  test("a flag set to another flag's default port conflicts with that default; any-host overlaps every host; port 0 never", async () => {
    const onDefault = await checkConfigFile(file('role = "staging"', 'listen = ":6002"', "managed = true"), {});
    expect(onDefault.problems.map((p) => [p.line, p.code, p.message])).toEqual([[2, "CONFIG_PORT_CONFLICT", "listen 127.0.0.1:6002 and control 127.0.0.1:6002 (the default) listen on the same port 6002 on the same host"]]);
    const anyHost = await checkConfigFile(file('role = "agent"'), { role: "agent", by: "x", rest: [] });
    expect(anyHost.ok).toBe(true);
    const wildcard = await checkConfigFile(file(`device = "d0=${dir}/disk0.img"`, 'listen = "0.0.0.0:7100"', 'restore = "10.1.2.3:7100"', 'control = "127.0.0.1:0"'), { role: "replica", by: "x" });
    expect(wildcard.problems.map((p) => [p.line, p.code])).toEqual([[3, "CONFIG_PORT_CONFLICT"]]);
    const zero = await checkConfigFile(file(`device = "d0=${dir}/disk0.img"`, 'listen = "127.0.0.1:0"', 'restore = "127.0.0.1:0"', 'control = "127.0.0.1:0"'), { role: "replica", by: "x" });
    expect(zero.problems).toEqual([]);
  });

  test("missing devices, WRLs, change maps, TLS files, socket and state directories", async () => {
    const path = file(
      'role = "client"',
      `device = ["d0=${dir}/disk0.img", "d1=/dev/druvaa-no-such-disk"]`,
      'staging = "127.0.0.1:7001"',
      'wrl = "w0"',
      `export = "unix:${dir}/no-dir/nbd.sock"`,
      `changemap = "${dir}/no-map.img"`,
      `tls-cert = "${dir}/cert.pem"`,
      `tls-key = "${dir}/no-key.pem"`,
      `state-dir = "${dir}/no-parent/client"`,
    );
    const check = await checkConfigFile(path, {});
    expect(check.problems.map((p) => [p.line, p.code, p.key])).toEqual([
      [2, "CONFIG_MISSING_PATH", "device"],
      [5, "CONFIG_MISSING_PATH", "export"],
      [6, "CONFIG_MISSING_PATH", "changemap"],
      [8, "CONFIG_MISSING_PATH", "tls-key"],
      [9, "CONFIG_MISSING_PATH", "state-dir"],
    ]);
    expect(check.problems[0]!.message).toBe("device d1: no such device /dev/druvaa-no-such-disk");
    expect(check.problems[0]!.hint).toBe("Check the device name with: lsblk");
    expect(check.problems[4]!.hint).toBe(`Create its parent directory: mkdir -p ${dir}/no-parent`);
  });

  test("required flags missing from file and command line; bad NAME=VALUE and addresses", async () => {
    const check = await checkConfigFile(file('role = "client"', 'device = "nodevice"', 'staging = "a:b:c"'), {});
    expect(check.problems.map((p) => [p.line, p.code, p.key])).toEqual([
      [2, "CONFIG_BAD_VALUE", "device"],
      [3, "CONFIG_BAD_VALUE", "staging"],
      [null, "CONFIG_MISSING_KEY", "wrl"],
      [null, "CONFIG_MISSING_KEY", "export"],
    ]);
    expect(check.problems[1]!.message).toContain('address "a:b:c"');
  });

  test("a file with syntax errors gets no semantic checks (they would guess)", async () => {
    expect(await problemsOf(file('role = "client"', "device = [", 'wrl = "w0"'))).toEqual([[3, "CONFIG_SYNTAX"]]);
  });
});

describe("command-line overrides", () => {
  test("a flag on the command line wins over the file's key; a repeated one replaces the whole list", async () => {
    const path = file(`device = ["d0=${dir}/disk0.img", "d1=${dir}/disk1.img"]`, 'listen = "127.0.0.1:7003"', "insecure = true", "protect-headers = 0");
    const check = await checkConfigFile(path, { role: "replica", by: "x", rest: ["--config", path, "--device", `x=${dir}/disk1.img`, "--listen=127.0.0.1:7999", "--no-insecure"] });
    expect(check.added).toEqual(["--protect-headers", "0"]);
    expect(check.effective.get("device")).toEqual({ flag: "device", values: [`x=${dir}/disk1.img`], line: null, source: "command line" });
    expect(check.effective.get("listen")!.values).toEqual(["127.0.0.1:7999"]);
    expect(check.effective.has("insecure")).toBe(false);
    expect(check.effective.get("control")).toMatchObject({ source: "default", values: ["127.0.0.1:6004"] });
  });

  test("overrides take part in the checks: a command-line port may clash with a file's", async () => {
    const path = file(`device = "d0=${dir}/disk0.img"`, 'listen = "127.0.0.1:7003"');
    const check = await checkConfigFile(path, { role: "replica", by: "x", rest: ["--restore", "127.0.0.1:7003"] });
    expect(check.problems.map((p) => [p.line, p.message])).toEqual([[2, "listen 127.0.0.1:7003 and restore 127.0.0.1:7003 (the command line) listen on the same port 7003 on the same host"]]);
  });

  test("flagsOnCommandLine resolves --x=v, --no-x and stops at --", async () => {
    const args = { a: { type: "string" }, b: { type: "boolean" }, c: { type: "string", alias: "C" } } as const;
    expect(Object.fromEntries(flagsOnCommandLine(args, ["--a", "1", "--a=2", "--no-b", "-C", "3", "--", "--a", "9"]))).toEqual({ a: ["1", "2"], b: false, c: ["3"] });
    const merged = mergeFlags([{ flag: "a", value: "f", line: 1 }, { flag: "b", value: true, line: 2 }], args, ["--c", "x"]);
    expect(merged.added).toEqual(["--a", "f", "--b"]);
  });

  test("configFlagsFor: only for role commands with --config; refuses two; a bad file is one CONFIG_INVALID", async () => {
    const args = await argsOf("replica");
    expect(await configFlagsFor(["druvaa", "status"], args, ["--config", "x"])).toBeUndefined();
    expect(await configFlagsFor(["druvaa", "replica", "apply"], args, ["--listen", ":1"])).toBeUndefined();
    await expect(configFlagsFor(["druvaa", "replica", "apply"], args, ["--config", "a", "--config", "b"])).rejects.toMatchObject({ code: "USAGE" });
    const bad = file(`device = "d0=${dir}/disk0.img"`, "lisen = 1", "insecure = 1");
    const error = await configFlagsFor(["druvaa", "replica", "apply"], args, ["--config", bad]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DruvaaError);
    expect(error).toMatchObject({ code: "CONFIG_INVALID", exitCode: exitCodes.usage, hint: "e.g. insecure = true" });
    expect((error as Error).message.split("\n")).toEqual([`${bad}:2: unknown key 'lisen' for druvaa replica apply (did you mean 'listen'?)`, expect.stringMatching(/^ {2}hint: Keys of druvaa replica apply: /), `${bad}:3: insecure must be true or false, not an integer`]);
    expect(configInvalid("F", [{ line: null, key: "x", code: "C", message: "m", hint: "" }]).message).toBe("F: m");
  });
});

describe("the role table agrees with the role commands", () => {
  const sources: Record<ConfigRole, string> = { staging: "src/roles/staging/serve-command.ts", replica: "src/roles/replica/apply-command.ts", client: "src/roles/client/attach.ts", agent: "src/roles/client/agent.ts", panel: "src/roles/panel/command.ts" };
  for (const role of configRoles) {
    test(`${role}: repeatable flags are those the command reads with repeatedFlag(); every checked flag exists; --config is declared`, async () => {
      const source = readFileSync(join(repoRoot, sources[role]), "utf8");
      const read = [...source.matchAll(/repeatedFlag\(rawArgs, "([a-z-]+)"\)/g)].map((match) => match[1]!);
      expect([...new Set(read)].sort()).toEqual([...roleSpecs[role].repeatable].sort());
      const args = await argsOf(role);
      expect(args.config).toMatchObject({ type: "string" });
      for (const flag of [...roleSpecs[role].addresses.map((a) => a.flag), ...roleSpecs[role].paths.map((p) => p.flag)]) expect({ role, flag, known: flag in args }).toEqual({ role, flag, known: true });
    });
  }
});
