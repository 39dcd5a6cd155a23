/**
 * A BlockDevice wrapper that counts what reaches the device underneath: reads, writes, flushes and
 * written bytes (nbdkit's stats filter, in miniature). Everything is passed through unchanged;
 * the counters are plain numbers a caller reads or diffs, never reset here. Tests use it to check
 * how much I/O an operation cost; benchmarks to see how many bytes each fdatasync covered.
 * Not a product feature (nothing in druvaa reports these counts).
 */
import type { BlockDevice } from "./block-device.ts";

export class CountingDevice implements BlockDevice {
  readCount = 0;
  writeCount = 0;
  /** Sum of the lengths of every write passed on. */
  writtenBytes = 0;
  flushCount = 0;

  constructor(protected readonly inner: BlockDevice) {}

  get name(): string { return this.inner.name; }
  get sizeBytes(): number { return this.inner.sizeBytes; }
  get logicalBlockSizeBytes(): number { return this.inner.logicalBlockSizeBytes; }

  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    this.readCount += 1;
    return this.inner.read(offsetBytes, lengthBytes);
  }

  write(offsetBytes: number, data: Uint8Array): Promise<void> {
    this.writeCount += 1;
    this.writtenBytes += data.length;
    return this.inner.write(offsetBytes, data);
  }

  flush(): Promise<void> {
    this.flushCount += 1;
    return this.inner.flush();
  }

  discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.inner.discard(offsetBytes, lengthBytes);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
