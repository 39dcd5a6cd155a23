/** Runs a packaging tool; a non-zero exit throws with the tool's output (loud, never swallowed). */
export async function run(cmd: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<{ stdout: string; stderr: string }> {
  const proc = Bun.spawn({ cmd, cwd: options.cwd, env: { ...process.env, ...options.env }, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (exitCode !== 0) throw new Error(`${cmd.join(" ")} exited ${exitCode}:\n${stdout}${stderr}`);
  return { stdout, stderr };
}

/** Whether a tool is on PATH (to name the missing Debian package instead of failing obscurely). */
export function haveTool(name: string): boolean {
  return Bun.which(name) !== null;
}
