/**
 * Initial synchronisation by media (DESIGN.md "Initial sync"; the whitepaper's media resync): a
 * replica device that awaits a seed (`druvaa replica apply --await-seed NAME`) starts empty while
 * replication already runs; the operator later imports a backup of the primary taken after
 * replication started (`druvaa replica seed --device NAME --from IMAGE`).
 *
 * Every block replication writes to such a device is first marked in a durable bitmap (a change
 * map under the state directory: `seed-NAME.map`, 4 KiB a bit), so the import copies only the
 * blocks replication never wrote: those hold the same data on the primary since before the
 * media point, so the backup has them right; the written ones are newer than the backup (or the
 * same) and are left alone. Each chunk of the import is copied under the replica's apply lock, so
 * a block is either written by apply (marked) before the chunk looks at it, or after it (newer).
 *
 * Once every chunk is copied and flushed, `seed-NAME.done` is written and the bitmap removed: the
 * device is an ordinary replica device from then on. A crash during the import leaves the bitmap:
 * running the seed again is safe (it copies the unmarked blocks again, the same bytes).
 *
 * Refusals (nothing written): the device does not await a seed (SEED_NOT_AWAITED), the image is
 * not the device's size (SEED_IMAGE_SIZE), the image cannot be read (NOT_FOUND / IO errors).
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { changeMapBlockSizeBytesDefault } from "../../constants.ts";
import { createChangeMapAtPath, openChangeMapAtPath, type ChangeMap, type ChangeMapRegion } from "../../changemap/index.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { openBlockDevice, pathExists } from "../../io/open-device.ts";
import { writeJsonState } from "../../io/state-file.ts";
import { formatBytes } from "../../units.ts";

/** Bytes read from the image and copied under one turn of the apply lock. */
export const seedChunkBytes = 8 * 1024 * 1024;

export interface SeedProgress {
  device: string;
  copiedBytes: number;
  /** Bytes skipped because replication wrote them since the media point. */
  skippedBytes: number;
  totalBytes: number;
}

/** The written-since-media-point bitmap of one replica device. */
export class SeedTracker {
  #completed = false;

  private constructor(
    readonly device: string,
    private readonly map: ChangeMap,
    private readonly region: ChangeMapRegion,
    private readonly paths: { map: string; done: string },
  ) {}

  static paths(stateDir: string, device: string): { map: string; done: string } {
    const safe = encodeURIComponent(device);
    return { map: join(stateDir, `seed-${safe}.map`), done: join(stateDir, `seed-${safe}.done`) };
  }

  /**
   * The tracker of `device` (created at the first start with --await-seed: that start is the
   * media point), or undefined when the device was seeded already.
   */
  static async open(stateDir: string, device: string, sizeBytes: number): Promise<SeedTracker | undefined> {
    const paths = SeedTracker.paths(stateDir, device);
    if (await pathExists(paths.done)) return undefined;
    if (!(await pathExists(paths.map))) {
      await createChangeMapAtPath({ path: paths.map, regions: [{ name: device, volumeSizeBytes: sizeBytes }], blockSizeBytes: changeMapBlockSizeBytesDefault });
    }
    const map = await openChangeMapAtPath(paths.map);
    try {
      const region = map.region(device, { volumeSizeBytes: sizeBytes });
      return new SeedTracker(device, map, region, paths);
    } catch (error) {
      await map.close();
      throw error;
    }
  }

  /** Bytes replication wrote since the media point (whole 4 KiB blocks). */
  get writtenBytes(): number {
    return this.region.dirtyBytes;
  }

  /** The seed completed: nothing is tracked any more. */
  get completed(): boolean {
    return this.#completed;
  }

