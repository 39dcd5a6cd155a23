/**
 * The one way roles open a device by path: a block device becomes a RawDevice, a regular file a
 * FileDevice, a missing path with `createSizeBytes` a new sparse image file. Anything else is a
 * DruvaaError with a hint, never a crash.
 */
import { stat } from "node:fs/promises";
import type { BlockDevice, OpenOptions } from "./block-device.ts";
import { FileDevice } from "./file-device.ts";
import { RawDevice } from "./raw-device.ts";
import { DruvaaError, exitCodes, fromSystemError } from "../errors.ts";

export async function openBlockDevice(path: string, opts: OpenOptions = {}): Promise<BlockDevice> {
  if (path.length === 0) {
    throw new DruvaaError("USAGE", "device path is empty", "Give a block device (e.g. /dev/sdb) or an image file path", exitCodes.usage);
  }
  let stats;
  try {
    stats = await stat(path);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === "ENOENT" && opts.createSizeBytes !== undefined) return FileDevice.open(path, opts);
    throw fromSystemError(error, path);
  }
  if (stats.isBlockDevice()) return RawDevice.open(path, opts);
  if (stats.isFile()) return FileDevice.open(path, opts);
  if (stats.isDirectory()) {
    throw new DruvaaError("IS_DIRECTORY", `${path}: is a directory`, "Give the path of an image file or a block device", exitCodes.usage);
  }
  throw new DruvaaError("UNSUPPORTED_DEVICE_TYPE", `${path}: is neither a block device nor a regular file`, "Give a block device (lsblk lists them) or an image file (create one with: truncate -s 1G PATH)", exitCodes.usage);
}

/** True if `path` names a block device (follows symlinks, e.g. /dev/disk/by-id/…); false if missing. */
/** True if something exists at `path` (false only for ENOENT; other errors are thrown). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") return false;
    throw fromSystemError(error, path);
  }
}

export async function isBlockDevicePath(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isBlockDevice();
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") return false;
    throw fromSystemError(error, path);
  }
}
