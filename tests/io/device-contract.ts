/**
 * The BlockDevice contract (src/io/block-device.ts) as one suite, run against every
 * implementation by contract.test.ts. Each case gets a fresh fixture and cleans it up even when
 * it fails.
 */
import { expect, test } from "bun:test";
import fc from "fast-check";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { alignedBuffer } from "../../src/io/handle-device.ts";
import { Random } from "../../src/io/random.ts";

export interface DeviceFixture {
  device: BlockDevice;
  /**
   * Opens the same storage again after `device` was closed (for a SimDisk: after a crash).
   * Absent where the storage does not outlive the object.
   */
  reopen?: (opts?: { readOnly?: boolean }) => Promise<BlockDevice>;
  /** Closes whatever is still open; must not throw if already closed. */
  cleanup(): Promise<void>;
}

export interface DeviceCapabilities {
  sizeBytes: number;
  logicalBlockSizeBytes: number;
  /** A new device reads zeros everywhere (memory, sim, new image file; not a raw device). */
  freshReadsZeros: boolean;
  /** A discarded range reads zeros afterwards (memory, sim, image file). */
  discardReadsZeros: boolean;
  /** reopen({ readOnly: true }) gives a read-only device. */
  readOnlyOpen: boolean;
  /** reopen() after close gives the same storage back (for a SimDisk: after a crash). */
  persistent: boolean;
}

const fcSeed = Number(process.env.FC_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(`device-contract.ts: fast-check seed ${fcSeed} (replay with FC_SEED=${fcSeed} node_modules/.bin/bun test tests/io/contract.test.ts)`);

function pattern(seed: number, lengthBytes: number): Uint8Array {
  return new Random(seed).fill(new Uint8Array(lengthBytes));
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return String((error as { code?: unknown }).code);
  }
  return "resolved";
}

