/**
 * Reassembles a byte stream from socket chunks of arbitrary size (Bun's data() boundaries carry no
 * meaning). Bun hands each data() call a fresh buffer it never reuses, so `take` returns views into
 * the chunks without copying whenever the bytes lie inside one chunk; only a span across chunks is
 * copied into a new buffer.
 *
 * The queue itself has no bound: its owner stops reading from the socket (pause) when it holds
 * enough, and only ever waits for a frame whose size it has already checked.
 */
import { assert } from "../assert.ts";

export class ByteQueue {
  private chunks: Uint8Array[] = [];
  /** Bytes of chunks[0] already consumed. */
  private headOffset = 0;
  /** Bytes available to take. */
  length = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The byte `at` positions ahead, without consuming. */
  peekByte(at: number): number {
    assert(at < this.length, "peek past the queued bytes");
    let offset = this.headOffset + at;
    for (const chunk of this.chunks) {
      if (offset < chunk.length) return chunk[offset]!;
      offset -= chunk.length;
    }
    throw new Error("unreachable: length out of sync with chunks");
  }

  /**
   * The next `count` bytes without consuming them (a view when possible, else a copy into
   * `allocate(count)`, which is filled completely and so need not be zeroed).
   */
  peek(count: number, allocate: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(bytes)): Uint8Array {
    assert(count <= this.length, "peek past the queued bytes");
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.headOffset >= count) {
      return first.subarray(this.headOffset, this.headOffset + count);
    }
    const out = allocate(count);
    let filled = 0;
    let offset = this.headOffset;
    for (const chunk of this.chunks) {
      if (filled === count) break;
      const piece = Math.min(chunk.length - offset, count - filled);
      out.set(chunk.subarray(offset, offset + piece), filled);
      filled += piece;
      offset = 0;
    }
    return out;
  }

  /** Consumes and returns the next `count` bytes (a view when possible, else a copy: see peek). */
  take(count: number, allocate?: (bytes: number) => Uint8Array): Uint8Array {
    const bytes = this.peek(count, allocate);
    this.skip(count);
    return bytes;
  }

  /** Consumes up to `count` bytes; returns how many were consumed. */
  skip(count: number): number {
    let remaining = Math.min(count, this.length);
    const skipped = remaining;
    while (remaining > 0) {
      const first = this.chunks[0]!;
      const available = first.length - this.headOffset;
      if (available > remaining) {
        this.headOffset += remaining;
        remaining = 0;
      } else {
        remaining -= available;
        this.chunks.shift();
        this.headOffset = 0;
      }
    }
    this.length -= skipped;
    return skipped;
  }

  clear(): void {
    this.chunks = [];
    this.headOffset = 0;
    this.length = 0;
  }
}
