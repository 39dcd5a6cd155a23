/**
 * The WRL's log space: every device's log area laid end to end (primary first, then secondaries
 * in order) and treated as one circle of `totalBytes`. A position is a byte offset in [0, total).
 *
 * Placement rule (the writer): a record goes at the head if it fits before the end of the head's
 * segment; otherwise at the start of the next segment (segment 0 after the last). A record never
 * straddles two devices, and no padding record is written: the bytes skipped at a segment end are
 * simply left as they were.
 *
 * Finding rule (recovery and readers): the record that follows position p is at p, or else at
 * the start of one of the following segments. `candidates(p)` lists them in that order; a
 * reader accepts the first one holding the expected LSN of the expected WRL and incarnation.
 * This is unambiguous because an LSN is written at most once per incarnation.
 */
import { assert } from "../assert.ts";
import type { WrlDeviceEntry } from "./types.ts";

export interface Segment {
  /** Device index (0 = primary). */
  deviceIndex: number;
  /** First log position of the segment. */
  logicalStart: number;
  lengthBytes: number;
  /** Byte offset on the device where the segment begins. */
  deviceOffsetBytes: number;
}

export class LogGeometry {
  readonly segments: readonly Segment[];
  readonly totalBytes: number;
  /** The largest record (in bytes) that fits every segment. */
  readonly recordBytesMax: number;

  constructor(devices: readonly Pick<WrlDeviceEntry, "index" | "dataStartBytes" | "dataBytes">[]) {
    assert(devices.length >= 1, "a log has at least one device");
    let start = 0;
    this.segments = devices.map((device) => {
      const segment = { deviceIndex: device.index, logicalStart: start, lengthBytes: device.dataBytes, deviceOffsetBytes: device.dataStartBytes };
      start += device.dataBytes;
      return segment;
    });
    this.totalBytes = start;
    this.recordBytesMax = Math.min(...this.segments.map((s) => s.lengthBytes));
  }

  segmentIndexAt(position: number): number {
    assert(Number.isSafeInteger(position) && position >= 0 && position < this.totalBytes, `log position ${position} outside [0, ${this.totalBytes})`);
    // Few segments (at most wrlDevicesMax): a linear walk beats anything clever.
    for (let i = this.segments.length - 1; i >= 0; i -= 1) {
      if (position >= this.segments[i]!.logicalStart) return i;
    }
    return 0;
  }

  segmentAt(position: number): Segment {
    return this.segments[this.segmentIndexAt(position)]!;
  }

  /** Where a position lies on its device. */
  locate(position: number): { segment: Segment; deviceOffsetBytes: number; bytesToSegmentEnd: number } {
    const segment = this.segmentAt(position);
    const into = position - segment.logicalStart;
    return { segment, deviceOffsetBytes: segment.deviceOffsetBytes + into, bytesToSegmentEnd: segment.lengthBytes - into };
  }

  /** The position just past a record ending at `end` (the end of the log wraps to 0). */
  normalize(end: number): number {
    assert(end >= 0 && end <= this.totalBytes, "end inside the log");
    return end === this.totalBytes ? 0 : end;
  }

  /** Bytes from `from` forward to `to`, going round the circle; 0 when they are equal. */
  distance(from: number, to: number): number {
    return to >= from ? to - from : this.totalBytes - from + to;
  }

  /** Where the writer puts a record of `recordBytes` when the head is at `head`. */
  place(head: number, recordBytes: number): number {
    assert(recordBytes <= this.recordBytesMax, "record fits every segment");
    const { bytesToSegmentEnd } = this.locate(head);
    if (recordBytes <= bytesToSegmentEnd) return head;
    const next = this.segments[(this.segmentIndexAt(head) + 1) % this.segments.length]!;
    return next.logicalStart;
  }

  /** Where the record following position `position` may start, most likely first. */
  candidates(position: number): number[] {
    const index = this.segmentIndexAt(position);
    const out = [position];
    const count = this.segments.length;
    for (let k = 1; k <= count; k += 1) {
      const start = this.segments[(index + k) % count]!.logicalStart;
      if (start !== position) out.push(start);
    }
    return out;
  }
}
