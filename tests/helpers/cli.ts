/** Runs the druvaa CLI as a real subprocess (the way scripts and cron use it). */
import { resolve } from "node:path";

export const repoRoot = resolve(import.meta.dir, "../..");
export const bunPath = process.execPath;
export const cliPath = resolve(repoRoot, "src/cli.ts");

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export async function druvaa(args: string[], opts: { cwd?: string; argv0?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  const proc = Bun.spawn({
    cmd: [bunPath, cliPath, ...args],
    cwd: opts.cwd ?? repoRoot,
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
    env: { ...process.env, NO_COLOR: "1", ...opts.env },
    ...(opts.argv0 === undefined ? {} : { argv0: opts.argv0 }),
  });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, stdout, stderr };
}
