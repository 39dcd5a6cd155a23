/**
 * Disconnected mode with real processes: a client with a change map keeps serving fio (crc32c
 * verify) while staging is dead for 10 s, or while its WRL is far too small to hold the
 * workload; the dirty blocks are resynced (`druvaa resync` exits 0 only once in sync) and the
 * restored replica equals the primary. Bad input: a change map for another volume size is
 * refused before anything is exported; `druvaa resync` against a client without a map is refused.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { clientWrites, druvaa, expectResynced, druvaaOk, expectFioOk, expectReplicaEqualsPrimary, fio, MiB, startSystem, type System } from "./helpers.ts";

const sizeBytes = 32 * MiB;
let system: System | undefined;

afterEach(async () => {
  await system?.stop();
  system = undefined;
});




describe("disconnected mode: the application keeps writing, the change map resyncs", () => {
  test("staging SIGKILLed for 10 s mid-workload: fio sees no error, the client marks and then resyncs, replica == primary", async () => {
    const sys = (system = await startSystem({ sizeBytes, changeMap: true, clientFlags: ["--ack-timeout", "2s"] }));
    let finished = false;
    // ~12 s of writes at 500 IOPS: most of them while staging is down.
    const running = fio(sys.exportUri("disk0"), "outage", ["--rw=randwrite", "--bs=4k", "--iodepth=8", "--size=24M", "--rate_iops=500", "--verify=crc32c", "--do_verify=1", "--randseed=3"], { timeoutMs: 90_000, cwd: sys.dir }).finally(() => (finished = true));
    while ((await clientWrites(sys)) < 600 && !finished) await Bun.sleep(25);
    expect(finished).toBe(false);
    await sys.kill("staging", "SIGKILL");
    await Bun.sleep(3_000);
    const during = await sys.status("client");
    expect(during.mode).toBe("disconnected");
    expect(during.dirtyBytes).toBeGreaterThan(0);
    const writesDuring = await clientWrites(sys);
    await Bun.sleep(7_000);
    // The application kept writing while staging was dead.
    expect(await clientWrites(sys)).toBeGreaterThan(writesDuring + 500);
    await sys.restart("staging");
    expectFioOk(await running);
    const report = await expectResynced(sys);
    expect((report.lastResync as { sentBytes: number }).sentBytes).toBeGreaterThan(0);
    await expectReplicaEqualsPrimary(sys);
    sys.assertAlive();
  }, 120_000);

  test("a WRL far too small for the workload fills up: writes go on locally, are resynced as it drains, replica == primary", async () => {
    const sys = (system = await startSystem({ sizeBytes, changeMap: true, wrlSizeBytes: 4 * MiB }));
    expectFioOk(await fio(sys.exportUri("disk0"), "full", ["--rw=write", "--bs=1M", "--iodepth=8", "--size=32M", "--loops=2", "--verify=crc32c", "--do_verify=1"], { timeoutMs: 90_000, cwd: sys.dir }));
    const report = await expectResynced(sys);
    // The WRL did fill (the client went disconnected and resynced), or this test proved nothing.
    expect((report.lastResync as { sentBytes: number } | null)?.sentBytes ?? 0).toBeGreaterThan(0);
    await expectReplicaEqualsPrimary(sys);
    sys.assertAlive();
  }, 120_000);

  test("bad input: a change map made for another volume size is refused before anything is exported", async () => {
    const sys = (system = await startSystem({ sizeBytes, client: false }));
    const map = join(sys.dir, "wrong.map");
    await druvaaOk(["changemap", "create", map, "--region", `disk0=${sizeBytes / 2}`]);
    const result = await druvaa(["client", "attach", "--device", `disk0=${sys.primaryPath("disk0")}`, "--changemap", map, "--staging", sys.stagingListen, "--wrl", sys.wrlName, "--export", `unix:${join(sys.dir, "wrong.sock")}`, "--control", "127.0.0.1:0", "--state-dir", join(sys.dir, "wrong-state")]);
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toContain("region 'disk0' tracks a volume of 16777216 bytes (16.0 MiB), but this volume is 33554432 bytes");
    expect(result.stderr).toContain("hint:");
  }, 60_000);

  test("bad input: a change map other than the one the client tracked its devices with (another uuid) is refused, nothing exported", async () => {
    const sys = (system = await startSystem({ sizeBytes, changeMap: true }));
    await sys.kill("client", "SIGTERM");
    const other = join(sys.dir, "other.map");
    await druvaaOk(["changemap", "create", other, "--region", `disk0=${sizeBytes}`]);
    const socket = join(sys.dir, "other.sock");
    const result = await druvaa(["client", "attach", "--device", `disk0=${sys.primaryPath("disk0")}`, "--changemap", other, "--staging", sys.stagingListen, "--wrl", sys.wrlName, "--export", `unix:${socket}`, "--control", "127.0.0.1:0", "--state-dir", join(sys.dir, "client-state")]);
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toContain("is not the one this client tracks its devices with");
    expect(result.stderr).toContain("hint:");
    expect(existsSync(socket)).toBe(false);
    // The original map is still accepted.
    await sys.restart("client");
    sys.assertAlive();
  }, 60_000);

  test("bad input: druvaa resync against a client without a change map is refused (exit 4), not a false 'in sync'", async () => {
    const sys = (system = await startSystem({ sizeBytes }));
    const result = await druvaa(["resync", "--connect", sys.clientControl, "--json"]);
    expect(result.exitCode).toBe(4);
    expect(result.stderr + result.stdout).toContain("NO_CHANGEMAP");
    const wrongRole = await druvaa(["resync", "--connect", sys.stagingControl]);
    expect(wrongRole.exitCode).toBe(2);
    expect(wrongRole.stderr).toContain("not a client");
  }, 60_000);
});
