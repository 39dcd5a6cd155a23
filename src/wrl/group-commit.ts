/**
 * Group commit: turns reserved records into durable, acknowledged ones.
 *
 * Two loops. The pump takes the open batch (everything appended since it last looked), encodes
 * its records into the batch buffer and hands them to the device in writes of about
 * wrlWriteChunkBytes, each issued as soon as its records are checksummed. The flusher waits for
 * the oldest writes to complete, issues one flush per device they touched, and then resolves
 * every append whose record is in that written prefix: an append resolves only after a flush
 * that started after its write completed. While one flush runs, the pump encodes and writes the
 * next records, so checksumming, transfers and flushes overlap; every flush covers whatever was
 * written before it started, which is the "group" of group commit.
 *
 * Bounds: at most wrlUnflushedBytesMax written and not yet durable (one larger batch on its own
 * is allowed), batches of at most wrlGroupCommitAppendsMax appends, and back-pressure on append()
 * past wrlPendingAppendsMax / wrlPendingBytesMax reserved and not yet durable.
 *
 * Every record carries the durable LSN at the time it was encoded: a record proves that every
 * LSN up to that one had been acknowledged before it was written (recovery rule R8).
 *
 * After any I/O error everything not yet acknowledged is rejected and nothing more is written.
 */
import { assert } from "../assert.ts";
import type { BlockDevice } from "../io/block-device.ts";
import type { DruvaaError } from "../errors.ts";
import { wrlPendingAppendsMax, wrlUnflushedBytesMax, wrlPendingBytesMax, wrlWriteChunkBytes } from "../constants.ts";
import { Batch, BufferPool, batchCapacityBytes, type PendingRecord, type ReservedRecord } from "./batch.ts";
import type { LogGeometry } from "./geometry.ts";
import type { WrlAppendResult } from "./types.ts";

/** What the write log provides to group commit. */
export interface GroupCommitHost {
  readonly devices: readonly BlockDevice[];
  readonly geometry: LogGeometry;
  /** The last LSN acknowledged so far. */
  readonly durableLsn: number;
  /** Encodes `record` at `record.bufferStart` of `buffer`, naming `durableLsn`; returns its size. */
  encode(buffer: Uint8Array, record: PendingRecord, durableLsn: number): number;
  /** Records up to `lastLsn` are durable; the head ends at `endPosition`. */
  durable(progress: { lastLsn: number; endPosition: number; consumedBytes: number }): void;
  /** I/O failed: stop the log; returns the error appends are rejected with. */
  failed(error: unknown): DruvaaError;
}

