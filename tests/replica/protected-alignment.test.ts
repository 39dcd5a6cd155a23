/**
 * The protected replica device on sizes that are not multiples of 4096 (protected-device.ts): the
 * logical size is whole 4 KiB units, so every physical I/O of an aligned request (and every one of
 * unprotect) is 4 KiB aligned and an O_DIRECT image on a 4 KiB-sector file system takes it; the
 * sizing rule (sizing.ts replicaDeviceSizeBytes) leaves room for the whole primary. Also the marker
 * checks: a marker with a valid CRC but fields druvaa never writes is REPLICA_MARKER_DAMAGED.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { FileDevice } from "../../src/io/file-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { Random } from "../../src/io/random.ts";
import { openProtected, protectedLogicalSizeBytes, readPlain, unprotect } from "../../src/roles/replica/protected-device.ts";
import { decodeMarker, encodeMarker, type ProtectMarker } from "../../src/roles/replica/protected-marker.ts";
import { replicaDeviceSizeBytes } from "../../src/sizing.ts";
import { crc32c } from "../../src/wrl/crc32c.ts";
import { mountSector4kExt4, type Sector4kFs } from "../io/sector4k-fs.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const reserve = 1 * MiB;
/** A primary whose size is whole 512-byte sectors but not whole 4 KiB. */
const primaryBytes = 16 * MiB + 1 * KiB;

function pattern(seed: number, lengthBytes: number): Uint8Array {
  return new Random(seed).fill(new Uint8Array(lengthBytes));
}

async function rejection(promise: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    return error as { code?: string; message: string };
  }
  throw new Error("expected a rejection");
}

/** Records the range of every physical read, write and discard. */
class RecordingDevice implements BlockDevice {
  readonly ranges: { op: string; offsetBytes: number; lengthBytes: number }[] = [];
  constructor(readonly inner: BlockDevice) {}
  get name() { return this.inner.name; }
  get sizeBytes() { return this.inner.sizeBytes; }
  get logicalBlockSizeBytes() { return this.inner.logicalBlockSizeBytes; }
  read(offsetBytes: number, lengthBytes: number) {
    this.ranges.push({ op: "read", offsetBytes, lengthBytes });
    return this.inner.read(offsetBytes, lengthBytes);
  }
  write(offsetBytes: number, data: Uint8Array) {
    this.ranges.push({ op: "write", offsetBytes, lengthBytes: data.length });
    return this.inner.write(offsetBytes, data);
  }
  discard(offsetBytes: number, lengthBytes: number) {
    this.ranges.push({ op: "discard", offsetBytes, lengthBytes });
    return this.inner.discard(offsetBytes, lengthBytes);
  }
  flush() { return this.inner.flush(); }
  close() { return this.inner.close(); }
  misaligned() {
    return this.ranges.filter((range) => range.offsetBytes % 4096 !== 0 || range.lengthBytes % 4096 !== 0);
  }
}

describe("sizes that are not multiples of 4096", () => {
  test("sizing gives room for the whole primary, and the logical size is whole 4 KiB units", () => {
    expect(replicaDeviceSizeBytes(primaryBytes, reserve)).toBe(16 * MiB + 4 * KiB + reserve);
    expect(replicaDeviceSizeBytes(primaryBytes, 0)).toBe(primaryBytes); // unprotected: the primary's size
    expect(replicaDeviceSizeBytes(64 * KiB, reserve)).toBe(2 * reserve); // the device holds the reserve twice
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 }), fc.integer({ min: 1, max: 64 * 256 }), fc.constantFrom(512, 4096), (sectors, reserveUnits, blockBytes) => {
        const primary = sectors * 512;
        const reserveBytes = reserveUnits * 4096;
        const physical = replicaDeviceSizeBytes(primary, reserveBytes);
        const logical = protectedLogicalSizeBytes(physical, reserveBytes, blockBytes);
        expect(logical % 4096).toBe(0);
        expect(logical).toBeGreaterThanOrEqual(Math.max(primary, reserveBytes));
        expect(logical + reserveBytes).toBe(physical); // nothing wasted
      }),
      { numRuns: 200 },
    );
  });

  test("every physical I/O of aligned requests, and of unprotect, is 4 KiB aligned", async () => {
    // The device as an operator sized it before: the primary's size plus R (not whole 4 KiB).
    const physical = new RecordingDevice(new MemoryDevice(primaryBytes + reserve, "odd.img"));
    const device = await openProtected(physical, { reserveBytes: reserve });
    expect(device.sizeBytes).toBe(16 * MiB);
    const image = pattern(1, device.sizeBytes);
    // The head, across R, in place, the last unit; read back with read() and readInto().
    for (const [offset, length] of [[0, 64 * KiB], [reserve - 8 * KiB, 16 * KiB], [4 * MiB, 1 * MiB], [device.sizeBytes - 4 * KiB, 4 * KiB], [0, device.sizeBytes]] as const) {
      await device.write(offset, image.subarray(offset, offset + length));
      expect(Buffer.compare(await device.read(offset, length), image.subarray(offset, offset + length))).toBe(0);
      const into = new Uint8Array(length);
      await device.readInto(offset, into);
      expect(Buffer.compare(into, image.subarray(offset, offset + length))).toBe(0);
    }
    await device.discard(reserve - 4 * KiB, 8 * KiB);
    await device.write(reserve - 4 * KiB, image.subarray(reserve - 4 * KiB, reserve + 4 * KiB));
    await device.flush();
    expect(physical.misaligned()).toEqual([]);
    physical.ranges.length = 0;
    expect(await unprotect(physical, { reserveBytes: reserve })).toBe(16 * MiB);
    expect(physical.misaligned()).toEqual([]);
    expect(Buffer.compare((physical.inner as MemoryDevice).snapshot().subarray(0, 16 * MiB), image)).toBe(0);
  });
});

