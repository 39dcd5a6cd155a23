/**
 * The change map library as the client's write path uses it: marks durable before they resolve,
 * no I/O when bits are already durable, concurrent marks sharing flushes, lazy clears, regions
 * that do not interfere, and typed refusals of wrong maps, regions and volumes.
 */
import { describe, expect, test } from "bun:test";
import { ChangeMap } from "../../src/changemap/change-map.ts";
import { DruvaaError } from "../../src/errors.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { changeMapLayoutBytes } from "../../src/changemap/format.ts";
import { CountingDevice, GatedDevice, settleTurns } from "./helpers.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

async function rejection(promise: Promise<unknown>): Promise<DruvaaError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DruvaaError) return error;
    throw error;
  }
  throw new Error("expected a DruvaaError");
}

const twoRegions = [{ name: "vol0", volumeSizeBytes: 64 * MiB }, { name: "vol1", volumeSizeBytes: 12 * KiB + 512 }];

/** Bytes that survive a close and reopen: a MemoryDevice's contents, handed to the next one. */
class Disk {
  readonly bytes: Uint8Array;
  constructor(sizeBytes: number) {
    this.bytes = new Uint8Array(sizeBytes);
  }
  device(): MemoryDevice {
    return new MemoryDevice(this.bytes.length, "disk", 512, this.bytes);
  }
}

async function freshMap(specs = twoRegions, blockSizeBytes = 4 * KiB) {
  const disk = new Disk(changeMapLayoutBytes(specs, blockSizeBytes));
  const map = await ChangeMap.create(disk.device(), { regions: specs, blockSizeBytes });
  return { disk, map };
}

