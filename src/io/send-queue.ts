/**
 * SendQueue: the outgoing bytes of one SocketConnection (connection-socket.ts), in order, and how
 * they are handed to the socket: Bun's socket.write() may take only part of a buffer and drops
 * the rest, so the unwritten tail stays queued for the next write; small chunks are copied
 * together into one write. The connection decides when to write (microtask, `drain`) and what a
 * full queue means for its senders.
 */
import { socketWriteCoalesceBytesMax } from "../constants.ts";

/** How a writeTo() ended. */
export type WriteOutcome = "empty" | "partial" | "closed";

export class SendQueue {
  // Chunks from #head on, #bytes in total.
  #chunks: Uint8Array[] = [];
  #head = 0;
  #bytes = 0;

  get bytes(): number {
    return this.#bytes;
  }

  push(chunks: Uint8Array[]): void {
    for (const chunk of chunks) {
      this.#chunks.push(chunk);
      this.#bytes += chunk.length;
    }
  }

  /** Drops everything queued (the socket is gone). */
  clear(): void {
    this.#chunks = [];
    this.#head = 0;
    this.#bytes = 0;
  }

  /**
   * Writes queued chunks until the queue is empty ("empty"), the socket takes less than offered
   * ("partial": the rest waits for `drain`), or the socket is closed ("closed": write() returned
   * -1; nothing more is touched, not even compact()).
   */
  writeTo(socket: { write(data: Uint8Array): number }): WriteOutcome {
    while (this.#head < this.#chunks.length) {
      const chunk = this.#coalesceHead();
      const written = socket.write(chunk);
      if (written < 0) return "closed";
      this.#bytes -= written;
      if (written < chunk.length) {
        this.#chunks[this.#head] = chunk.subarray(written);
        return "partial";
      }
      this.#head += 1;
    }
    return "empty";
  }

  /** Releases the chunks already written. */
  compact(): void {
    if (this.#head === this.#chunks.length) {
      this.#chunks = [];
      this.#head = 0;
    } else if (this.#head > 1024) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }

  /** The chunk at the head, merged with following small chunks into one write when they fit. */
  #coalesceHead(): Uint8Array {
    const first = this.#chunks[this.#head]!;
    let end = this.#head + 1;
    let total = first.length;
    while (end < this.#chunks.length && total + this.#chunks[end]!.length <= socketWriteCoalesceBytesMax) {
      total += this.#chunks[end]!.length;
      end += 1;
    }
    if (end === this.#head + 1) return first;
    const merged = new Uint8Array(total);
    let position = 0;
    for (let index = this.#head; index < end; index += 1) {
      merged.set(this.#chunks[index]!, position);
      position += this.#chunks[index]!.length;
    }
    this.#head = end - 1;
    this.#chunks[this.#head] = merged;
    return merged;
  }
}
