/**
 * The activity log's types (activity-log.ts) and its in-memory slot: a range of extents of one
 * region, with the writes in it and whether it is on disk yet.
 */
export interface ActivityRegion {
  name: string;
  volumeSizeBytes: number;
}

export interface ActivityLogOptions {
  changeMapUuid: string;
  /** Every region of the change map, in the map's order (a slot names its region by index). */
  regions: readonly ActivityRegion[];
  extentBytes?: number;
  slotsMax?: number;
  coldMs?: number;
  sequentialExtents?: number;
  /** Milliseconds, for going cold (default Date.now). */
  now?: () => number;
}

/** A byte range of one region's volume. */
export interface ActiveRange {
  region: string;
  offsetBytes: number;
  lengthBytes: number;
}

export interface ActivityRecovery {
  /** No log existed (or it was never written): nothing is known about an earlier run. */
  isNew: boolean;
  /** The earlier run shut down cleanly. */
  clean: boolean;
  /** The extents an unclean run may have had writes in flight on (empty when clean). */
  ranges: ActiveRange[];
  /** Regions whose resync set may be open at the replica (every region when unknown). */
  openResyncRegions: string[];
}

export interface ActivityStatus {
  extentBytes: number;
  slotsMax: number;
  activeSlots: number;
  /** Extents a write may enter without a log write (or waiting for one already under way). */
  activeExtents: number;
  /** Log writes (each one flush) since open. */
  writes: number;
  /** New slots that had to wait because every slot had a write in flight. */
  waitsForRoom: number;
  /** Extents recovered from an unclean shutdown at open. */
  recoveredExtents: number;
}

/** Ends a write's stay in its extents. Call exactly once. */
export type LeaveActivity = () => void;

/**
 * A range of extents in the log. waiting: not yet in a table write; writing: in the table write
 * under way; durable: in the table on disk. `done` resolves when it is durable, and is renewed
 * after a failed write (the waiters of that write were rejected).
 */
export class Slot {
  inflight = 0;
  state: "waiting" | "writing" | "durable" = "waiting";
  done!: Promise<void>;
  #resolve!: () => void;
  #reject!: (error: unknown) => void;
  constructor(readonly regionIndex: number, readonly firstExtent: number, readonly extentCount: number, public lastUseMs: number) {
    this.renew();
  }
  renew(): void {
    this.done = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.done.catch(() => undefined); // waiters see it through their own await
  }
  settle(error?: unknown): void {
    if (error === undefined) {
      this.state = "durable";
      this.#resolve();
      return;
    }
    this.state = "waiting";
    this.#reject(error);
    this.renew();
  }
}
