/**
 * A real kernel filesystem on top of druvaa: the client's NBD export becomes a file through
 * nbdfuse (FUSE), a loop device turns that file into a block device, and ext4 lives on it. A file
 * workload, `sync` and unmount later, the replica restored to an image must pass `e2fsck -fn` and
 * hold exactly the files written (sha256 each), none of the deleted ones, and be byte-identical to
 * the primary. The kernel, mkfs and e2fsck are peers nobody here wrote.
 *
 * Needs root, /dev/fuse, fuse3 and libnbd-bin (scripts/setup.sh installs them in CI). Replay a
 * failing workload with the seed the test prints: DRUVAA_EXT4_SEED=N bun test tests/e2e/ext4.test.ts
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { attachLoop, hashTree, mountFs, runFileWorkload, sh, startNbdfuse, Teardown } from "./ext4-helpers.ts";
import { MiB, sha256File, startSystem } from "./helpers.ts";

const teardown = new Teardown();
// Backstop for a test that timed out: its finally may not have run yet.
afterAll(async () => {
  const failures = await teardown.run();
  if (failures.length > 0) throw new Error(`cleanup failed:\n${failures.join("\n")}`);
});

/** Loop devices whose backing file is under one of dirs, and mounts under them: must be none at the end. */
async function leftovers(dirs: string[]): Promise<string[]> {
  const loops = (await sh(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"])).stdout.split("\n");
  const mounts = readFileSync("/proc/self/mounts", "utf8").split("\n");
  return [...loops, ...mounts].filter((line) => dirs.some((dir) => line.includes(dir)));
}

test("ext4 on nbdfuse + loop through the client: the restored replica passes e2fsck and holds the same files", async () => {
  const seed = Number(process.env.DRUVAA_EXT4_SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`ext4 workload seed ${seed} (replay: DRUVAA_EXT4_SEED=${seed} bun test tests/e2e/ext4.test.ts)`);
  let passed = false;
  try {
    const system = await startSystem({ sizeBytes: 128 * MiB });
    teardown.add("stop the druvaa processes", () => system.stop());
    // Mount points live outside the system dir, and are removed with rmdir only: a mount that
    // survived its unmount makes cleanup fail loudly instead of deleting files through it.
    const mounts = mkdtempSync(join(tmpdir(), "druvaa-ext4-"));
    const fuseDir = join(mounts, "fuse");
    const fsDir = join(mounts, "fs");
    const restoredDir = join(mounts, "restored");
    for (const dir of [fuseDir, fsDir, restoredDir]) mkdirSync(dir);
    teardown.add(`remove ${mounts}`, async () => {
      for (const dir of [fuseDir, fsDir, restoredDir, mounts]) if (existsSync(dir)) rmdirSync(dir);
    });

    // The export as a file, a loop device on it (buffered: O_DIRECT on a FUSE file needs the FUSE
    // server to opt in), and ext4 on the loop device.
    const fuse = await startNbdfuse(teardown, fuseDir, "disk0", system.exportUri("disk0"), join(system.dir, "nbdfuse.pid"));
    const loop = await attachLoop(teardown, fuse.file, ["--direct-io=off"]);
    await sh(["mkfs.ext4", "-F", "-q", loop.device], { timeoutMs: 60_000 });
    const unmountFs = await mountFs(teardown, loop.device, fsDir);

    const workload = runFileWorkload(fsDir, seed);
    console.log(`wrote ${workload.files.size} files (${(workload.bytesWritten / MiB).toFixed(1)} MiB), deleted ${workload.deleted.length} paths`);
    // Sanity: the live filesystem returns what the model says (otherwise the workload is wrong).
    expect(Object.fromEntries(hashTree(fsDir))).toEqual(Object.fromEntries(workload.files));

    // syncfs on this filesystem only (plain `sync` would also wait for other tests' disks), then
    // the orderly way down: ext4 unmount flushes its journal, the loop device passes the flush to
    // the FUSE file, nbdfuse turns it into an NBD flush, and exits once unmounted.
    await sh(["sync", "-f", fsDir]);
    await unmountFs();
    await loop.detach();
    await fuse.stop();

    await system.waitDrained(60);
    const staging = await system.status("staging");
    const wrl = staging.wrls[0];
    expect(wrl.replica.appliedLsn).toBe(wrl.headLsn);
    expect(wrl.headLsn).toBeGreaterThan(100); // mkfs + the workload really went through the log

    const restored = await system.restore("disk0", join(system.dir, "restored.img"));
    const fsck = await sh(["e2fsck", "-fn", restored], { check: false, timeoutMs: 60_000 });
    if (fsck.code !== 0) console.error(`e2fsck -fn ${restored} exit ${fsck.code}:\n${fsck.stdout}\n${fsck.stderr}`);
    expect(fsck.code).toBe(0);

    const restoredLoop = await attachLoop(teardown, restored, ["--read-only"]);
    const unmountRestored = await mountFs(teardown, restoredLoop.device, restoredDir, ["ro"]);
    expect(Object.fromEntries(hashTree(restoredDir))).toEqual(Object.fromEntries(workload.files));
    const resurrected = workload.deleted.filter((rel) => existsSync(join(restoredDir, rel)));
    expect(resurrected).toEqual([]);
    await unmountRestored();
    await restoredLoop.detach();

    // The primary as the client left it (stopped, so every write is on the image) equals the replica.
    await system.client.stop();
    expect(await sha256File(system.primaryPath("disk0"))).toBe(await sha256File(restored));

    expect(await leftovers([system.dir, mounts])).toEqual([]);
    passed = true;
  } finally {
    const failures = await teardown.run();
    if (failures.length > 0) {
      // Do not hide the test's own failure behind a cleanup failure; report both.
      if (passed) throw new Error(`cleanup failed:\n${failures.join("\n")}`);
      console.error(`cleanup after the failure also failed:\n${failures.join("\n")}`);
    }
  }
}, 90_000);
