/** Runs the druvaa CLI as a real subprocess (the way scripts and cron use it). */
import { expect } from "bun:test";
import { resolve } from "node:path";

export const repoRoot = resolve(import.meta.dir, "../..");
export const bunPath = process.execPath;
export const cliPath = resolve(repoRoot, "src/cli.ts");

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

const roleCommands = new Set(["client attach", "staging serve", "replica apply"]);

/**
 * Tests run the roles in plaintext on loopback (`--insecure`) unless they give TLS flags or
 * --insecure themselves: the one place that says so. Other commands are left as they are.
 */
export function withTestLinkSecurity(args: readonly string[]): string[] {
  if (!roleCommands.has(`${args[0]} ${args[1]}`)) return [...args];
  if (args.some((arg) => arg.startsWith("--tls-") || arg === "--insecure")) return [...args];
  return [...args, "--insecure"];
}

/** Runs `druvaa ARGS` (role commands with withTestLinkSecurity unless `asIs`). */
export async function druvaa(args: string[], opts: { cwd?: string; argv0?: string; env?: Record<string, string>; asIs?: boolean } = {}): Promise<CliResult> {
  const proc = Bun.spawn({
    cmd: [bunPath, cliPath, ...(opts.asIs === true ? args : withTestLinkSecurity(args))],
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

/** `druvaa PATH --help` exits 0 with the usage, the examples, and the whole command path. */
export async function expectHelp(path: readonly string[]): Promise<void> {
  const result = await druvaa([...path, "--help"]);
  expect(result.exitCode).toBe(0);
  expect(result.stdout).toContain("USAGE");
  expect(result.stdout).toContain("EXAMPLES");
  expect(result.stdout).toContain(`druvaa ${path.join(" ")}`);
}
