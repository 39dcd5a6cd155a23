/**
 * The relay's side of a split (split.ts): a RelayPause each relay holds from the split until the
 * join, so no session runs and nothing ships while the WRL keeps logging writes. It is a pause of
 * its own, beside the relay's failback pause, so a POST /wrl/discard still runs on a split WRL
 * instead of queueing behind the split until the join.
 *
 * Splits are kept per WRL log object (not per name; nothing is shared between cores), and so are
 * the relays: a relay made for a split WRL later — one replacing another when a managed WRL's
 * relay settings change (core.changeRelay) — holds from its construction, so it never ships a
 * record before the join. A stopped relay lets go of its hold.
 */
import type { DruvaaError } from "../../errors.ts";
import { RelayPause } from "./relay-pause.ts";

/** The split WRL logs, each with the promise that settles at its join. */
const splitLogs = new WeakMap<object, Promise<void>>();
/** The relays (their split pauses) of each WRL log not stopped yet. */
const pausesOf = new WeakMap<object, Set<SplitPause>>();

/**
 * Splits `wrl` until `joined` settles: every relay of it holds (and every one made meanwhile).
 * Resolves once each has ended the session it was running.
 */
export async function holdRelays(wrl: object, joined: Promise<void>): Promise<void> {
  splitLogs.set(wrl, joined);
  await Promise.all([...(pausesOf.get(wrl) ?? [])].map((pause) => pause.hold(joined)));
}

/** `wrl` is joined: relays made from now on do not hold (the caller settles `joined`). */
export function forgetSplit(wrl: object): void {
  splitLogs.delete(wrl);
}

export class SplitPause extends RelayPause {
  readonly #wrl: object;
  readonly #endSession: (reason: DruvaaError) => void;
  readonly #wake: () => void;
  readonly #stopped = Promise.withResolvers<void>();
  #until: Promise<void> | undefined;
  #holding: Promise<void> = Promise.resolve();

  /** A relay's split pause: `endSession` ends its running session, `wake` starts the next one. */
  constructor(wrl: object, endSession: (reason: DruvaaError) => void, wake: () => void) {
    super();
    this.#wrl = wrl;
    this.#endSession = endSession;
    this.#wake = wake;
    let pauses = pausesOf.get(wrl);
    if (pauses === undefined) pausesOf.set(wrl, (pauses = new Set()));
    pauses.add(this);
    const joined = splitLogs.get(wrl);
    if (joined !== undefined) void this.hold(joined);
  }

  /**
   * Holds until `until` settles or stop(); resolves once the session that was running has ended.
   * Holding again for the same `until` is the same hold.
   */
  hold(until: Promise<void>): Promise<void> {
    if (this.#until === until && this.held) return this.#holding;
    this.#until = until;
    const held = Promise.withResolvers<void>();
    const released = Promise.race([until, this.#stopped.promise]);
    void this.run(this.#endSession, this.#wake, () => {
      held.resolve();
      return released;
    });
    this.#holding = held.promise;
    return held.promise;
  }

  /** The relay stops: its hold ends (a restart holds again from the saved split: split.ts). */
  stop(): void {
    pausesOf.get(this.#wrl)?.delete(this);
    this.#stopped.resolve();
  }
}
