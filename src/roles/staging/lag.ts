/**
 * Replication lag of one WRL: how many bytes, and how old the oldest record, the replica has not
 * acknowledged yet. Kept in memory only, as ranges of consecutive LSNs appended within
 * stagingLagSampleIntervalMs of each other: memory follows the time the backlog spans, not its
 * record count (a WRL of a million 4 KiB records costs a few thousand entries).
 *
 * What it guarantees: lagBytes() is 0 and lagSeconds() is 0 exactly when everything noted was
 * acknowledged; lagSeconds() never under-states the age of the oldest unacknowledged record
 * (a range carries the time of its first record, and merging keeps the older time).
 * What it does not: exact bytes inside a partly acknowledged range (counted pro rata), and exact
 * ages or bytes for records recovered after a restart — those count as appended at recovery
 * time, with the log space they occupy (record headers included) as their bytes.
 *
 * Running totals for the RPO tracker's drain rate (rpo.ts): appendedBytes (payload bytes appended
 * since the start; recovered records are not counted, they were appended before) and ackedBytes
 * (bytes that left the lag since the start, recovered ones included). Only the oldest live range
 * can be partly acknowledged (acks free a prefix), so lagBytes() and both totals are O(1).
 */
import { assert } from "../../assert.ts";
import { stagingLagRangesMax, stagingLagSampleIntervalMs } from "../../constants.ts";

interface LagRange {
  firstLsn: number;
  lastLsn: number;
  bytes: number;
  /** When the range's first record was appended (ms since the epoch). */
  atMs: number;
}

export class LagTracker {
  #ranges: LagRange[] = [];
  /** Index of the oldest live range in #ranges (amortised O(1) removal at the front). */
  #first = 0;
  #ackedLsn = 0;
  /** Bytes of every live range, whole (the oldest may be partly acknowledged). */
  #liveBytes = 0;
  #appendedBytes = 0;
  #ackedBytes = 0;

  constructor(private readonly rangesMax = stagingLagRangesMax, private readonly sampleIntervalMs = stagingLagSampleIntervalMs) {
    assert(rangesMax >= 2, "at least two ranges, so merging makes room");
  }

  /** Records firstLsn..lastLsn, found in the WRL when it was opened, count from `nowMs`. */
  recovered(firstLsn: number, lastLsn: number, bytes: number, nowMs: number): void {
    if (lastLsn < firstLsn) return;
    this.#push({ firstLsn, lastLsn, bytes, atMs: nowMs });
  }

  /** Record `lsn` (of `bytes` payload) was appended at `nowMs`. LSNs above everything noted so far. */
  appended(lsn: number, bytes: number, nowMs: number): void {
    this.#appendedBytes += bytes;
    if (lsn <= this.#ackedLsn) {
      this.#ackedBytes += bytes; // acknowledged before its append resolved here: nothing to wait for
      return;
    }
    const last = this.#ranges[this.#ranges.length - 1];
    if (last !== undefined && this.#ranges.length > this.#first) {
      assert(lsn > last.lastLsn, `appends are noted in LSN order (${lsn} after ${last.lastLsn})`);
      if (lsn === last.lastLsn + 1 && nowMs - last.atMs < this.sampleIntervalMs) {
        last.lastLsn = lsn;
        last.bytes += bytes;
        this.#liveBytes += bytes;
        return;
      }
    }
    this.#push({ firstLsn: lsn, lastLsn: lsn, bytes, atMs: nowMs });
  }

  /** The replica acknowledged everything up to `lsn`. */
  acked(lsn: number): void {
    if (lsn <= this.#ackedLsn) return;
    const lagBefore = this.lagBytes();
    this.#ackedLsn = lsn;
    while (this.#first < this.#ranges.length && this.#ranges[this.#first]!.lastLsn <= lsn) {
      this.#liveBytes -= this.#ranges[this.#first]!.bytes;
      this.#ranges[this.#first] = undefined as unknown as LagRange;
      this.#first += 1;
    }
    if (this.#first === this.#ranges.length) {
      this.#ranges = [];
      this.#first = 0;
    } else if (this.#first > 1024 && this.#first * 2 > this.#ranges.length) {
      this.#ranges = this.#ranges.slice(this.#first);
      this.#first = 0;
    }
    this.#ackedBytes += lagBefore - this.lagBytes();
  }

  get ackedLsn(): number {
    return this.#ackedLsn;
  }

  /** Bytes of records not acknowledged yet (0 when drained). */
  lagBytes(): number {
    const oldest = this.#ranges[this.#first];
    if (oldest === undefined || oldest.firstLsn > this.#ackedLsn) return this.#liveBytes;
    // Partly acknowledged: its bytes pro rata (the range does not know each record's size).
    const count = oldest.lastLsn - oldest.firstLsn + 1;
    return this.#liveBytes - oldest.bytes + Math.round((oldest.bytes * (oldest.lastLsn - this.#ackedLsn)) / count);
  }

  /** Payload bytes appended since the start (records recovered at the start not counted). */
  get appendedBytes(): number {
    return this.#appendedBytes;
  }

  /** Bytes that the replica acknowledged since the start (recovered records included). */
  get ackedBytes(): number {
    return this.#ackedBytes;
  }

  /** Age of the oldest record not acknowledged yet, in seconds (0 when drained). */
  lagSeconds(nowMs: number): number {
    const oldest = this.#ranges[this.#first];
    if (oldest === undefined) return 0;
    return Math.max(0, (nowMs - oldest.atMs) / 1000);
  }

  /** Live ranges (for tests of the memory bound). */
  get rangeCount(): number {
    return this.#ranges.length - this.#first;
  }

  #push(range: LagRange): void {
    if (this.#first > 0 && this.#first === this.#ranges.length) {
      this.#ranges = [];
      this.#first = 0;
    }
    this.#ranges.push(range);
    this.#liveBytes += range.bytes;
    if (this.rangeCount > this.rangesMax) this.#halve();
  }

  /** Merges neighbouring ranges pairwise: half the entries, the older time of each pair kept. */
  #halve(): void {
    const live = this.#ranges.slice(this.#first);
    const merged: LagRange[] = [];
    for (let index = 0; index < live.length; index += 2) {
      const a = live[index]!;
      const b = live[index + 1];
      merged.push(b === undefined ? a : { firstLsn: a.firstLsn, lastLsn: b.lastLsn, bytes: a.bytes + b.bytes, atMs: Math.min(a.atMs, b.atMs) });
    }
    this.#ranges = merged;
    this.#first = 0;
  }
}
