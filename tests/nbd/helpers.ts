/** Shared setup for the NBD tests: temp dirs, in-process servers, the fixture server process. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { ConsolaInstance } from "consola/basic";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { exportFromBlockDevice, type NbdExport } from "../../src/nbd/backend.ts";
import { startNbdServer, type NbdServer } from "../../src/nbd/server.ts";

/** A short temp dir (Unix socket paths are limited to 107 bytes). Remove with rmSync in afterAll. */
export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "druvaa-nbd-"));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface MemoryServer {
  server: NbdServer;
  device: MemoryDevice;
  socketPath: string;
}

/** An in-process server over a MemoryDevice, so tests can look at the bytes directly. */
export async function memoryServer(dir: string, name: string, sizeBytes = 4 * 1024 * 1024, extra: NbdExport[] = [], log?: ConsolaInstance): Promise<MemoryServer> {
  const device = new MemoryDevice(sizeBytes, "memory", 512);
  const socketPath = join(dir, `${name}.sock`);
  const server = await startNbdServer({ listen: `unix:${socketPath}`, exports: [exportFromBlockDevice(device, "", { description: "memory" }), ...extra], ...(log === undefined ? {} : { log }) });
  return { server, device, socketPath };
}

export const fixtureScript = resolve(import.meta.dir, "fixtures/serve.ts");

export interface FixtureProcess {
  proc: ReturnType<typeof Bun.spawn>;
  address: string;
  stop(): Promise<void>;
}

/** Starts tests/nbd/fixtures/serve.ts as a child process and waits for its READY line. */
export async function startFixture(args: string[]): Promise<FixtureProcess> {
  const proc = Bun.spawn({
    cmd: [process.execPath, fixtureScript, ...args],
    stdout: "pipe",
    stderr: "inherit",
    stdin: "ignore",
    env: { ...process.env, DRUVAA_LOG_LEVEL: process.env.DRUVAA_LOG_LEVEL ?? "1" },
  });
  const reader = proc.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`fixture server exited before READY (exit ${await proc.exited}): ${text}`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const match = /^READY (\S+)/.exec(text);
  if (match === null) throw new Error(`fixture server said: ${text}`);
  return {
    proc,
    address: match[1]!,
    /** SIGTERM (clean close), then SIGKILL if it has not exited within 3 s (a hung close is a bug, not a reason to leak it). */
    async stop() {
      if (proc.exitCode !== null) return;
      proc.kill("SIGTERM");
      const killer = setTimeout(() => proc.kill("SIGKILL"), 3000);
      await proc.exited;
      clearTimeout(killer);
    },
  };
}

export interface ToolResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs an external tool (nbdinfo, qemu-io, nbdcopy, fio); a missing tool fails with an install hint. */
export async function run(cmd: string[], cwd?: string): Promise<ToolResult> {
  if (Bun.which(cmd[0]!) === null) {
    throw new Error(`${cmd[0]} is not installed (Debian: apt-get install libnbd-bin qemu-utils fio)`);
  }
  const proc = Bun.spawn({ cmd, stdout: "pipe", stderr: "pipe", stdin: "ignore", ...(cwd === undefined ? {} : { cwd }) });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, stdout, stderr };
}
