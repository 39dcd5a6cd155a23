/**
 * Config files with real processes: replica, staging and client started with `--config FILE`
 * and nothing else (besides --json for the ready line) replicate what qemu-io writes through the
 * client's NBD export; a flag on the command line overrides a file key (a repeated one the whole
 * list); a bad file (unknown key, wrong type, conflicting ports, missing device) stops the role
 * before it listens on anything — exit 2, no ready line, FILE:LINE and a hint on stderr — and
 * `druvaa admin config check` reports the same problems on the same lines (also as --json).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRole, type RoleProcess } from "../../src/demo/processes.ts";
import { bunPath, cliPath } from "../helpers/cli.ts";
import { freePort } from "../helpers/wait.ts";
import { createImage, createReplicaImage, druvaaOk, MiB, qemuIo, readRange, run, sha256File } from "./helpers.ts";

const sizeBytes = 16 * MiB;
let dir = "";
const started: RoleProcess[] = [];
process.on("exit", () => {
  for (const role of started) if (role.proc.exitCode === null) role.proc.kill("SIGKILL");
});

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "druvaa-config-e2e-"));
  await createImage(join(dir, "primary.img"), sizeBytes);
  await createReplicaImage(join(dir, "replica.img"), sizeBytes);
  await createReplicaImage(join(dir, "replica2.img"), sizeBytes);
  await druvaaOk(["wrl", "create", "--primary", join(dir, "wrl.img"), "--size", String(64 * MiB)]);
});
afterAll(async () => {
  await Promise.allSettled(started.map((role) => role.stop()));
  rmSync(dir, { recursive: true, force: true });
});

/** Writes a config file into the test dir; returns its path. */
function config(name: string, lines: string[]): string {
  const path = join(dir, name);
  writeFileSync(path, `${lines.join("\n")}\n`);
  return path;
}

/** Starts `druvaa ARGS --json` (args exactly as given: no --insecure added) and tracks it. */
async function start(name: string, args: string[]): Promise<RoleProcess> {
  const role = await startRole(name, args, { env: { DRUVAA_LOG_LEVEL: "3" } });
  started.push(role);
  return role;
}

/** `druvaa ARGS` exactly as given, to its end. */
const druvaaAsIs = (args: string[], timeoutMs = 30_000) => run([bunPath, cliPath, ...args], { timeoutMs });

describe("roles from config files", () => {
  let replica: RoleProcess;
  let staging: RoleProcess;

  test("replica, staging and client started with --config alone replicate qemu-io's writes", async () => {
    const replicaFile = config("replica.toml", ['role = "replica"', "# ports chosen by the system", 'listen = "127.0.0.1:0"', 'control = "127.0.0.1:0"', 'restore = "127.0.0.1:0"', `device = ["disk0=${dir}/replica.img"]`, `state-dir = "${dir}/replica-state"`, "insecure = true"]);
    replica = await start("replica", ["replica", "apply", "--config", replicaFile]);
    expect(replica.ready).toMatchObject({ stateDir: `${dir}/replica-state`, devices: [{ name: "disk0", path: `${dir}/replica.img` }] });
    const stagingFile = config("staging.toml", ['role = "staging"', 'listen = "127.0.0.1:0"', 'control = "127.0.0.1:0"', `wrl = ["w0=${dir}/wrl.img"]`, `replica = ["w0=${replica.ready.listen}"]`, `state-dir = "${dir}/staging-state"`, "compression = 1", "insecure = true"]);
    staging = await start("staging", ["staging", "serve", "--config", stagingFile]);
    expect(staging.ready).toMatchObject({ stateDir: `${dir}/staging-state`, wrls: [{ name: "w0", replica: String(replica.ready.listen) }] });
    const socket = join(dir, "export.sock");
    const clientFile = config("client-disk0.toml", ['role = "client"', `device = "disk0=${dir}/primary.img"`, `staging = "${staging.ready.listen}"`, 'wrl = "w0"', `export = "unix:${socket}"`, 'control = "127.0.0.1:0"', `state-dir = "${dir}/client-state"`, "insecure = true"]);
    const client = await start("client", ["client", "attach", "--config", clientFile]);
    expect(client.ready.export).toBe(`unix:${socket}`);

    const writes = await qemuIo(`nbd+unix:///disk0?socket=${socket}`, ["write -P 0x5a 0 1M", "write -P 0xa5 4M 64k", "write -P 0x3c 15M 4k"]);
    expect(writes.exitCode).toBe(0);
    await druvaaOk(["status", "--connect", String(staging.ready.control), "--wait-drained", "--timeout", "60"], 75_000);
    const restored = join(dir, "restored.img");
    await druvaaOk(["restore", "--replica", String(replica.ready.restore), "--device", "disk0", "--to", restored]);
    expect(await sha256File(restored, sizeBytes)).toBe(await sha256File(join(dir, "primary.img"), sizeBytes));
    expect([...(await readRange(join(dir, "primary.img"), 15 * MiB, 4))]).toEqual([0x3c, 0x3c, 0x3c, 0x3c]); // the writes landed
    await client.stop();
  }, 120_000);

  test("flags on the command line override the file's keys; a repeated flag replaces the file's whole list", async () => {
    const file = config("replica-b.toml", ['role = "replica"', 'listen = "127.0.0.1:0"', 'control = "127.0.0.1:0"', 'restore = "127.0.0.1:0"', `device = ["disk0=${dir}/replica.img"]`, `state-dir = "${dir}/b-state-from-file"`, "insecure = true"]);
    const other = await start("replica-b", ["replica", "apply", "--config", file, "--state-dir", `${dir}/b-state-from-flag`, "--device", `other=${dir}/replica2.img`]);
    expect(other.ready.stateDir).toBe(`${dir}/b-state-from-flag`);
    expect((other.ready.devices as { name: string }[]).map((device) => device.name)).toEqual(["other"]);
    expect(existsSync(`${dir}/b-state-from-file`)).toBe(false);
    expect(await other.stop()).toBe(0);
  }, 60_000);
});

