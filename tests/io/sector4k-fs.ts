/**
 * A scratch ext4 file system on a loop device with 4 KiB logical sectors (`losetup --sector-size
 * 4096`), mounted in a temp directory: there O_DIRECT refuses (EINVAL) any offset or length that is
 * not a multiple of 4096, as on a 4Kn disk. Image files put in `dir` get that behaviour, while
 * FileDevice still reports 512-byte blocks. Needs root, util-linux and e2fsprogs; fails loudly
 * without them (CI has them). Call cleanup() in afterAll/finally.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { attachLoop, mountFs, sh, Teardown } from "../e2e/ext4-helpers.ts";

export interface Sector4kFs {
  /** The mounted file system's root. */
  dir: string;
  /** Unmounts, detaches the loop device and removes the backing file; throws on a leak. */
  cleanup(): Promise<void>;
}

export async function mountSector4kExt4(sizeBytes = 64 * 1024 * 1024): Promise<Sector4kFs> {
  const scratch = mkdtempSync(join(tmpdir(), "druvaa-4kfs-"));
  const teardown = new Teardown();
  teardown.add(`rm ${scratch}`, async () => rmSync(scratch, { recursive: true, force: true }));
  const cleanup = async () => {
    const failures = await teardown.run();
    if (failures.length > 0) throw new Error(`4 KiB-sector ext4 cleanup: ${failures.join("; ")}`);
  };
  try {
    const backing = join(scratch, "backing.img");
    await Bun.write(backing, "");
    await truncate(backing, sizeBytes);
    const loop = await attachLoop(teardown, backing, ["--sector-size", "4096"]);
    await sh(["mkfs.ext4", "-q", "-F", "-b", "4096", loop.device]);
    const dir = join(scratch, "mnt");
    await sh(["mkdir", "-p", dir]);
    await mountFs(teardown, loop.device, dir);
    return { dir, cleanup };
  } catch (error) {
    await cleanup().catch(() => undefined); // already failing with the better error
    throw error;
  }
}
