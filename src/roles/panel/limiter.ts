/**
 * Login rate limiting: failures are counted per key (a user name, a client address); after
 * loginFailuresMax failures in a row the key is locked for loginLockMs, and a successful login
 * clears its count. Bounded: at most loginLimiterEntriesMax keys are kept, the oldest dropped
 * first (an attacker cycling names can then retry a dropped name early, never lock anyone out
 * for longer). Not persistent: a restart forgets the counts.
 */
import { loginFailuresMax, loginLimiterEntriesMax, loginLockMs } from "./constants.ts";

interface Entry {
  failures: number;
  lockedUntilMs: number;
}

export class LoginLimiter {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly nowMs: () => number = Date.now,
    private readonly lockMs: number = loginLockMs,
  ) {}

  /** Milliseconds until `key` may try again (0: it may now). */
  retryAfterMs(key: string): number {
    const entry = this.entries.get(key);
    if (entry === undefined) return 0;
    const left = entry.lockedUntilMs - this.nowMs();
    if (left > 0) return left;
    if (entry.lockedUntilMs > 0) this.entries.delete(key); // the lock ran out: a fresh start
    return 0;
  }

  /** Counts a failure of `key`; locks it at the limit. */
  fail(key: string): void {
    const entry = this.entries.get(key) ?? { failures: 0, lockedUntilMs: 0 };
    this.entries.delete(key); // re-inserted below: Map order is then oldest-failure first
    entry.failures += 1;
    if (entry.failures >= loginFailuresMax) entry.lockedUntilMs = this.nowMs() + this.lockMs;
    this.entries.set(key, entry);
    while (this.entries.size > loginLimiterEntriesMax) this.entries.delete(this.entries.keys().next().value!);
  }

  succeed(key: string): void {
    this.entries.delete(key);
  }
}