describe("bad config files: nothing starts", () => {
  const port = freePort();
  const cases: { name: string; role: string[]; lines: () => string[]; problems: [number, RegExp][] }[] = [
    {
      name: "unknown key",
      role: ["staging", "serve"],
      lines: () => ['role = "staging"', `listen = "127.0.0.1:${port}"`, 'control = "127.0.0.1:0"', `wrl = ["w0=${dir}/wrl.img"]`, 'replicas = ["w0=127.0.0.1:6003"]', "insecure = true", `state-dir = "${dir}/bad-1"`],
      problems: [[5, /unknown key 'replicas' for druvaa staging serve \(did you mean 'replica'\?\)/]],
    },
    {
      name: "wrong type",
      role: ["replica", "apply"],
      lines: () => ['role = "replica"', `listen = "127.0.0.1:${port}"`, 'control = "127.0.0.1:0"', 'restore = "127.0.0.1:0"', `device = ["disk0=${dir}/replica2.img"]`, 'insecure = "yes"', `state-dir = "${dir}/bad-2"`, "listen-backlog = 5"],
      problems: [
        [6, /insecure must be true or false, not a string/],
        [8, /unknown key 'listen-backlog'/],
      ],
    },
    {
      name: "conflicting ports",
      role: ["replica", "apply"],
      lines: () => ['role = "replica"', `listen = "127.0.0.1:${port}"`, `control = ":${port}"`, 'restore = "127.0.0.1:0"', `device = ["disk0=${dir}/replica2.img"]`, "insecure = true", `state-dir = "${dir}/bad-3"`],
      problems: [[3, new RegExp(`control 127\\.0\\.0\\.1:${port} and listen 127\\.0\\.0\\.1:${port} \\(line 2\\) listen on the same port ${port} on the same host`)]],
    },
    {
      name: "missing device",
      role: ["client", "attach"],
      lines: () => ['role = "client"', `device = ["disk0=${dir}/primary.img", "disk1=${dir}/no-such-disk.img"]`, `staging = "127.0.0.1:${freePort()}"`, 'wrl = "w0"', `export = "127.0.0.1:${port}"`, 'control = "127.0.0.1:0"', "insecure = true", `state-dir = "${dir}/bad-4"`],
      problems: [[2, /device disk1: no such device \S+\/no-such-disk\.img$/]],
    },
  ];

  for (const [index, badCase] of cases.entries()) {
    test(`${badCase.name}: the role exits 2 before listening, naming FILE:LINE with a hint; config check agrees`, async () => {
      const file = config(`bad-${index + 1}.toml`, badCase.lines());
      const result = await druvaaAsIs([...badCase.role, "--config", file, "--json"]);
      expect({ exitCode: result.exitCode, timedOut: result.timedOut }).toEqual({ exitCode: 2, timedOut: false });
      expect(result.stdout).not.toContain('"event":"ready"');
      expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, error: { code: "CONFIG_INVALID" } });
      const reported = result.stderr.split("\n").filter((line) => line.includes(`${file}:`));
      expect(reported.map((line) => line.replace(/^druvaa: error: /, ""))).toEqual(badCase.problems.map(([line]) => expect.stringMatching(new RegExp(`^${file}:${line}: `))));
      badCase.problems.forEach(([, message], i) => expect(reported[i]).toMatch(message));
      expect(result.stderr).toMatch(/\n {2}hint: \S/);
      // Nothing was started: the state directory was never made, the port is free.
      expect(existsSync(`${dir}/bad-${index + 1}`)).toBe(false);
      const probe = Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } });
      probe.stop(true);

      const check = await druvaaAsIs(["admin", "config", "check", file]);
      expect(check.exitCode).toBe(2);
      expect(check.stdout).toBe("");
      const checkLines = check.stderr.split("\n").filter((line) => line.startsWith(`${file}:`) && !line.endsWith(" problem") && !line.endsWith(" problems"));
      expect(checkLines).toEqual(reported.map((line) => line.replace(/^druvaa: error: /, "")));
      expect(check.stderr).toContain(`${file}: ${badCase.problems.length} problem`);

      const json = await druvaaAsIs(["admin", "config", "check", file, "--json"]);
      expect(json.exitCode).toBe(2);
      const parsed = JSON.parse(json.stdout);
      expect(parsed).toEqual({ ok: false, role: badCase.role[0] === "client" ? "client" : badCase.role[0], file, args: [], problems: badCase.problems.map(([line]) => ({ line, key: expect.any(String), code: expect.stringMatching(/^CONFIG_/), message: expect.any(String), hint: expect.any(String) })) });
    }, 60_000);
  }
});

