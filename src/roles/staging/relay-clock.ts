/**
 * Time for the relay (relay.ts): the Clock it is given (the real one, or a simulation's), and
 * the Signal its loops wait on, woken by events or by the clock.
 */

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Runs `run` after `delayMs`; the returned function cancels it (so nothing keeps a stopping process alive). */
  schedule(delayMs: number, run: () => void): () => void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  schedule(delayMs, run) {
    const timer = setTimeout(run, delayMs);
    return () => clearTimeout(timer);
  },
};

/** A one-shot wake-up that many events may trigger; waiting with a timeout never busy-loops. */
export class Signal {
  #wake: (() => void) | undefined;
  #pending = false;
  wake(): void {
    this.#pending = true;
    this.#wake?.();
  }
  wait(clock: Clock, timeoutMs: number): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      let cancel: (() => void) | undefined;
      const done = () => {
        if (this.#wake !== done) return;
        this.#wake = undefined;
        this.#pending = false;
        cancel?.();
        resolve();
      };
      this.#wake = done;
      cancel = clock.schedule(timeoutMs, done);
    });
  }
}
