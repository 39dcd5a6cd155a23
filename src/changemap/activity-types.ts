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
  /**
   * Makes every completed write to the volumes durable (flushes the primaries). A slot leaves the
   * durable table only after a flush that began after its last write ended: a write that
   * completed into a volatile cache and is lost with the power would otherwise leave the primary
   * behind the replica in an extent the log no longer names. Without it, completed writes are
   * taken as durable (the volumes write through).
   */
  flushData?: () => Promise<void>;
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
  /** Flushes of the volumes (flushData) before slots left the table, since open. */
  dataFlushes: number;
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
  /** The log's leave counter when the slot's last write ended (flushData covers it if it began later). */
  lastLeave = 0;
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

/**
 * The idle durable slots to drop before a table write: the cold ones, then the least recently
 * used while the waiting slots would not fit in `slotsMax`.
 */
export function idleSlotsToDrop(slots: ReadonlySet<Slot>, waiting: number, slotsMax: number, nowMs: number, coldMs: number): Slot[] {
  const drops: Slot[] = [];
  const warm: Slot[] = [];
  for (const slot of slots) {
    if (slot.inflight === 0 && slot.state === "durable") (nowMs - slot.lastUseMs >= coldMs ? drops : warm).push(slot);
  }
  let settled = slots.size - waiting - drops.length;
  for (const slot of warm.sort((a, b) => a.lastUseMs - b.lastUseMs)) {
    if (settled + waiting <= slotsMax) break;
    drops.push(slot);
    settled -= 1;
  }
  return drops;
}

/** A slot of `slots` covering `extent` of region `regionIndex`, a durable one if there is one. */
export function coveringSlot(slots: Iterable<Slot>, regionIndex: number, extent: number): Slot | undefined {
  let found: Slot | undefined;
  for (const slot of slots) {
    if (slot.regionIndex === regionIndex && slot.firstExtent <= extent && extent < slot.firstExtent + slot.extentCount && (found === undefined || slot.state === "durable")) found = slot;
  }
  return found;
}