/** A run of records written with one device write. */
interface WriteUnit {
  records: PendingRecord[];
  batch: Batch;
  deviceIndex: number;
  lastLsn: number;
  endPosition: number;
  bytes: number;
  consumedBytes: number;
  written: boolean;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export class GroupCommit {
  private pool: BufferPool;
  private openBatch: Batch | undefined;
  private sealed: Batch[] = [];
  /** The batch the pump has taken and not finished encoding (or is waiting to start). */
  private encoding: Batch | undefined;
  /** Written or being written, not yet durable, in LSN order. */
  private unflushed: WriteUnit[] = [];
  private inFlightBytes = 0;
  private pumpRunning = false;
  private flusherRunning = false;
  private progressWaiters: Array<() => void> = [];
  private admission: Array<() => void> = [];
  private drainWaiters: Array<() => void> = [];
  private failure: DruvaaError | undefined;
  /** Reserved and not yet durable. */
  pendingAppendCount = 0;
  pendingBytes = 0;

  constructor(private readonly host: GroupCommitHost) {
    this.pool = new BufferPool(batchCapacityBytes(host.geometry));
  }

  /** The log grew: batch buffers may be larger from now on. */
  reshape(): void {
    const capacityBytes = batchCapacityBytes(this.host.geometry);
    if (capacityBytes !== this.pool.capacityBytes) this.pool = new BufferPool(capacityBytes);
  }

  overloaded(): boolean {
    return this.pendingAppendCount >= wrlPendingAppendsMax || this.pendingBytes >= wrlPendingBytesMax;
  }

  /** Resolves when the caller may reserve (in arrival order); undefined when it may right away. */
  waitForRoom(): Promise<void> | undefined {
    if (this.admission.length === 0 && !this.overloaded()) return undefined;
    return new Promise<void>((resolve) => this.admission.push(resolve));
  }

  /** Lets the next waiting append reserve, if there is room (or if it must learn of a failure). */
  admitNext(closing = false): void {
    if (this.admission.length > 0 && (!this.overloaded() || this.failure !== undefined || closing)) this.admission.shift()!();
  }

  wakeAll(): void {
    for (const wake of this.admission.splice(0)) wake();
  }

  /** Queues a reserved record; resolves once it is durable. */
  enqueue(reserved: ReservedRecord): Promise<WrlAppendResult> {
    let batch = this.openBatch;
    if (batch === undefined || !batch.accepts(reserved.recordBytes)) {
      if (batch !== undefined) this.sealed.push(batch);
      batch = this.openBatch = new Batch(this.pool.take());
    }
    this.pendingAppendCount += 1;
    this.pendingBytes += reserved.recordBytes;
    const promise = batch.add(this.host.geometry, reserved);
    if (!this.pumpRunning) {
      this.pumpRunning = true;
      void this.pump();
    }
    return promise;
  }

  /** Resolves when nothing is pending (every append resolved or rejected). */
  drained(): Promise<void> {
    if (this.pendingAppendCount === 0 && !this.pumpRunning && !this.flusherRunning) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Where an unflushed unit's records end, for add-device (see WriteLog.grow). */
  patchEndPosition(lastLsn: number, endPosition: number): void {
    for (const unit of this.unflushed) if (unit.lastLsn === lastLsn) unit.endPosition = endPosition;
  }

  /** Rejects every append not yet acknowledged; nothing more is written. */
  failAll(error: DruvaaError): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    const batches = new Set<Batch>([...this.unflushed.map((u) => u.batch), ...(this.encoding ? [this.encoding] : []), ...this.sealed, ...(this.openBatch ? [this.openBatch] : [])]);
    for (const batch of batches) {
      for (const record of batch.records) {
        if (record.settled) continue;
        record.settled = true;
        record.reject(error);
      }
    }
    this.unflushed = [];
    this.sealed = [];
    this.openBatch = this.encoding = undefined;
    this.pendingAppendCount = 0;
    this.pendingBytes = 0;
    this.inFlightBytes = 0;
    this.wakeAll();
    for (const wake of this.progressWaiters.splice(0)) wake();
    this.maybeDrained();
  }

  private maybeDrained(): void {
    if (this.pendingAppendCount === 0 && !this.pumpRunning && !this.flusherRunning) for (const wake of this.drainWaiters.splice(0)) wake();
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        // One macrotask turn lets every append already on its way (writers woken by the last
        // flush) join this batch rather than trickle into the next ones.
        await nextTurn();
        if (this.failure !== undefined) break;
        const batch = this.sealed.shift() ?? this.openBatch;
        if (batch === undefined) break;
        if (batch === this.openBatch) this.openBatch = undefined;
        this.encoding = batch; // from here on failAll() finds it there
        while (this.failure === undefined && this.inFlightBytes > 0 && this.inFlightBytes + batch.bytes > wrlUnflushedBytesMax) {
          await new Promise<void>((resolve) => this.progressWaiters.push(resolve));
        }
        if (this.failure !== undefined) break;
        await this.write(batch);
      }
    } catch (error) {
      this.failAll(this.host.failed(error));
    } finally {
      this.pumpRunning = false;
      this.maybeDrained();
    }
  }

  /** Encodes and writes `batch` chunk by chunk; the flusher takes it from there. */
  private async write(batch: Batch): Promise<void> {
    this.inFlightBytes += batch.bytes;
    let next = 0;
    for (const extent of batch.extents) {
      const { segment, deviceOffsetBytes } = this.host.geometry.locate(extent.position);
      const extentEnd = extent.bufferStart + extent.lengthBytes;
      let unitStart = extent.bufferStart;
      let encodedTo = extent.bufferStart;
      let records: PendingRecord[] = [];
      while (encodedTo < extentEnd) {
        const record = batch.records[next++]!;
        assert(record.bufferStart === encodedTo, "records fill their extents in order");
        encodedTo += this.host.encode(batch.buffer, record, this.host.durableLsn);
        records.push(record);
        if (encodedTo - unitStart < wrlWriteChunkBytes && encodedTo < extentEnd) continue;
        this.issue(batch, segment.deviceIndex, deviceOffsetBytes + (unitStart - extent.bufferStart), unitStart, encodedTo, records);
        unitStart = encodedTo;
        records = [];
        // Let completions in: the flusher can start on what is written while we encode more.
        if (next < batch.records.length) await nextTurn();
        if (this.failure !== undefined) return;
      }
    }
    assert(next === batch.records.length, "every record of the batch is written");
    this.encoding = undefined;
    if (batch.writesInFlight === 0) this.pool.give(batch.buffer);
  }

  private issue(batch: Batch, deviceIndex: number, deviceOffsetBytes: number, from: number, to: number, records: PendingRecord[]): void {
    const last = records[records.length - 1]!;
    const unit: WriteUnit = {
      records,
      batch,
      deviceIndex,
      lastLsn: last.lsn,
      // Computed now, with the geometry of now: a device added since the reservation may have
      // given the end of the old log a new meaning.
      endPosition: this.host.geometry.normalize(last.start + last.recordBytes),
      bytes: to - from,
      consumedBytes: records.reduce((sum, r) => sum + r.consumedBytes, 0),
      written: false,
    };
    this.unflushed.push(unit);
    batch.writesInFlight += 1;
    const device = this.host.devices[deviceIndex];
    assert(device !== undefined, "every segment has its device");
    device.write(deviceOffsetBytes, batch.buffer.subarray(from, to)).then(
      () => {
        unit.written = true;
        batch.writesInFlight -= 1;
        if (batch.writesInFlight === 0 && batch !== this.encoding) this.pool.give(batch.buffer);
        this.startFlusher();
      },
      (error: unknown) => this.failAll(this.host.failed(error)),
    );
  }

  private startFlusher(): void {
    if (this.flusherRunning || this.failure !== undefined) return;
    this.flusherRunning = true;
    void this.flushLoop();
  }

  private async flushLoop(): Promise<void> {
    try {
      for (;;) {
        let count = 0;
        while (count < this.unflushed.length && this.unflushed[count]!.written) count += 1;
        if (count === 0 || this.failure !== undefined) break;
        const group = this.unflushed.slice(0, count);
        const deviceIndexes = [...new Set(group.map((unit) => unit.deviceIndex))];
        await Promise.all(deviceIndexes.map((index) => this.host.devices[index]!.flush()));
        if (this.failure !== undefined) break;
        this.unflushed.splice(0, count);
        for (const unit of group) {
          this.host.durable({ lastLsn: unit.lastLsn, endPosition: unit.endPosition, consumedBytes: unit.consumedBytes });
          this.inFlightBytes -= unit.bytes;
          this.pendingAppendCount -= unit.records.length;
          this.pendingBytes -= unit.bytes;
          for (const record of unit.records) {
            record.settled = true;
            record.resolve({ ok: true, lsn: record.lsn });
          }
        }
        for (const wake of this.progressWaiters.splice(0)) wake();
        this.admitNext();
      }
    } catch (error) {
      this.failAll(this.host.failed(error));
    } finally {
      this.flusherRunning = false;
      this.maybeDrained();
    }
    // A write may have completed after the last look: do not leave it waiting.
    if (this.failure === undefined && this.unflushed[0]?.written === true) this.startFlusher();
  }
}
