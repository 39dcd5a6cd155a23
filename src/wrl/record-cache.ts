/**
 * Recent records kept in memory so the relay reads them without touching the disk. Records enter
 * when they are appended (in LSN order, so the cache is one contiguous LSN range) and leave from
 * the old end: when the tail passes them or when the cache is over its byte budget. Payloads are
 * the appender's own buffers (no copy), which is why append() takes ownership of `data`.
 */
import { assert } from "../assert.ts";
import type { WrlRecord } from "./types.ts";

export interface CachedRecord {
  record: WrlRecord;
  /** Log position of the record and just past it. */
  start: number;
  end: number;
  incarnation: number;
}

/** Rough bookkeeping cost of one entry beyond its payload, so tiny records are bounded too. */
const entryOverheadBytes = 256;

export class RecordCache {
  private entries: Array<CachedRecord | undefined> = [];
  /** Index in `entries` of the oldest live entry (amortised O(1) removal from the front). */
  private first = 0;
  private bytes = 0;

  constructor(private readonly bytesMax: number) {}

  get firstLsn(): number | undefined {
    return this.entries[this.first]?.record.lsn;
  }

  add(entry: CachedRecord): void {
    const last = this.entries[this.entries.length - 1];
    if (last !== undefined) assert(entry.record.lsn === last.record.lsn + 1, "cache holds a contiguous LSN range");
    this.entries.push(entry);
    this.bytes += entry.record.data.length + entryOverheadBytes;
    while (this.bytes > this.bytesMax && this.first < this.entries.length - 1) this.dropFirst();
  }

  get(lsn: number): CachedRecord | undefined {
    const firstLsn = this.firstLsn;
    if (firstLsn === undefined || lsn < firstLsn) return undefined;
    return this.entries[this.first + (lsn - firstLsn)];
  }

  /**
   * Forgets every record with LSN <= lsn (freed by the tail), handing each payload to `freed`.
   * Records evicted earlier for the byte budget are not handed over: a reader may still hold them.
   */
  dropThrough(lsn: number, freed?: (data: Uint8Array) => void): void {
    while (this.first < this.entries.length && this.entries[this.first]!.record.lsn <= lsn) {
      freed?.(this.entries[this.first]!.record.data);
      this.dropFirst();
    }
    if (this.first === this.entries.length) this.clear();
  }

  clear(): void {
    this.entries = [];
    this.first = 0;
    this.bytes = 0;
  }

  private dropFirst(): void {
    const entry = this.entries[this.first]!;
    this.bytes -= entry.record.data.length + entryOverheadBytes;
    this.entries[this.first] = undefined; // let the payload go now, not at the next compaction
    this.first += 1;
    if (this.first > 1024 && this.first * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.first);
      this.first = 0;
    }
  }
}
