/**
 * The protected replica device (src/roles/replica/protected-device.ts): the BlockDevice contract
 * through the wrapper, the physical layout (head at the end, marker and zeros at the front), the
 * open decision table (recognise / format / refuse), unprotect (plain image, idempotent, safe
 * against a crash at any step) and readPlain.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { deviceContract } from "../io/device-contract.ts";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { CountingDevice } from "../../src/io/counting-device.ts";
import { FileDevice } from "../../src/io/file-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { Random } from "../../src/io/random.ts";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { openProtected, ProtectedDevice, readPlain, unprotect } from "../../src/roles/replica/protected-device.ts";
import { decodeMarker, encodeMarker } from "../../src/roles/replica/protected-marker.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const reserve = 64 * KiB;
const fcSeed = Number(process.env.FC_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(`protected-device.test.ts: fast-check seed ${fcSeed} (replay with FC_SEED=${fcSeed} node_modules/.bin/bun test tests/replica/protected-device.test.ts)`);

const scratch = mkdtempSync(join(tmpdir(), "druvaa-protected-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function pattern(seed: number, lengthBytes: number): Uint8Array {
  return new Random(seed).fill(new Uint8Array(lengthBytes));
}

async function rejection(promise: Promise<unknown>): Promise<{ code?: string; message: string; hint?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as { code?: string; message: string; hint?: string };
  }
  throw new Error("expected a rejection");
}

describe("ProtectedDevice: the BlockDevice contract", () => {
  describe("over a MemoryDevice (512-byte blocks)", () => {
    deviceContract(
      { sizeBytes: 4 * MiB, logicalBlockSizeBytes: 512, freshReadsZeros: true, discardReadsZeros: true, readOnlyOpen: false, persistent: false },
      async () => {
        const device = await openProtected(new MemoryDevice(4 * MiB + reserve), { reserveBytes: reserve });
        return { device, cleanup: () => device.close() };
      },
    );
  });
  describe("over a SimDisk (4096-byte blocks, default 1 MiB reserve)", () => {
    let seed = 1;
    deviceContract(
      { sizeBytes: 4 * MiB, logicalBlockSizeBytes: 4096, freshReadsZeros: true, discardReadsZeros: true, readOnlyOpen: false, persistent: true },
      async () => {
        const disk = new SimDisk({ sizeBytes: 5 * MiB, seed: seed++, logicalBlockSizeBytes: 4096 });
        const device = await openProtected(disk);
        // Power loss, then the marker must be recognised (it was flushed when formatted).
        const reopen = async (): Promise<BlockDevice> => {
          disk.crash();
          return openProtected(disk);
        };
        return { device, reopen, cleanup: () => disk.close() };
      },
    );
  });
  describe("over an O_DIRECT image file", () => {
    let fileIndex = 0;
    deviceContract(
      { sizeBytes: 8 * MiB, logicalBlockSizeBytes: 512, freshReadsZeros: true, discardReadsZeros: true, readOnlyOpen: true, persistent: true },
      async () => {
        const path = join(scratch, `contract-${fileIndex++}.img`);
        const physical = await FileDevice.open(path, { createSizeBytes: 8 * MiB + reserve, direct: true });
        const device = await openProtected(physical, { reserveBytes: reserve });
        return {
          device,
          reopen: async (opts) => openProtected(await FileDevice.open(path, { ...opts, direct: true }), { reserveBytes: reserve }),
          cleanup: async () => {
            await device.close();
            rmSync(path, { force: true });
          },
        };
      },
    );
  });
});

describe("ProtectedDevice: layout", () => {
  test("the head lives at the end, the rest in place, the front holds only the marker", async () => {
    const physical = new MemoryDevice(1 * MiB + reserve);
    const device = await openProtected(physical, { reserveBytes: reserve, uuid: "0123456789abcdef0123456789abcdef" });
    const logicalSize = 1 * MiB;
    expect(device.sizeBytes).toBe(logicalSize);
    const data = pattern(1, 32 * KiB);
    const offset = reserve - 16 * KiB; // crosses logical offset R
    await device.write(offset, data);
    const raw = physical.snapshot();
    expect(Buffer.compare(raw.subarray(logicalSize + offset, logicalSize + reserve), data.subarray(0, 16 * KiB))).toBe(0);
    expect(Buffer.compare(raw.subarray(reserve, reserve + 16 * KiB), data.subarray(16 * KiB))).toBe(0);
    const marker = decodeMarker(raw, "memory");
    expect(marker).toEqual({ state: "protected", reserveBytes: reserve, logicalSizeBytes: logicalSize, logicalBlockSizeBytes: 512, uuid: "0123456789abcdef0123456789abcdef" });
    expect(raw.subarray(512, reserve).every((byte) => byte === 0)).toBe(true);
    // Reads across the boundary, with read() and readInto(), give the logical bytes back.
    expect(Buffer.compare(await device.read(offset, data.length), data)).toBe(0);
    const into = new Uint8Array(data.length);
    await device.readInto(offset, into);
    expect(Buffer.compare(into, data)).toBe(0);
    await device.discard(offset, data.length);
    expect((await device.read(offset, data.length)).every((byte) => byte === 0)).toBe(true);
  });

  test("random writes, discards and reads through the wrapper match a plain device (property)", async () => {
    const logicalSize = 512 * KiB;
    const blockCount = logicalSize / 512;
    const op = fc.record({
      kind: fc.constantFrom("write", "discard", "read"),
      // Offsets near R are drawn often: that is where requests split.
      blockIndex: fc.oneof(fc.integer({ min: 0, max: blockCount - 1 }), fc.integer({ min: reserve / 512 - 8, max: reserve / 512 + 8 }), fc.constant(0)),
      blocks: fc.integer({ min: 1, max: 300 }),
      seed: fc.integer({ min: 0, max: 2 ** 31 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), async (ops) => {
        const plain = new MemoryDevice(logicalSize);
        const physical = new MemoryDevice(logicalSize + reserve);
        const device = await openProtected(physical, { reserveBytes: reserve });
        for (const { kind, blockIndex, blocks, seed } of ops) {
          const offset = blockIndex * 512;
          const length = Math.min(blocks, blockCount - blockIndex) * 512;
          if (kind === "write") {
            const data = pattern(seed, length);
            await Promise.all([plain.write(offset, data), device.write(offset, data)]);
          } else if (kind === "discard") {
            await Promise.all([plain.discard(offset, length), device.discard(offset, length)]);
          } else {
            expect(Buffer.compare(await device.read(offset, length), await plain.read(offset, length))).toBe(0);
          }
        }
        expect(Buffer.compare(await device.read(0, logicalSize), plain.snapshot())).toBe(0);
        // The front of the physical device never holds logical data.
        expect(physical.snapshot().subarray(512, reserve).every((byte) => byte === 0)).toBe(true);
      }),
      { seed: fcSeed, numRuns: 60 },
    );
  });
});

describe("openProtected: recognise, format or refuse", () => {
  test("a formatted device is recognised after reopen, without writing anything", async () => {
    const physical = new MemoryDevice(1 * MiB + reserve);
    const first = await openProtected(physical, { reserveBytes: reserve });
    await first.write(0, pattern(2, 4 * KiB));
    const counting = new CountingDevice(physical);
    const again = await openProtected(counting, { reserveBytes: reserve });
    expect(counting.writeCount).toBe(0);
    expect(Buffer.compare(await again.read(0, 4 * KiB), pattern(2, 4 * KiB))).toBe(0);
  });

  test("a device of another size, or opened with another reserve, is refused with a hint", async () => {
    const physical = new MemoryDevice(1 * MiB + reserve);
    await openProtected(physical, { reserveBytes: reserve });
    const grown = new MemoryDevice(1 * MiB + reserve + 64 * KiB, "grown.img");
    await grown.write(0, physical.snapshot());
    const sizeChanged = await rejection(openProtected(grown, { reserveBytes: reserve }));
    expect(sizeChanged.code).toBe("REPLICA_SIZE_CHANGED");
    expect(String(sizeChanged.hint)).toContain(`truncate -s ${1 * MiB + reserve} grown.img`);
    const otherReserve = await rejection(openProtected(physical, { reserveBytes: 128 * KiB }));
    expect(otherReserve.code).toBe("REPLICA_RESERVE_MISMATCH");
    expect(String(otherReserve.hint)).toContain(`--protect-headers ${reserve}`);
  });

  test("a damaged marker is refused, not taken for a new replica", async () => {
    const physical = new MemoryDevice(1 * MiB + reserve);
    await openProtected(physical, { reserveBytes: reserve });
    const block = await physical.read(0, 512);
    block[100] = 1;
    await physical.write(0, block);
    expect((await rejection(openProtected(physical, { reserveBytes: reserve }))).code).toBe("REPLICA_MARKER_DAMAGED");
  });

  test("a device holding other data (a file system) is refused and left untouched", async () => {
    const physical = new MemoryDevice(1 * MiB + reserve, "disk.img");
    const superblock = pattern(3, 1024);
    await physical.write(1024, superblock);
    const before = physical.snapshot();
    const refused = await rejection(openProtected(physical, { reserveBytes: reserve }));
    expect(refused.code).toBe("REPLICA_HOLDS_DATA");
    expect(String(refused.hint)).toContain("--protect-headers 0");
    expect(refused.message).toContain("it looks like it holds data");
    expect(String(refused.hint)).toContain("dd if=/dev/zero of=disk.img");
    expect(Buffer.compare(physical.snapshot(), before)).toBe(0);
  });

  test("a device too small for two reserves is refused with the size it needs", async () => {
    const refused = await rejection(openProtected(new MemoryDevice(1 * MiB, "small.img"), { reserveBytes: 1 * MiB }));
    expect(refused.code).toBe("REPLICA_DEVICE_TOO_SMALL");
    expect(String(refused.hint)).toContain(`truncate -s ${2 * MiB} small.img`);
  });

  test("a reserve that is not whole 4 KiB blocks is a usage error", async () => {
    expect((await rejection(openProtected(new MemoryDevice(1 * MiB), { reserveBytes: 1000 }))).code).toBe("USAGE");
  });
});

describe("unprotect", () => {
  async function protectedImage(disk: BlockDevice): Promise<Uint8Array> {
    const device = await openProtected(disk, { reserveBytes: reserve });
    const image = pattern(4, device.sizeBytes);
    await device.write(0, image);
    await device.flush();
    return image;
  }

  test("makes the device plain: [0, L) is the logical image; a second run changes nothing", async () => {
    const physical = new MemoryDevice(1 * MiB + reserve);
    const image = await protectedImage(physical);
    expect(await unprotect(physical, { reserveBytes: reserve })).toBe(1 * MiB);
    expect(Buffer.compare(physical.snapshot().subarray(0, 1 * MiB), image)).toBe(0);
    expect(await unprotect(physical, { reserveBytes: reserve })).toBe(1 * MiB);
    expect(Buffer.compare(physical.snapshot().subarray(0, 1 * MiB), image)).toBe(0);
    expect((await rejection(openProtected(physical, { reserveBytes: reserve }))).code).toBe("REPLICA_HOLDS_DATA");
  });

  test("a plain device is refused (NOT_PROTECTED)", async () => {
    const physical = new MemoryDevice(1 * MiB + reserve);
    await physical.write(0, pattern(5, 4096));
    expect((await rejection(unprotect(physical, { reserveBytes: reserve }))).code).toBe("NOT_PROTECTED");
  });

  test("a crash at any step never loses a header byte, and running it again finishes it", async () => {
    // Stops the run after `budget` writes/flushes reached the disk, then cuts the power.
    class Stopping implements BlockDevice {
      constructor(readonly disk: SimDisk, public budget: number) {}
      get name() { return this.disk.name; }
      get sizeBytes() { return this.disk.sizeBytes; }
      get logicalBlockSizeBytes() { return this.disk.logicalBlockSizeBytes; }
      read(offset: number, length: number) { return this.disk.read(offset, length); }
      private spend(): void {
        if (this.budget-- <= 0) throw new Error("power cut");
      }
      async write(offset: number, data: Uint8Array) { this.spend(); return this.disk.write(offset, data); }
      async flush() { this.spend(); return this.disk.flush(); }
      discard(offset: number, length: number) { return this.disk.discard(offset, length); }
      close() { return this.disk.close(); }
    }
    let finished = false;
    let tornSeen = 0;
    for (let run = 0; !finished; run += 1) {
      // Twelve power cuts (different sector fates) after each number of operations.
      const budget = Math.floor(run / 12);
      const disk = new SimDisk({ sizeBytes: 1 * MiB + reserve, seed: 7 + run * 104729 });
      const image = await protectedImage(disk);
      const logicalSize = 1 * MiB;
      finished = await unprotect(new Stopping(disk, budget), { reserveBytes: reserve }).then(() => true, () => false);
      disk.crash();
      const raw = disk.snapshot();
      // The header copy at the end is never written: always intact.
      expect(Buffer.compare(raw.subarray(logicalSize, logicalSize + reserve), image.subarray(0, reserve))).toBe(0);
      expect(Buffer.compare(raw.subarray(reserve, logicalSize), image.subarray(reserve))).toBe(0);
      // Once the unswapping state is durable (marker write + flush), apply may not resume on it.
      if (budget === 2) expect((await rejection(openProtected(disk, { reserveBytes: reserve }))).code).toBe("REPLICA_UNPROTECTING");
      const again = await rejection(unprotect(disk, { reserveBytes: reserve })).catch(() => undefined);
      if (again !== undefined) {
        // Only a torn marker block is left for the operator, with the dd command that ends it.
        expect(again.code).toBe("REPLICA_UNPROTECT_INTERRUPTED");
        expect(again.hint).toContain(`bs=4096 skip=${logicalSize / 4096} seek=0 count=1`);
        tornSeen += 1;
        await disk.write(0, await disk.read(logicalSize, 4096)); // what the dd does
      }
      expect(Buffer.compare(disk.snapshot().subarray(0, logicalSize), image)).toBe(0);
      expect(budget).toBeLessThan(20);
    }
    expect(tornSeen).toBeGreaterThan(0); // the seeds above do tear the last write
    console.log(`unprotect crash test: ${tornSeen} run(s) left a torn marker block`);
  });
});

describe("readPlain", () => {
  test("gives the logical image of a protected image file; refuses a plain one", async () => {
    const path = join(scratch, "plain.img");
    writeFileSync(path, new Uint8Array(2 * MiB + reserve));
    const device = await openProtected(await FileDevice.open(path), { reserveBytes: reserve });
    const image = pattern(6, 2 * MiB);
    await device.write(0, image);
    await device.flush();
    await device.close();
    expect(Buffer.compare(await readPlain(path), image)).toBe(0);
    expect(Buffer.compare(await readPlain(path, 64 * KiB), image.subarray(0, 64 * KiB))).toBe(0);
    const other = join(scratch, "other.img");
    writeFileSync(other, new Uint8Array(1 * MiB));
    expect((await rejection(readPlain(other))).code).toBe("NOT_PROTECTED");
  });

  test("a ProtectedDevice built directly on a checked device maps the same way (small-write handle)", async () => {
    const physical = new MemoryDevice(1 * MiB + reserve);
    const checked = await openProtected(physical, { reserveBytes: reserve });
    const second = new ProtectedDevice(physical, reserve);
    await second.write(reserve - 4096, pattern(7, 8192));
    expect(Buffer.compare(await checked.read(reserve - 4096, 8192), pattern(7, 8192))).toBe(0);
    expect(encodeMarker({ state: "protected", reserveBytes: reserve, logicalSizeBytes: 1 * MiB, logicalBlockSizeBytes: 512, uuid: "00".repeat(16) }).length).toBe(512);
  });
});
