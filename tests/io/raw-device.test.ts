/**
 * Raw block devices on a real loop device: what RawDevice promises beyond the shared contract —
 * O_DIRECT by default, unaligned caller buffers handled, bytes really reaching the device,
 * BLKDISCARD reaching it, and refusing what is not a block device.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { attachLoopDevice, type LoopDevice } from "./loop-device.ts";
import { RawDevice, alignedBuffer } from "../../src/io/raw-device.ts";
import { isBlockDevicePath, openBlockDevice } from "../../src/io/open-device.ts";
import { addressOf } from "../../src/io/libc.ts";
import { Random } from "../../src/io/random.ts";

const MiB = 1024 * 1024;

let loop: LoopDevice | undefined;
beforeAll(async () => {
  loop = await attachLoopDevice(16 * MiB);
});
afterAll(() => loop?.detach());

function loopPath(): string {
  if (loop === undefined) throw new Error("loop device was not attached (see the beforeAll error)");
  return loop.path;
}

async function withRaw(opts: { direct?: boolean; readOnly?: boolean }, body: (device: RawDevice) => Promise<void>): Promise<void> {
  const device = await RawDevice.open(loopPath(), opts);
  try {
    await body(device);
  } finally {
    await device.close();
  }
}

async function codeOf(start: () => Promise<unknown>): Promise<string> {
  try {
    await start();
  } catch (error) {
    return String((error as { code?: unknown }).code);
  }
  return "resolved";
}

describe("RawDevice on a loop device", () => {
  test("openBlockDevice opens a block device as RawDevice with O_DIRECT; isBlockDevicePath tells them apart", async () => {
    const device = await openBlockDevice(loopPath());
    try {
      expect(device).toBeInstanceOf(RawDevice);
      expect((device as RawDevice).direct).toBe(true);
      expect(device.sizeBytes).toBe(16 * MiB);
    } finally {
      await device.close();
    }
    expect(await isBlockDevicePath(loopPath())).toBe(true);
    expect(await isBlockDevicePath(loop!.imagePath)).toBe(false);
    expect(await isBlockDevicePath(`${loop!.imagePath}.missing`)).toBe(false);
  });

  test("flushed writes reach the device: the loop's backing image holds the bytes", async () => {
    const data = new Random(1).fill(new Uint8Array(MiB));
    await withRaw({}, async (device) => {
      await device.write(3 * MiB, data);
      await device.flush();
    });
    const image = readFileSync(loop!.imagePath);
    expect(Buffer.compare(image.subarray(3 * MiB, 4 * MiB), data)).toBe(0);
  });

  test("a write from a buffer at an unaligned address still lands under O_DIRECT", async () => {
    const backing = new Random(2).fill(new Uint8Array(64 * 1024 + 1));
    const data = backing.subarray(1); // address is odd: O_DIRECT would refuse it as is
    expect(addressOf(data) % 4096).not.toBe(0);
    await withRaw({}, async (device) => {
      expect(device.direct).toBe(true);
      await device.write(5 * MiB, data);
      const back = await device.read(5 * MiB, data.length);
      expect(back).toEqual(data);
      expect(addressOf(back) % 4096).toBe(0);
    });
  });

  test("buffered opens (direct: false) see the same bytes as O_DIRECT ones", async () => {
    const data = new Random(3).fill(new Uint8Array(128 * 1024));
    await withRaw({}, async (device) => {
      await device.write(6 * MiB, data);
      await device.flush();
    });
    await withRaw({ direct: false }, async (device) => {
      expect(device.direct).toBe(false);
      expect(await device.read(6 * MiB, data.length)).toEqual(data);
    });
  });

  test("discard reaches the device: the loop gives the backing image's space back", async () => {
    await withRaw({}, async (device) => {
      await device.write(8 * MiB, new Random(4).fill(new Uint8Array(4 * MiB)));
      await device.flush();
      const allocatedBefore = statSync(loop!.imagePath).blocks;
      await device.discard(8 * MiB, 4 * MiB);
      await device.flush();
      // 4 MiB = 8192 stat blocks; a silent no-op would give back none.
      expect(allocatedBefore - statSync(loop!.imagePath).blocks).toBeGreaterThanOrEqual(6000);
    });
  });

  test("RawDevice refuses what is not a block device", async () => {
    expect(await codeOf(() => RawDevice.open(loop!.imagePath))).toBe("NOT_A_BLOCK_DEVICE");
    expect(await codeOf(() => RawDevice.open("/dev/null"))).toBe("NOT_A_BLOCK_DEVICE");
    expect(await codeOf(() => RawDevice.open(`${loop!.imagePath}.missing`))).toBe("NOT_FOUND");
  });
});

describe("alignedBuffer", () => {
  test("returns a zeroed buffer of the length asked, at an aligned address", () => {
    for (const lengthBytes of [512, 4096, 12345, 1 << 20]) {
      const buffer = alignedBuffer(lengthBytes, 4096);
      expect(buffer.length).toBe(lengthBytes);
      expect(addressOf(buffer) % 4096).toBe(0);
      expect(buffer.every((byte) => byte === 0)).toBe(true);
    }
  });
});
