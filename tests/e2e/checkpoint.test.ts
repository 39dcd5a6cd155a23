/**
 * `druvaa checkpoint` with real processes (client with a change map and two devices, staging,
 * replica): after qemu-io writes through the NBD export, a checkpoint is logged for every device
 * at an LSN past every write the application saw complete, staging's WRL holds it, and the replica
 * applies past it; the CLI refuses clearly (bad label, unknown device) and, with staging down,
 * refuses with CHECKPOINT_UNAVAILABLE (exit 4) until the client is connected again.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { druvaa, MiB, qemuIo, startSystem, type RunResult, type System } from "./helpers.ts";

let sys: System | undefined;

beforeAll(async () => {
  sys = await startSystem({ sizeBytes: 16 * MiB, devices: ["disk0", "disk1"], changeMap: true });
}, 60_000);

afterAll(async () => {
  await sys?.stop();
});

interface Report {
  ok: boolean;
  label?: string;
  checkpoints?: { device: string; wrl: string; lsn: number }[];
  error?: { code: string; message: string; hint?: string };
}

async function checkpoint(args: string[]): Promise<{ result: RunResult; report: Report }> {
  const result = await druvaa(["checkpoint", "--client", sys!.clientControl, "--json", ...args], 45_000);
  try {
    return { result, report: JSON.parse(result.stdout) as Report };
  } catch {
    throw new Error(`druvaa checkpoint exited ${result.exitCode} without a JSON report:\n${result.stderr}\n${result.stdout}`);
  }
}

async function until<T>(what: string, read: () => Promise<T>, check: (value: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read().catch(() => undefined);
    if (value !== undefined && check(value)) return value;
    if (Date.now() > deadline) throw new Error(`never saw ${what}: ${JSON.stringify(value)}`);
    await Bun.sleep(100);
  }
}

describe("druvaa checkpoint against real processes", () => {
  test("logged for every device after the application's writes, held in staging's WRL, applied by the replica", async () => {
    const s = sys!;
    for (const name of ["disk0", "disk1"]) {
      const writes = await qemuIo(s.exportUri(name), ["write -P 0x11 0 1M", "write -P 0x22 4M 256k", "write -z 8M 1M"]);
      expect(writes.exitCode).toBe(0);
    }
    // Every write qemu-io saw complete was acknowledged by staging at or below these LSNs.
    const client = await s.status("client");
    const ackedLsn = Math.max(...client.devices.map((device: { ackedLsn: number }) => device.ackedLsn));
    expect(ackedLsn).toBeGreaterThan(0);

    const { result, report } = await checkpoint(["--label", "before-x"]);
    expect({ exit: result.exitCode, ok: report.ok, label: report.label }).toEqual({ exit: 0, ok: true, label: "before-x" });
    const taken = report.checkpoints!;
    expect(taken.map((entry) => entry.device).sort()).toEqual(["disk0", "disk1"]);
    for (const entry of taken) {
      expect(entry.wrl).toBe(s.wrlName);
      expect(entry.lsn).toBeGreaterThan(ackedLsn);
    }
    expect(new Set(taken.map((entry) => entry.lsn)).size).toBe(2);
    const last = Math.max(...taken.map((entry) => entry.lsn));

    // Staging logged it: its WRL's head is at or past the checkpoints.
    const staging = await s.status("staging");
    const wrl = staging.wrls.find((entry: { name: string }) => entry.name === s.wrlName);
    expect(wrl.headLsn).toBeGreaterThanOrEqual(last);
    // And it flows on: the replica applies past it.
    await s.waitDrained(60);
    const replica = await s.status("replica");
    const applied = replica.wrls.find((entry: { name: string }) => entry.name === s.wrlName);
    expect(applied.appliedLsn).toBeGreaterThanOrEqual(last);

    // One device only; a later checkpoint comes later in the log.
    const one = await checkpoint(["--label", "only-disk1", "--device", "disk1"]);
    expect(one.result.exitCode).toBe(0);
    expect(one.report.checkpoints!.map((entry) => entry.device)).toEqual(["disk1"]);
    expect(one.report.checkpoints![0]!.lsn).toBeGreaterThan(last);

    // Human output names each device's LSN.
    const human = await druvaa(["checkpoint", "--client", s.clientControl, "--label", "human-1"], 45_000);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toMatch(/checkpoint human-1:\n {2}disk0: after LSN \d+ of WRL wrl0\n {2}disk1: after LSN \d+ of WRL wrl0/);
    s.assertAlive();
  }, 120_000);

  test("refusals: a bad label is a usage error (exit 2), an unknown device is refused (exit 4)", async () => {
    const bad = await checkpoint(["--label", "not a label"]);
    expect({ exit: bad.result.exitCode, code: bad.report.error?.code }).toEqual({ exit: 2, code: "USAGE" });
    expect(bad.result.stderr).toContain("not a valid checkpoint label");
    const unknown = await checkpoint(["--label", "x1", "--device", "nosuch"]);
    expect({ exit: unknown.result.exitCode, code: unknown.report.error?.code }).toEqual({ exit: 4, code: "DEVICE_UNKNOWN" });
    expect(unknown.result.stderr).toContain("disk0, disk1");
  }, 60_000);

  test("staging down: CHECKPOINT_UNAVAILABLE (exit 4) with what to do; once the client is connected again it works", async () => {
    const s = sys!;
    await s.kill("staging", "SIGKILL");
    try {
      // A write while staging is dead sends the client to disconnected mode (the change map holds it).
      expect((await qemuIo(s.exportUri("disk0"), ["write -P 0x55 2M 64k"])).exitCode).toBe(0);
      const refused = await checkpoint(["--label", "while-down"]);
      expect({ exit: refused.result.exitCode, code: refused.report.error?.code }).toEqual({ exit: 4, code: "CHECKPOINT_UNAVAILABLE" });
      expect(refused.result.stderr).toContain("could not flow through the log");
      expect(refused.result.stderr).toMatch(/hint: .*retry once the client is connected/i);
    } finally {
      await s.restart("staging");
    }
    await until("the client connected again", () => s.status("client"), (status) => status.mode === "connected" && status.dirtyBytes === 0, 90_000);
    const after = await checkpoint(["--label", "after-reconnect"]);
    expect({ exit: after.result.exitCode, ok: after.report.ok }).toEqual({ exit: 0, ok: true });
    expect(after.report.checkpoints).toHaveLength(2);
    s.assertAlive();
  }, 150_000);
});
