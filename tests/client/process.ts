/** Runs `druvaa client attach` as a real child process and waits for its ready line. */
import { resolve } from "node:path";
import { withTestLinkSecurity } from "../helpers/cli.ts";

export const cliPath = resolve(import.meta.dir, "../../src/cli.ts");

export interface ClientProcess {
  proc: ReturnType<typeof Bun.spawn>;
  ready: { pid: number; export: string; exports: Record<string, string>; control: string; staging: string; stateDir: string };
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** SIGTERM; SIGKILL if it has not exited within `graceMs`. Resolves with the exit code. */
  stop(graceMs?: number): Promise<number>;
}

export interface Finished {
  exitCode: number;
  stdout: string;
  stderr: string;
}

function spawnClient(args: string[]) {
  return Bun.spawn({
    cmd: [process.execPath, cliPath, ...withTestLinkSecurity(["client", "attach", ...args]), "--json"],
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
    env: { ...process.env, NO_COLOR: "1", DRUVAA_LOG_LEVEL: process.env.DRUVAA_LOG_LEVEL ?? "3" },
  });
}

/** Drains a stream into a growing string (so the child never blocks on a full pipe). */
function drain(stream: ReadableStream<Uint8Array>, sink: { text: string }, onText?: () => void): Promise<void> {
  return (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      sink.text += decoder.decode(chunk, { stream: true });
      onText?.();
    }
  })();
}

/** Starts the client; rejects (after killing it) if it exits or stays silent before ready. */
export async function startClient(args: string[], timeoutMs = 15_000): Promise<ClientProcess> {
  const proc = spawnClient(args);
  const out = { text: "" };
  const err = { text: "" };
  let onLine: (() => void) | undefined;
  void drain(proc.stdout as ReadableStream<Uint8Array>, out, () => onLine?.());
  void drain(proc.stderr as ReadableStream<Uint8Array>, err);
  const readyLine = await new Promise<string>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`client not ready within ${timeoutMs} ms; stderr:\n${err.text}`)), timeoutMs);
    onLine = () => {
      const line = out.text.split("\n").find((l) => l.includes('"event":"ready"'));
      if (line !== undefined) {
        clearTimeout(timer);
        resolvePromise(line);
      }
    };
    void proc.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`client exited with ${code} before ready; stderr:\n${err.text}`));
    });
  }).catch((error) => {
    proc.kill("SIGKILL");
    throw error;
  });
  return {
    proc,
    ready: JSON.parse(readyLine),
    stderr: () => err.text,
    async stop(graceMs = 15_000) {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill("SIGTERM");
      const killer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      const code = await proc.exited;
      clearTimeout(killer);
      return code;
    },
  };
}

/** Runs the client expecting it to end on its own (refusals, bad arguments). */
export async function runClientToEnd(args: string[], timeoutMs = 15_000): Promise<Finished> {
  const proc = spawnClient(args);
  const killer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(killer);
  return { exitCode, stdout, stderr };
}

export interface ToolResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs an external tool (qemu-io, nbdcopy, nbdinfo); a missing one fails with an install hint. */
export async function tool(cmd: string[]): Promise<ToolResult> {
  if (Bun.which(cmd[0]!) === null) throw new Error(`${cmd[0]} is not installed (Debian: apt-get install libnbd-bin qemu-utils)`);
  const proc = Bun.spawn({ cmd, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, stdout, stderr };
}
