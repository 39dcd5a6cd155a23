/**
 * A "fresh host" from the packaged files alone: the amd64 .deb unpacked into a scratch root, its
 * binary and alias links run as installed, its default config files filled in (every FILL-IN
 * replaced, ports and paths moved into the scratch root) with TLS from a CA made by the packaged
 * `dradmin`. Staging, replica and client start with `--config FILE` and no other flag, qemu-io
 * writes through the client's export, and the example cron entries run as cron would run them:
 * `drresync` (exit 0, in sync), `drrestore` to a dated image (exit 0, the image equals the
 * primary), `druvaa verify` (exit 0, equal); `dradmin components` sees every component up.
 */
import { afterAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createImage, createReplicaImage, MiB, qemuIo, sha256File } from "../e2e/helpers.ts";
import { freePort, waitFor } from "../helpers/wait.ts";
import { must, sh, testTimeoutMs, type Built } from "./fixture.ts";

const sizeBytes = 16 * MiB;

/** Sets each `key = …` line of a packaged TOML file to `values[key]` (the line must exist). */
export function fillIn(text: string, values: Record<string, string | string[] | boolean>): string {
  let out = text;
  for (const [key, value] of Object.entries(values)) {
    const line = new RegExp(`^${key.replace(/-/g, "\\-")} = .*$`, "m");
    const toml = typeof value === "boolean" ? String(value) : JSON.stringify(value);
    if (!line.test(out)) throw new Error(`the packaged config has no "${key} = …" line`);
    out = out.replace(line, `${key} = ${toml}`);
  }
  return out;
}

