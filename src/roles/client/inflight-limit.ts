/**
 * A FIFO admission limit on writes in flight: at most `countMax` writes and `bytesMax` payload
 * bytes held at once. The client keeps every payload until staging has acked it (for a resend
 * after a reconnect), so this bound is what keeps its memory bounded while staging is slow or
 * away; the NBD layer's own back-pressure then stops reading from the NBD clients.
 *
 * First come, first served: a large write waiting for room is not overtaken by small ones (it
 * would starve otherwise). A single write is always admitted when nothing is held, whatever its
 * size, so one write larger than bytesMax cannot deadlock.
 */
import { assert } from "../../assert.ts";

interface Waiter {
  bytes: number;
  admit: () => void;
}

export class InflightLimit {
  #count = 0;
  #bytes = 0;
  readonly #waiters: Waiter[] = [];

  constructor(readonly countMax: number, readonly bytesMax: number) {
    assert(Number.isInteger(countMax) && countMax > 0, "in-flight count limit is positive");
    assert(Number.isSafeInteger(bytesMax) && bytesMax > 0, "in-flight byte limit is positive");
  }

  /** Writes admitted and not yet released. */
  get count(): number {
    return this.#count;
  }

  /** Payload bytes of those writes. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Writes waiting for room. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Waits for room for one write of `bytes`; returns its release function (call exactly once). */
  async acquire(bytes: number): Promise<() => void> {
    assert(Number.isSafeInteger(bytes) && bytes >= 0, "held bytes are a count");
    if (this.#waiters.length > 0 || !this.#fits(bytes)) {
      await new Promise<void>((admit) => this.#waiters.push({ bytes, admit }));
    } else {
      this.#take(bytes);
    }
    let released = false;
    return () => {
      assert(!released, "in-flight slot released twice");
      released = true;
      this.#count -= 1;
      this.#bytes -= bytes;
      this.#admitWaiters();
    };
  }

  #fits(bytes: number): boolean {
    if (this.#count >= this.countMax) return false;
    return this.#bytes === 0 || this.#bytes + bytes <= this.bytesMax;
  }

  #take(bytes: number): void {
    this.#count += 1;
    this.#bytes += bytes;
  }

  #admitWaiters(): void {
    while (this.#waiters.length > 0 && this.#fits(this.#waiters[0]!.bytes)) {
      const waiter = this.#waiters.shift()!;
      // Counted here, not when the waiter resumes, so the next waiter sees the room it took.
      this.#take(waiter.bytes);
      waiter.admit();
    }
  }
}
