/**
 * The client's activity log (DESIGN.md, client write path): the extents of the volumes that may
 * hold writes in flight, kept durably next to the change map, so that after a crash (SIGKILL,
 * power loss) the client knows which extents may differ between primary and replica: a write may
 * have been logged at staging and not written locally, or written locally and not logged.
 *
 * The guarantee: when enter() has resolved for a write, every extent the write touches is in the
 * durable set, and stays there at least until the write's leave() was called. A crash at any
 * point therefore leaves every extent a completed-or-in-flight write touched in the set
 * (completed writes: until they go cold, which needs them durable on the primary — flushData —
 * while they are durable at staging already, so primary and replica agree on them).
 *
 * Slots: a slot is a range of extents of one change-map region. A write to extents that are all
 * in durable slots costs a map lookup, no I/O. Otherwise it waits for one slot covering all of
 * its extents (and, for a sequential stream, clientActivitySequentialExtents ahead; slots may
 * overlap), holding no other slot meanwhile, so writes waiting for room never deadlock a full
 * table. A new slot waits for the next log write, which writes the whole table into the other
 * copy (activity-format.ts) and flushes. New slots arriving while one log write runs share the
 * next one (group commit).
 *
 * Going cold, lazily: a slot with no write in flight and none for coldMs is dropped from the
 * table the next time the log is written for a new slot, never by a write of its own. When the
 * table is full, the least recently used idle slot is dropped; when every slot has a write in
 * flight, new slots wait until one goes idle. Dropping a slot in memory before the disk forgets
 * it is safe: the disk set is always a superset of what writes in flight rely on. A completed
 * write may still sit in a volatile cache of the primary (a page cache, a disk cache): with
 * `flushData` the primaries are flushed first, and only slots whose last write ended before that
 * flush began are dropped, so a power loss never takes a write the log already forgot.
 *
 * Shutdown: closeClean() writes a clean, empty table (with the regions whose resync set may be
 * open); a log found not clean at open gives its slots as `recovery.ranges`, kept (pinned) in the
 * table until releaseRecovered(), so a second crash before they were dealt with finds them again.
 *
 * Not guaranteed: anything about writes entered without waiting for enter(); I/O errors of the
 * log fail the writes waiting for it (nothing retries on its own: the next write retries).
 */
import { assert } from "../assert.ts";
import { clientActivityColdMs, clientActivityCopyBytes, clientActivityExtentBytes, clientActivitySequentialExtents, clientActivitySlotsMax, directIoAlignmentBytes } from "../constants.ts";
import { DruvaaError, exitCodes } from "../errors.ts";
import type { BlockDevice } from "../io/block-device.ts";
import { alignedBuffer } from "../io/handle-device.ts";
import { chooseActivityTable, decodeActivityTable, encodeActivityTable, slotCapacity, type ActivitySlotRecord, type ActivityTable } from "./activity-format.ts";
import { coveringSlot, idleSlotsToDrop, Slot, type ActiveRange, type ActivityLogOptions, type ActivityRecovery, type ActivityStatus, type LeaveActivity } from "./activity-types.ts";

export type { ActiveRange, ActivityLogOptions, ActivityRecovery, ActivityRegion, ActivityStatus, LeaveActivity } from "./activity-types.ts";

const noop: LeaveActivity = () => undefined;

export class ActivityLog {
  readonly recovery: ActivityRecovery;
  readonly extentBytes: number;
  readonly slotsMax: number;
  readonly #device: BlockDevice;
  readonly #options: ActivityLogOptions;
  readonly #now: () => number;
  readonly #coldMs: number;
  readonly #sequentialExtents: number;
  readonly #regionIndex = new Map<string, number>();
  readonly #lastExtent: number[];
  /** Per region: extent index -> the slot that covers it. */
  readonly #byExtent: Map<number, Slot>[];
  readonly #slots = new Set<Slot>();
  readonly #waiting: Slot[] = [];
  /** Recovered slots, pinned until released, each with the range recovery.ranges gives for it. */
  readonly #pinned: { range: ActiveRange; slot: Slot }[] = [];
  readonly #buffer: Uint8Array;
  #durableSequence: number;
  #writing: Promise<void> | undefined;
  #kickQueued = false;
  #closed = false;
  #writes = 0;
  #dataFlushes = 0;
  /** Counts leaves: a flushData begun at count N covers every slot whose lastLeave ≤ N. */
  #leaves = 0;
  #waitsForRoom = 0;
  #recoveredExtents = 0;

