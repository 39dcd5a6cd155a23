/**
 * The steps every ext4 end-to-end test shares: ext4 on the client's export (nbdfuse + a loop
 * device), the orderly way down (syncfs, unmount, detach, nbdfuse exits), and the check of the
 * restored replica (`e2fsck -fn`, the files the workload model expects, none of the deleted ones,
 * byte-identical to the primary), with nothing left mounted or attached.
 */
import { afterAll, expect } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { attachLoop, hashTree, mountFs, sh, startNbdfuse, Teardown } from "./ext4-helpers.ts";
import { sha256File, type System } from "./helpers.ts";

export interface Ext4OnExport {
  /** Where the filesystem is mounted. */
  fsDir: string;
  /** The directory holding the mount points (outside the system dir). */
  mounts: string;
  /** syncfs, unmount, detach the loop device, stop nbdfuse (it flushes the export first). */
  unmount(): Promise<void>;
}

/** Formats the export `name` as ext4 and mounts it; every step is undone by `teardown`. */
export async function mountExt4OnExport(system: System, teardown: Teardown, name = "disk0"): Promise<Ext4OnExport> {
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
  const fuse = await startNbdfuse(teardown, fuseDir, name, system.exportUri(name), join(system.dir, `nbdfuse-${name}.pid`));
  const loop = await attachLoop(teardown, fuse.file, ["--direct-io=off"]);
  await sh(["mkfs.ext4", "-F", "-q", loop.device], { timeoutMs: 60_000 });
  const unmountFs = await mountFs(teardown, loop.device, fsDir);
  return {
    fsDir,
    mounts,
    async unmount() {
      // syncfs on this filesystem only (plain `sync` would also wait for other tests' disks),
      // then ext4's unmount flushes its journal, the loop device passes the flush to the FUSE
      // file, nbdfuse turns it into an NBD flush, and exits once unmounted.
      await sh(["sync", "-f", fsDir]);
      await unmountFs();
      await loop.detach();
      await fuse.stop();
    },
  };
}

/** Loop devices whose backing file is under one of dirs, and mounts under them: must be none at the end. */
export async function leftovers(dirs: string[]): Promise<string[]> {
  const loops = (await sh(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"])).stdout.split("\n");
  const mounts = readFileSync("/proc/self/mounts", "utf8").split("\n");
  return [...loops, ...mounts].filter((line) => dirs.some((dir) => line.includes(dir)));
}

/**
 * Restores the replica of `name` (the caller has waited until it drained), checks it with
 * `e2fsck -fn`, mounts it read-only and compares its files with `files` (relative path → sha256)
 * and that none of `deleted` came back; then stops the client and compares primary and restored
 * image byte for byte.
 */
export async function expectRestoredExt4(system: System, teardown: Teardown, fs: Ext4OnExport, expected: { files: Map<string, string>; deleted: string[] }, name = "disk0"): Promise<void> {
  const restored = await system.restore(name, join(system.dir, `restored-${name}.img`));
  const fsck = await sh(["e2fsck", "-fn", restored], { check: false, timeoutMs: 60_000 });
  if (fsck.code !== 0) console.error(`e2fsck -fn ${restored} exit ${fsck.code}:\n${fsck.stdout}\n${fsck.stderr}`);
  expect(fsck.code).toBe(0);

  const restoredDir = join(fs.mounts, "restored");
  const restoredLoop = await attachLoop(teardown, restored, ["--read-only"]);
  const unmountRestored = await mountFs(teardown, restoredLoop.device, restoredDir, ["ro"]);
  expect(Object.fromEntries(hashTree(restoredDir))).toEqual(Object.fromEntries(expected.files));
  const resurrected = expected.deleted.filter((rel) => existsSync(join(restoredDir, rel)));
  expect(resurrected).toEqual([]);
  await unmountRestored();
  await restoredLoop.detach();

  // The primary as the client left it (stopped, so every write is on the image) equals the replica.
  await system.client.stop();
  expect(await sha256File(system.primaryPath(name))).toBe(await sha256File(restored));
  expect(await leftovers([system.dir, fs.mounts])).toEqual([]);
}

/** Runs `body`, then the teardown; a cleanup failure fails a passing test and is reported beside a failing one. */
export async function withTeardown(teardown: Teardown, body: () => Promise<void>): Promise<void> {
  let passed = false;
  try {
    await body();
    passed = true;
  } finally {
    const failures = await teardown.run();
    if (failures.length > 0) {
      if (passed) throw new Error(`cleanup failed:\n${failures.join("\n")}`);
      console.error(`cleanup after the failure also failed:\n${failures.join("\n")}`);
    }
  }
}

/** A teardown stack for a test file, run again after all tests as a backstop (a test that timed out). */
export function fileTeardown(): Teardown {
  const teardown = new Teardown();
  afterAll(async () => {
    const failures = await teardown.run();
    if (failures.length > 0) throw new Error(`cleanup failed:\n${failures.join("\n")}`);
  });
  return teardown;
}

/** The file workload's seed (DRUVAA_EXT4_SEED replays one), printed with the command that replays it. */
export function workloadSeed(testFile: string): number {
  const seed = Number(process.env.DRUVAA_EXT4_SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`ext4 workload seed ${seed} (replay: DRUVAA_EXT4_SEED=${seed} bun test ${testFile})`);
  return seed;
}