describe("an O_DIRECT image on ext4 with 4 KiB sectors (loop device)", () => {
  let fs: Sector4kFs;
  beforeAll(async () => {
    fs = await mountSector4kExt4();
  });
  afterAll(async () => {
    await fs?.cleanup();
  });

  test("a 16 MiB + 1 KiB primary: writes to the head and everywhere else, reopen, unprotect", async () => {
    const path = join(fs.dir, "replica.img");
    const opened: BlockDevice[] = []; // closed even when the test fails, so the file system unmounts
    const open = async () => {
      const physical = await FileDevice.open(path, { direct: true });
      opened.push(physical);
      return physical;
    };
    try {
      // Sized the old way (primary + R, so P − R is not whole 4 KiB) and the sizing way.
      for (const sizeBytes of [primaryBytes + reserve, replicaDeviceSizeBytes(primaryBytes, reserve)]) {
        writeFileSync(path, "");
        truncateSync(path, sizeBytes);
        const physical = await open();
        expect(physical.direct).toBe(true);
        expect(physical.logicalBlockSizeBytes).toBe(512); // what a file says, whatever its file system
        const device = await openProtected(physical, { reserveBytes: reserve });
        const image = pattern(sizeBytes, device.sizeBytes);
        await device.write(0, image.subarray(0, 4 * KiB)); // the head: physical L, O_DIRECT
        await device.write(0, image);
        await device.flush();
        await device.close();
        expect(Buffer.compare(await readPlain(path), image)).toBe(0);
        const again = await openProtected(await open(), { reserveBytes: reserve });
        expect(Buffer.compare(await again.read(reserve - 4 * KiB, 8 * KiB), image.subarray(reserve - 4 * KiB, reserve + 4 * KiB))).toBe(0);
        await again.close();
        const plain = await open();
        expect(await unprotect(plain, { reserveBytes: reserve })).toBe(device.sizeBytes);
        expect(Buffer.compare(await plain.read(0, device.sizeBytes), image)).toBe(0);
        await plain.close();
      }
    } finally {
      for (const device of opened) await device.close().catch(() => undefined); // closed already unless it failed
      rmSync(path, { force: true });
    }
  });
});

/** `marker` encoded, then `patch` applied to its bytes and the CRC made valid again. */
function markerBlock(marker: ProtectMarker, patch: (view: DataView) => void = () => undefined): Uint8Array {
  const block = new Uint8Array(4096);
  block.set(encodeMarker(marker));
  const view = new DataView(block.buffer);
  patch(view);
  view.setUint32(508, crc32c(block.subarray(0, 508)), true);
  return block;
}

describe("a marker with a valid CRC but fields druvaa never writes", () => {
  const good: ProtectMarker = { state: "protected", reserveBytes: reserve, logicalSizeBytes: 16 * MiB, logicalBlockSizeBytes: 512, uuid: "0123456789abcdef0123456789abcdef" };
  const bad: [string, Uint8Array][] = [
    ["a reserve not whole 4 KiB", markerBlock({ ...good, reserveBytes: 1000 })],
    ["a reserve over the bound", markerBlock({ ...good, reserveBytes: 128 * MiB, logicalSizeBytes: 256 * MiB })],
    ["a zero reserve", markerBlock({ ...good, reserveBytes: 0 })],
    ["a block size of 1024", markerBlock({ ...good, logicalBlockSizeBytes: 1024 })],
    ["a logical size not whole blocks", markerBlock({ ...good, logicalSizeBytes: 16 * MiB + 100 })],
    ["a logical size below the reserve", markerBlock({ ...good, logicalSizeBytes: 512 * KiB })],
    ["an unknown state", markerBlock(good, (view) => view.setUint32(20, 9, true))],
  ];

  test("the good one decodes", () => {
    expect(decodeMarker(markerBlock(good), "disk")).toEqual(good);
  });

  for (const [what, block] of bad) {
    test(`${what}: REPLICA_MARKER_DAMAGED at decode, open, readPlain and unprotect (never an assert)`, async () => {
      expect((await rejection((async () => decodeMarker(block, "disk"))())).code).toBe("REPLICA_MARKER_DAMAGED");
      const physical = new MemoryDevice(16 * MiB + reserve, "disk.img");
      await physical.write(0, block);
      expect((await rejection(openProtected(physical, { reserveBytes: reserve }))).code).toBe("REPLICA_MARKER_DAMAGED");
      expect((await rejection(unprotect(physical, { reserveBytes: reserve }))).code).toBe("REPLICA_MARKER_DAMAGED");
      const scratch = mkdtempSync(join(tmpdir(), "druvaa-marker-"));
      try {
        const path = join(scratch, "disk.img");
        await Bun.write(path, physical.snapshot());
        expect((await rejection(readPlain(path))).code).toBe("REPLICA_MARKER_DAMAGED");
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
    });
  }
});
