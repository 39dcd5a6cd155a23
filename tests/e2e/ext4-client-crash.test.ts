/**
 * ext4 (nbdfuse + loop, through the client) after a client crash: files are written and synced,
 * then a child process keeps writing and fsyncing files (and fio O_DIRECT writes, so NBD writes
 * are in flight) while the client is SIGKILLed. The kernel
 * then sees I/O errors on the loop device; the filesystem stack is torn down (lazily where it must
 * be) and the client restarted on the same change map. Its crash recovery verifies the active
 * extents against the replica and resends only the blocks that differ; once `druvaa resync`
 * exits 0 and staging drained, the replica equals the primary byte for byte, and the restored
 * replica, after the kernel replayed its journal (mounted read-write once), holds every file
 * synced before the crash and passes `e2fsck -fn`.
 *
 * Needs root, /dev/fuse, fuse3 and libnbd-bin (scripts/setup.sh installs them in CI). Replay a
 * workload with the seed the test prints: DRUVAA_EXT4_SEED=N bun test tests/e2e/ext4-client-crash.test.ts
 */
import { expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { bunPath } from "../helpers/cli.ts";
import { attachLoop, hashTree, mountFs, runFileWorkload, sh, Teardown } from "./ext4-helpers.ts";
import { fileTeardown, leftovers, mountExt4OnExport, withTeardown, workloadSeed } from "./ext4-flow.ts";
import { clientWrites, expectResynced, MiB, sha256File, startSystem } from "./helpers.ts";

const teardown = fileTeardown();

function seedOf(): number {
  return workloadSeed("tests/e2e/ext4-client-crash.test.ts");
}

/** A child process running the file workload in ROOT/w0, ROOT/w1, ... until it is killed (or fails). */
function startWorkloadChild(root: string, seed: number): Bun.Subprocess<"ignore", "ignore", "pipe"> {
  const helpers = resolve(import.meta.dir, "ext4-helpers.ts");
  const code = `
    import { mkdirSync } from "node:fs";
    import { runFileWorkload } from ${JSON.stringify(helpers)};
    for (let i = 0; i < 1000; i++) {
      const dir = ${JSON.stringify(root)} + "/w" + i;
      mkdirSync(dir);
      runFileWorkload(dir, ${seed} + i);
    }`;
  return Bun.spawn([bunPath, "-e", code], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
}

test("ext4: client SIGKILLed mid-workload; the restart resends only what differs, the replica equals the primary and passes e2fsck after journal replay", async () => {
  const seed = seedOf();
  await withTeardown(teardown, async () => {
    const system = await startSystem({ sizeBytes: 128 * MiB, changeMap: true });
    teardown.add("stop the druvaa processes", () => system.stop());
    // The stack on the first client run has a teardown of its own: it goes down right after the crash.
    const stack = new Teardown();
    teardown.add("the crashed filesystem stack", async () => {
      const failures = await stack.run();
      if (failures.length > 0) throw new Error(failures.join("\n"));
    });
    const fs = await mountExt4OnExport(system, stack);

    // Synced before the crash: must be in the recovered filesystem.
    mkdirSync(join(fs.fsDir, "before"));
    const before = runFileWorkload(join(fs.fsDir, "before"), seed);
    await sh(["sync", "-f", fs.fsDir]);

    mkdirSync(join(fs.fsDir, "during"));
    const child = startWorkloadChild(join(fs.fsDir, "during"), seed + 1);
    // Beside it, O_DIRECT 4 KiB writes from four fio jobs: the loop device passes them on at once
    // (FUSE writes through), so NBD writes are surely in flight when the client dies.
    const direct = Bun.spawn(["fio", "--name=direct", `--directory=${join(fs.fsDir, "during")}`, "--rw=randwrite", "--bs=4k", "--direct=1", "--ioengine=psync", "--numjobs=4", "--size=4M", "--time_based", "--runtime=60", `--randseed=${seed}`], { stdin: "ignore", stdout: "ignore", stderr: "ignore", cwd: system.dir });
    teardown.add("the workload processes", async () => {
      child.kill("SIGKILL");
      direct.kill("SIGKILL");
      await Promise.all([child.exited, direct.exited]);
    });
    const writesAtStart = await clientWrites(system);
    const startedAt = Date.now();
    while ((await clientWrites(system)) < writesAtStart + 300 || Date.now() - startedAt < 1_500) {
      if (child.exitCode !== null) throw new Error(`the workload process exited (${child.exitCode}) before the crash: ${await new Response(child.stderr).text()}`);
      if (Date.now() - startedAt > 20_000) throw new Error("the workload wrote too little through the client within 20 s");
      await Bun.sleep(50);
    }
    const activeBefore = (await system.status("client")).activityLog.activeExtents as number;
    await system.kill("client", "SIGKILL");
    child.kill("SIGKILL");
    direct.kill("SIGKILL");
    await Promise.all([child.exited, direct.exited]);

    // The kernel now gets I/O errors from the loop device: take the stack down (unmounting lazily
    // if the plain unmount fails). Nothing can reach the export any more once nbdfuse is gone.
    const stackFailures = await stack.run();
    if (stackFailures.length > 0) console.log(`tearing down the crashed stack: ${stackFailures.join("; ")}`);
    expect(await leftovers([system.dir, fs.mounts])).toEqual([]);

    await system.restart("client");
    const recovering = await system.status("client");
    expect(recovering.activityLog.recoveredExtents).toBeGreaterThan(0);
    const report = await expectResynced(system, 40);
    await system.waitDrained(30);
    const recovery = report.crashRecovery as { inProgress: boolean; extents: number; totalBytes: number; verifiedBytes: number; differingBlocks: number; differingBytes: number; markedBytes: number };
    const sentBytes = report.lastResync?.sentBytes ?? 0;
    console.log(`ext4 client crash: ${activeBefore} extents active at the kill; ${recovery.extents} recovered (${recovery.totalBytes / MiB} MiB) and verified; ${recovery.differingBlocks} block(s) (${recovery.differingBytes} bytes) differed; the resync sent ${sentBytes} bytes`);
    expect(recovery).toMatchObject({ inProgress: false, markedBytes: 0, verifiedBytes: recovery.totalBytes });
    expect(sentBytes).toBeLessThanOrEqual(recovery.differingBytes);
    expect(recovery.differingBytes).toBeLessThan(recovery.totalBytes / 2);

    // Byte for byte: the primary as the client left it (stopped) and the restored replica.
    const restored = await system.restore("disk0", join(system.dir, "restored-disk0.img"));
    await system.client.stop();
    expect(await sha256File(restored)).toBe(await sha256File(system.primaryPath("disk0")));

    // Journal replay by the kernel (mounted read-write once), then the synced files and e2fsck.
    const mounts = mkdtempSync(join(tmpdir(), "druvaa-ext4-crash-"));
    const dir = join(mounts, "restored");
    mkdirSync(dir);
    teardown.add(`remove ${mounts}`, async () => {
      for (const each of [dir, mounts]) if (existsSync(each)) rmdirSync(each);
    });
    const loop = await attachLoop(teardown, restored);
    const unmount = await mountFs(teardown, loop.device, dir);
    expect(Object.fromEntries(hashTree(join(dir, "before")))).toEqual(Object.fromEntries(before.files));
    await unmount();
    await loop.detach();
    const fsck = await sh(["e2fsck", "-fn", restored], { check: false, timeoutMs: 60_000 });
    if (fsck.code !== 0) console.error(`e2fsck -fn ${restored} exit ${fsck.code}:\n${fsck.stdout}\n${fsck.stderr}`);
    expect(fsck.code).toBe(0);
    expect(await leftovers([system.dir, fs.mounts, mounts])).toEqual([]);
  });
}, 90_000);
