/**
 * Child processes of the demo (and of tests that drive whole systems): each role runs as a real
 * `druvaa` process started with --json; we wait for its one "ready" line, which carries the
 * addresses it actually bound (port 0 → a free port), and stop it by pid.
 */
import { DruvaaError } from "../errors.ts";

/** How to start this very druvaa: the compiled binary, or bun + src/cli.ts when run from source. */
export function selfCommand(): string[] {
  // Under `bun test` argv[1] is the test file: tests name the CLI explicitly.
  const override = process.env.DRUVAA_SELF_COMMAND;
  if (override) return JSON.parse(override) as string[];
  const script = process.argv[1];
  if (script && !script.startsWith("/$bunfs") && !script.startsWith("B:\\~BUN") && /\.(ts|js|mjs)$/.test(script)) return [process.execPath, script];
  return [process.execPath];
}

export interface RoleProcess {
  name: string;
  pid: number;
  ready: Record<string, unknown>;
  proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  /** Everything the process printed on stderr (logs), for error reports. */
  stderrText(): string;
  stop(signal?: NodeJS.Signals): Promise<number>;
}

async function drain(stream: ReadableStream<Uint8Array>, sink: (text: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  for await (const chunk of stream) sink(decoder.decode(chunk, { stream: true }));
}

/** Starts `druvaa ARGS --json` and resolves with its ready line; rejects if it exits first. */
export async function startRole(name: string, args: string[], opts: { timeoutMs?: number; env?: Record<string, string>; onLog?: (line: string) => void } = {}): Promise<RoleProcess> {
  const proc = Bun.spawn([...selfCommand(), ...args, "--json"], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1", ...opts.env },
  });
  let stderr = "";
  void drain(proc.stderr, (text) => {
    stderr = (stderr + text).slice(-64 * 1024);
    if (opts.onLog) for (const line of text.split("\n")) if (line.trim()) opts.onLog(line);
  });
  let stdout = "";
  let resolveReady!: (value: Record<string, unknown>) => void;
  const readyLine = new Promise<Record<string, unknown>>((resolve) => (resolveReady = resolve));
  void drain(proc.stdout, (text) => {
    stdout += text;
    for (const line of stdout.split("\n").slice(0, -1)) {
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        if (parsed.event === "ready") resolveReady(parsed);
      } catch {
        // not JSON: ignore
      }
    }
    stdout = stdout.slice(stdout.lastIndexOf("\n") + 1);
  });
  const timeoutMs = opts.timeoutMs ?? 30_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    readyLine.then((ready) => ({ ready })),
    proc.exited.then((code) => ({ exited: code })),
    new Promise<{ timeout: true }>((resolve) => (timer = setTimeout(() => resolve({ timeout: true }), timeoutMs))),
  ]);
  clearTimeout(timer);
  if (!("ready" in outcome)) {
    proc.kill("SIGKILL");
    await proc.exited;
    await Bun.sleep(20);
    const why = "exited" in outcome ? `exited with code ${outcome.exited}` : `was not ready after ${timeoutMs} ms`;
    throw new DruvaaError("DEMO_ROLE_FAILED", `${name} ${why}:\n${stderr.trim().split("\n").slice(-8).join("\n")}`, `Command: druvaa ${args.join(" ")}`);
  }
  return {
    name,
    pid: proc.pid,
    ready: outcome.ready,
    proc,
    stderrText: () => stderr,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode ?? 128;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      const code = await proc.exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Runs `druvaa ARGS` to completion; throws with its stderr if it fails. */
export async function runDruvaa(args: string[]): Promise<string> {
  const proc = Bun.spawn([...selfCommand(), ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new DruvaaError("DEMO_STEP_FAILED", `druvaa ${args.join(" ")} failed (exit ${code}):\n${stderr.trim()}`);
  return stdout;
}