describe("ChangeMap: create, open, marks", () => {
  test("marks survive close and reopen; uuid, generation and regions are kept", async () => {
    const { disk, map } = await freshMap();
    const vol0 = map.region("vol0", { volumeSizeBytes: 64 * MiB });
    await vol0.markDirty(100, 10); // inside block 0
    await vol0.markDirty(4095, 2); // straddles blocks 0 and 1
    await vol0.markDirty(40 * MiB, 1 * MiB);
    expect([...vol0.dirtyRanges()]).toEqual([{ offsetBytes: 0, lengthBytes: 8 * KiB }, { offsetBytes: 40 * MiB, lengthBytes: 1 * MiB }]);
    const uuid = map.uuid;
    await map.close();
    const reopened = await ChangeMap.open(disk.device());
    expect(reopened.uuid).toBe(uuid);
    expect(reopened.regionNames).toEqual(["vol0", "vol1"]);
    const again = reopened.region("vol0");
    expect([...again.dirtyRanges()]).toEqual([{ offsetBytes: 0, lengthBytes: 8 * KiB }, { offsetBytes: 40 * MiB, lengthBytes: 1 * MiB }]);
    expect(again.dirtyBytes).toBe(8 * KiB + 1 * MiB);
    expect(reopened.region("vol1").dirtyBlocks).toBe(0);
    const info = reopened.info();
    expect(info).toMatchObject({ uuid, generation: 1, blockSizeBytes: 4096, otherHeaderCopy: "valid-older" });
    expect(info.regions[0]).toMatchObject({ name: "vol0", dirtyBlocks: 258, dirtyBytes: 8 * KiB + 1 * MiB, firstDirtyRanges: [{ offsetBytes: 0, lengthBytes: 8192 }, { offsetBytes: 40 * MiB, lengthBytes: MiB }], moreDirtyRanges: false });
    await reopened.close();
  });

  test("the partial last block counts only its bytes inside the volume", async () => {
    const { map } = await freshMap();
    const vol1 = map.region("vol1"); // 3 whole blocks + 512 bytes
    expect(vol1.blockCount).toBe(4);
    await vol1.markDirty(12 * KiB, 512);
    expect([...vol1.dirtyRanges()]).toEqual([{ offsetBytes: 12 * KiB, lengthBytes: 512 }]);
    expect(vol1.dirtyBytes).toBe(512);
    await vol1.markAll();
    expect(vol1.dirtyBytes).toBe(12 * KiB + 512);
    expect(vol1.info(4).dirtyFraction).toBe(1);
    expect(vol1.clearClean(12 * KiB, 512)).toBe(1); // a range ending at the volume's end covers the last block
    expect(vol1.isDirty(12 * KiB, 512)).toBe(false);
  });

  test("clears round inward: a partial clear never forgets the rest of a block", async () => {
    const { map } = await freshMap();
    const vol0 = map.region("vol0");
    await vol0.markDirty(0, 16 * KiB);
    expect(vol0.clearClean(1, 8 * KiB)).toBe(1); // covers block 1 fully, block 0 and 2 only partly
    expect([...vol0.dirtyRanges()]).toEqual([{ offsetBytes: 0, lengthBytes: 4 * KiB }, { offsetBytes: 8 * KiB, lengthBytes: 8 * KiB }]);
    expect(vol0.clearClean(8 * KiB, 4 * KiB - 1)).toBe(0);
    expect(vol0.clear([{ offsetBytes: 0, lengthBytes: 4 * KiB }, { offsetBytes: 8 * KiB, lengthBytes: 8 * KiB }])).toBe(3);
    expect(vol0.dirtyBlocks).toBe(0);
    expect(vol0.isDirty(0, 64 * MiB)).toBe(false);
  });

  test("dirtyRanges: from an offset, at most N ranges, long runs split", async () => {
    const { map } = await freshMap();
    const vol0 = map.region("vol0");
    await vol0.markDirty(0, 4 * KiB);
    await vol0.markDirty(1 * MiB, 40 * KiB);
    await vol0.markDirty(2 * MiB, 4 * KiB);
    expect([...vol0.dirtyRanges({ fromOffsetBytes: 4 * KiB })]).toEqual([{ offsetBytes: MiB, lengthBytes: 40 * KiB }, { offsetBytes: 2 * MiB, lengthBytes: 4 * KiB }]);
    expect([...vol0.dirtyRanges({ maxRanges: 2 })]).toHaveLength(2);
    expect([...vol0.dirtyRanges({ fromOffsetBytes: MiB, maxRangeBytes: 16 * KiB, maxRanges: 3 })]).toEqual([
      { offsetBytes: MiB, lengthBytes: 16 * KiB },
      { offsetBytes: MiB + 16 * KiB, lengthBytes: 16 * KiB },
      { offsetBytes: MiB + 32 * KiB, lengthBytes: 8 * KiB },
    ]);
    expect([...vol0.dirtyRanges({ fromOffsetBytes: 64 * MiB })]).toEqual([]);
  });

  test("regions do not interfere: marking all of one leaves the other's bytes untouched", async () => {
    const { disk, map } = await freshMap();
    const vol1Bitmap = map.info().regions[1]!;
    await map.region("vol1").markDirty(0, 4 * KiB);
    const before = disk.bytes.slice(vol1Bitmap.bitmapOffsetBytes, vol1Bitmap.bitmapOffsetBytes + 4096);
    await map.region("vol0").markAll();
    await map.region("vol0").markDirty(0, 12 * KiB);
    expect(disk.bytes.slice(vol1Bitmap.bitmapOffsetBytes, vol1Bitmap.bitmapOffsetBytes + 4096)).toEqual(before);
    expect([...map.region("vol1").dirtyRanges()]).toEqual([{ offsetBytes: 0, lengthBytes: 4 * KiB }]);
    map.region("vol0").clearClean(0, 64 * MiB);
    await map.close();
    const reopened = await ChangeMap.open(disk.device());
    expect(reopened.region("vol0").dirtyBlocks).toBe(0);
    expect([...reopened.region("vol1").dirtyRanges()]).toEqual([{ offsetBytes: 0, lengthBytes: 4 * KiB }]);
    await reopened.close();
  });

  test("works on a device with 4 KiB logical blocks", async () => {
    const specs = [{ name: "v", volumeSizeBytes: 256 * MiB }];
    const disk = new SimDisk({ sizeBytes: changeMapLayoutBytes(specs, 512), seed: 1, logicalBlockSizeBytes: 4096 });
    const map = await ChangeMap.create(disk, { regions: specs, blockSizeBytes: 512 });
    await map.region("v").markDirty(200 * MiB, 4 * KiB);
    disk.crash();
    const reopened = await ChangeMap.open(disk);
    expect([...reopened.region("v").dirtyRanges()]).toEqual([{ offsetBytes: 200 * MiB, lengthBytes: 4 * KiB }]);
  });
});