/** Defines the contract tests for one implementation; call inside a describe(). */
export function deviceContract(caps: DeviceCapabilities, create: () => Promise<DeviceFixture>): void {
  const block = caps.logicalBlockSizeBytes;
  const blockCount = caps.sizeBytes / block;

  async function withFixture(body: (fixture: DeviceFixture) => Promise<void>): Promise<void> {
    const fixture = await create();
    try {
      await body(fixture);
    } finally {
      await fixture.cleanup();
    }
  }

  test("reports its size and logical block size", () =>
    withFixture(async ({ device }) => {
      expect(device.sizeBytes).toBe(caps.sizeBytes);
      expect(device.logicalBlockSizeBytes).toBe(caps.logicalBlockSizeBytes);
      expect(device.sizeBytes % device.logicalBlockSizeBytes).toBe(0);
      expect(device.name.length).toBeGreaterThan(0);
    }));

  if (caps.freshReadsZeros) {
    test("a fresh device reads zeros", () =>
      withFixture(async ({ device }) => {
        expect(await device.read(0, device.sizeBytes)).toEqual(new Uint8Array(device.sizeBytes));
      }));
  }

  test("writes read back equal at random aligned offsets, first and last block included, and touch nothing else (property)", () =>
    withFixture(async ({ device }) => {
      const model = await device.read(0, device.sizeBytes);
      const writeArbitrary = fc.record({
        blockIndex: fc.oneof(fc.constant(0), fc.constant(blockCount - 1), fc.integer({ min: 0, max: blockCount - 1 })),
        blocks: fc.integer({ min: 1, max: 16 }),
        fillSeed: fc.integer({ min: 0, max: 2 ** 31 }),
      });
      await fc.assert(
        fc.asyncProperty(writeArbitrary, async ({ blockIndex, blocks, fillSeed }) => {
          const lengthBytes = Math.min(blocks, blockCount - blockIndex) * block;
          const offsetBytes = blockIndex * block;
          const data = pattern(fillSeed, lengthBytes);
          await device.write(offsetBytes, data);
          model.set(data, offsetBytes);
          expect(await device.read(offsetBytes, lengthBytes)).toEqual(data);
        }),
        { seed: fcSeed, numRuns: 40 },
      );
      const whole = await device.read(0, device.sizeBytes);
      expect(Buffer.compare(whole, model)).toBe(0);
    }));

  test("empty reads and writes are allowed", () =>
    withFixture(async ({ device }) => {
      expect(await device.read(block, 0)).toEqual(new Uint8Array(0));
      await device.write(block, new Uint8Array(0));
    }));

  test("the caller may reuse its buffer once write resolves", () =>
    withFixture(async ({ device }) => {
      const data = pattern(1, 2 * block);
      const expected = data.slice();
      await device.write(2 * block, data);
      data.fill(0xab);
      expect(await device.read(2 * block, 2 * block)).toEqual(expected);
    }));

  test("readInto, where implemented, reads what read() does, into an aligned or a misaligned buffer, with the same range checks", () =>
    withFixture(async ({ device }) => {
      if (device.readInto === undefined) return;
      await device.write(block, pattern(9, 3 * block));
      const expected = await device.read(block, 3 * block);
      for (const shift of [0, 1]) {
        const into = alignedBuffer(3 * block + shift, 4096).subarray(shift); // aligned for O_DIRECT, or not
        await device.readInto(block, into);
        expect(Buffer.compare(into, expected)).toBe(0);
      }
      expect(await codeOf(device.readInto(device.sizeBytes, new Uint8Array(block)))).toBe("IO_OUT_OF_RANGE");
      expect(await codeOf(device.readInto(block / 2, new Uint8Array(block)))).toBe("IO_MISALIGNED");
    }));

  test("out-of-range I/O is refused with IO_OUT_OF_RANGE and writes nothing", () =>
    withFixture(async ({ device }) => {
      const last = device.sizeBytes - block;
      await device.write(last, pattern(2, block));
      const before = await device.read(last, block);
      expect(await codeOf(device.read(device.sizeBytes, block))).toBe("IO_OUT_OF_RANGE");
      expect(await codeOf(device.read(-block, block))).toBe("IO_OUT_OF_RANGE");
      expect(await codeOf(device.read(0, device.sizeBytes + block))).toBe("IO_OUT_OF_RANGE");
      expect(await codeOf(device.read(Number.NaN, block))).toBe("IO_OUT_OF_RANGE");
      expect(await codeOf(device.write(last, pattern(3, 2 * block)))).toBe("IO_OUT_OF_RANGE");
      expect(await codeOf(device.write(device.sizeBytes, pattern(3, block)))).toBe("IO_OUT_OF_RANGE");
      expect(await codeOf(device.write(1.5, pattern(3, block)))).toBe("IO_OUT_OF_RANGE");
      expect(await codeOf(device.discard(last, 2 * block))).toBe("IO_OUT_OF_RANGE");
      expect(await device.read(last, block)).toEqual(before);
    }));

  test("misaligned I/O is refused with IO_MISALIGNED and writes nothing", () =>
    withFixture(async ({ device }) => {
      const half = block / 2;
      await device.write(0, pattern(4, 4 * block));
      const before = await device.read(0, 4 * block);
      expect(await codeOf(device.write(half, pattern(5, block)))).toBe("IO_MISALIGNED");
      expect(await codeOf(device.write(block, pattern(5, block + half)))).toBe("IO_MISALIGNED");
      expect(await codeOf(device.write(block, pattern(5, 1)))).toBe("IO_MISALIGNED");
      expect(await codeOf(device.read(half, block))).toBe("IO_MISALIGNED");
      expect(await codeOf(device.read(0, half))).toBe("IO_MISALIGNED");
      expect(await codeOf(device.discard(half, block))).toBe("IO_MISALIGNED");
      expect(await codeOf(device.discard(0, half))).toBe("IO_MISALIGNED");
      expect(await device.read(0, 4 * block)).toEqual(before);
    }));

  test("flush resolves, repeatedly, and data stays readable", () =>
    withFixture(async ({ device }) => {
      await device.flush(); // nothing pending
      const data = pattern(6, 8 * block);
      await device.write(8 * block, data);
      await device.flush();
      await device.flush();
      expect(await device.read(8 * block, 8 * block)).toEqual(data);
    }));

  test(caps.discardReadsZeros ? "discard makes the range read zeros and leaves its neighbours intact" : "discard resolves and leaves its neighbours intact", () =>
    withFixture(async ({ device }) => {
      // Three 64 KiB regions (or smaller on tiny devices); discard the middle one.
      const regionBytes = Math.min(64 * 1024, Math.floor(blockCount / 3) * block);
      const data = pattern(7, 3 * regionBytes);
      await device.write(0, data);
      await device.discard(regionBytes, regionBytes);
      expect(await device.read(0, regionBytes)).toEqual(data.subarray(0, regionBytes));
      expect(await device.read(2 * regionBytes, regionBytes)).toEqual(data.subarray(2 * regionBytes));
      if (caps.discardReadsZeros) expect(await device.read(regionBytes, regionBytes)).toEqual(new Uint8Array(regionBytes));
      await device.discard(0, 0);
      await device.flush();
      expect(await device.read(0, regionBytes)).toEqual(data.subarray(0, regionBytes));
    }));

  test("concurrent writes to distinct ranges all land", () =>
    withFixture(async ({ device }) => {
      const writeCount = 16;
      const spanBytes = Math.min(16 * block, Math.floor(blockCount / writeCount) * block);
      const datas = Array.from({ length: writeCount }, (_, index) => pattern(100 + index, spanBytes));
      // Interleaved order so neighbouring ranges are in flight together.
      const order = Array.from({ length: writeCount }, (_, index) => (index * 7) % writeCount);
      await Promise.all(order.map((index) => device.write(index * spanBytes, datas[index]!)));
      const reads = await Promise.all(datas.map((_, index) => device.read(index * spanBytes, spanBytes)));
      reads.forEach((bytes, index) => expect(bytes).toEqual(datas[index]!));
    }));

  test("after close every call is refused with IO_CLOSED", () =>
    withFixture(async ({ device }) => {
      await device.close();
      expect(await codeOf(device.read(0, block))).toBe("IO_CLOSED");
      expect(await codeOf(device.write(0, new Uint8Array(block)))).toBe("IO_CLOSED");
      expect(await codeOf(device.flush())).toBe("IO_CLOSED");
      expect(await codeOf(device.discard(0, block))).toBe("IO_CLOSED");
      await device.close(); // closing twice is harmless
    }));

  const reopenCase = async (fixture: DeviceFixture, opts?: { readOnly?: boolean }): Promise<BlockDevice> => {
    if (fixture.reopen === undefined) throw new Error("this fixture has no reopen(), but its capabilities say it can reopen");
    return fixture.reopen(opts);
  };

  if (caps.readOnlyOpen) {
    test("a read-only open refuses writes and discards with IO_READ_ONLY and changes nothing", () =>
      withFixture(async (fixture) => {
        const data = pattern(9, 4 * block);
        await fixture.device.write(0, data);
        await fixture.device.flush();
        await fixture.device.close();
        const readOnly = await reopenCase(fixture, { readOnly: true });
        try {
          expect(await codeOf(readOnly.write(0, pattern(10, block)))).toBe("IO_READ_ONLY");
          expect(await codeOf(readOnly.discard(0, block))).toBe("IO_READ_ONLY");
          await readOnly.flush();
          expect(await readOnly.read(0, 4 * block)).toEqual(data);
        } finally {
          await readOnly.close();
        }
      }));
  }

  if (caps.persistent) {
    test("data written and flushed survives close and reopen", () =>
      withFixture(async (fixture) => {
        const first = pattern(11, 4 * block);
        const last = pattern(12, 4 * block);
        await fixture.device.write(0, first);
        await fixture.device.write(fixture.device.sizeBytes - 4 * block, last);
        await fixture.device.flush();
        await fixture.device.close();
        const again = await reopenCase(fixture);
        try {
          expect(again.sizeBytes).toBe(caps.sizeBytes);
          expect(again.logicalBlockSizeBytes).toBe(caps.logicalBlockSizeBytes);
          expect(await again.read(0, 4 * block)).toEqual(first);
          expect(await again.read(again.sizeBytes - 4 * block, 4 * block)).toEqual(last);
        } finally {
          await again.close();
        }
      }));
  }
}
