/**
 * Pausing a relay (relay.ts) to change the WRL under it (POST /wrl/discard, failback.ts): the
 * session running is ended (what it had in flight or queued is dropped, as after any session
 * end), no new one starts while a pause holds, and the next one resumes from what the replica
 * says it applied, at or after the WRL's tail. Pauses run one at a time, in call order.
 */
import { DruvaaError } from "../../errors.ts";

const pausedCode = "RELAY_PAUSED";

/** The reason a paused session was ended with: not an error (no lastError, no backoff). */
export function isPauseEnd(error: unknown): boolean {
  return error instanceof DruvaaError && error.code === pausedCode;
}

export class RelayPause {
  #holders = 0;
  #chain: Promise<void> = Promise.resolve();
  /** Settles when the session running (if any) has ended. */
  #sessionEnded: Promise<void> = Promise.resolve();

  /** Whether a pause holds (or waits for its turn): no session may start or go on. */
  get held(): boolean {
    return this.#holders > 0;
  }

  /** Resolves once no pause holds. */
  async released(): Promise<void> {
    while (this.#holders > 0) await this.#chain;
  }

  /** A session runs until `session` settles. */
  running(session: Promise<void>): void {
    this.#sessionEnded = session.then(() => undefined, () => undefined);
  }

  /**
   * Runs `task` with no session running: `endSession` is called with the reason to end the
   * current one, then `task` runs once it has ended; `wake` is called after (the relay then
   * starts a session without waiting out its backoff).
   */
  async run<T>(endSession: (reason: DruvaaError) => void, wake: () => void, task: () => Promise<T>): Promise<T> {
    this.#holders += 1;
    const turn = this.#chain;
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    this.#chain = turn.then(() => finished);
    try {
      await turn;
      endSession(new DruvaaError(pausedCode, "the relay was paused to change the WRL (druvaa failback)"));
      await this.#sessionEnded;
      return await task();
    } finally {
      this.#holders -= 1;
      done();
      wake();
    }
  }
}
