/**
 * Client crashes and a client started while staging is down, with real processes: the client is
 * SIGKILLed in the middle of a fio (nbd engine, crc32c verify) workload, so writes are in flight
 * (logged at staging and not written locally, or the reverse); restarted on the same change map,
 * it finds the activity log not clean and recovers the active extents checksum-first: a verify
 * pass compares them with the replica and only the blocks that differ are resent (far fewer
 * bytes than the extents); once `druvaa resync` exits 0 and staging drained, the restored
 * replica equals the primary. A client
 * started while staging is dead serves fio at once (disconnected mode) and resyncs when staging
 * comes up; a clean stop (SIGTERM) leaves nothing to recover.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { clientWrites, druvaa, expectResynced, expectFioOk, expectReplicaEqualsPrimary, fio, MiB, startSystem, type System } from "./helpers.ts";

const sizeBytes = 32 * MiB;
let system: System | undefined;

afterEach(async () => {
  await system?.stop();
  system = undefined;
});


describe("client crash and start without staging", () => {
  test("client SIGKILLed mid-workload: the restart verifies the activity-log extents and resends only what differs, replica == primary", async () => {
    const sys = (system = await startSystem({ sizeBytes, changeMap: true }));
    const status = await sys.status("client");
    expect(status.activityLog).toMatchObject({ recoveredExtents: 0, slotsMax: 256 });
    // Random 4 KiB writes all over the device at depth 16: many extents active, writes in flight.
    // fio (libnbd) sometimes hangs once its server is gone: it is killed 12 s after it started
    // (--thread: one process, so the kill also closes its output pipes).
    const running = fio(sys.exportUri("disk0"), "crash", ["--thread", "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=32M", "--time_based", "--runtime=10", "--rate_iops=3000", "--verify=crc32c", "--do_verify=0", "--randseed=11"], { timeoutMs: 12_000, cwd: sys.dir });
    while ((await clientWrites(sys)) < 2_000) await Bun.sleep(20);
    const before = await sys.status("client");
    expect(before.activityLog.activeExtents).toBeGreaterThan(1);
    expect(before.activityLog.writes).toBeGreaterThan(1);
    await sys.kill("client", "SIGKILL");
    const killed = await running;
    expect(killed.exitCode).not.toBe(0); // fio saw its server die: the workload was cut short

    await sys.restart("client");
    const after = await sys.status("client");
    expect(after.activityLog.recoveredExtents).toBeGreaterThan(1);
    expect(after.crashRecovery.extents).toBeGreaterThan(1);
    const report = await expectResynced(sys, 40);
    // `druvaa resync` reports in sync only once every recovered extent was verified.
    const recovery = report.crashRecovery as { inProgress: boolean; extents: number; totalBytes: number; verifiedBytes: number; differingBlocks: number; differingBytes: number; markedBytes: number };
    const sentBytes = (report.lastResync as { sentBytes: number } | null)?.sentBytes ?? 0;
    console.log(`client crash: ${recovery.extents} active extents (${recovery.totalBytes / MiB} MiB) verified; ${recovery.differingBlocks} block(s) (${recovery.differingBytes} bytes) differed; the resync sent ${sentBytes} bytes`);
    expect(recovery).toMatchObject({ inProgress: false, markedBytes: 0, verifiedBytes: recovery.totalBytes });
    expect(recovery.totalBytes).toBeGreaterThanOrEqual(8 * MiB);
    // Only what differs travels: fio had at most 16 requests of 4 KiB in flight.
    expect(sentBytes).toBeLessThanOrEqual(recovery.differingBytes);
    expect(recovery.differingBytes).toBeLessThan(recovery.totalBytes / 64);
    const synced = await sys.status("client");
    expect(synced.resyncSetsOpen).toEqual([]);
    await expectReplicaEqualsPrimary(sys);

    // The restarted client serves a verified workload too, and stays in sync.
    expectFioOk(await fio(sys.exportUri("disk0"), "after", ["--rw=randwrite", "--bs=64k", "--iodepth=4", "--size=8M", "--verify=crc32c", "--do_verify=1"], { timeoutMs: 30_000, cwd: sys.dir }));
    await expectReplicaEqualsPrimary(sys);
    sys.assertAlive();
  }, 60_000);

  test("client started while staging is dead: it serves at once (disconnected), resyncs when staging comes up; SIGTERM leaves nothing to recover", async () => {
    const sys = (system = await startSystem({ sizeBytes, changeMap: true }));
    await sys.kill("staging", "SIGKILL");
    await sys.restart("client"); // SIGTERM (clean), then a start with staging unreachable
    const started = await sys.status("client");
    expect(started).toMatchObject({ mode: "disconnected", staging: { connected: false } });
    expect(started.staging.lastError.code).toBe("STAGING_UNREACHABLE");
    expect(started.activityLog.recoveredExtents).toBe(0); // the SIGTERM was a clean shutdown
    expectFioOk(await fio(sys.exportUri("disk0"), "nostaging", ["--rw=randwrite", "--bs=16k", "--iodepth=8", "--size=16M", "--verify=crc32c", "--do_verify=1", "--randseed=5"], { timeoutMs: 30_000, cwd: sys.dir }));
    const dirty = await sys.status("client");
    expect(dirty.mode).toBe("disconnected");
    expect(dirty.dirtyBytes).toBeGreaterThan(4 * MiB);
    await sys.restart("staging");
    const report = await expectResynced(sys, 40);
    expect((report.lastResync as { sentBytes: number }).sentBytes).toBeGreaterThanOrEqual(dirty.dirtyBytes);
    expect((await sys.status("client")).staging.connected).toBe(true);
    await expectReplicaEqualsPrimary(sys);

    await sys.restart("client");
    const clean = await sys.status("client");
    expect(clean.activityLog.recoveredExtents).toBe(0);
    expect(clean.mode).not.toBe("disconnected");
    sys.assertAlive();
  }, 60_000);
});