describe("ChangeMap: durability and group commit", () => {
  test("a mark of bits already durable resolves at once, with no I/O", async () => {
    const specs = [{ name: "v", volumeSizeBytes: 64 * MiB }];
    const device = new CountingDevice(new MemoryDevice(changeMapLayoutBytes(specs, 4096)));
    const map = await ChangeMap.create(device, { regions: specs });
    const region = map.region("v");
    await region.markDirty(0, 1 * MiB);
    const [writes, flushes] = [device.writeCount, device.flushCount];
    let resolved = false;
    const again = region.markDirty(4 * KiB, 64 * KiB).then(() => (resolved = true));
    await Promise.resolve();
    await Promise.resolve();
    expect(resolved).toBe(true);
    await again;
    expect([device.writeCount, device.flushCount]).toEqual([writes, flushes]);
  });

  test("a mark of bits set but not yet durable waits for their flush", async () => {
    const specs = [{ name: "v", volumeSizeBytes: 64 * MiB }];
    const device = new GatedDevice(new MemoryDevice(changeMapLayoutBytes(specs, 4096)));
    const map = await ChangeMap.create(device, { regions: specs });
    const region = map.region("v");
    device.hold();
    let firstDone = false;
    let secondDone = false;
    const first = region.markDirty(0, 4 * KiB).then(() => (firstDone = true));
    await settleTurns();
    expect(device.waitingFlushes).toBe(1);
    const second = region.markDirty(0, 4 * KiB).then(() => (secondDone = true)); // same bit, already set in memory
    await settleTurns();
    expect([firstDone, secondDone]).toEqual([false, false]);
    const flushesBefore = device.flushCount;
    device.release();
    await Promise.all([first, second]);
    expect(device.flushCount).toBe(flushesBefore); // the second mark rode on the first one's flush
  });

  test("100 concurrent marks share one flush; marks arriving during a flush share the next", async () => {
    const specs = [{ name: "v", volumeSizeBytes: 1024 * MiB }];
    const device = new GatedDevice(new MemoryDevice(changeMapLayoutBytes(specs, 4096)));
    const map = await ChangeMap.create(device, { regions: specs });
    const region = map.region("v");
    const start = device.flushCount;
    // Spread over many bitmap sectors (1 GiB / 4 KiB blocks = 32 KiB of bitmap).
    await Promise.all(Array.from({ length: 100 }, (_, i) => region.markDirty(i * 10 * MiB, 4 * KiB)));
    expect(device.flushCount - start).toBe(1);
    expect(region.dirtyBlocks).toBe(100);

    device.hold();
    const marks = [region.markDirty(3 * MiB, 4 * KiB)];
    await settleTurns();
    for (let i = 0; i < 99; i += 1) {
      marks.push(region.markDirty(i * 10 * MiB + 8 * KiB, 4 * KiB));
      if (i % 10 === 0) await settleTurns(1);
    }
    device.release();
    await Promise.all(marks);
    expect(device.flushCount - start).toBe(3);
    expect(region.dirtyBlocks).toBe(200);
  });

  test("a failed flush rejects the mark; the next mark rewrites the sector and makes it durable", async () => {
    const specs = [{ name: "v", volumeSizeBytes: 64 * MiB }];
    const disk = new SimDisk({ sizeBytes: changeMapLayoutBytes(specs, 4096), seed: 7 });
    const map = await ChangeMap.create(disk, { regions: specs });
    const region = map.region("v");
    disk.failNextFlushes(1);
    expect((await rejection(region.markDirty(8 * KiB, 4 * KiB))).code).toBe("IO_ERROR");
    await region.markDirty(8 * KiB, 4 * KiB); // bit already set in memory, but not durable: must not return early
    disk.crash();
    const reopened = await ChangeMap.open(disk);
    expect([...reopened.region("v").dirtyRanges()]).toEqual([{ offsetBytes: 8 * KiB, lengthBytes: 4 * KiB }]);
  });

  test("clears cost no I/O and are durable after sync() or close()", async () => {
    const specs = [{ name: "v", volumeSizeBytes: 64 * MiB }];
    const disk = new SimDisk({ sizeBytes: changeMapLayoutBytes(specs, 4096), seed: 3 });
    const device = new CountingDevice(disk);
    const map = await ChangeMap.create(device, { regions: specs });
    await map.region("v").markDirty(0, 64 * KiB);
    const writes = device.writeCount;
    expect(map.region("v").clearClean(0, 32 * KiB)).toBe(8);
    expect(device.writeCount).toBe(writes);
    disk.crash(); // the clear was never written: the blocks come back dirty (a resend, never a loss)
    let reopened = await ChangeMap.open(disk);
    expect(reopened.region("v").dirtyBlocks).toBe(16);
    reopened.region("v").clearClean(0, 32 * KiB);
    await reopened.sync();
    disk.crash();
    reopened = await ChangeMap.open(disk);
    expect([...reopened.region("v").dirtyRanges()]).toEqual([{ offsetBytes: 32 * KiB, lengthBytes: 32 * KiB }]);
    reopened.region("v").clearClean(0, 64 * MiB);
    await reopened.close();
    disk.crash();
    expect((await ChangeMap.open(disk)).region("v").dirtyBlocks).toBe(0);
  });

  test("markAll makes the whole volume dirty, durably", async () => {
    const specs = [{ name: "v", volumeSizeBytes: 100 * MiB + 512 }];
    const disk = new SimDisk({ sizeBytes: changeMapLayoutBytes(specs, 4096), seed: 5 });
    const map = await ChangeMap.create(disk, { regions: specs });
    await map.region("v").markAll();
    disk.crash();
    const region = (await ChangeMap.open(disk)).region("v");
    expect([...region.dirtyRanges()]).toEqual([{ offsetBytes: 0, lengthBytes: 100 * MiB + 512 }]);
    expect(region.dirtyBytes).toBe(100 * MiB + 512);
  });
});