  private constructor(device: BlockDevice, options: ActivityLogOptions, previous: ActivityTable | undefined) {
    this.#device = device;
    this.#options = options;
    this.extentBytes = options.extentBytes ?? clientActivityExtentBytes;
    this.slotsMax = Math.min(options.slotsMax ?? clientActivitySlotsMax, slotCapacity(device.sizeBytes / 2));
    assert(this.slotsMax >= 2, "the activity log holds at least two slots");
    this.#now = options.now ?? Date.now;
    this.#coldMs = options.coldMs ?? clientActivityColdMs;
    this.#sequentialExtents = options.sequentialExtents ?? clientActivitySequentialExtents;
    options.regions.forEach((region, index) => this.#regionIndex.set(region.name, index));
    this.#lastExtent = options.regions.map((region) => Math.max(0, Math.ceil(region.volumeSizeBytes / this.extentBytes) - 1));
    this.#byExtent = options.regions.map(() => new Map<number, Slot>());
    this.#buffer = alignedBuffer(device.sizeBytes / 2, directIoAlignmentBytes);
    this.#durableSequence = previous?.sequence ?? 0;
    this.recovery = this.#recover(previous);
  }

  /** The activity log's size on its device (two copies). */
  static sizeBytes(copyBytes = clientActivityCopyBytes): number {
    return 2 * copyBytes;
  }

  /**
   * Opens the log on `device` (two copies: device.sizeBytes / 2 each) and reads what the last run
   * left (recovery). Writes nothing: start() does. Refuses ACTIVITY_LOG_CORRUPT (activity-format.ts)
   * and ACTIVITY_LOG_MISMATCH (an unclean log of another change map: its extents cannot be named).
   */
  static async open(device: BlockDevice, options: ActivityLogOptions): Promise<ActivityLog> {
    const copyBytes = device.sizeBytes / 2;
    if (!Number.isInteger(copyBytes) || copyBytes % directIoAlignmentBytes !== 0 || slotCapacity(copyBytes) < 2) {
      throw new DruvaaError("ACTIVITY_LOG_CORRUPT", `${device.name}: ${device.sizeBytes} bytes is not the size of an activity log`, `Outside damage, or not an activity log: remove ${device.name} (if the client did not shut down cleanly, resync the whole device)`, exitCodes.refused);
    }
    const bytes = await device.read(0, device.sizeBytes);
    const previous = chooseActivityTable(device.name, [decodeActivityTable(bytes.subarray(0, copyBytes)), decodeActivityTable(bytes.subarray(copyBytes))]);
    if (previous !== undefined && previous.changeMapUuid !== options.changeMapUuid.toLowerCase() && !previous.clean) {
      throw new DruvaaError(
        "ACTIVITY_LOG_MISMATCH",
        `${device.name}: the activity log belongs to change map ${previous.changeMapUuid}, not ${options.changeMapUuid}, and that client did not shut down cleanly`,
        `Was the change map re-created? Then the extents that client was writing are unknown: remove ${device.name} and resync the whole device`,
        exitCodes.refused,
      );
    }
    return new ActivityLog(device, options, previous?.changeMapUuid === options.changeMapUuid.toLowerCase() ? previous : previous === undefined ? undefined : { ...previous, slots: [], openResyncRegions: options.regions.map((_, index) => index) });
  }

  #recover(previous: ActivityTable | undefined): ActivityRecovery {
    const everyRegion = this.#options.regions.map((region) => region.name);
    if (previous === undefined) return { isNew: true, clean: true, ranges: [], openResyncRegions: everyRegion };
    if (previous.clean) {
      return { isNew: false, clean: true, ranges: [], openResyncRegions: previous.openResyncRegions.filter((index) => index < everyRegion.length).map((index) => everyRegion[index]!) };
    }
    const ranges: ActiveRange[] = [];
    const now = this.#now();
    for (const record of previous.slots) {
      const region = this.#options.regions[record.regionIndex];
      if (region === undefined) throw new DruvaaError("ACTIVITY_LOG_CORRUPT", `${this.#device.name}: a slot names region ${record.regionIndex}, which the change map does not have`, `Outside damage: remove ${this.#device.name} and resync the whole device`, exitCodes.refused);
      const offsetBytes = record.firstExtent * previous.extentBytes;
      const endBytes = Math.min(region.volumeSizeBytes, (record.firstExtent + record.extentCount) * previous.extentBytes);
      if (endBytes <= offsetBytes) continue;
      const range: ActiveRange = { region: region.name, offsetBytes, lengthBytes: endBytes - offsetBytes };
      ranges.push(range);
      // Kept in the table, pinned, in this log's extent size (a superset if the size changed).
      const first = Math.floor(offsetBytes / this.extentBytes);
      const count = Math.floor((endBytes - 1) / this.extentBytes) + 1 - first;
      const slot = new Slot(record.regionIndex, first, count, now);
      slot.state = "durable";
      slot.inflight = 1;
      this.#pinned.push({ range, slot });
      this.#add(slot);
      this.#recoveredExtents += count;
    }
    return { isNew: false, clean: false, ranges, openResyncRegions: everyRegion };
  }

