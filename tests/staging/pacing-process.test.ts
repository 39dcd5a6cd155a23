/**
 * `druvaa staging serve --schedule … --rate-limit … --rpo …` as real processes with a real
 * `druvaa replica apply`: with a schedule whose only window is later today (computed from the
 * current UTC time), the status says closed and when it opens, client writes are acknowledged
 * (the WRL buffers), and nothing reaches the replica — its applied LSN stays 0. The rate limit and
 * the RPO target show in the status (JSON and `druvaa status`).
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { druvaa } from "../helpers/cli.ts";
import { startRole } from "../helpers/role-process.ts";
import { bytes, MiB } from "./helpers.ts";
import { processFixture } from "./process-fixture.ts";
import { TestClient } from "./test-client.ts";

const deviceBytes = 4 * MiB;
const fx = processFixture("pacing", deviceBytes);
const { scratch, wrlPath, running, clients } = fx;

const pad = (value: number) => String(value).padStart(2, "0");

/** A daily UTC window from two to three hours from now: closed now, opening at the returned instant. */
function windowLaterToday(nowMs: number): { schedule: string; opensAt: string } {
  const now = new Date(nowMs);
  const startHour = (now.getUTCHours() + 2) % 24;
  const opensAtMs = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), now.getUTCHours() + 2);
  return { schedule: `${pad(startHour)}:00-${pad((startHour + 1) % 24)}:00 UTC`, opensAt: new Date(opensAtMs).toISOString() };
}

async function getJson(url: string): Promise<any> {
  return (await fetch(url)).json();
}

describe("druvaa staging serve --schedule (real processes)", () => {
  test("outside the window: writes are acked, the status says closed and when it opens, the replica gets nothing", async () => {
    const { schedule, opensAt } = windowLaterToday(Date.now());
    const staging = await startRole(
      ["staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--wrl", `w0=${wrlPath}`, "--replica", `w0=${fx.replica.ready.listen}`, "--state-dir", join(scratch, "staging-state"), "--node-id", "staging-pacing", "--schedule", schedule, "--rate-limit", "20Mbit", "--rpo", "w0=30s"],
      join(scratch, "staging.log"),
    );
    running.add(staging);
    const client = await TestClient.connect(staging.ready.listen, "pacing-client");
    clients.push(client);
    expect(await client.attach("w0", "d0", deviceBytes)).toMatchObject({ accepted: true });
    for (let index = 0; index < 16; index += 1) {
      const answer = await client.write("w0", "d0", index * 64 * 1024, bytes(64 * 1024, index + 1), 64 * 1024);
      expect(answer.type).toBe("writeAck");
    }
    // A relay ignoring the schedule would have connected and shipped within milliseconds.
    await Bun.sleep(1_000);

    const status = await getJson(`http://${staging.ready.control}/status`);
    const wrl = status.wrls[0];
    expect(wrl.schedule).toEqual({ schedule, open: false, nextChangeAt: opensAt });
    expect(wrl).toMatchObject({ headLsn: 16, tailLsn: 0, recordCount: 16, appendedBytes: 16 * 64 * 1024, ackedBytes: 0 });
    expect(wrl.lagBytes).toBe(16 * 64 * 1024);
    expect(wrl.replica).toMatchObject({ connected: false, appliedLsn: 0, lastError: null, shipmentsShipped: 0 });
    expect(wrl.rateLimit).toMatchObject({ bytesPerSecond: 2_500_000, scope: "server", frameBytes: 0 });
    expect(wrl.rpo).toMatchObject({ targetSeconds: 30, state: "ok" });
    expect(status.events).toEqual([]);

    // The replica never heard of this WRL.
    const replica = await getJson(`http://${fx.replica.ready.control}/status`);
    const applied = (replica.wrls as { appliedLsn: number }[]).map((entry) => entry.appliedLsn);
    expect(applied.every((lsn) => lsn === 0)).toBe(true);

    const human = await druvaa(["status", "--connect", staging.ready.control]);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toContain(`schedule "${schedule}": closed, the WRL buffers, opens at ${opensAt}`);
    expect(human.stdout).toContain("rate limit 20 Mbit/s (shared by the server's WRLs)");
    expect(human.stdout).toMatch(/RPO \d+\.\d s, target 30 s: ok/);
    const json = await druvaa(["status", "--connect", staging.ready.control, "--json"]);
    expect(JSON.parse(json.stdout).wrls[0].schedule.open).toBe(false);
  }, 60_000);
});
