/**
 * Write logs by path, for the CLI and the staging server: opening the devices (image files or
 * block devices), finding secondaries by the path hints the superblock keeps, and cleaning up
 * on the way out. Every check that can refuse runs before anything is created or written.
 */
import { rm } from "node:fs/promises";
import { resolve as resolvePath } from "node:path";
import type { BlockDevice } from "../io/block-device.ts";
import { openBlockDevice, pathExists } from "../io/open-device.ts";
import { DruvaaError, exitCodes, usageError } from "../errors.ts";
import { notAWrl } from "./recovery.ts";
import { WriteLog } from "./write-log.ts";
import type { WrlDeviceEntry, WrlInfo, WrlRecoveryReport } from "./types.ts";

export interface WrlReport extends WrlInfo {
  recovery?: WrlRecoveryReport;
}

function missing(path: string, flag: string): DruvaaError {
  return new DruvaaError("NOT_FOUND", `${path}: no such file or device`, `Check the path, or add --size SIZE to create an image file there (e.g. ${flag} ${path} --size 10G)`, exitCodes.notFound);
}

/** Opens `path`, creating an image of `createSizeBytes` if it does not exist; remembers what it created. */
async function openOrCreate(path: string, createSizeBytes: number | undefined, created: string[]): Promise<BlockDevice> {
  const isNew = !(await pathExists(path));
  const device = await openBlockDevice(path, isNew ? { createSizeBytes, direct: true } : { direct: true });
  if (isNew) created.push(path);
  return device;
}

async function closeAll(devices: BlockDevice[]): Promise<void> {
  await Promise.allSettled(devices.map((device) => device.close()));
}

/**
 * `druvaa wrl create`: lays a new write log over `primary` then `secondaries`. A path that does
 * not exist becomes an image file of `sizeBytes` (refused without it); on existing devices
 * `sizeBytes` limits the space used. Images created here are removed again if the create fails.
 */
export async function createWrlAtPaths(opts: { primary: string; secondaries: string[]; sizeBytes?: number; force?: boolean; uuid?: string; payloadKey?: Uint8Array }): Promise<WrlReport> {
  const paths = [opts.primary, ...opts.secondaries].map((p) => resolvePath(p));
  if (new Set(paths).size !== paths.length) throw usageError("the same path is given twice", "Give each device once: --primary PATH [--secondary PATH ...]");
  for (const [i, path] of paths.entries()) {
    if (opts.sizeBytes === undefined && !(await pathExists(path))) throw missing(path, i === 0 ? "--primary" : "--secondary");
  }
  const created: string[] = [];
  const devices: BlockDevice[] = [];
  try {
    for (const path of paths) devices.push(await openOrCreate(path, opts.sizeBytes, created));
    const wrl = await WriteLog.create(devices, { force: opts.force ?? false, deviceBytesMax: opts.sizeBytes, pathHints: paths, uuid: opts.uuid, payloadKey: opts.payloadKey });
    const info = wrl.info();
    await wrl.close();
    return info;
  } catch (error) {
    await closeAll(devices);
    await Promise.allSettled(created.map((path) => rm(path, { force: true })));
    throw error;
  }
}

/** Opens secondaries by the absolute path hint each was added with. */
function resolverFor(readOnly: boolean): (entry: WrlDeviceEntry) => Promise<BlockDevice> {
  return (entry) => openBlockDevice(entry.pathHint, { readOnly, direct: true });
}

/**
 * Opens the write log whose primary is at `path` (recovery runs; read-only writes nothing).
 * A bare name that is not a path gets a hint that WRLs are given by their primary's path.
 */
export async function openWrlAtPath(path: string, opts: { readOnly?: boolean; payloadKey?: Uint8Array; keyless?: boolean } = {}): Promise<WriteLog> {
  const readOnly = opts.readOnly ?? false;
  if (!(await pathExists(path))) {
    if (!path.includes("/")) {
      throw new DruvaaError("WRL_NOT_FOUND", `no write log named '${path}' and no such file`, "Give the path of the write log's primary device or image, e.g. druvaa wrl info /dev/sdb", exitCodes.notFound);
    }
    throw new DruvaaError("NOT_FOUND", `${path}: no such file or device`, "Give the path of the write log's primary device or image (the one given to --primary)", exitCodes.notFound);
  }
  const primary = await openBlockDevice(path, { readOnly, direct: true }).catch((error: unknown) => {
    // A file whose size no device could have is simply not a write log.
    if (error instanceof DruvaaError && (error.code === "DEVICE_SIZE_ZERO" || error.code === "DEVICE_SIZE_UNALIGNED")) throw notAWrl(path, error.message);
    throw error;
  });
  try {
    return await WriteLog.open({ primary, resolve: resolverFor(readOnly) }, { readOnly, payloadKey: opts.payloadKey, keyless: opts.keyless });
  } catch (error) {
    await primary.close().catch(() => undefined); // already failing with the better error
    throw error;
  }
}

/** `druvaa wrl info`: recovers read-only and reports, writing nothing. */
export async function inspectWrlAtPath(path: string): Promise<WrlReport> {
  const wrl = await openWrlAtPath(path, { readOnly: true });
  try {
    const report: WrlReport = wrl.info();
    if (wrl.recovery !== undefined) report.recovery = wrl.recovery;
    return report;
  } finally {
    await wrl.close();
  }
}

/**
 * `druvaa wrl add-device`: adds the device at `devicePath` (created as an image of `sizeBytes`
 * if missing) to the write log whose primary is at `wrlPath`. The log must not be open
 * elsewhere (a running staging server adds devices itself).
 */
export async function addDeviceAtPath(wrlPath: string, devicePath: string, opts: { sizeBytes?: number; force?: boolean } = {}): Promise<WrlReport & { added: WrlDeviceEntry }> {
  const absolute = resolvePath(devicePath);
  if (opts.sizeBytes === undefined && !(await pathExists(absolute))) throw missing(absolute, "druvaa wrl add-device WRL");
  // Adding a device touches no payload: an encrypted log needs no key for it.
  const wrl = await openWrlAtPath(wrlPath, { keyless: true });
  const created: string[] = [];
  let device: BlockDevice | undefined;
  try {
    if (wrl.info().devices.some((d) => resolvePath(d.pathHint) === absolute)) throw usageError(`${absolute} is already a device of this write log`, `See: druvaa wrl info ${wrlPath}`);
    device = await openOrCreate(absolute, opts.sizeBytes, created);
    const added = await wrl.addDevice(device, { pathHint: absolute, force: opts.force ?? false, deviceBytesMax: opts.sizeBytes });
    device = undefined; // the log owns it now
    return { ...wrl.info(), added };
  } catch (error) {
    await device?.close().catch(() => undefined);
    await Promise.allSettled(created.map((path) => rm(path, { force: true })));
    throw error;
  } finally {
    await wrl.close();
  }
}
