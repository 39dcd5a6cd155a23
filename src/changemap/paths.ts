/**
 * Change maps by path, for the CLI (and the client role): a missing path becomes an image file
 * of exactly the size the map needs (or --size), removed again if the create fails. Every check
 * that can refuse runs before anything is created or written.
 */
import { rm } from "node:fs/promises";
import { resolve as resolvePath } from "node:path";
import type { BlockDevice } from "../io/block-device.ts";
import { openBlockDevice, pathExists } from "../io/open-device.ts";
import { DruvaaError, exitCodes, usageError } from "../errors.ts";
import { formatBytes } from "../units.ts";
import { ChangeMap, type ChangeMapInfo, type ChangeMapOpenOptions } from "./change-map.ts";
import { notAChangeMap, planLayout, type RegionSpec } from "./format.ts";

export interface ChangeMapCreateReport extends ChangeMapInfo {
  /** True when the image file was created by this command. */
  createdImage: boolean;
}

/** `druvaa changemap create`. */
export async function createChangeMapAtPath(opts: { path: string; regions: RegionSpec[]; blockSizeBytes: number; sizeBytes?: number; force?: boolean }): Promise<ChangeMapCreateReport> {
  const path = resolvePath(opts.path);
  const { layoutSizeBytes } = planLayout(opts.regions, opts.blockSizeBytes);
  const isNew = !(await pathExists(path));
  if (isNew && opts.sizeBytes !== undefined && opts.sizeBytes < layoutSizeBytes) {
    throw new DruvaaError("CHANGEMAP_DEVICE_TOO_SMALL", `--size ${formatBytes(opts.sizeBytes)} is too small for this change map, which needs ${layoutSizeBytes} bytes (${formatBytes(layoutSizeBytes)})`, "Leave out --size: a new image is created at exactly the size the map needs", exitCodes.refused);
  }
  let device: BlockDevice | undefined;
  try {
    device = await openBlockDevice(path, isNew ? { createSizeBytes: opts.sizeBytes ?? layoutSizeBytes } : {});
    if (!isNew && opts.sizeBytes !== undefined && opts.sizeBytes !== device.sizeBytes) {
      throw usageError(`--size sizes a new image, but ${path} exists (${device.sizeBytes} bytes)`, "Leave out --size for an existing file or device (resize an image with: truncate -s SIZE PATH)");
    }
    const map = await ChangeMap.create(device, { regions: opts.regions, blockSizeBytes: opts.blockSizeBytes, force: opts.force ?? false, bitmapAreaIsZero: isNew });
    device = undefined; // the map owns it now
    const info = map.info();
    await map.close();
    return { ...info, createdImage: isNew };
  } catch (error) {
    await device?.close().catch(() => undefined); // already failing with the better error
    if (isNew) await rm(path, { force: true });
    throw error;
  }
}

/** Opens the change map at `path` (read-write unless asked otherwise); the caller closes it. */
export async function openChangeMapAtPath(path: string, opts: ChangeMapOpenOptions = {}): Promise<ChangeMap> {
  if (!(await pathExists(path))) {
    throw new DruvaaError("NOT_FOUND", `${path}: no such file or device`, `Check the path; create a change map with: druvaa changemap create ${path} --volume-size SIZE`, exitCodes.notFound);
  }
  const device = await openBlockDevice(path, { readOnly: opts.readOnly ?? false }).catch((error: unknown) => {
    // A file whose size no device could have (empty, odd bytes) is simply not a change map.
    if (error instanceof DruvaaError && (error.code === "DEVICE_SIZE_ZERO" || error.code === "DEVICE_SIZE_UNALIGNED")) throw notAChangeMap(path, new Uint8Array(0));
    throw error;
  });
  try {
    return await ChangeMap.open(device, opts);
  } catch (error) {
    await device.close().catch(() => undefined); // already failing with the better error
    throw error;
  }
}

/** `druvaa changemap info`: reads, never writes. */
export async function inspectChangeMapAtPath(path: string, rangesMax?: number): Promise<ChangeMapInfo> {
  const map = await openChangeMapAtPath(path, { readOnly: true });
  try {
    return map.info(rangesMax);
  } finally {
    await map.close();
  }
}
