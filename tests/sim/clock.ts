/**
 * Time and event-loop turns for the in-process simulation.
 *
 * ManualClock: simulated milliseconds that move only when the test advances them; timers fire in
 * (due time, scheduling order), so a run is the same every time. ProcessClock: one simulated
 * process's view of it. A crashed process's clock is killed: its timers never fire again and new
 * ones are dropped, so a "dead" relay or client cannot wake up and act after its crash (its
 * objects still exist in memory, as nothing can really kill them here).
 *
 * Everything else in the simulated system runs on promise jobs and setImmediate turns (the WRL's
 * group commit waits one turn to gather a batch). There is no real I/O and no real timer, so the
 * order of those jobs is fixed by the program: runs replay exactly.
 */
import type { ClientTimers } from "../../src/roles/client/core.ts";
import type { Clock } from "../../src/roles/staging/relay.ts";

/** One turn of the event loop: every promise job queued so far runs first. */
export const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface Timer {
  dueMs: number;
  order: number;
  run: () => void;
  cancelled: boolean;
}

export class ManualClock {
  #nowMs: number;
  #order = 0;
  #timers: Timer[] = [];

  constructor(startMs = Date.UTC(2025, 0, 1)) {
    this.#nowMs = startMs;
  }

  now(): number {
    return this.#nowMs;
  }

  schedule(delayMs: number, run: () => void): () => void {
    const timer: Timer = { dueMs: this.#nowMs + Math.max(0, delayMs), order: this.#order++, run, cancelled: false };
    this.#timers.push(timer);
    return () => {
      timer.cancelled = true;
    };
  }

  /** Timers still waiting (not cancelled). */
  get pendingTimers(): number {
    return this.#timers.filter((timer) => !timer.cancelled).length;
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due on the way, in order; `settle`
   * runs after each so that what a timer starts can schedule the next one inside the same span.
   */
  async advance(ms: number, settle: () => Promise<void>): Promise<void> {
    const targetMs = this.#nowMs + ms;
    for (;;) {
      this.#timers = this.#timers.filter((timer) => !timer.cancelled);
      let next: Timer | undefined;
      for (const timer of this.#timers) {
        if (timer.dueMs > targetMs) continue;
        if (next === undefined || timer.dueMs < next.dueMs || (timer.dueMs === next.dueMs && timer.order < next.order)) next = timer;
      }
      if (next === undefined) break;
      next.cancelled = true;
      this.#nowMs = Math.max(this.#nowMs, next.dueMs);
      next.run();
      await settle();
    }
    this.#nowMs = targetMs;
  }
}

/** A simulated process's clock (Clock for the relay and staging, ClientTimers for the client). */
export class ProcessClock implements Clock, ClientTimers {
  #alive = true;

  constructor(private readonly clock: ManualClock) {}

  now(): number {
    return this.clock.now();
  }

  schedule(delayMs: number, run: () => void): () => void {
    if (!this.#alive) return () => undefined;
    return this.clock.schedule(delayMs, () => {
      if (this.#alive) run();
    });
  }

  /** The process died: nothing it scheduled runs any more. */
  kill(): void {
    this.#alive = false;
  }
}
