/**
 * Epoch assignment for partial write order (DESIGN.md, "Partial write order").
 *
 * Write B depends on write A when A completed (was acknowledged to the application) before B was
 * issued. The assigner keeps a counter E and a flag `completedSinceBump`:
 *   - on issue:    if the flag is set, E += 1 and clear it; the write gets epoch E;
 *   - on complete: set the flag.
 * Hence A → B implies epoch(A) < epoch(B), and writes sharing an epoch were all in flight together
 * (none depends on another). No clocks, no global serialisation. One assigner is shared by every
 * device of a client process, so the order holds across its devices.
 *
 * Not guaranteed: epoch(A) < epoch(B) does NOT imply A → B (epochs over-approximate the order,
 * which is safe: replay never reorders dependent writes, it just may serialise independent ones).
 */
export class EpochAssigner {
  private epoch: number;
  private completedSinceBump = false;

  /** `startEpoch`: the first epoch handed out, e.g. one past the highest persisted epoch. */
  constructor(startEpoch = 1) {
    this.epoch = startEpoch;
  }

  /** Called when a write is issued (before it is sent anywhere). Returns its epoch. */
  issue(): number {
    if (this.completedSinceBump) {
      this.epoch += 1;
      this.completedSinceBump = false;
    }
    return this.epoch;
  }

  /** Called when a write has been acknowledged to the application. */
  complete(): void {
    this.completedSinceBump = true;
  }

  /** The epoch the next issue() would return if nothing completes meanwhile. */
  get current(): number {
    return this.completedSinceBump ? this.epoch + 1 : this.epoch;
  }
}
