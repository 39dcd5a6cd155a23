/**
 * Overlap gate: a write that overlaps a write still in flight waits until that write has
 * completed, so overlapping writes reach the log, the local device and the replica in the same
 * order (DESIGN.md write path, step 1). Non-overlapping writes proceed in parallel.
 *
 * Ranges are per device key. The in-flight set is bounded by the caller's in-flight limit, so a
 * linear scan is fine (it is at most a few hundred entries).
 */
import { assert } from "../assert.ts";

interface InFlight {
  key: string;
  start: number;
  end: number;
  done: Promise<void>;
  release: () => void;
}

export class OverlapGate {
  private readonly inFlight = new Set<InFlight>();

  /**
   * Waits until no in-flight range of `key` overlaps [offset, offset+length), then registers this
   * range. Returns the function that releases it (call exactly once, on completion or failure).
   * Fair in arrival order for overlapping writes: a later write waits for every earlier
   * overlapping one, including ones that are themselves still waiting.
   */
  async acquire(key: string, offsetBytes: number, lengthBytes: number): Promise<() => void> {
    const start = offsetBytes;
    const end = offsetBytes + lengthBytes;
    const blockers: Promise<void>[] = [];
    for (const other of this.inFlight) {
      if (other.key === key && other.start < end && start < other.end) blockers.push(other.done);
    }
    let release!: () => void;
    const done = new Promise<void>((resolve) => (release = resolve));
    const entry: InFlight = { key, start, end, done, release };
    // Registered before waiting, so writes arriving later queue behind this one.
    this.inFlight.add(entry);
    if (blockers.length > 0) await Promise.all(blockers);
    let released = false;
    return () => {
      assert(!released, "overlap gate range released twice");
      released = true;
      this.inFlight.delete(entry);
      entry.release();
    };
  }

  get size(): number {
    return this.inFlight.size;
  }
}
