/**
 * In-memory BlockDevice: for unit tests and the simulator. Every write is immediately "durable"
 * (there is no crash to lose it); use SimDisk for crash behaviour.
 */
import type { BlockDevice } from "./block-device.ts";
import { checkRange, closedError } from "./checks.ts";
import { sectorSizeBytes } from "../constants.ts";

export class MemoryDevice implements BlockDevice {
  readonly sizeBytes: number;
  readonly logicalBlockSizeBytes: number;
  private bytes: Uint8Array | undefined;
  flushCount = 0;

  constructor(sizeBytes: number, readonly name = "memory", logicalBlockSizeBytes = sectorSizeBytes, contents?: Uint8Array) {
    this.sizeBytes = sizeBytes;
    this.logicalBlockSizeBytes = logicalBlockSizeBytes;
    this.bytes = contents ?? new Uint8Array(sizeBytes);
    if (this.bytes.length !== sizeBytes) throw new RangeError("contents must be sizeBytes long");
  }

  private open(): Uint8Array {
    if (this.bytes === undefined) throw closedError(this.name);
    return this.bytes;
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    const bytes = this.open();
    checkRange(this, offsetBytes, lengthBytes);
    return bytes.slice(offsetBytes, offsetBytes + lengthBytes);
  }

  async readInto(offsetBytes: number, into: Uint8Array): Promise<void> {
    const bytes = this.open();
    checkRange(this, offsetBytes, into.length);
    into.set(bytes.subarray(offsetBytes, offsetBytes + into.length));
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    const bytes = this.open();
    checkRange(this, offsetBytes, data.length);
    bytes.set(data, offsetBytes);
  }

  async flush(): Promise<void> {
    this.open();
    this.flushCount += 1;
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    const bytes = this.open();
    checkRange(this, offsetBytes, lengthBytes);
    bytes.fill(0, offsetBytes, offsetBytes + lengthBytes);
  }

  async close(): Promise<void> {
    this.bytes = undefined;
  }

  /** A copy of the whole device, for test assertions. */
  snapshot(): Uint8Array {
    return this.open().slice();
  }
}
