/**
 * Whole druvaa systems (replica, staging, client) as real processes in a temp dir, for the
 * end-to-end tests. Every process started here is tracked by pid and killed by stop() (and, as a
 * last resort, when the test process exits), so a failing test leaves nothing running.
 */
import { expect } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRole, type RoleProcess } from "../../src/demo/processes.ts";
import { sha256File } from "../../src/io/file-hash.ts";
import { protectReserveBytesDefault } from "../../src/protect-constants.ts";
import { plainSha256, readPlain } from "../../src/roles/replica/protected-device.ts";
import { replicaDeviceSizeBytes } from "../../src/sizing.ts";
import { bunPath, cliPath, repoRoot, withTestLinkSecurity } from "../helpers/cli.ts";

// Under `bun test` process.argv[1] is the test file, not the CLI: tell startRole/runDruvaa.
process.env.DRUVAA_SELF_COMMAND = JSON.stringify([bunPath, cliPath]);

export const MiB = 1024 * 1024;
export type Role = "client" | "staging" | "replica";

/** Every role process any system started and did not reap yet: killed on process exit. */
const live = new Set<RoleProcess>();
process.on("exit", () => {
  for (const role of live) {
    try {
      process.kill(role.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
});

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}


export { sha256File };

/**
 * The header reserve of a protected replica device (druvaa replica apply --protect-headers, on by
 * default): a replica image holds the primary's size (rounded up to 4 KiB) plus this. Compare a replica image with
 * plainSha256/readPlain (they un-swap the head), never its bytes as they are on disk.
 */
export const replicaReserveBytes = protectReserveBytesDefault;
export { plainSha256, readPlain };

/** A replica image for a primary of `primaryBytes` (rounded up to 4 KiB, plus the header reserve), created sparse. */
export function createReplicaImage(path: string, primaryBytes: number): Promise<void> {
  return createImage(path, replicaDeviceSizeBytes(primaryBytes, replicaReserveBytes));
}

export async function readRange(path: string, offset: number, length: number): Promise<Uint8Array> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, offset);
    return new Uint8Array(buffer.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}

export async function createImage(path: string, sizeBytes: number): Promise<void> {
  const handle = await open(path, "w");
  await handle.truncate(sizeBytes);
  await handle.close();
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs any program to completion (SIGKILLed after timeoutMs); never throws on a non-zero exit. */
export async function run(cmd: string[], opts: { timeoutMs?: number; env?: Record<string, string>; cwd?: string } = {}): Promise<RunResult> {
  if (Bun.which(cmd[0]!) === null && !cmd[0]!.startsWith("/")) throw new Error(`${cmd[0]} is not installed (Debian: apt-get install fio qemu-utils libnbd-bin)`);
  const proc = Bun.spawn({ cmd, cwd: opts.cwd ?? repoRoot, stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1", ...opts.env } });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, opts.timeoutMs ?? 60_000);
  try {
    const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { exitCode, stdout, stderr, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

/** `druvaa ARGS` as a subprocess (role commands with withTestLinkSecurity); never throws on a non-zero exit. */
export function druvaa(args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return run([bunPath, cliPath, ...withTestLinkSecurity(args)], { timeoutMs });
}

/** Like druvaa() but throws, with its output, unless it exits 0. */
export async function druvaaOk(args: string[], timeoutMs = 60_000): Promise<string> {
  const result = await druvaa(args, timeoutMs);
  if (result.exitCode !== 0) throw new Error(`druvaa ${args.join(" ")} exited ${result.exitCode}${result.timedOut ? " (timed out)" : ""}:\n${result.stderr}\n${result.stdout}`);
  return result.stdout;
}

/** Starts a druvaa role process (with --json) and tracks it for cleanup. */
export async function startTracked(name: string, args: string[]): Promise<RoleProcess> {
  const role = await startRole(name, withTestLinkSecurity(args), { env: { DRUVAA_LOG_LEVEL: process.env.DRUVAA_LOG_LEVEL ?? "3" } });
  live.add(role);
  void role.proc.exited.then(() => live.delete(role));
  return role;
}

export interface SystemOptions {
  /** Size of every primary device (and, unless replicaSizes says otherwise, replica device). */
  sizeBytes: number;
  /** Device (export) names on the one client; default ["disk0"]. All share one WRL. */
  devices?: string[];
  /** Replica device sizes by name, where they differ from sizeBytes (logical: the header reserve is added). */
  replicaSizes?: Record<string, number>;
  /** Extra replica devices no client serves (name → size), e.g. to attach a mismatched client later. */
  replicaOnly?: Record<string, number>;
  /** WRL size; default max(64 MiB, 2 × total device bytes). */
  wrlSizeBytes?: number;
  /** Start the client (default true); false leaves only staging and replica running. */
  client?: boolean;
  /** Give the client a change map (one region per device, at dir/changemap.img): disconnected mode. */
  changeMap?: boolean;
  /** More `druvaa client attach` flags (e.g. ["--ack-timeout", "1s"]). */
  clientFlags?: string[];
  /** More `druvaa replica apply` flags (e.g. ["--await-seed", "disk0"]). */
  replicaFlags?: string[];
}

export interface System {
  dir: string;
  devices: string[];
  wrlName: string;
  primaryPath(name: string): string;
  replicaPath(name: string): string;
  /** The current process of each role (replaced by restart()). */
  readonly client: RoleProcess;
  readonly staging: RoleProcess;
  readonly replica: RoleProcess;
  /** `nbd+unix:///NAME?socket=…`, for fio, qemu-io, nbdinfo, nbdcopy. */
  exportUri(name: string): string;
  /** `unix:PATH` of the NBD export, for the built-in client (src/nbd/client.ts). */
  exportAddress: string;
  stagingListen: string;
  stagingControl: string;
  replicaListen: string;
  replicaControl: string;
  replicaRestore: string;
  clientControl: string;
  /** Restores replica device NAME to a new file (default in dir); returns its path. */
  restore(name: string, to?: string): Promise<string>;
  /** `druvaa status --connect STAGING_CONTROL --wait-drained`; throws on timeout. */
  waitDrained(timeoutSeconds?: number): Promise<void>;
  /** Asserts primary and restored replica of every device are equal (sha256); returns the hashes. */
  verifyAll(): Promise<Record<string, { primary: string; restored: string }>>;
  /** Starts the role again with the same arguments, addresses and state dir (kills it first if running). */
  restart(role: Role): Promise<RoleProcess>;
  /** Sends a signal to the role's process and waits for it to exit. */
  kill(role: Role, signal?: NodeJS.Signals): Promise<void>;
  /** The pids of the running roles, each checked alive; throws naming any that died. */
  assertAlive(): Record<Role, number>;
  /** GET /status of a role's control port. */
  status(role: Role): Promise<any>;
  /** Stops every process (SIGTERM, then SIGKILL) and removes dir. Idempotent. */
  stop(opts?: { keepDir?: boolean }): Promise<void>;
}

async function stopRole(role: RoleProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (role.proc.exitCode !== null || role.proc.signalCode !== null) return;
  role.proc.kill(signal);
  const timer = setTimeout(() => role.proc.kill("SIGKILL"), 10_000);
  await role.proc.exited;
  clearTimeout(timer);
}

/**
 * Creates images and a WRL in a fresh temp dir, then starts replica, staging and client on
 * loopback (ports chosen by the kernel, then fixed so restarts reuse them). If anything fails
 * while starting, everything already started is stopped and the dir removed before rethrowing.
 */
export async function startSystem(options: SystemOptions): Promise<System> {
  const devices = options.devices ?? ["disk0"];
  const dir = mkdtempSync(join(tmpdir(), "druvaa-e2e-"));
  const roles = new Map<Role, RoleProcess>();
  const argsOf = new Map<Role, string[]>();
  const everyStarted: RoleProcess[] = [];
  let stopped = false;
  let restoreCount = 0;
  const primaryPath = (name: string) => join(dir, `primary-${name}.img`);
  const replicaPath = (name: string) => join(dir, `replica-${name}.img`);
  const wrlName = "wrl0";
  const socket = join(dir, "export.sock");

  const start = async (role: Role): Promise<RoleProcess> => {
    const child = await startTracked(role, argsOf.get(role)!);
    everyStarted.push(child);
    roles.set(role, child);
    return child;
  };
  const current = (role: Role): RoleProcess => {
    const child = roles.get(role);
    if (child === undefined) throw new Error(`${role} was not started in this system`);
    return child;
  };
  const stopAll = async (keepDir = false) => {
    if (stopped) return;
    stopped = true;
    await Promise.allSettled([...everyStarted].reverse().map((role) => stopRole(role)));
    if (!keepDir) rmSync(dir, { recursive: true, force: true });
  };

  try {
    for (const name of devices) {
      await createImage(primaryPath(name), options.sizeBytes);
      await createReplicaImage(replicaPath(name), options.replicaSizes?.[name] ?? options.sizeBytes);
    }
    for (const [name, size] of Object.entries(options.replicaOnly ?? {})) await createReplicaImage(replicaPath(name), size);
    const replicaNames = [...devices, ...Object.keys(options.replicaOnly ?? {})];
    const wrlPath = join(dir, "wrl.img");
    const wrlSizeBytes = options.wrlSizeBytes ?? Math.max(64 * MiB, 2 * options.sizeBytes * devices.length);
    await druvaaOk(["wrl", "create", "--primary", wrlPath, "--size", String(wrlSizeBytes)]);

    argsOf.set("replica", ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", ...replicaNames.flatMap((name) => ["--device", `${name}=${replicaPath(name)}`]), "--state-dir", join(dir, "replica-state"), ...(options.replicaFlags ?? [])]);
    const replica = await start("replica");
    // Restarts must come back on the same ports: peers and tests hold these addresses.
    argsOf.set("replica", ["replica", "apply", "--listen", String(replica.ready.listen), "--control", String(replica.ready.control), "--restore", String(replica.ready.restore), ...replicaNames.flatMap((name) => ["--device", `${name}=${replicaPath(name)}`]), "--state-dir", join(dir, "replica-state"), ...(options.replicaFlags ?? [])]);

    argsOf.set("staging", ["staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--wrl", `${wrlName}=${wrlPath}`, "--replica", `${wrlName}=${replica.ready.listen}`, "--state-dir", join(dir, "staging-state")]);
    const staging = await start("staging");
    argsOf.set("staging", ["staging", "serve", "--listen", String(staging.ready.listen), "--control", String(staging.ready.control), "--wrl", `${wrlName}=${wrlPath}`, "--replica", `${wrlName}=${replica.ready.listen}`, "--state-dir", join(dir, "staging-state")]);

    const changeMapPath = join(dir, "changemap.img");
    if (options.changeMap === true) await druvaaOk(["changemap", "create", changeMapPath, ...devices.flatMap((name) => ["--region", `${name}=${options.sizeBytes}`])]);
    const mapFlags = options.changeMap === true ? ["--changemap", changeMapPath] : [];
    const clientArgs = (control: string) => ["client", "attach", ...devices.flatMap((name) => ["--device", `${name}=${primaryPath(name)}`]), "--staging", String(staging.ready.listen), "--wrl", wrlName, "--export", `unix:${socket}`, "--control", control, "--state-dir", join(dir, "client-state"), ...mapFlags, ...(options.clientFlags ?? [])];
    if (options.client !== false) {
      argsOf.set("client", clientArgs("127.0.0.1:0"));
      const client = await start("client");
      argsOf.set("client", clientArgs(String(client.ready.control)));
    }
  } catch (error) {
    await stopAll();
    throw error;
  }

  const system: System = {
    dir,
    devices,
    wrlName,
    primaryPath,
    replicaPath,
    get client() {
      return current("client");
    },
    get staging() {
      return current("staging");
    },
    get replica() {
      return current("replica");
    },
    exportUri: (name) => `nbd+unix:///${name}?socket=${socket}`,
    exportAddress: `unix:${socket}`,
    get stagingListen() {
      return String(current("staging").ready.listen);
    },
    get stagingControl() {
      return String(current("staging").ready.control);
    },
    get replicaListen() {
      return String(current("replica").ready.listen);
    },
    get replicaControl() {
      return String(current("replica").ready.control);
    },
    get replicaRestore() {
      return String(current("replica").ready.restore);
    },
    get clientControl() {
      return String(current("client").ready.control);
    },
    async restore(name, to) {
      const target = to ?? join(dir, `restored-${name}-${++restoreCount}.img`);
      if (existsSync(target)) rmSync(target);
      await druvaaOk(["restore", "--replica", system.replicaRestore, "--device", name, "--to", target]);
      return target;
    },
    async waitDrained(timeoutSeconds = 60) {
      await druvaaOk(["status", "--connect", system.stagingControl, "--wait-drained", "--timeout", String(timeoutSeconds)], (timeoutSeconds + 15) * 1000);
    },
    async verifyAll() {
      const hashes: Record<string, { primary: string; restored: string }> = {};
      for (const name of devices) {
        const restoredPath = await system.restore(name);
        const sizeBytes = options.replicaSizes?.[name] ?? options.sizeBytes;
        hashes[name] = { primary: await sha256File(primaryPath(name), sizeBytes), restored: await sha256File(restoredPath, sizeBytes) };
        rmSync(restoredPath, { force: true });
      }
      return hashes;
    },
    async restart(role) {
      const old = roles.get(role);
      if (old !== undefined) await stopRole(old);
      return start(role);
    },
    async kill(role, signal = "SIGKILL") {
      const child = current(role);
      child.proc.kill(signal);
      await child.proc.exited;
    },
    assertAlive() {
      const pids = {} as Record<Role, number>;
      const dead: string[] = [];
      for (const [role, child] of roles) {
        pids[role] = child.pid;
        if (child.proc.exitCode !== null || child.proc.signalCode !== null || !isAlive(child.pid)) {
          dead.push(`${role} (pid ${child.pid}, exit ${child.proc.exitCode ?? child.proc.signalCode}):\n${child.stderrText().split("\n").slice(-15).join("\n")}`);
        }
      }
      if (dead.length > 0) throw new Error(`processes died: ${dead.join("\n")}`);
      return pids;
    },
    async status(role) {
      const control = role === "client" ? system.clientControl : role === "staging" ? system.stagingControl : system.replicaControl;
      const response = await fetch(`http://${control}/status`);
      return response.json();
    },
    stop: (opts) => stopAll(opts?.keepDir === true),
  };
  return system;
}

/** fio through an NBD export; returns fio's result (exit code checked by the caller). */
export function fio(uri: string, name: string, extra: string[], opts: { timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  // fio saves a verify state file in its working directory unless told not to; run it in a temp
  // dir (the system's) all the same.
  return run(["fio", `--name=${name}`, "--ioengine=nbd", `--uri=${uri}`, "--output-format=normal", "--verify_state_save=0", ...extra], { timeoutMs: opts.timeoutMs ?? 60_000, cwd: opts.cwd ?? tmpdir() });
}

/** Runs qemu-io commands against an NBD URI; qemu-io reports failed commands on stdout and still exits 0. */
export async function qemuIo(uri: string, commands: string[], timeoutMs = 60_000): Promise<RunResult> {
  const result = await run(["qemu-io", "-f", "raw", uri, ...commands.flatMap((c) => ["-c", c])], { timeoutMs });
  if (/failed|error/i.test(result.stdout)) return { ...result, exitCode: result.exitCode || 1 };
  return result;
}

/** fio ended cleanly: exit 0 and no verify error in its output. */
export function expectFioOk(result: RunResult): void {
  if (result.exitCode !== 0) throw new Error(`fio exited ${result.exitCode}${result.timedOut ? " (timed out)" : ""}:\n${result.stderr}\n${result.stdout.slice(-3000)}`);
  expect(result.stdout).not.toMatch(/verify: bad|crc32c: verify failed|err=\s*[1-9]/);
}

/** Waits until the replica applied everything, restores every device and compares it to its primary. */
export async function expectReplicaEqualsPrimary(sys: System): Promise<void> {
  await sys.waitDrained(60);
  const hashes = await sys.verifyAll();
  for (const name of sys.devices) expect({ name, sha256: hashes[name]!.restored }).toEqual({ name, sha256: hashes[name]!.primary });
}

/** NBD writes the client has completed, over every device (from its status). */
export async function clientWrites(sys: System): Promise<number> {
  const status = await sys.status("client");
  return (status.devices as { writes: number }[]).reduce((sum, d) => sum + d.writes, 0);
}

/** `druvaa resync` against the client: must exit 0 (connected, nothing dirty or unacked); returns its report. */
export async function expectResynced(sys: System, timeoutSeconds = 60): Promise<{ inSync: boolean; mode: string; dirtyBytes: number; lastResync: { sentBytes: number } | null } & Record<string, unknown>> {
  const result = await druvaa(["resync", "--connect", sys.clientControl, "--timeout", `${timeoutSeconds}s`, "--json"], (timeoutSeconds + 15) * 1000);
  if (result.exitCode !== 0) throw new Error(`druvaa resync exited ${result.exitCode}: ${result.stderr}${result.stdout}`);
  const report = JSON.parse(result.stdout);
  expect(report).toMatchObject({ ok: true, inSync: true, mode: "connected", dirtyBytes: 0 });
  return report;
}
