/**
 * The send side of one NBD connection. Bun's socket.write() takes only what fits in the kernel
 * buffer and drops the rest, so everything goes through this queue: whatever was not taken is
 * resent from the `drain` callback. Replies that complete together are sent together: flushing
 * waits for a microtask, so every reply finished in the same turn of the event loop (a batch of
 * acks, a burst of in-memory writes) leaves in one write, small ones copied into one buffer and
 * large read payloads written from their own buffers without a copy.
 */
import { nbdReplyCoalesceBytesMax } from "../constants.ts";

/** The part of a Bun socket the writer uses (a fake in unit tests). */
export interface WritableSocket {
  write(data: Uint8Array, byteOffset?: number, byteLength?: number): number;
  end(): void;
}

export class ReplyWriter {
  private queue: Uint8Array[] = [];
  /** Bytes of queue[0] already written. */
  private headOffset = 0;
  private flushScheduled = false;
  /** The kernel buffer is full: wait for drain. */
  private blocked = false;
  private endRequested = false;
  private ended = false;
  /** Bytes queued and not yet handed to the kernel. */
  queuedBytes = 0;

  /** `onProgress` runs after queued bytes were handed to the kernel (the owner may resume reading). */
  constructor(private readonly socket: WritableSocket, private readonly onProgress: () => void) {}

  get isEnded(): boolean {
    return this.ended || this.endRequested;
  }

  /** Queues bytes to send, in order. Ignored once the connection is ending or dead. */
  send(...chunks: Uint8Array[]): void {
    if (this.isEnded) return;
    for (const chunk of chunks) {
      if (chunk.length === 0) continue;
      this.queue.push(chunk);
      this.queuedBytes += chunk.length;
    }
    this.scheduleFlush();
  }

  /** Closes the socket (FIN) once every queued byte has been written. */
  endWhenFlushed(): void {
    if (this.isEnded) return;
    this.endRequested = true;
    this.scheduleFlush();
  }

  /** The socket is gone: drop what is queued. */
  discard(): void {
    this.queue = [];
    this.queuedBytes = 0;
    this.headOffset = 0;
    this.ended = true;
  }

  /** Bun's drain callback: the kernel has room again. */
  drain(): void {
    this.blocked = false;
    this.flush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.blocked || this.ended) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.ended) return;
    const before = this.queuedBytes;
    while (this.queue.length > 0 && !this.blocked) {
      const first = this.queue[0]!;
      let attempted: number;
      let written: number;
      if (first.length - this.headOffset >= nbdReplyCoalesceBytesMax / 4 || this.queue.length === 1) {
        attempted = first.length - this.headOffset;
        written = this.socket.write(first, this.headOffset, attempted);
      } else {
        const batch = this.coalesce();
        attempted = batch.length;
        written = this.socket.write(batch);
      }
      if (written < 0) {
        // The peer is gone. end() as well: a paused Bun socket does not report its own close,
        // and the connection must still reach its close callback.
        this.discard();
        this.socket.end();
        return;
      }
      this.advance(written);
      if (written < attempted) this.blocked = true;
    }
    if (this.queuedBytes < before) this.onProgress();
    if (this.queue.length === 0 && this.endRequested && !this.ended) {
      this.ended = true;
      this.socket.end();
    }
  }

  /** Copies the unsent head of the queue, up to nbdReplyCoalesceBytesMax, into one buffer. */
  private coalesce(): Uint8Array {
    let total = 0;
    let count = 0;
    for (const chunk of this.queue) {
      const size = chunk.length - (count === 0 ? this.headOffset : 0);
      if (count > 0 && total + size > nbdReplyCoalesceBytesMax) break;
      total += size;
      count += 1;
    }
    const batch = new Uint8Array(total);
    let at = 0;
    for (let index = 0; index < count; index += 1) {
      const chunk = this.queue[index]!;
      const piece = index === 0 ? chunk.subarray(this.headOffset) : chunk;
      batch.set(piece, at);
      at += piece.length;
    }
    return batch;
  }

  private advance(written: number): void {
    let remaining = written;
    this.queuedBytes -= written;
    while (remaining > 0) {
      const first = this.queue[0]!;
      const available = first.length - this.headOffset;
      if (available > remaining) {
        this.headOffset += remaining;
        remaining = 0;
      } else {
        remaining -= available;
        this.queue.shift();
        this.headOffset = 0;
      }
    }
  }
}
