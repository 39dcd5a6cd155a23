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
import { hashTree, runFileWorkload, Teardown } from "./ext4-helpers.ts";
import { expectRestoredExt4, mountExt4OnExport, withTeardown } from "./ext4-flow.ts";
import { MiB, startSystem } from "./helpers.ts";

const teardown = new Teardown();
// Backstop for a test that timed out: its finally may not have run yet.
afterAll(async () => {
  const failures = await teardown.run();
  if (failures.length > 0) throw new Error(`cleanup failed:\n${failures.join("\n")}`);
});

test("ext4 on nbdfuse + loop through the client: the restored replica passes e2fsck and holds the same files", async () => {
  const seed = Number(process.env.DRUVAA_EXT4_SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`ext4 workload seed ${seed} (replay: DRUVAA_EXT4_SEED=${seed} bun test tests/e2e/ext4.test.ts)`);
  await withTeardown(teardown, async () => {
    const system = await startSystem({ sizeBytes: 128 * MiB });
    teardown.add("stop the druvaa processes", () => system.stop());
    const fs = await mountExt4OnExport(system, teardown);

    const workload = runFileWorkload(fs.fsDir, seed);
    console.log(`wrote ${workload.files.size} files (${(workload.bytesWritten / MiB).toFixed(1)} MiB), deleted ${workload.deleted.length} paths`);
    // Sanity: the live filesystem returns what the model says (otherwise the workload is wrong).
    expect(Object.fromEntries(hashTree(fs.fsDir))).toEqual(Object.fromEntries(workload.files));
    await fs.unmount();

    await system.waitDrained(60);
    const staging = await system.status("staging");
    const wrl = staging.wrls[0];
    expect(wrl.replica.appliedLsn).toBe(wrl.headLsn);
    expect(wrl.headLsn).toBeGreaterThan(100); // mkfs + the workload really went through the log
    await expectRestoredExt4(system, teardown, fs, workload);
  });
}, 90_000);
