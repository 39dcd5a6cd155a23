/** A druvaa role (staging serve, replica apply) as a real child process, started with --json. */
import { readFileSync } from "node:fs";
import { bunPath, cliPath, repoRoot, withTestLinkSecurity } from "./cli.ts";

export interface RoleProcess<Ready = Record<string, any>> {
  proc: ReturnType<typeof Bun.spawn>;
  /** The parsed ready line (its `event` is "ready"). */
  ready: Ready;
  /** Where the process's log (stderr) goes. */
  logPath: string;
}

/** Starts `druvaa ARGS --json` (withTestLinkSecurity) and waits for its ready line; the log (stderr) goes to logPath; `env` adds to the environment. */
export async function startRole<Ready = Record<string, any>>(args: string[], logPath: string, env: Record<string, string> = {}): Promise<RoleProcess<Ready>> {
  const proc = Bun.spawn({
    cmd: [bunPath, cliPath, ...withTestLinkSecurity(args), "--json"],
    cwd: repoRoot,
    stdout: "pipe",
    stderr: Bun.file(logPath),
    stdin: "ignore",
    env: { ...process.env, NO_COLOR: "1", ...env },
  });
  const reader = proc.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) {
      const code = await proc.exited;
      throw new Error(`druvaa ${args.join(" ")} exited (${code}) before it was ready: ${text}\n${readFileSync(logPath, "utf8")}`);
    }
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const ready = JSON.parse(text.slice(0, text.indexOf("\n"))) as Record<string, any>;
  if (ready.event !== "ready") throw new Error(`not a ready line: ${text}`);
  return { proc, ready: ready as Ready, logPath };
}
