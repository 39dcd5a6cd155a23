/**
 * A regular image file as a BlockDevice. Buffered I/O by default (the page cache is fine for a
 * file: flush() is fdatasync); with `direct: true` opened O_DIRECT where the file system allows it
 * (the write log asks for that: it writes sequentially, flushes itself and never re-reads what it
 * wrote, so the page cache would only cost a copy). Logical block size 512, size from fstat and fixed while open. Discard punches a
 * hole (fallocate PUNCH_HOLE|KEEP_SIZE), or writes zeros where the file system cannot, so a
 * discarded range always reads zeros.
 */
import { constants as fsConstants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import type { OpenOptions } from "./block-device.ts";
import { HandleDevice } from "./handle-device.ts";
import { LibcError, punchHole } from "./libc.ts";
import { DruvaaError, exitCodes, fromSystemError } from "../errors.ts";
import { directIoAlignmentBytes, sectorSizeBytes } from "../constants.ts";

/** Zeros for the discard fallback; never written into. */
const zeroChunkBytes = 1024 * 1024;
let zeroChunk: Uint8Array | undefined;

/** Refuses a device size druvaa cannot use: zero, negative, not whole sectors. */
export function checkDeviceSize(path: string, sizeBytes: number, exitCode: number = exitCodes.failure): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) {
    throw new DruvaaError("DEVICE_SIZE_ZERO", `${path}: size is ${sizeBytes} bytes; a device needs at least one ${sectorSizeBytes}-byte sector`, `Give it a size, e.g.: truncate -s 1G ${path}`, exitCode);
  }
  if (sizeBytes % sectorSizeBytes !== 0) {
    throw new DruvaaError("DEVICE_SIZE_UNALIGNED", `${path}: size ${sizeBytes} bytes is not a multiple of ${sectorSizeBytes}`, `Round it up to whole sectors: truncate -s %${sectorSizeBytes} ${path}`, exitCode);
  }
}

export class FileDevice extends HandleDevice {
  private constructor(name: string, sizeBytes: number, logicalBlockSizeBytes: number, handle: FileHandle, readOnly: boolean, readonly direct: boolean) {
    super(name, sizeBytes, logicalBlockSizeBytes, handle, readOnly);
    if (direct) this.bufferAlignmentBytes = directIoAlignmentBytes;
  }

  /**
   * Opens an existing image file, or creates one of `createSizeBytes` (sparse, fsynced with its
   * directory) when the path does not exist. Refuses directories, other non-regular files,
   * missing paths without `createSizeBytes` (NOT_FOUND), and sizes that are zero or not whole
   * sectors. `direct: true` asks for O_DIRECT; a file system that refuses it (tmpfs: EINVAL)
   * gets buffered I/O instead — `direct` on the device tells which it got.
   */
  static async open(path: string, opts: OpenOptions = {}): Promise<FileDevice> {
    const readOnly = opts.readOnly ?? false;
    if (opts.createSizeBytes !== undefined) checkDeviceSize(path, opts.createSizeBytes, exitCodes.usage);
    let direct = opts.direct === true && (fsConstants.O_DIRECT ?? 0) !== 0;
    const openOnce = () => openExisting(path, readOnly, direct).catch((error: unknown) => {
      if (!direct || (error as { code?: unknown }).code !== "EINVAL") throw error;
      direct = false; // the file system does not do O_DIRECT (tmpfs): use the page cache
      return openExisting(path, readOnly, false);
    });
    const handle = await openOnce().catch(async (error: unknown) => {
      if ((error as { code?: unknown }).code !== "ENOENT" || opts.createSizeBytes === undefined) throw fromSystemError(error, path);
      await createImage(path, opts.createSizeBytes);
      return openOnce().catch((again: unknown) => {
        throw fromSystemError(again, path);
      });
    });
    try {
      const stats = await handle.stat();
      if (stats.isDirectory()) {
        throw new DruvaaError("IS_DIRECTORY", `${path}: is a directory`, "Give the path of an image file or a block device", exitCodes.usage);
      }
      if (!stats.isFile()) {
        throw new DruvaaError("NOT_A_REGULAR_FILE", `${path}: is not a regular file`, "Open block devices with openBlockDevice(); other special files are not supported", exitCodes.usage);
      }
      checkDeviceSize(path, stats.size);
      return new FileDevice(path, stats.size, sectorSizeBytes, handle, readOnly, direct);
    } catch (error) {
      await handle.close().catch(() => undefined); // already failing with a better error
      throw fromSystemError(error, path);
    }
  }

  protected async discardRange(handle: FileHandle, offsetBytes: number, lengthBytes: number): Promise<void> {
    try {
      punchHole(handle.fd, offsetBytes, lengthBytes);
      return;
    } catch (error) {
      // File systems without hole punching (EOPNOTSUPP), kernels without fallocate (ENOSYS) and
      // non-Linux platforms fall back to writing zeros: the contract promises zeros either way.
      const unsupported = error instanceof LibcError
        ? error.code === "EOPNOTSUPP" || error.code === "ENOSYS"
        : error instanceof DruvaaError && error.code === "UNSUPPORTED_PLATFORM";
      if (!unsupported) throw fromSystemError(error, `${this.name}: discard ${offsetBytes}+${lengthBytes}`);
    }
    zeroChunk ??= new Uint8Array(zeroChunkBytes);
    for (let doneBytes = 0; doneBytes < lengthBytes; doneBytes += zeroChunkBytes) {
      const pieceBytes = Math.min(zeroChunkBytes, lengthBytes - doneBytes);
      await this.writeAt(handle, offsetBytes + doneBytes, this.prepareWrite(zeroChunk.subarray(0, pieceBytes)));
    }
  }
}

function openExisting(path: string, readOnly: boolean, direct: boolean): Promise<FileHandle> {
  const flags = (readOnly ? fsConstants.O_RDONLY : fsConstants.O_RDWR) | (direct ? fsConstants.O_DIRECT : 0);
  return open(path, flags);
}

/** Creates a sparse image durably: the file, its size and its directory entry are all fsynced. */
async function createImage(path: string, sizeBytes: number): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(path, "wx");
  } catch (error) {
    if ((error as { code?: unknown }).code === "EEXIST") return; // created by someone else meanwhile: open theirs
    throw fromSystemError(error, path);
  }
  try {
    await handle.truncate(sizeBytes);
    await handle.sync();
  } catch (error) {
    throw fromSystemError(error, path);
  } finally {
    await handle.close();
  }
  const directory = await open(dirname(path), "r");
  try {
    await directory.sync();
  } catch (error) {
    throw fromSystemError(error, dirname(path));
  } finally {
    await directory.close();
  }
}
