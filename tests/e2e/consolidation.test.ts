/**
 * Issue 5 part 6, with real processes on loopback:
 *   - N:1 consolidation: two staging servers (two remote offices), each with its own WRL and
 *     client, relay into ONE replica server holding both devices. The replica keeps each WRL's
 *     applied LSN apart (its status lists both uuids); a replica SIGKILL in the middle costs
 *     neither office a write; both devices restore equal to their primaries.
 *   - Quality of service / N:N: one staging server with two WRLs, each relaying to its own
 *     replica. One replica down stops only its WRL: the other keeps draining to its replica;
 *     the stopped one buffers and converges once its replica is back.
 * Every process is tracked by pid and stopped in finally blocks (helpers.ts).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RoleProcess } from "../../src/demo/processes.ts";
import { createImage, createReplicaImage, druvaaOk, MiB, qemuIo, sha256File, startTracked } from "./helpers.ts";

const sizeBytes = 32 * MiB;
const started: RoleProcess[] = [];
const dirs: string[] = [];

afterEach(async () => {
  await Promise.allSettled(started.splice(0).reverse().map(async (role) => {
    if (role.proc.exitCode !== null || role.proc.signalCode !== null) return;
    role.proc.kill("SIGTERM");
    const timer = setTimeout(() => role.proc.kill("SIGKILL"), 10_000);
    await role.proc.exited;
    clearTimeout(timer);
  }));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function start(name: string, args: string[]): Promise<RoleProcess> {
  const role = await startTracked(name, args);
  started.push(role);
  return role;
}

function workDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "druvaa-e2e-consolidation-"));
  dirs.push(dir);
  return dir;
}

const replicaArgs = (dir: string, name: string, devices: string[], listen = "127.0.0.1:0", control = "127.0.0.1:0", restore = "127.0.0.1:0") => [
  "replica", "apply", "--listen", listen, "--control", control, "--restore", restore,
  ...devices.flatMap((device) => ["--device", `${device}=${join(dir, `replica-${device}.img`)}`]),
  "--state-dir", join(dir, `${name}-state`),
];

async function newWrl(dir: string, name: string): Promise<string> {
  const path = join(dir, `${name}.img`);
  await druvaaOk(["wrl", "create", "--primary", path, "--size", String(64 * MiB)]);
  return path;
}

async function startClient(dir: string, device: string, staging: RoleProcess, wrl: string): Promise<{ role: RoleProcess; uri: string }> {
  const socket = join(dir, `export-${device}.sock`);
  const role = await start(`client-${device}`, ["client", "attach", "--device", `${device}=${join(dir, `primary-${device}.img`)}`, "--staging", String(staging.ready.listen), "--wrl", wrl, "--export", `unix:${socket}`, "--control", "127.0.0.1:0", "--state-dir", join(dir, `client-${device}-state`)]);
  return { role, uri: `nbd+unix:///${device}?socket=${socket}` };
}

async function writeOk(uri: string, commands: string[]): Promise<void> {
  const result = await qemuIo(uri, commands);
  if (result.exitCode !== 0) throw new Error(`qemu-io failed: ${result.stdout}${result.stderr}`);
}

async function waitDrained(staging: RoleProcess, timeoutSeconds = 60): Promise<void> {
  await druvaaOk(["status", "--connect", String(staging.ready.control), "--wait-drained", "--timeout", String(timeoutSeconds)], (timeoutSeconds + 15) * 1000);
}

async function expectRestoredEqual(dir: string, replica: RoleProcess, device: string): Promise<void> {
  const target = join(dir, `restored-${device}.img`);
  rmSync(target, { force: true });
  await druvaaOk(["restore", "--replica", String(replica.ready.restore), "--device", device, "--to", target]);
  expect({ device, sha256: await sha256File(target, sizeBytes) }).toEqual({ device, sha256: await sha256File(join(dir, `primary-${device}.img`), sizeBytes) });
}

async function statusOf(role: RoleProcess): Promise<any> {
  return (await fetch(`http://${role.ready.control}/status`)).json();
}

describe("several staging servers and WRLs", () => {
  test("N:1 — two staging servers (two offices) into one replica server; a replica SIGKILL loses nothing", async () => {
    const dir = workDir();
    for (const device of ["office1", "office2"]) {
      await createImage(join(dir, `primary-${device}.img`), sizeBytes);
      await createReplicaImage(join(dir, `replica-${device}.img`), sizeBytes);
    }
    const firstReplica = await start("replica", replicaArgs(dir, "replica", ["office1", "office2"]));
    const fixed = [String(firstReplica.ready.listen), String(firstReplica.ready.control), String(firstReplica.ready.restore)] as const;
    const offices = [];
    for (const [index, device] of ["office1", "office2"].entries()) {
      const wrl = await newWrl(dir, `wrl-${device}`);
      const staging = await start(`staging-${device}`, ["staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--wrl", `w${index}=${wrl}`, "--replica", `w${index}=${firstReplica.ready.listen}`, "--state-dir", join(dir, `staging-${device}-state`)]);
      offices.push({ device, staging, ...(await startClient(dir, device, staging, `w${index}`)) });
    }
    await writeOk(offices[0]!.uri, ["write -P 0x11 0 4M", "write -P 0x12 8M 1M"]);
    await writeOk(offices[1]!.uri, ["write -P 0x21 0 2M", "write -P 0x22 20M 3M"]);
    for (const office of offices) await waitDrained(office.staging);
    const applied = await statusOf(firstReplica);
    expect(applied.wrls.length).toBe(2);
    expect(new Set(applied.wrls.map((wrl: { uuid: string }) => wrl.uuid)).size).toBe(2);
    for (const wrl of applied.wrls) expect(wrl.appliedLsn).toBeGreaterThan(0);

    // The replica dies; both offices keep writing (their WRLs buffer), then it comes back.
    firstReplica.proc.kill("SIGKILL");
    await firstReplica.proc.exited;
    await writeOk(offices[0]!.uri, ["write -P 0x13 12M 2M"]);
    await writeOk(offices[1]!.uri, ["write -P 0x23 30M 1M"]);
    const replica = await start("replica", replicaArgs(dir, "replica", ["office1", "office2"], ...fixed));
    for (const office of offices) await waitDrained(office.staging);
    for (const office of offices) await expectRestoredEqual(dir, replica, office.device);
  }, 180_000);

  test("QoS — one staging server, two WRLs, each to its own replica: one replica down stops only its WRL", async () => {
    const dir = workDir();
    for (const device of ["fast", "slow"]) {
      await createImage(join(dir, `primary-${device}.img`), sizeBytes);
      await createReplicaImage(join(dir, `replica-${device}.img`), sizeBytes);
    }
    const fastReplica = await start("replica-fast", replicaArgs(dir, "replica-fast", ["fast"]));
    let slowReplica = await start("replica-slow", replicaArgs(dir, "replica-slow", ["slow"]));
    const slowFixed = [String(slowReplica.ready.listen), String(slowReplica.ready.control), String(slowReplica.ready.restore)] as const;
    const staging = await start("staging", [
      "staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
      "--wrl", `fast=${await newWrl(dir, "wrl-fast")}`, "--replica", `fast=${fastReplica.ready.listen}`,
      "--wrl", `slow=${await newWrl(dir, "wrl-slow")}`, "--replica", `slow=${slowReplica.ready.listen}`,
      "--state-dir", join(dir, "staging-state"),
    ]);
    const fast = await startClient(dir, "fast", staging, "fast");
    const slow = await startClient(dir, "slow", staging, "slow");
    await writeOk(fast.uri, ["write -P 0x31 0 2M"]);
    await writeOk(slow.uri, ["write -P 0x41 0 2M"]);
    await waitDrained(staging);

    slowReplica.proc.kill("SIGKILL");
    await slowReplica.proc.exited;
    await writeOk(slow.uri, ["write -P 0x42 4M 4M"]);
    await writeOk(fast.uri, ["write -P 0x32 4M 4M"]);
    // The fast WRL drains to its replica while the slow one holds its records.
    const deadline = Date.now() + 60_000;
    let wrls: { name: string; headLsn: number; replica: { appliedLsn: number } }[] = [];
    for (;;) {
      wrls = (await statusOf(staging)).wrls;
      const fastWrl = wrls.find((wrl) => wrl.name === "fast")!;
      if (fastWrl.replica.appliedLsn >= fastWrl.headLsn || Date.now() > deadline) break;
      await Bun.sleep(100);
    }
    const byName = new Map(wrls.map((wrl) => [wrl.name, wrl]));
    expect(byName.get("fast")!.replica.appliedLsn).toBe(byName.get("fast")!.headLsn);
    expect(byName.get("slow")!.replica.appliedLsn).toBeLessThan(byName.get("slow")!.headLsn);
    await expectRestoredEqual(dir, fastReplica, "fast");

    slowReplica = await start("replica-slow", replicaArgs(dir, "replica-slow", ["slow"], ...slowFixed));
    await waitDrained(staging);
    await expectRestoredEqual(dir, slowReplica, "slow");
  }, 180_000);
});
