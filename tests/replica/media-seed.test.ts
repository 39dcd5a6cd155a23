/**
 * Media seeding (src/roles/replica/media-seed.ts): the import copies exactly the blocks
 * replication never wrote since the media point, never a newer one, also when apply runs between
 * its chunks; a wrong-size image is refused with nothing written; a crash mid-import is repaired
 * by running it again; once seeded the device is no longer tracked.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { SeedTracker, seedChunkBytes, seedFromImage } from "../../src/roles/replica/media-seed.ts";

const KiB = 1024;
const sizeBytes = 2 * seedChunkBytes + 64 * KiB; // three chunks, the last one short

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function setup(): { dir: string; imagePath: string; image: Uint8Array } {
  const dir = mkdtempSync(join(tmpdir(), "druvaa-seed-"));
  dirs.push(dir);
  const image = new Uint8Array(sizeBytes);
  for (let i = 0; i < image.length; i += 512) image.fill((i / 512) % 251 + 1, i, i + 512);
  const imagePath = join(dir, "backup.img");
  writeFileSync(imagePath, image);
  return { dir, imagePath, image };
}

/** A plain FIFO lock, standing in for the replica core's apply lock. */
function lock(): <T>(task: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(task: () => Promise<T>) => {
    const run = tail.then(task);
    tail = run.catch(() => undefined);
    return run;
  };
}

/** What apply does for a device awaiting a seed: mark, then write. */
async function apply(tracker: SeedTracker, device: MemoryDevice, offset: number, data: Uint8Array): Promise<void> {
  await tracker.markWritten(offset, data.length);
  await device.write(offset, data);
}

describe("media seed", () => {
  test("copies every block replication did not write, keeps every block it did", async () => {
    const { dir, imagePath, image } = setup();
    const target = new MemoryDevice(sizeBytes, "replica");
    const tracker = (await SeedTracker.open(dir, "disk0", sizeBytes))!;
    const newer = new Uint8Array(12 * KiB).fill(0xee);
    await apply(tracker, target, 4 * KiB, newer);
    await apply(tracker, target, seedChunkBytes - 4 * KiB, newer); // straddles chunks 0 and 1
    const result = await seedFromImage({ tracker, target, sizeBytes, imagePath, exclusive: lock() });
    expect(result.skippedBytes).toBe(24 * KiB);
    expect(result.copiedBytes).toBe(sizeBytes - 24 * KiB);
    const expected = image.slice();
    expected.set(newer, 4 * KiB);
    expected.set(newer, seedChunkBytes - 4 * KiB);
    expect(Buffer.from(await target.read(0, sizeBytes)).equals(Buffer.from(expected))).toBe(true);
    // Seeded: the device is no longer tracked, also after a restart.
    expect(existsSync(SeedTracker.paths(dir, "disk0").map)).toBe(false);
    expect(await SeedTracker.open(dir, "disk0", sizeBytes)).toBeUndefined();
  });

  test("apply between chunks: a block written after the import started is never overwritten by the backup", async () => {
    const { dir, imagePath, image } = setup();
    const target = new MemoryDevice(sizeBytes, "replica");
    const tracker = (await SeedTracker.open(dir, "disk0", sizeBytes))!;
    const exclusive = lock();
    const newer = new Uint8Array(8 * KiB).fill(0x5a);
    let applied = false;
    const seeding = seedFromImage({
      tracker, target, sizeBytes, imagePath, exclusive,
      // After the first chunk, apply writes into the last chunk (not copied yet) and the first (copied).
      onProgress: () => {
        if (applied) return;
        applied = true;
        void exclusive(() => apply(tracker, target, 2 * seedChunkBytes + 16 * KiB, newer));
        void exclusive(() => apply(tracker, target, 64 * KiB, newer));
      },
    });
    await seeding;
    const expected = image.slice();
    expected.set(newer, 2 * seedChunkBytes + 16 * KiB);
    expected.set(newer, 64 * KiB);
    expect(Buffer.from(await target.read(0, sizeBytes)).equals(Buffer.from(expected))).toBe(true);
  });

  test("bad input: an image of another size is refused and nothing is written", async () => {
    const { dir } = setup();
    const wrong = join(dir, "wrong.img");
    writeFileSync(wrong, new Uint8Array(sizeBytes - 512).fill(9));
    const target = new MemoryDevice(sizeBytes, "replica");
    const tracker = (await SeedTracker.open(dir, "disk0", sizeBytes))!;
    const error = await seedFromImage({ tracker, target, sizeBytes, imagePath: wrong, exclusive: lock() }).catch((caught: unknown) => caught as { code: string; message: string; hint?: string });
    expect(error).toMatchObject({ code: "SEED_IMAGE_SIZE" });
    expect((error as { message: string }).message).toContain("nothing was written");
    expect(Buffer.from(await target.read(0, sizeBytes)).equals(Buffer.alloc(sizeBytes))).toBe(true);
    // Still awaiting the seed.
    expect(tracker.completed).toBe(false);
    await tracker.close();
    const again = await SeedTracker.open(dir, "disk0", sizeBytes);
    expect(again).toBeDefined();
    const missing = await seedFromImage({ tracker: again!, target, sizeBytes, imagePath: join(dir, "nope.img"), exclusive: lock() }).catch((caught: unknown) => caught as { code: string });
    expect(missing).toMatchObject({ code: "NOT_FOUND" });
    await again!.close();
  });

  test("a crash in the middle of the import: the marks survive, running it again completes it", async () => {
    const { dir, imagePath, image } = setup();
    const target = new MemoryDevice(sizeBytes, "replica");
    let tracker = (await SeedTracker.open(dir, "disk0", sizeBytes))!;
    const newer = new Uint8Array(4 * KiB).fill(0x77);
    await apply(tracker, target, seedChunkBytes + 4 * KiB, newer);
    let turns = 0;
    const failing = <T>(task: () => Promise<T>): Promise<T> => (++turns === 2 ? Promise.reject(new Error("power lost")) : task());
    await expect(seedFromImage({ tracker, target, sizeBytes, imagePath, exclusive: failing })).rejects.toThrow("power lost");
    await tracker.close();
    tracker = (await SeedTracker.open(dir, "disk0", sizeBytes))!;
    expect(tracker.writtenBytes).toBe(4 * KiB);
    await seedFromImage({ tracker, target, sizeBytes, imagePath, exclusive: lock() });
    const expected = image.slice();
    expected.set(newer, seedChunkBytes + 4 * KiB);
    expect(Buffer.from(await target.read(0, sizeBytes)).equals(Buffer.from(expected))).toBe(true);
  });
});

