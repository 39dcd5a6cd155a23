/**
 * `druvaa client agent` with a child that cannot run (its staging is unreachable and it has no
 * change map, so `client attach` exits at once): the commit reports the failed apply, the agent
 * keeps restarting the child with a doubling backoff (one log line per crash, counted in /status),
 * the child's own error is in its log file, and disabling the attachment ends the retries.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RoleProcess } from "../../src/demo/processes.ts";
import { createImage, isAlive, MiB, startTracked } from "../e2e/helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "druvaa-agent-restart-"));
let agent: RoleProcess | undefined;
const childPids = new Set<number>();

afterAll(async () => {
  await agent?.stop("SIGTERM");
  for (const pid of childPids) if (isAlive(pid)) process.kill(pid, "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

describe("client agent: a child that keeps failing", () => {
  test("the failed apply is reported; restarts back off 1 s, 2 s, 4 s, each logged once; the child's error is in its log; disabling ends it", async () => {
    await createImage(join(dir, "primary.img"), 4 * MiB);
    agent = await startTracked("agent", ["client", "agent", "--control", "127.0.0.1:0", "--state-dir", join(dir, "agent"), "--insecure"]);
    const call = async (path: string, body?: unknown) => {
      const response = await fetch(`http://${String(agent!.ready.control)}${path}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) });
      const answer = (await response.json()) as any;
      for (const attachment of answer.attachments ?? []) if (typeof attachment.pid === "number") childPids.add(attachment.pid);
      return answer;
    };
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    const attachment = { name: "pair-x", devices: [{ name: "disk0", path: join(dir, "primary.img") }], staging: "127.0.0.1:1", wrl: "w0", export: `unix:${join(dir, "x.sock")}`, initialSync: "none", enabled: true };
    expect(await call("/config/prepare", { txid: "tx-1", version: 1, config: { attachments: [attachment] } })).toMatchObject({ ok: true });
    const committed = await call("/config/commit", { txid: "tx-1" });
    expect(committed).toMatchObject({ ok: true, version: 1, applied: { version: 1, error: { code: "ATTACHMENT_START_FAILED" } } });
    expect(committed.applied.error.message).toContain("pair-x exited before it was ready (exit code");
    expect((await call("/config")).applied.error.code).toBe("ATTACHMENT_START_FAILED");

    let status = await call("/status");
    for (let attempt = 0; attempt < 600 && status.attachments[0].restarts < 3; attempt += 1) {
      await Bun.sleep(100);
      status = await call("/status");
    }
    expect(status.attachments[0]).toMatchObject({ name: "pair-x", enabled: true, restarts: 3, lastExit: { signal: null } });
    expect(status.attachments[0].lastExit.code).not.toBe(0);
    const agentLog = agent.stderrText();
    for (const [restart, seconds] of [[1, 1], [2, 2], [3, 4]]) {
      expect(agentLog.split("\n").filter((line) => line.includes(`attachment pair-x:`) && line.includes(`restart ${restart} in ${seconds} s`))).toHaveLength(1);
    }
    const childLog = readFileSync(join(dir, "agent", "attachments", "pair-x.log"), "utf8");
    expect(childLog).toContain("STAGING_UNREACHABLE");
    expect(childLog.match(/druvaa client agent: starting/g)!.length).toBeGreaterThanOrEqual(4);

    const disabled = await call("/config/prepare", { txid: "tx-2", version: 2, config: { attachments: [{ ...attachment, enabled: false }] } });
    expect(disabled).toMatchObject({ ok: true });
    expect(await call("/config/commit", { txid: "tx-2" })).toMatchObject({ ok: true, applied: { version: 2 } });
    expect((await call("/config")).applied.error).toBeUndefined();
    expect((await call("/status")).attachments[0]).toMatchObject({ enabled: false, state: "stopped", pid: null });
    expect(await agent.stop("SIGTERM")).toBe(0);
  }, 120_000);
});
