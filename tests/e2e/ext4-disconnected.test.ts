/**
 * ext4 (nbdfuse + loop, through the client) survives disconnected mode: staging SIGKILLed for
 * 10 s in the middle of a file workload, and a WRL far too small for the workload. The kernel
 * never sees an I/O error; the change map is resynced (`druvaa resync` exits 0); the restored
 * replica passes `e2fsck -fn`, holds exactly the files written and equals the primary.
 *
 * Needs root, /dev/fuse, fuse3 and libnbd-bin (scripts/setup.sh installs them in CI). Replay a
 * workload with the seed the test prints: DRUVAA_EXT4_SEED=N bun test tests/e2e/ext4-disconnected.test.ts
 */
import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hashTree, runFileWorkload, sh, type WorkloadResult } from "./ext4-helpers.ts";
import { expectRestoredExt4, fileTeardown, mountExt4OnExport, withTeardown, workloadSeed } from "./ext4-flow.ts";
import { expectResynced, MiB, startSystem } from "./helpers.ts";

const teardown = fileTeardown();

function seedOf(): number {
  return workloadSeed("tests/e2e/ext4-disconnected.test.ts");
}

/** One workload in its own directory; the model's paths are made relative to the fs root. */
function phase(fsDir: string, dir: string, seed: number, into: { files: Map<string, string>; deleted: string[] }): WorkloadResult {
  mkdirSync(join(fsDir, dir));
  const result = runFileWorkload(join(fsDir, dir), seed);
  for (const [rel, hash] of result.files) into.files.set(join(dir, rel), hash);
  into.deleted.push(...result.deleted.map((rel) => join(dir, rel)));
  return result;
}


test("ext4: staging SIGKILLed for 10 s mid-workload; the filesystem never notices, the resynced replica passes e2fsck", async () => {
  const seed = seedOf();
  await withTeardown(teardown, async () => {
    const system = await startSystem({ sizeBytes: 192 * MiB, changeMap: true, clientFlags: ["--ack-timeout", "2s"] });
    teardown.add("stop the druvaa processes", () => system.stop());
    const fs = await mountExt4OnExport(system, teardown);
    const expected = { files: new Map<string, string>(), deleted: [] as string[] };

    phase(fs.fsDir, "before", seed, expected);
    await sh(["sync", "-f", fs.fsDir]);
    await system.kill("staging", "SIGKILL");
    const killedAt = Date.now();
    // Written and synced while staging is dead: the client completes these locally.
    phase(fs.fsDir, "during", seed + 1, expected);
    await sh(["sync", "-f", fs.fsDir]);
    const during = await system.status("client");
    expect(during.mode).toBe("disconnected");
    expect(during.dirtyBytes).toBeGreaterThan(1 * MiB);
    await Bun.sleep(Math.max(0, 10_000 - (Date.now() - killedAt)));
    await system.restart("staging");
    phase(fs.fsDir, "after", seed + 2, expected);
    expect(Object.fromEntries(hashTree(fs.fsDir))).toEqual(Object.fromEntries(expected.files));
    await fs.unmount();

    const sentBytes = (await expectResynced(system, 90)).lastResync?.sentBytes ?? 0;
    expect(sentBytes).toBeGreaterThan(1 * MiB);
    await system.waitDrained(60);
    await expectRestoredExt4(system, teardown, fs, expected);
  });
}, 150_000);

test("ext4: a WRL far too small for the workload fills (replica paused); writes go on locally and the resynced replica passes e2fsck", async () => {
  const seed = seedOf();
  await withTeardown(teardown, async () => {
    const system = await startSystem({ sizeBytes: 128 * MiB, changeMap: true, wrlSizeBytes: 4 * MiB });
    teardown.add("stop the druvaa processes", () => system.stop());
    const fs = await mountExt4OnExport(system, teardown);
    const expected = { files: new Map<string, string>(), deleted: [] as string[] };
    // The replica is paused, so the 4 MiB WRL surely fills (it only drains as the replica applies).
    process.kill(system.replica.pid, "SIGSTOP");
    teardown.add("resume the replica", async () => void process.kill(system.replica.pid, "SIGCONT"));
    phase(fs.fsDir, "work", seed, expected);
    // One large file written at once: far more than the WRL holds while the replica applies.
    const big = new Uint8Array(48 * MiB);
    crypto.getRandomValues(big.subarray(0, 65536));
    for (let at = 65536; at < big.length; at *= 2) big.copyWithin(at, 0, at);
    writeFileSync(join(fs.fsDir, "big.bin"), big);
    expected.files.set("big.bin", createHash("sha256").update(big).digest("hex"));
    expect(Object.fromEntries(hashTree(fs.fsDir))).toEqual(Object.fromEntries(expected.files));
    await fs.unmount();
    expect((await system.status("client")).mode).not.toBe("connected");
    process.kill(system.replica.pid, "SIGCONT");

    const sentBytes = (await expectResynced(system, 90)).lastResync?.sentBytes ?? 0;
    // The WRL did fill (the client went disconnected and resynced), or this test proved nothing.
    expect(sentBytes).toBeGreaterThan(0);
    await system.waitDrained(60);
    await expectRestoredExt4(system, teardown, fs, expected);
  });
}, 150_000);