describe("druvaa admin config check on good files", () => {
  test("exit 0, the command line the file stands for; --json {ok, role, file, args, problems}", async () => {
    const file = config("panel.toml", ['role = "panel"', 'listen = "127.0.0.1:8123"', `db = "${dir}/panel dir/panel.db"`, "insecure = true"]);
    const text = await druvaaAsIs(["admin", "config", "check", file]);
    expect(text).toMatchObject({ exitCode: 0, stderr: "" });
    expect(text.stdout).toBe(`${file}: ok (role panel)\ndruvaa panel --listen 127.0.0.1:8123 --db '${dir}/panel dir/panel.db' --insecure\n`);
    const json = await druvaaAsIs(["admin", "config", "check", file, "--json"]);
    expect(JSON.parse(json.stdout)).toEqual({ ok: true, role: "panel", file, args: ["druvaa", "panel", "--listen", "127.0.0.1:8123", "--db", `${dir}/panel dir/panel.db`, "--insecure"], problems: [] });
    const show = await druvaaAsIs(["admin", "config", "show", file, "--json"]);
    expect(JSON.parse(show.stdout)).toMatchObject({ ok: true, role: "panel", config: { listen: "127.0.0.1:8123", insecure: true }, sources: { listen: "file" } });
  });

  test("a file without a role key needs --role; the role commands show --config in --help", async () => {
    const file = config("norole.toml", ['listen = "127.0.0.1:8124"', `db = "${dir}/p.db"`]);
    const refused = await druvaaAsIs(["admin", "config", "check", file]);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain("does not say which role it is for");
    expect(refused.stderr).toContain("hint: Add a line role = ");
    expect((await druvaaAsIs(["admin", "config", "check", file, "--role", "panel"])).exitCode).toBe(0);
    for (const path of [["staging", "serve"], ["replica", "apply"], ["client", "attach"], ["client", "agent"], ["panel"]]) {
      const help = await druvaaAsIs([...path, "--help"]);
      expect({ path, config: /--config(=<FILE>| <FILE>| FILE)?/.test(help.stdout) }).toEqual({ path, config: true });
    }
  }, 60_000);
});
