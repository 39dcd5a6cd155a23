/**
 * The block-device seam. Everything in druvaa that touches a volume, a WRL device or a replica
 * goes through this interface; implementations live beside it in src/io/:
 *   - raw block device (O_DIRECT, size by ioctl)        raw-device.ts
 *   - regular image file                                file-device.ts
 *   - in-memory                                         memory-device.ts
 *   - simulated crash-prone disk for tests              sim-disk.ts
 * One contract suite (tests/io/contract.test.ts) runs against every implementation.
 *
 * Offsets and lengths are byte counts as `number` (exact up to 2^53 bytes = 8 PiB).
 */
export interface BlockDevice {
  /** What to call this device in messages: its path, or a descriptive name. */
  readonly name: string;

  /** Size in bytes, fixed while the device is open. Always a multiple of logicalBlockSizeBytes. */
  readonly sizeBytes: number;

  /**
   * The device's logical block size (512 or 4096; BLKSSZGET on a raw device). Every offset and
   * length passed to read/write/discard must be a multiple of it; anything else is refused with a
   * DruvaaError `IO_MISALIGNED` before any byte is touched.
   */
  readonly logicalBlockSizeBytes: number;

  /**
   * Reads `lengthBytes` at `offsetBytes` into a new buffer. A range outside [0, sizeBytes) is
   * refused with `IO_OUT_OF_RANGE`. Returns what was last written to each block, whether or not it
   * has been flushed yet (read-your-writes). Blocks never written read as zeros on a new image or
   * memory device; on a raw device they hold whatever was there.
   * Never blocks the event loop for the duration of the I/O.
   */
  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array>;

  /**
   * Optional: read() into the caller's buffer (`into.length` bytes at `offsetBytes`), so a long
   * sequential reader (online verify) reuses a few buffers instead of page-faulting a fresh one
   * per read. Same range checks and errors as read(). A buffer misaligned for an O_DIRECT device
   * costs a copy (alignedBuffer() gives aligned ones). `into` is not to be touched until it resolves.
   */
  readInto?(offsetBytes: number, into: Uint8Array): Promise<void>;

  /**
   * Writes `data` at `offsetBytes`. Resolves when the data has been handed to the device (it is
   * readable back), NOT when it is durable: only `flush()` makes it durable. Concurrent writes to
   * overlapping ranges have no defined order; callers serialise overlaps themselves. The caller
   * must not modify `data` until the promise resolves.
   */
  write(offsetBytes: number, data: Uint8Array): Promise<void>;

  /**
   * Makes every write that resolved before this call durable (fdatasync). Idempotent; a flush
   * with nothing pending is cheap. After a crash, data written but never flushed may be lost or
   * torn at sector granularity.
   */
  flush(): Promise<void>;

  /**
   * Tells the device the range is no longer needed (TRIM / BLKDISCARD / hole punch). Afterwards
   * the range reads as zeros on image and memory devices; on a raw device its contents are
   * unspecified unless the device reports that discarded blocks read as zeros. Never fails just
   * because the device cannot discard: that is a no-op.
   */
  discard(offsetBytes: number, lengthBytes: number): Promise<void>;

  /** Releases the device. Does not flush. Further calls are refused with `IO_CLOSED`. */
  close(): Promise<void>;
}

/** Options shared by the `openBlockDevice` factory and the file/raw implementations. */
export interface OpenOptions {
  /** Open read-only; write/discard are refused with `IO_READ_ONLY`. */
  readOnly?: boolean;
  /** For raw block devices: use O_DIRECT (default true where the device accepts it). */
  direct?: boolean;
  /** Create a regular image file of this size if the path does not exist. */
  createSizeBytes?: number;
}
