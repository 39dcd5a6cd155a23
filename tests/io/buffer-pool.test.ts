import { describe, expect, test } from "bun:test";
import { directIoAlignmentBytes } from "../../src/constants.ts";
import { BufferPool } from "../../src/io/buffer-pool.ts";
import { addressOf } from "../../src/io/libc.ts";
import { encodeFrameBytes, FrameDecoder, type Frame } from "../../src/protocol/frame.ts";

const KiB = 1024;

describe("BufferPool", () => {
  test("a buffer given back is lent again for the same size; small sizes are plain allocations", () => {
    const pool = new BufferPool(64 * KiB, 1024 * KiB);
    const first = pool.take(100 * KiB);
    expect(first.length).toBe(100 * KiB);
    first.fill(7);
    pool.give(first);
    expect(pool.idleBytes).toBe(128 * KiB);
    const second = pool.take(120 * KiB);
    expect(second.buffer).toBe(first.buffer);
    expect(pool.idleBytes).toBe(0);
    const small = pool.take(4 * KiB);
    pool.give(small);
    expect(pool.idleBytes).toBe(0);
  });

  test("give ignores buffers it did not lend and buffers given back twice", () => {
    const pool = new BufferPool(64 * KiB, 1024 * KiB);
    pool.give(new Uint8Array(128 * KiB));
    expect(pool.idleBytes).toBe(0);
    const lent = pool.take(64 * KiB);
    pool.give(lent);
    pool.give(lent);
    expect(pool.idleBytes).toBe(64 * KiB);
    const again = pool.take(64 * KiB);
    const other = pool.take(64 * KiB);
    expect(again.buffer).toBe(lent.buffer);
    expect(other.buffer).not.toBe(lent.buffer);
  });

  test("idle bytes stay under the bound: other sizes are let go first, then the buffer itself", () => {
    const pool = new BufferPool(64 * KiB, 256 * KiB);
    const a = pool.take(64 * KiB);
    const b = pool.take(192 * KiB);
    const c = pool.take(192 * KiB);
    pool.give(a);
    pool.give(b);
    expect(pool.idleBytes).toBe(256 * KiB);
    pool.give(c); // the 64 KiB one goes; the second 192 KiB one does not fit
    expect(pool.idleBytes).toBeLessThanOrEqual(256 * KiB);
    expect(pool.take(192 * KiB).buffer).toBe(b.buffer);
  });

  test("alignAt puts that byte of the view on an O_DIRECT boundary, for any size", () => {
    const pool = new BufferPool(64 * KiB, 1024 * KiB);
    for (const [bytes, at] of [[100, 7], [5000, 0], [200 * KiB, 1234], [64 * KiB, 4095]] as const) {
      const view = pool.take(bytes, at);
      expect(view.length).toBe(bytes);
      expect((addressOf(view) + at) % directIoAlignmentBytes).toBe(0);
      pool.give(view);
    }
  });
});

describe("FrameDecoder with an allocator", () => {
  test("a frame spanning chunks is assembled once in the allocator's buffer, payload intact and aligned", () => {
    const pool = new BufferPool(64 * KiB, 4096 * KiB);
    const asked: [number, number][] = [];
    const decoder = new FrameDecoder((bytes, payloadAt) => {
      asked.push([bytes, payloadAt]);
      return pool.take(bytes, payloadAt);
    });
    const payload = new Uint8Array(300 * KiB);
    for (let index = 0; index < payload.length; index += 1) payload[index] = (index * 31) & 0xff;
    const bytes = encodeFrameBytes({ type: "write", reqId: 1, device: "d0", wrl: "w0", epoch: 1, offset: 0, length: payload.length }, payload);
    const frames: Frame[] = [];
    for (let at = 0; at < bytes.length; at += 10_000) frames.push(...decoder.push(bytes.slice(at, at + 10_000)));
    expect(frames.length).toBe(1);
    expect(asked).toEqual([[bytes.length, bytes.length - payload.length]]);
    const received = frames[0]!.payload;
    expect(Buffer.from(received).equals(Buffer.from(payload))).toBe(true);
    expect(addressOf(received) % directIoAlignmentBytes).toBe(0);
  });
});