export function freshHostTests(get: () => Built): void {
  const running: Bun.Subprocess[] = [];
  afterAll(async () => {
    for (const proc of running) proc.kill("SIGKILL");
    await Promise.all(running.map((proc) => proc.exited));
  });

  test("from the packaged files alone: roles started from config files replicate; drresync, drrestore and druvaa verify run as the cron examples do", async () => {
    const root = join(get().dir, "fresh-host");
    await must(["dpkg-deb", "--extract", get().deb.x64, root]);
    const bin = (name: string) => join(root, "usr", "bin", name);
    const etc = join(root, "etc", "druvaa");
    const tls = join(etc, "tls");
    const lib = join(root, "var", "lib", "druvaa");
    const data = join(root, "srv");
    await must(["mkdir", "-p", data, join(root, "run", "druvaa"), join(lib, "client"), join(data, "restore")]);

    // TLS as the guide sets it up, with the packaged dradmin.
    const ca = join(root, "ca");
    await must([bin("dradmin"), "ca", "init", "--dir", ca, "--name", "fresh-host"]);
    for (const [role, name, extra] of [["staging", "staging", []], ["replica", "replica", []], ["client", "client", ["--device", "disk0"]], ["admin", "ops", []]] as const) {
      await must([bin("dradmin"), "cert", "issue", "--role", role, "--name", name, "--host", "127.0.0.1", ...extra, "--dir", ca, "--out", tls]);
    }
    await must(["cp", join(ca, "ca.pem"), join(ca, "crl.pem"), tls]);
    const ops = ["--tls-cert", join(tls, "ops.pem"), "--tls-key", join(tls, "ops.key"), "--tls-ca", join(tls, "ca.pem"), "--crl", join(tls, "crl.pem")];
    const tlsOf = (name: string) => ({ "tls-cert": join(tls, `${name}.pem`), "tls-key": join(tls, `${name}.key`), "tls-ca": join(tls, "ca.pem"), crl: join(tls, "crl.pem") });

    // Devices: a primary, a replica image, the staging WRL and the client's change map, made with the packaged binary.
    const primary = join(data, "primary.img");
    const replicaImage = join(data, "replica.img");
    await createImage(primary, sizeBytes);
    await createReplicaImage(replicaImage, sizeBytes);
    await must([bin("druvaa"), "wrl", "create", "--primary", join(data, "fast.wrl"), "--size", String(64 * MiB)]);
    await must([bin("druvaa"), "changemap", "create", join(lib, "client", "disk0.map"), "--region", `disk0=${sizeBytes}`]);

    const port = { stagingData: freePort(), stagingControl: freePort(), replicaData: freePort(), replicaControl: freePort(), replicaRestore: freePort(), clientControl: freePort() };
    const socket = join(root, "run", "druvaa", "disk0.sock");
    const files = {
      staging: fillIn(readFileSync(join(etc, "staging.toml"), "utf8"), { listen: `127.0.0.1:${port.stagingData}`, control: `127.0.0.1:${port.stagingControl}`, wrl: [`fast=${join(data, "fast.wrl")}`], replica: [`fast=127.0.0.1:${port.replicaData}`], "state-dir": join(lib, "staging"), ...tlsOf("staging") }),
      replica: fillIn(readFileSync(join(etc, "replica.toml"), "utf8"), { listen: `127.0.0.1:${port.replicaData}`, control: `127.0.0.1:${port.replicaControl}`, restore: `127.0.0.1:${port.replicaRestore}`, device: [`disk0=${replicaImage}`], "state-dir": join(lib, "replica"), ...tlsOf("replica") }),
      client: fillIn(readFileSync(join(etc, "client", "example.toml"), "utf8"), { device: [`disk0=${primary}`], staging: `127.0.0.1:${port.stagingData}`, export: `unix:${socket}`, changemap: join(lib, "client", "disk0.map"), control: `127.0.0.1:${port.clientControl}`, "state-dir": join(lib, "client", "disk0"), ...tlsOf("client") }),
    };
    const paths = { staging: join(etc, "staging.toml"), replica: join(etc, "replica.toml"), client: join(etc, "client", "disk0.toml") };
    for (const role of ["staging", "replica", "client"] as const) {
      expect(files[role]).not.toContain("FILL-IN");
      writeFileSync(paths[role], files[role]);
      // What the unit's ExecStartPre runs.
      const check = await sh([bin("druvaa"), "admin", "config", "check", paths[role]]);
      expect({ role, exitCode: check.exitCode, stderr: check.stderr }).toEqual({ role, exitCode: 0, stderr: "" });
    }

    // The services' command lines: --config and nothing else.
    const start = (role: "staging" | "replica" | "client") => {
      const proc = Bun.spawn({ cmd: [bin("druvaa"), ...(role === "staging" ? ["staging", "serve"] : role === "replica" ? ["replica", "apply"] : ["client", "attach"]), "--config", paths[role]], stdin: "ignore", stdout: "ignore", stderr: "pipe" });
      running.push(proc);
      return proc;
    };
    const statusOf = async (port: number) => (await sh([bin("druvaa"), "status", "--connect", `127.0.0.1:${port}`, ...ops, "--json"])).exitCode === 0;
    start("replica");
    await waitFor("the replica answering", 30_000, () => statusOf(port.replicaControl));
    start("staging");
    await waitFor("staging answering", 30_000, () => statusOf(port.stagingControl));
    start("client");
    await waitFor("the client answering", 30_000, () => statusOf(port.clientControl));

    const uri = `nbd+unix:///disk0?socket=${socket}`;
    expect((await qemuIo(uri, ["write -P 0x5a 0 2M", "write -P 0xa5 9M 512k", "write -P 0x3c 15M 4k"])).exitCode).toBe(0);
    const drained = await sh([bin("druvaa"), "status", "--connect", `127.0.0.1:${port.stagingControl}`, "--wait-drained", "--timeout", "120", ...ops, "--json"]);
    expect({ exitCode: drained.exitCode, drained: JSON.parse(drained.stdout || "{}").drained }).toEqual({ exitCode: 0, drained: true });

    // The example cron entries, as cron runs them (through the alias links, TLS as the TLS example).
    const resync = await sh([bin("drresync"), "--connect", `127.0.0.1:${port.clientControl}`, "--timeout", "2m", ...ops, "--json"]);
    expect({ exitCode: resync.exitCode, stderr: resync.stderr }).toEqual({ exitCode: 0, stderr: "" });
    expect(JSON.parse(resync.stdout)).toMatchObject({ inSync: true });
    const dated = join(data, "restore", `disk0-${new Date().toISOString().slice(0, 10)}.img`);
    const restore = await sh([bin("drrestore"), "--replica", `127.0.0.1:${port.replicaRestore}`, "--device", "disk0", "--to", dated, ...ops, "--json"]);
    expect({ exitCode: restore.exitCode, stderr: restore.stderr }).toEqual({ exitCode: 0, stderr: "" });
    const primarySha = await sha256File(primary);
    expect(await sha256File(dated)).toBe(primarySha);
    expect(JSON.stringify(JSON.parse(restore.stdout))).toContain(primarySha);
    const verify = await sh([bin("druvaa"), "verify", "--device", "disk0", "--connect", `127.0.0.1:${port.clientControl}`, "--timeout", "5m", ...ops, "--json"]);
    expect({ exitCode: verify.exitCode, stderr: verify.stderr }).toEqual({ exitCode: 0, stderr: "" });

    // dradmin sees the three components up, from their config files.
    const components = await sh([bin("dradmin"), "components", "--config-dir", etc, ...ops, "--json"]);
    const listed = JSON.parse(components.stdout);
    // The packaged files of the roles this host does not run still hold their FILL-IN values.
    expect(listed.components.map((c: { file: string; state: string }) => [c.file.slice(etc.length + 1), c.state]).sort()).toEqual([
      ["agent.toml", "unconfigured"], ["client/disk0.toml", "up"], ["client/example.toml", "unconfigured"], ["panel.toml", "unconfigured"], ["replica.toml", "up"], ["staging.toml", "up"],
    ]);
    expect({ exitCode: components.exitCode, ok: listed.ok }).toEqual({ exitCode: 0, ok: true });

    // A client stopped: dradmin says so and exits 1.
    const client = running.at(-1)!;
    client.kill("SIGTERM");
    expect(await client.exited).toBe(0);
    const after = await sh([bin("dradmin"), "components", "--config-dir", etc, ...ops, "--json"]);
    expect(after.exitCode).toBe(1);
    expect(JSON.parse(after.stdout).components.find((c: { role: string }) => c.role === "client")).toMatchObject({ state: "down", error: { code: "NET_CONNECT_FAILED" } });
  }, testTimeoutMs * 3);
}