  /** Records durably that a run has begun (not clean), with the recovered slots still in it. */
  start(): Promise<void> {
    return this.#write({ clean: false, slots: this.#tableSlots(), openResyncRegions: [] });
  }

  /**
   * The recovered extents were dealt with (marked dirty, or verified and repaired): they may go
   * cold now. With `range` (one of recovery.ranges, by value), only that one; false if it is not
   * (or no longer) pinned.
   */
  releaseRecovered(range?: ActiveRange): boolean {
    const index = range === undefined ? 0 : this.#pinned.findIndex((p) => p.range.region === range.region && p.range.offsetBytes === range.offsetBytes && p.range.lengthBytes === range.lengthBytes);
    if (index < 0) return false;
    for (const { slot } of this.#pinned.splice(index, range === undefined ? this.#pinned.length : 1)) this.#leaveSlot(slot);
    return true;
  }

  /**
   * Before a write of [offsetBytes, offsetBytes + lengthBytes) to `region`: resolves (or, when
   * every extent is already durably active, returns at once) with the function that ends it.
   */
  enter(region: string, offsetBytes: number, lengthBytes: number): LeaveActivity | Promise<LeaveActivity> {
    if (this.#closed) return Promise.reject(new DruvaaError("ACTIVITY_LOG_CLOSED", `${this.#device.name}: the activity log is closed`));
    const regionIndex = this.#regionIndex.get(region);
    assert(regionIndex !== undefined, "writes name a region of the change map");
    if (lengthBytes <= 0) return noop;
    const first = Math.floor(offsetBytes / this.extentBytes);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / this.extentBytes);
    const byExtent = this.#byExtent[regionIndex]!;
    const now = this.#now();
    if (first === last) {
      const slot = byExtent.get(first);
      if (slot !== undefined && slot.state === "durable") {
        slot.inflight += 1;
        slot.lastUseMs = now;
        return () => this.#leaveSlot(slot);
      }
    }
    const used = new Set<Slot>();
    let durable = true;
    for (let extent = first; extent <= last && durable; extent += 1) {
      const slot = byExtent.get(extent);
      if (slot === undefined || slot.state !== "durable") durable = false;
      else used.add(slot);
    }
    if (durable) {
      for (const slot of used) {
        slot.inflight += 1;
        slot.lastUseMs = now;
      }
      return () => {
        for (const slot of used) this.#leaveSlot(slot);
      };
    }
    // Some extent is not durable yet: the write waits for ONE slot that covers all of its extents
    // (a pending one that already does, or a new one), holding nothing else meanwhile — a write
    // that held durable slots while it waited for room could deadlock a full table.
    const pending = byExtent.get(first);
    let slot: Slot;
    if (pending !== undefined && pending.state !== "durable" && pending.firstExtent <= first && last < pending.firstExtent + pending.extentCount) {
      slot = pending;
    } else {
      // A stream (the byte before the write is in an active extent, so the write continues past
      // it into a new one) activates a few extents ahead at once. A random write lands right
      // after an active extent rarely (its first bytes would have to be an extent's first bytes).
      const stream = offsetBytes > 0 && byExtent.has(Math.floor((offsetBytes - 1) / this.extentBytes));
      const end = stream ? Math.min(this.#lastExtent[regionIndex]!, last + this.#sequentialExtents - 1) : last;
      slot = new Slot(regionIndex, first, end - first + 1, now);
      this.#add(slot);
    }
    slot.inflight += 1;
    slot.lastUseMs = now;
    if (slot.state === "waiting" && !this.#waiting.includes(slot)) this.#waiting.push(slot);
    this.#kick();
    const leave = () => this.#leaveSlot(slot);
    return slot.done.then(
      () => leave,
      (error: unknown) => {
        leave();
        throw error instanceof DruvaaError ? error : new DruvaaError("ACTIVITY_LOG_IO", `${this.#device.name}: writing the activity log failed: ${String(error)}`, "Check the disk holding the change map; the write was not sent");
      },
    );
  }

  /**
   * Shutdown: writes a clean, empty table and closes the device. Only when no write is in the log
   * (nor a recovered extent still pinned): otherwise it closes without marking the log clean, so
   * the next start resyncs those extents, and answers false.
   */
  async closeClean(openResyncRegions: readonly string[]): Promise<boolean> {
    if (this.#closed) return false;
    await this.#writing?.catch(() => undefined);
    if (this.#waiting.length > 0 || [...this.#slots].some((slot) => slot.inflight > 0)) {
      await this.close();
      return false;
    }
    const indexes = openResyncRegions.map((name) => this.#regionIndex.get(name)).filter((index) => index !== undefined);
    try {
      await this.#write({ clean: true, slots: [], openResyncRegions: indexes });
    } finally {
      await this.close();
    }
    return true;
  }

  /** Closes the device without marking the log clean (the next open recovers its extents). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#writing?.catch(() => undefined);
    const closed = new DruvaaError("ACTIVITY_LOG_CLOSED", `${this.#device.name}: the activity log is closed`);
    for (const slot of this.#waiting.splice(0)) slot.settle(closed);
    await this.#device.close();
  }

  status(): ActivityStatus {
    let activeExtents = 0;
    for (const byExtent of this.#byExtent) activeExtents += byExtent.size;
    return { extentBytes: this.extentBytes, slotsMax: this.slotsMax, activeSlots: this.#slots.size, activeExtents, writes: this.#writes, dataFlushes: this.#dataFlushes, waitsForRoom: this.#waitsForRoom, recoveredExtents: this.#recoveredExtents };
  }

  // ---- internals ------------------------------------------------------------------------------

  #add(slot: Slot): void {
    this.#slots.add(slot);
    const byExtent = this.#byExtent[slot.regionIndex]!;
    for (let extent = slot.firstExtent; extent < slot.firstExtent + slot.extentCount; extent += 1) {
      if (!byExtent.has(extent)) byExtent.set(extent, slot);
    }
  }

  #drop(slot: Slot): void {
    this.#slots.delete(slot);
    const byExtent = this.#byExtent[slot.regionIndex]!;
    for (let extent = slot.firstExtent; extent < slot.firstExtent + slot.extentCount; extent += 1) {
      if (byExtent.get(extent) !== slot) continue;
      // Slots may overlap (a write waits for one slot covering all its extents): another may cover it.
      const other = coveringSlot(this.#slots, slot.regionIndex, extent);
      if (other === undefined) byExtent.delete(extent);
      else byExtent.set(extent, other);
    }
  }

  #leaveSlot(slot: Slot): void {
    assert(slot.inflight > 0, "leave once per enter");
    slot.inflight -= 1;
    slot.lastUseMs = this.#now();
    slot.lastLeave = ++this.#leaves;
    if (slot.inflight > 0) return;
    // Its log write failed and every write waiting for it gave up: nobody needs it any more.
    if (slot.state === "waiting" && !this.#waiting.includes(slot)) this.#drop(slot);
    if (this.#waiting.length > 0) this.#kick();
  }

  #kick(): void {
    if (this.#writing !== undefined || this.#kickQueued || this.#waiting.length === 0) return;
    this.#kickQueued = true;
    queueMicrotask(() => {
      this.#kickQueued = false;
      if (this.#writing !== undefined || this.#closed) return;
      const writing = this.#writeWaiting();
      this.#writing = writing.then(() => undefined);
      void writing.then((wrote) => {
        this.#writing = undefined;
        // More slots arrived meanwhile. Without progress (no room) only a leave() kicks again.
        if (wrote) this.#kick();
      });
    });
  }

  /**
   * Drops cold and (if needed for room) least recently used idle slots, then writes the waiting
   * ones that fit. Never rejects; false when nothing could be written (no room, or an I/O error).
   */
  async #writeWaiting(): Promise<boolean> {
    const dropped = await this.#dropIdle();
    if (dropped instanceof Error) {
      // The primaries could not be flushed: no room can be made safely; the writes waiting fail.
      for (const slot of this.#waiting.splice(0)) slot.settle(dropped);
      return false;
    }
    // Slots whose write gave up (waiters gone) are dropped rather than written for nobody.
    for (const slot of this.#waiting.filter((s) => s.inflight === 0)) {
      this.#waiting.splice(this.#waiting.indexOf(slot), 1);
      this.#drop(slot);
    }
    const room = Math.max(0, this.slotsMax - (this.#slots.size - this.#waiting.length));
    if (room < this.#waiting.length) this.#waitsForRoom += this.#waiting.length - room;
    const batch = this.#waiting.splice(0, room);
    // Every slot is busy: the next leave() kicks again; slots that went idle during the data flush: flush again.
    if (batch.length === 0) return dropped === "again";
    for (const slot of batch) slot.state = "writing";
    try {
      await this.#write({ clean: false, slots: this.#tableSlots(), openResyncRegions: [] });
    } catch (error) {
      for (const slot of batch) slot.settle(error);
      return false;
    }
    for (const slot of batch) slot.settle();
    return true;
  }

  /**
   * Drops the cold idle slots, and least recently used idle ones while the waiting slots would
   * not fit. With flushData, only slots whose writes a data flush covers: one flush first, then
   * the slots idle since it began; a failed flush drops nothing (the log keeps more, never less)
   * and answers its error. "again": slots that went idle during the flush were kept.
   */
  async #dropIdle(): Promise<"done" | "again" | Error> {
    let drops = idleSlotsToDrop(this.#slots, this.#waiting.length, this.slotsMax, this.#now(), this.#coldMs);
    if (drops.length === 0) return "done";
    let kept = false;
    if (this.#options.flushData !== undefined) {
      const covered = this.#leaves;
      try {
        await this.#options.flushData();
      } catch (error) {
        // The writes may not be durable: their extents stay in the log.
        return new DruvaaError("ACTIVITY_LOG_IO", `${this.#device.name}: flushing the volumes before extents leave the activity log failed: ${error instanceof Error ? error.message : String(error)}`, "Check the primary devices; the write was not sent");
      }
      this.#dataFlushes += 1;
      const safe = drops.filter((slot) => this.#slots.has(slot) && slot.inflight === 0 && slot.lastLeave <= covered);
      kept = safe.length < drops.length;
      drops = safe;
    }
    for (const slot of drops) this.#drop(slot);
    return kept ? "again" : "done";
  }

  /** The table as it must be on disk: every slot durable or being written. */
  #tableSlots(): ActivitySlotRecord[] {
    const slots: ActivitySlotRecord[] = [];
    for (const slot of this.#slots) if (slot.state !== "waiting") slots.push({ regionIndex: slot.regionIndex, firstExtent: slot.firstExtent, extentCount: slot.extentCount });
    return slots;
  }

  /** One table write into the copy its sequence selects, then a flush. A failed write is retried with the same sequence. */
  async #write(table: Omit<ActivityTable, "sequence" | "changeMapUuid" | "extentBytes">): Promise<void> {
    const sequence = this.#durableSequence + 1;
    encodeActivityTable({ ...table, sequence, changeMapUuid: this.#options.changeMapUuid.toLowerCase(), extentBytes: this.extentBytes }, this.#buffer);
    await this.#device.write((sequence % 2) * this.#buffer.length, this.#buffer);
    await this.#device.flush();
    this.#durableSequence = sequence;
    this.#writes += 1;
  }
}
