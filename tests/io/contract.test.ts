/**
 * The BlockDevice contract (device-contract.ts) against every implementation: in-memory,
 * simulated disk, image file, and a raw block device (a real loop device, 512- and 4096-byte
 * logical blocks).
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deviceContract } from "./device-contract.ts";
import { attachLoopDevice, type LoopDevice } from "./loop-device.ts";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { FileDevice } from "../../src/io/file-device.ts";
import { RawDevice } from "../../src/io/raw-device.ts";
import { openBlockDevice } from "../../src/io/open-device.ts";

const MiB = 1024 * 1024;

describe("MemoryDevice", () => {
  deviceContract(
    { sizeBytes: 4 * MiB, logicalBlockSizeBytes: 512, freshReadsZeros: true, discardReadsZeros: true, readOnlyOpen: false, persistent: false },
    async () => {
      const device = new MemoryDevice(4 * MiB);
      return { device, cleanup: () => device.close() };
    },
  );
});

for (const logicalBlockSizeBytes of [512, 4096]) {
  describe(`SimDisk (${logicalBlockSizeBytes}-byte blocks)`, () => {
    let seed = 1;
    deviceContract(
      { sizeBytes: 4 * MiB, logicalBlockSizeBytes, freshReadsZeros: true, discardReadsZeros: true, readOnlyOpen: false, persistent: true },
      async () => {
        const disk = new SimDisk({ sizeBytes: 4 * MiB, seed: seed++, logicalBlockSizeBytes });
        // Reopening a SimDisk means surviving power loss: flushed data must still be there.
        const reopen = async (): Promise<BlockDevice> => {
          disk.crash();
          return disk;
        };
        return { device: disk, reopen, cleanup: () => disk.close() };
      },
    );
  });
}

for (const direct of [false, true]) {
  describe(`FileDevice (image file${direct ? ", O_DIRECT" : ""})`, () => {
    const directory = mkdtempSync(join(tmpdir(), "druvaa-contract-"));
    let fileIndex = 0;
    afterAll(() => rmSync(directory, { recursive: true, force: true }));
    deviceContract(
      { sizeBytes: 8 * MiB, logicalBlockSizeBytes: 512, freshReadsZeros: true, discardReadsZeros: true, readOnlyOpen: true, persistent: true },
      async () => {
        const path = join(directory, `image-${fileIndex++}.img`);
        const device = await FileDevice.open(path, { createSizeBytes: 8 * MiB, direct });
        // The temp directory is on a disk file system here (CI too): O_DIRECT must really be used.
        if (direct) expect(device.direct).toBe(true);
        return {
          device,
          reopen: (opts) => FileDevice.open(path, { ...opts, direct }),
          cleanup: async () => {
            await device.close();
            await rm(path, { force: true });
          },
        };
      },
    );
  });
}

for (const sectorSizeBytes of [512, 4096]) {
  describe(`RawDevice (loop device, ${sectorSizeBytes}-byte sectors)`, () => {
    let loop: LoopDevice | undefined;
    beforeAll(async () => {
      loop = await attachLoopDevice(16 * MiB, { sectorSizeBytes });
    });
    afterAll(() => loop?.detach());
    const loopPath = (): string => {
      if (loop === undefined) throw new Error("loop device was not attached (see the beforeAll error)");
      return loop.path;
    };
    deviceContract(
      // A raw device promises neither zeros when fresh nor zeros after discard.
      { sizeBytes: 16 * MiB, logicalBlockSizeBytes: sectorSizeBytes, freshReadsZeros: false, discardReadsZeros: false, readOnlyOpen: true, persistent: true },
      async () => {
        const device = await openBlockDevice(loopPath());
        if (!(device instanceof RawDevice)) throw new Error(`openBlockDevice gave ${device.constructor.name} for a loop device`);
        return { device, reopen: (opts) => RawDevice.open(loopPath(), opts), cleanup: () => device.close() };
      },
    );
  });
}
