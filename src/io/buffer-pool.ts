/**
 * Large byte buffers lent and given back instead of allocated per message. A fresh multi-MiB
 * Uint8Array is not just a malloc: its pages are new to the process, so the first write into it
 * takes a page fault and a page clear for every 4 KiB, and the allocator returns freed ones to
 * the kernel soon after the garbage collector finds them. Profiles of the pipeline showed that
 * cost (the copy of a 1 MiB write into a fresh buffer ran at a few hundred MB/s) ahead of
 * everything else; a buffer reused while its pages are still mapped costs only the copy.
 *
 * Only code that knows exactly when the bytes are dead may give a buffer back: the frame
 * decoder's buffer once the consumer of the frame answered it (the replica), an NBD write
 * payload once the backend's promise settled. give() ignores buffers the pool did not lend (a
 * view into a socket chunk, a buffer of someone else), and a buffer given back twice is taken
 * once, so a consumer may give back whatever it received.
 *
 * Bounds: sizes below pooledBytesMin are plain allocations; idle buffers are kept up to
 * idleBytesMax in total (more are left to the garbage collector). Buffers in use are not counted:
 * their number is bounded by whoever holds them (in-flight limits of the roles).
 */
import { bufferPoolIdleBytesMax, bufferPoolPooledBytesMin, directIoAlignmentBytes } from "../constants.ts";
import { addressOf } from "./libc.ts";

export class BufferPool {
  /** Idle buffers by capacity (a multiple of pooledBytesMin). */
  readonly #idle = new Map<number, ArrayBuffer[]>();
  /** Buffers lent and not given back yet. */
  readonly #lent = new WeakSet<ArrayBuffer>();
  #idleBytes = 0;

  constructor(readonly pooledBytesMin = bufferPoolPooledBytesMin, readonly idleBytesMax = bufferPoolIdleBytesMax) {}

  /** Bytes held by idle buffers. */
  get idleBytes(): number {
    return this.#idleBytes;
  }

  /**
   * `bytes` bytes to fill completely: their contents are whatever the last user left (not
   * zeroed). A view of a pooled buffer for sizes of at least pooledBytesMin. With `alignAt`, the
   * byte at that index of the view sits at a multiple of directIoAlignmentBytes in memory (so a
   * frame's payload can go to an O_DIRECT device without a bounce copy); then every size is
   * pooled or aligned.
   */
  take(bytes: number, alignAt?: number): Uint8Array {
    if (bytes < this.pooledBytesMin && alignAt === undefined) return new Uint8Array(bytes);
    const slack = alignAt === undefined ? 0 : directIoAlignmentBytes;
    const capacity = Math.ceil((bytes + slack) / this.pooledBytesMin) * this.pooledBytesMin;
    const buffer = this.#idle.get(capacity)?.pop();
    if (buffer !== undefined) this.#idleBytes -= capacity;
    const lent = buffer ?? new ArrayBuffer(capacity);
    this.#lent.add(lent);
    if (alignAt === undefined) return new Uint8Array(lent, 0, bytes);
    const misalignment = (addressOf(new Uint8Array(lent, 0, 1)) + alignAt) % directIoAlignmentBytes;
    const start = misalignment === 0 ? 0 : directIoAlignmentBytes - misalignment;
    return new Uint8Array(lent, start, bytes);
  }

  /** Gives back the buffer under `view` if this pool lent it; nobody may use its bytes afterwards. */
  give(view: Uint8Array): void {
    const buffer = view.buffer;
    if (!(buffer instanceof ArrayBuffer) || !this.#lent.has(buffer)) return;
    this.#lent.delete(buffer);
    if (buffer.byteLength > this.idleBytesMax) return;
    // Over the bound: let idle buffers of other sizes go first (the workload changed).
    for (const [capacity, others] of this.#idle) {
      while (this.#idleBytes + buffer.byteLength > this.idleBytesMax && others.length > 0 && capacity !== buffer.byteLength) {
        others.pop();
        this.#idleBytes -= capacity;
      }
    }
    if (this.#idleBytes + buffer.byteLength > this.idleBytesMax) return;
    let list = this.#idle.get(buffer.byteLength);
    if (list === undefined) this.#idle.set(buffer.byteLength, (list = []));
    list.push(buffer);
    this.#idleBytes += buffer.byteLength;
  }
}

/** The pool of this process (each role is its own process). */
export const sharedBufferPool = new BufferPool();
