/**
 * One group-commit batch: the records the pump takes at once, laid out back to back in one
 * aligned buffer as the runs of log ("extents") they will occupy. An extent lies inside one
 * device, so a batch touches one extent per device (two if it wraps round a single device).
 * Records are encoded (copied and checksummed) when the pump writes the batch, not when they are
 * appended, so checksumming overlaps device transfers.
 */
import { assert } from "../assert.ts";
import { alignedBuffer } from "../io/raw-device.ts";
import { directIoAlignmentBytes, wrlAlignmentBytes, wrlGroupCommitAppendsMax, wrlGroupCommitBytesMax } from "../constants.ts";
import type { CheckedAppend } from "./append-input.ts";
import type { LogGeometry } from "./geometry.ts";
import type { WrlAppendResult } from "./types.ts";

/** A record whose LSN and log space are reserved. */
export interface ReservedRecord {
  lsn: number;
  /** Log position of the record. */
  start: number;
  recordBytes: number;
  /** recordBytes plus any device-end skip before the record. */
  consumedBytes: number;
  input: CheckedAppend;
}

/** A reserved record in a batch, with the append waiting for it. */
export interface PendingRecord extends ReservedRecord {
  bufferStart: number;
  resolve: (result: WrlAppendResult) => void;
  reject: (error: unknown) => void;
  settled: boolean;
}

export interface Extent {
  /** Log position of the extent's first byte. */
  position: number;
  segmentIndex: number;
  bufferStart: number;
  lengthBytes: number;
}

/** Bytes one batch buffer holds: a full batch, or one largest record on its own. */
export function batchCapacityBytes(geometry: LogGeometry): number {
  return Math.min(wrlGroupCommitBytesMax + wrlAlignmentBytes, geometry.totalBytes);
}

export class Batch {
  bytes = 0;
  readonly extents: Extent[] = [];
  readonly records: PendingRecord[] = [];
  /** Writes issued for this batch and not yet completed; the buffer is reused once it is 0. */
  writesInFlight = 0;

  constructor(readonly buffer: Uint8Array) {}

  /** Whether a record of `recordBytes` may join (an empty batch takes any record that fits its buffer). */
  accepts(recordBytes: number): boolean {
    if (this.records.length === 0) return recordBytes <= this.buffer.length;
    return this.records.length < wrlGroupCommitAppendsMax && this.bytes + recordBytes <= Math.min(wrlGroupCommitBytesMax, this.buffer.length);
  }

  /** Adds a reserved record; the returned promise is its append's result. */
  add(geometry: LogGeometry, reserved: ReservedRecord): Promise<WrlAppendResult> {
    assert(this.accepts(reserved.recordBytes), "record fits the batch");
    const segmentIndex = geometry.segmentIndexAt(reserved.start);
    const last = this.extents[this.extents.length - 1];
    const bufferStart = this.bytes;
    if (last !== undefined && last.segmentIndex === segmentIndex && last.position + last.lengthBytes === reserved.start) {
      last.lengthBytes += reserved.recordBytes;
    } else {
      this.extents.push({ position: reserved.start, segmentIndex, bufferStart, lengthBytes: reserved.recordBytes });
    }
    this.bytes += reserved.recordBytes;
    return new Promise<WrlAppendResult>((resolve, reject) => {
      this.records.push({ ...reserved, bufferStart, resolve, reject, settled: false });
    });
  }
}

/**
 * Reuses batch buffers: allocating (and zeroing) megabytes per batch would cost more than the
 * checksums. Buffers are aligned for O_DIRECT so raw devices write them without a bounce copy.
 */
export class BufferPool {
  private readonly free: Uint8Array[] = [];

  constructor(readonly capacityBytes: number, private readonly keepMax = 3) {}

  take(): Uint8Array {
    return this.free.pop() ?? alignedBuffer(this.capacityBytes, directIoAlignmentBytes);
  }

  give(buffer: Uint8Array): void {
    if (buffer.length === this.capacityBytes && this.free.length < this.keepMax) this.free.push(buffer);
  }
}
