/**
 * A raw block device (/dev/sdb, /dev/nvme0n1p3, /dev/loop0) as a BlockDevice. Opened O_DIRECT by
 * default so druvaa's writes bypass the page cache (flush() still issues fdatasync to flush the
 * device's volatile write cache); devices that refuse O_DIRECT (EINVAL) are opened buffered.
 * Size and logical block size come from the BLKGETSIZE64 / BLKSSZGET ioctls, discard is
 * BLKDISCARD. Data I/O goes through node:fs/promises on the thread pool, so the event loop stays
 * free; only the one-shot ioctls run on the JS thread.
 *
 * Not guaranteed: that a discarded range reads zeros (that depends on the device), or exclusive
 * access (the device is not opened O_EXCL; another process may write it too).
 */
import { constants as fsConstants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import type { OpenOptions } from "./block-device.ts";
import { HandleDevice } from "./handle-device.ts";
import { blockDeviceDiscard, blockDeviceLogicalBlockSizeBytes, blockDeviceSizeBytes, LibcError } from "./libc.ts";
import { DruvaaError, exitCodes, fromSystemError } from "../errors.ts";
import { assert } from "../assert.ts";
import { directIoAlignmentBytes, discardPieceSizeBytesMax, sectorSizeBytes } from "../constants.ts";

export class RawDevice extends HandleDevice {
  private constructor(
    name: string,
    sizeBytes: number,
    logicalBlockSizeBytes: number,
    handle: FileHandle,
    readOnly: boolean,
    /** Whether the device was opened O_DIRECT (false if asked not to, or the device refused it). */
    readonly direct: boolean,
  ) {
    super(name, sizeBytes, logicalBlockSizeBytes, handle, readOnly);
    if (direct) this.bufferAlignmentBytes = Math.max(directIoAlignmentBytes, logicalBlockSizeBytes);
  }

  /**
   * Opens the block device at `path`. Refuses anything that is not a block device
   * (NOT_A_BLOCK_DEVICE), a device of size zero (e.g. a detached loop device), and the usual
   * system errors (NOT_FOUND, PERMISSION_DENIED, DEVICE_BUSY …). `createSizeBytes` is ignored.
   */
  static async open(path: string, opts: OpenOptions = {}): Promise<RawDevice> {
    const readOnly = opts.readOnly ?? false;
    const accessFlags = readOnly ? fsConstants.O_RDONLY : fsConstants.O_RDWR;
    const directFlag = fsConstants.O_DIRECT ?? 0;
    let direct = (opts.direct ?? true) && directFlag !== 0;
    let handle: FileHandle;
    try {
      handle = await open(path, accessFlags | (direct ? directFlag : 0));
    } catch (error) {
      if (!direct || (error as { code?: unknown }).code !== "EINVAL") throw fromSystemError(error, path);
      direct = false; // the device (or its driver) does not do O_DIRECT: use the page cache
      try {
        handle = await open(path, accessFlags);
      } catch (again) {
        throw fromSystemError(again, path);
      }
    }
    try {
      const stats = await handle.stat();
      if (!stats.isBlockDevice()) {
        throw new DruvaaError("NOT_A_BLOCK_DEVICE", `${path}: is not a block device`, "Give a block device (lsblk lists them), or open an image file with openBlockDevice()", exitCodes.usage);
      }
      const sizeBytes = blockDeviceSizeBytes(handle.fd);
      const logicalBlockSizeBytes = blockDeviceLogicalBlockSizeBytes(handle.fd);
      if (logicalBlockSizeBytes < sectorSizeBytes || logicalBlockSizeBytes % sectorSizeBytes !== 0) {
        throw new DruvaaError("DEVICE_BLOCK_SIZE_UNSUPPORTED", `${path}: logical block size ${logicalBlockSizeBytes} is not a multiple of ${sectorSizeBytes}`);
      }
      if (sizeBytes === 0) {
        throw new DruvaaError("DEVICE_SIZE_ZERO", `${path}: device has size 0`, "Is it attached? For a loop device: losetup --find --show IMAGE; check with lsblk");
      }
      assert(sizeBytes % logicalBlockSizeBytes === 0, "the kernel reports whole logical blocks");
      return new RawDevice(path, sizeBytes, logicalBlockSizeBytes, handle, readOnly, direct);
    } catch (error) {
      await handle.close().catch(() => undefined); // already failing with a better error
      throw fromSystemError(error, path);
    }
  }

  protected async discardRange(handle: FileHandle, offsetBytes: number, lengthBytes: number): Promise<void> {
    // BLKDISCARD runs on the JS thread; in pieces, yielding between them, so a large discard on a
    // slow device does not stall the event loop for its whole duration.
    for (let doneBytes = 0; doneBytes < lengthBytes; doneBytes += discardPieceSizeBytesMax) {
      if (doneBytes > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const pieceBytes = Math.min(discardPieceSizeBytesMax, lengthBytes - doneBytes);
      try {
        blockDeviceDiscard(handle.fd, offsetBytes + doneBytes, pieceBytes);
      } catch (error) {
        // The contract: a device that cannot discard makes discard a no-op, never a failure.
        if (error instanceof LibcError && (error.code === "EOPNOTSUPP" || error.code === "ENOTTY")) return;
        throw fromSystemError(error, `${this.name}: discard ${offsetBytes + doneBytes}+${pieceBytes}`);
      }
    }
  }
}

export { alignedBuffer } from "./handle-device.ts";