describe("ChangeMap: generation and header copies", () => {
  test("bumpGeneration is durable and numbers are unique across regions", async () => {
    const { disk, map } = await freshMap();
    expect(await map.region("vol1").bumpGeneration()).toBe(2);
    expect(await map.region("vol0").bumpGeneration()).toBe(3);
    await map.close();
    const reopened = await ChangeMap.open(disk.device());
    expect(reopened.generation).toBe(3);
    expect([reopened.region("vol0").generation, reopened.region("vol1").generation]).toEqual([3, 2]);
    await reopened.close();
  });

  test("a torn header write falls back to the other copy, and the next bump rewrites the torn one", async () => {
    const { disk, map } = await freshMap();
    await map.region("vol0").markDirty(0, 4 * KiB);
    expect(await map.region("vol0").bumpGeneration()).toBe(2); // sequence 3: copy 1
    await map.close();
    disk.bytes.fill(0xab, 16 * KiB + 6000, 16 * KiB + 9000); // tear copy 1 mid-way
    const reopened = await ChangeMap.open(disk.device());
    expect(reopened.info()).toMatchObject({ generation: 1, headerCopy: 0, otherHeaderCopy: "invalid" });
    expect(reopened.region("vol0").isDirty(0, 1)).toBe(true);
    const copy0 = disk.bytes.slice(0, 16 * KiB);
    expect(await reopened.region("vol0").bumpGeneration()).toBe(2);
    expect(disk.bytes.slice(0, 16 * KiB)).toEqual(copy0); // the last good copy was not overwritten
    await reopened.close();
    expect((await ChangeMap.open(disk.device())).info()).toMatchObject({ generation: 2, headerCopy: 1, otherHeaderCopy: "valid-older" });
  });
});