  /** Marks a range replication is about to write; durable when it resolves (a no-op once seeded). */
  markWritten(offsetBytes: number, lengthBytes: number): Promise<void> {
    if (this.#completed) return Promise.resolve();
    return this.region.markDirty(offsetBytes, lengthBytes);
  }

  /** The parts of [offset, offset + length) replication never wrote, in order. */
  *unwritten(offsetBytes: number, lengthBytes: number): Generator<{ offsetBytes: number; lengthBytes: number }> {
    const end = offsetBytes + lengthBytes;
    let at = offsetBytes;
    for (const written of this.region.dirtyRanges({ fromOffsetBytes: offsetBytes })) {
      if (written.offsetBytes >= end) break;
      if (written.offsetBytes > at) yield { offsetBytes: at, lengthBytes: written.offsetBytes - at };
      at = Math.max(at, written.offsetBytes + written.lengthBytes);
      if (at >= end) return;
    }
    if (at < end) yield { offsetBytes: at, lengthBytes: end - at };
  }

  /** The seed is complete: the device is an ordinary replica device from now on. Call under the apply lock. */
  async complete(): Promise<void> {
    this.#completed = true;
    await writeJsonState(this.paths.done, { seededAt: new Date().toISOString() });
    await this.map.close();
    await rm(this.paths.map, { force: true });
  }

  close(): Promise<void> {
    return this.#completed ? Promise.resolve() : this.map.close();
  }
}

/** Restores and snapshots of a device that awaits its seed are refused: its unseeded blocks are not there. */
export function assertSeeded(target: { name: string; seed?: SeedTracker }): void {
  if (target.seed === undefined || target.seed.completed) return;
  throw new DruvaaError("REPLICA_NOT_SEEDED", `device ${target.name} awaits its seed from media: blocks replication has not written are not there yet`, `Seed it first: druvaa replica seed --device ${target.name} --from IMAGE`, exitCodes.refused);
}

export interface SeedOptions {
  tracker: SeedTracker;
  /** The replica device being seeded. */
  target: BlockDevice;
  /** The size the client declared for the device (the image must be exactly this). */
  sizeBytes: number;
  imagePath: string;
  /** Runs `task` under the replica's apply lock. */
  exclusive: <T>(task: () => Promise<T>) => Promise<T>;
  onProgress?: (progress: SeedProgress) => void;
}

/**
 * Opens the backup image read-only and checks it can seed `device` of `sizeBytes`: NOT_FOUND, or
 * SEED_IMAGE_SIZE when it is another size (nothing written either way). The caller closes it.
 */
export async function openSeedImage(imagePath: string, device: string, sizeBytes: number): Promise<BlockDevice> {
  if (!(await pathExists(imagePath))) {
    throw new DruvaaError("NOT_FOUND", `${imagePath}: no such file or device (on the replica host)`, "Give the backup image of the primary volume (taken after replication started), as the replica host sees it", exitCodes.notFound);
  }
  const image = await openBlockDevice(imagePath, { readOnly: true });
  if (image.sizeBytes === sizeBytes) return image;
  await image.close();
  throw new DruvaaError(
    "SEED_IMAGE_SIZE",
    `${imagePath} is ${image.sizeBytes} bytes (${formatBytes(image.sizeBytes)}), but volume ${device} is ${sizeBytes} bytes (${formatBytes(sizeBytes)}); nothing was written`,
    "Seed from a backup of this very volume (same size); check --device",
    exitCodes.refused,
  );
}

/** Copies the unwritten blocks of the image to the device (see the file comment); returns the totals. */
export async function seedFromImage(options: SeedOptions): Promise<SeedProgress> {
  const { tracker, target, sizeBytes, imagePath } = options;
  const image = await openSeedImage(imagePath, tracker.device, sizeBytes);
  try {
    const progress: SeedProgress = { device: tracker.device, copiedBytes: 0, skippedBytes: 0, totalBytes: sizeBytes };
    for (let offset = 0; offset < sizeBytes; offset += seedChunkBytes) {
      const length = Math.min(seedChunkBytes, sizeBytes - offset);
      const data = await image.read(offset, length);
      await options.exclusive(async () => {
        let copied = 0;
        for (const run of tracker.unwritten(offset, length)) {
          await target.write(run.offsetBytes, data.subarray(run.offsetBytes - offset, run.offsetBytes - offset + run.lengthBytes));
          copied += run.lengthBytes;
        }
        progress.copiedBytes += copied;
        progress.skippedBytes += length - copied;
      });
      options.onProgress?.(progress);
    }
    // Under the lock: no apply runs between the last copy being durable and the tracker retiring.
    await options.exclusive(async () => {
      await target.flush();
      await tracker.complete();
    });
    return progress;
  } finally {
    await image.close();
  }
}
