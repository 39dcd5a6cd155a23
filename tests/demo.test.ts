/**
 * The README's main job, end to end: `druvaa demo` starts a real client, staging server and
 * replica, writes through the NBD export with real NBD clients, drains, restores and verifies.
 */
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { druvaa } from "./helpers/cli.ts";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("druvaa demo replicates a mixed workload and the restored replica equals the primary", async () => {
  const result = await druvaa(["demo", "--size", "32MiB", "--json"]);
  expect(result.exitCode).toBe(0);
  const summary = JSON.parse(result.stdout.trim().split("\n").pop()!);
  expect(summary.ok).toBe(true);
  expect(summary.verified).toBe(true);
  expect(summary.primarySha256).toBe(summary.restoredSha256);
  expect(summary.appliedLsn).toBe(summary.headLsn);
  expect(summary.headLsn).toBeGreaterThan(100);
  // Recovery: the checkpoint reached the replica's journal, and its snapshot equals the restore.
  expect(summary.checkpoint.label).toBe("demo-end");
  expect(summary.checkpoint.points).toBeGreaterThan(1);
  expect(summary.checkpoint.snapshotSha256).toBe(summary.restoredSha256);
  // Every tool that is installed took part (CI installs them all).
  const tools = new Set(summary.steps.map((s: { tool: string }) => s.tool));
  expect(tools.has("built-in NBD client")).toBe(true);
  if (Bun.which("nbdcopy")) expect(tools.has("nbdcopy")).toBe(true);
  if (Bun.which("qemu-io")) expect(tools.has("qemu-io")).toBe(true);
  // Nothing left behind: processes stopped, work directory removed.
  for (const pid of Object.values(summary.pids) as number[]) expect(alive(pid)).toBe(false);
  expect(existsSync(summary.workDir)).toBe(false);
}, 180_000);

test("druvaa demo refuses a bad size with a hint", async () => {
  const result = await druvaa(["demo", "--size", "3MiB"]);
  expect(result.exitCode).toBe(2);
  expect(result.stderr).toContain("--size must be whole MiB and at least 16MiB");
});

test("Ctrl-C during the demo leaves nothing running", async () => {
  const { bunPath, cliPath, repoRoot } = await import("./helpers/cli.ts");
  const proc = Bun.spawn([bunPath, cliPath, "demo", "--size", "256MiB", "--json"], { cwd: repoRoot, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  let stderr = "";
  const pids: number[] = [];
  const decoder = new TextDecoder();
  try {
    for await (const chunk of proc.stderr) {
      stderr += decoder.decode(chunk);
      const match = /started replica \(pid (\d+)\), staging \(pid (\d+)\) and client \(pid (\d+)\)/.exec(stderr);
      if (match) {
        pids.push(Number(match[1]), Number(match[2]), Number(match[3]));
        break;
      }
    }
    expect(pids.length).toBe(3);
    for (const pid of pids) expect(alive(pid)).toBe(true);
    proc.kill("SIGINT");
    expect(await proc.exited).toBe(130);
    for (const pid of pids) expect(alive(pid)).toBe(false);
  } finally {
    proc.kill("SIGKILL");
    for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
  }
}, 120_000);