describe("ChangeMap: refusals", () => {
  test("unknown region, wrong volume size or uuid are typed errors with hints", async () => {
    const specs = [{ name: "vol0", volumeSizeBytes: 64 * MiB, volumeUuid: "0f8fad5b-d9cb-469f-a165-70867728950e" }];
    const { map } = await freshMap(specs);
    const unknown = (() => { try { map.region("vol9"); } catch (e) { return e as DruvaaError; } })();
    expect(unknown).toMatchObject({ code: "CHANGEMAP_REGION_UNKNOWN", message: expect.stringContaining("vol0") });
    expect(unknown?.hint).toContain("changemap info");
    const size = (() => { try { map.region("vol0", { volumeSizeBytes: 32 * MiB }); } catch (e) { return e as DruvaaError; } })();
    expect(size).toMatchObject({ code: "CHANGEMAP_SIZE_MISMATCH", hint: expect.stringContaining("resync") });
    const uuid = (() => { try { map.region("vol0", { volumeUuid: "11111111-2222-4333-8444-555555555555" }); } catch (e) { return e as DruvaaError; } })();
    expect(uuid).toMatchObject({ code: "CHANGEMAP_VOLUME_MISMATCH" });
    expect(map.region("vol0", { volumeSizeBytes: 64 * MiB, volumeUuid: "0F8FAD5B-D9CB-469F-A165-70867728950E" }).name).toBe("vol0");
    expect((await rejection(map.region("vol0").markDirty(64 * MiB - 512, 1024))).code).toBe("CHANGEMAP_OUT_OF_RANGE");
  });

  test("create refuses an existing change map or write log without force, writing nothing", async () => {
    const { disk, map } = await freshMap();
    await map.region("vol0").markDirty(0, 4 * KiB);
    await map.close();
    const before = disk.bytes.slice();
    const counting = new CountingDevice(disk.device());
    const exists = await rejection(ChangeMap.create(counting, { regions: twoRegions }));
    expect(exists).toMatchObject({ code: "CHANGEMAP_EXISTS", hint: expect.stringContaining("--force") });
    expect(counting.writeCount).toBe(0);
    expect(disk.bytes).toEqual(before);
    const forced = await ChangeMap.create(disk.device(), { regions: twoRegions, force: true });
    expect(forced.region("vol0").dirtyBlocks).toBe(0);
    await forced.close();
    expect((await ChangeMap.open(disk.device())).region("vol0").dirtyBlocks).toBe(0);

    const wrl = new MemoryDevice(1 * MiB);
    await wrl.write(0, new TextEncoder().encode("DRUVAWRL".padEnd(512, "\0")));
    expect((await rejection(ChangeMap.create(wrl, { regions: twoRegions }))).code).toBe("CHANGEMAP_DEVICE_IN_USE");
  });

  test("create refuses a device too small; open refuses a truncated map and a non-map", async () => {
    const small = new CountingDevice(new MemoryDevice(changeMapLayoutBytes(twoRegions, 4096) - 4096));
    const tooSmall = await rejection(ChangeMap.create(small, { regions: twoRegions }));
    expect(tooSmall).toMatchObject({ code: "CHANGEMAP_DEVICE_TOO_SMALL", hint: expect.stringContaining("truncate -s") });
    expect(small.writeCount).toBe(0);
    const { disk, map } = await freshMap();
    await map.close();
    const truncated = new MemoryDevice(disk.bytes.length - 4096, "t", 512, disk.bytes.slice(0, disk.bytes.length - 4096));
    expect((await rejection(ChangeMap.open(truncated))).code).toBe("CHANGEMAP_DEVICE_TOO_SMALL");
    expect((await rejection(ChangeMap.open(new MemoryDevice(1 * MiB)))).code).toBe("CHANGEMAP_NOT_FOUND");
    expect((await rejection(ChangeMap.open(new MemoryDevice(4096)))).code).toBe("CHANGEMAP_NOT_FOUND");
  });

  test("read-only maps refuse marks and write nothing; closed maps refuse everything", async () => {
    const { disk, map } = await freshMap();
    await map.close();
    const device = new CountingDevice(disk.device());
    const readOnly = await ChangeMap.open(device, { readOnly: true });
    const vol0 = readOnly.region("vol0");
    expect((await rejection(vol0.markDirty(0, 512))).code).toBe("CHANGEMAP_READ_ONLY");
    expect((await rejection(readOnly.region("vol0").bumpGeneration())).code).toBe("CHANGEMAP_READ_ONLY");
    expect(readOnly.info().regions).toHaveLength(2);
    await readOnly.close();
    expect(device.writeCount + device.flushCount).toBe(0);
    expect((await rejection(vol0.markDirty(0, 512))).code).toBe("CHANGEMAP_CLOSED");
    expect(await rejection(Promise.resolve().then(() => readOnly.region("vol0")))).toMatchObject({ code: "CHANGEMAP_CLOSED" });
  });
});
