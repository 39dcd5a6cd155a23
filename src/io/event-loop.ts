/**
 * Giving the event loop a turn in the middle of long CPU work (hashing a verify chunk), so socket
 * and NBD callbacks waiting meanwhile run. setImmediate, not a timer: a 0 ms timer costs about a
 * millisecond per turn in Bun, setImmediate a few microseconds.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
