/**
 * Checking a replica's managed configuration (docs/panel.md "Replica") against this host, at
 * POST /config/prepare. Nothing here changes anything: it reads the file system (stat, realpath,
 * a read-only open for a device's size, /proc for holders) and the running replica's state.
 *
 * Refusals, each a ConfigRefusal naming the field at fault (i: the device's index in `devices`):
 *
 *   condition                                                  code                     field
 *   config not {devices: [...]}, entry not an object           CONFIG_INVALID           devices / devices[i]
 *   name not a device name (--device NAME rules), too long     DEVICE_NAME_INVALID      devices[i].name
 *     for the RS-WRL (--wrl)
 *   name twice, or a --device flag's name                      DEVICE_NAME_TAKEN        devices[i].name
 *   path not absolute                                          PATH_INVALID             devices[i].path
 *   sizeBytes / primarySizeBytes not a positive integer        SIZE_INVALID             devices[i].sizeBytes / …
 *     (sizeBytes: whole 512-byte sectors)
 *   path neither a block device nor a regular file             NOT_A_DEVICE             devices[i].path
 *   path missing and its directory missing                     NOT_FOUND                devices[i].path
 *   path missing and no sizeBytes to create it with            NOT_FOUND                devices[i].path
 *   device (or sizeBytes to create) smaller than               REPLICA_DEVICE_TOO_SMALL devices[i].path / .sizeBytes
 *     primarySizeBytes (or the size the primary declared)
 *     plus the header reserve (druvaa sizing --primary-size)
 *   path mounted, attached to a loop device, held open by      DEVICE_IN_USE            devices[i].path
 *     another process (src/io/mounts.ts)
 *   path given twice, or a --device flag's or the RS-WRL's     DEVICE_PATH_TAKEN        devices[i].path
 *   a running device dropped (or moved to another path)        DEVICE_FAILED_OVER /     devices (dropped) /
 *     while failed over, mid-resync or mid-seed                DEVICE_RESYNCING /       devices[i].path (moved)
 *                                                              DEVICE_SEEDING
 *
 * Not checked: what an existing image holds (a replica device is overwritten by replication).
 */
import { realpath, stat } from "node:fs/promises";
import { basename, dirname, isAbsolute, join } from "node:path";
import { sectorSizeBytes } from "../../constants.ts";
import { DruvaaError } from "../../errors.ts";
import { inUseBy } from "../../io/mounts.ts";
import { openBlockDevice } from "../../io/open-device.ts";
import { replicaDeviceSizeBytes } from "../../sizing.ts";
import { formatBytes } from "../../units.ts";
import { ConfigRefusal } from "../managed/config-routes.ts";
import { checkName } from "../common.ts";
import { checkRsWrlDeviceName } from "./resync-log.ts";

/** One replica device of the managed config: `name` is the client's device name (it travels in the WRL). */
export interface ManagedReplicaDeviceSpec {
  name: string;
  path: string;
  /** The size a missing image file is created with (sparse) at commit. */
  sizeBytes?: number;
  /** The primary's size: the device must hold it plus the header reserve. */
  primarySizeBytes: number;
}

export interface ManagedReplicaConfig {
  devices: ManagedReplicaDeviceSpec[];
}

/** A reason a running device cannot be dropped now. */
export interface RemovalBlocker {
  code: string;
  message: string;
  hint: string;
}

/** What validation needs to know of the running replica. */
export interface ValidateContext {
  /** `--device NAME=PATH` flags (not managed: they stay whatever the config says). */
  flagDevices: ReadonlyMap<string, string>;
  /** --protect-headers (0: unprotected). */
  protectHeadersBytes: number;
  /** --wrl: the RS-WRL's path (device names must fit its records), if any. */
  rsWrlPath: string | undefined;
  /** The size the primary declared for a device in an earlier shipment (saved state), if any. */
  declaredSizeBytes(name: string): number | undefined;
  /** Why the running device `name` cannot be dropped now (failed over, mid-resync, mid-seed), or undefined. */
  removalBlocker(name: string): RemovalBlocker | undefined;
}

/** Decodes and checks `raw` (see the table above); `current` is the committed config. */
export async function validateReplicaConfig(raw: unknown, current: ManagedReplicaConfig, context: ValidateContext): Promise<ManagedReplicaConfig> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw) || !Array.isArray((raw as { devices?: unknown }).devices)) {
    throw new ConfigRefusal("CONFIG_INVALID", "config: {devices: [...]} is needed", 'e.g. {"devices": [{"name": "disk0", "path": "/srv/replica/disk0.img", "sizeBytes": 1074790400, "primarySizeBytes": 1073741824}]}', "devices");
  }
  const entries = (raw as { devices: unknown[] }).devices;
  const devices = entries.map((entry, index) => decodeDevice(entry, `devices[${index}]`, context));
  const names = new Map<string, number>();
  for (const [index, device] of devices.entries()) {
    const field = `devices[${index}].name`;
    if (names.has(device.name)) throw new ConfigRefusal("DEVICE_NAME_TAKEN", `${field}: ${device.name} is also devices[${names.get(device.name)}]`, "Give every replica device its own name (the client's device name)", field);
    if (context.flagDevices.has(device.name)) throw new ConfigRefusal("DEVICE_NAME_TAKEN", `${field}: ${device.name} is a --device flag of this replica`, "Pick another name, or drop the --device flag and restart the replica", field);
    names.set(device.name, index);
  }
  await checkRemovals(devices, current, context);
  const taken = new Map<string, string>();
  for (const [name, path] of context.flagDevices) taken.set(await realpath(path).catch(() => path), `the --device flag ${name}`);
  if (context.rsWrlPath !== undefined) taken.set(await realpath(context.rsWrlPath).catch(() => context.rsWrlPath!), "the replica WRL (--wrl)");
  for (const [index, device] of devices.entries()) {
    const real = await checkPath(device, `devices[${index}]`, context);
    const other = taken.get(real);
    if (other !== undefined) throw new ConfigRefusal("DEVICE_PATH_TAKEN", `devices[${index}].path: ${device.path} is also ${other}`, "Give every replica device its own path", `devices[${index}].path`);
    taken.set(real, `devices[${index}]`);
  }
  return { devices };
}

function decodeDevice(entry: unknown, at: string, context: ValidateContext): ManagedReplicaDeviceSpec {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) throw new ConfigRefusal("CONFIG_INVALID", `${at}: an object {name, path, sizeBytes?, primarySizeBytes} is needed`, undefined, at);
  const { name, path, sizeBytes, primarySizeBytes } = entry as Record<string, unknown>;
  if (typeof name !== "string") throw new ConfigRefusal("DEVICE_NAME_INVALID", `${at}.name: a device name is needed`, "The client's device name, e.g. disk0", `${at}.name`);
  try {
    checkName(name, `${at}.name`);
    if (context.rsWrlPath !== undefined) checkRsWrlDeviceName(name);
  } catch (error) {
    const reason = error as DruvaaError;
    throw new ConfigRefusal("DEVICE_NAME_INVALID", reason.message, reason.hint, `${at}.name`);
  }
  if (typeof path !== "string" || !isAbsolute(path)) throw new ConfigRefusal("PATH_INVALID", `${at}.path: an absolute path is needed`, "e.g. /srv/replica/disk0.img or /dev/sdc", `${at}.path`);
  if (sizeBytes !== undefined && !(isPositiveInteger(sizeBytes) && sizeBytes % sectorSizeBytes === 0)) {
    throw new ConfigRefusal("SIZE_INVALID", `${at}.sizeBytes: ${String(sizeBytes)} is not a positive number of whole ${sectorSizeBytes}-byte sectors`, "druvaa sizing --primary-size SIZE tells the size a replica device needs", `${at}.sizeBytes`);
  }
  if (!isPositiveInteger(primarySizeBytes)) throw new ConfigRefusal("SIZE_INVALID", `${at}.primarySizeBytes: the primary's size in bytes is needed`, undefined, `${at}.primarySizeBytes`);
  return { name, path, ...(sizeBytes === undefined ? {} : { sizeBytes }), primarySizeBytes };
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

/** Refuses to drop (or move) a running device that is failed over, mid-resync or mid-seed. */
async function checkRemovals(devices: readonly ManagedReplicaDeviceSpec[], current: ManagedReplicaConfig, context: ValidateContext): Promise<void> {
  for (const running of current.devices) {
    const index = devices.findIndex((device) => device.name === running.name);
    if (index >= 0 && devices[index]!.path === running.path) continue;
    const blocker = context.removalBlocker(running.name);
    if (blocker === undefined) continue;
    const field = index < 0 ? "devices" : `devices[${index}].path`;
    const change = index < 0 ? `dropping device ${running.name}` : `moving device ${running.name} from ${running.path}`;
    throw new ConfigRefusal(blocker.code, `${change}: ${blocker.message}`, blocker.hint, field);
  }
}

/** Checks the device's path and size; returns its real path (for a missing one: where it will be created). */
async function checkPath(device: ManagedReplicaDeviceSpec, at: string, context: ValidateContext): Promise<string> {
  const field = `${at}.path`;
  const neededBytes = replicaDeviceSizeBytes(Math.max(device.primarySizeBytes, context.declaredSizeBytes(device.name) ?? 0), context.protectHeadersBytes);
  const reserve = context.protectHeadersBytes > 0 ? ` (the primary's ${formatBytes(device.primarySizeBytes)} plus the ${formatBytes(context.protectHeadersBytes)} header reserve)` : " (the primary's size)";
  const found = await stat(device.path).catch((error: unknown) => {
    if ((error as { code?: unknown }).code === "ENOENT") return undefined;
    throw new ConfigRefusal("NOT_A_DEVICE", `${field}: ${device.path}: ${(error as Error).message}`, undefined, field);
  });
  if (found === undefined) {
    const parent = await stat(dirname(device.path)).catch(() => undefined);
    if (parent?.isDirectory() !== true) throw new ConfigRefusal("NOT_FOUND", `${field}: neither ${device.path} nor its directory exists`, `Create the directory ${dirname(device.path)}, or check the path`, field);
    if (device.sizeBytes === undefined) throw new ConfigRefusal("NOT_FOUND", `${field}: ${device.path} does not exist, and no sizeBytes was given to create it`, `Give sizeBytes (at least ${neededBytes}: druvaa sizing --primary-size ${device.primarySizeBytes}), or check the path`, field);
    if (device.sizeBytes < neededBytes) throw tooSmall(`${at}.sizeBytes`, `${device.sizeBytes} bytes`, neededBytes, reserve);
    return join(await realpath(dirname(device.path)), basename(device.path));
  }
  if (!found.isFile() && !found.isBlockDevice()) throw new ConfigRefusal("NOT_A_DEVICE", `${field}: ${device.path} is neither a block device nor an image file`, "Give a block device (lsblk lists them) or an image file", field);
  const opened = await openBlockDevice(device.path, { readOnly: true }).catch((error: unknown) => {
    const reason = error instanceof DruvaaError ? error : new DruvaaError("IO_ERROR", String(error));
    throw new ConfigRefusal(reason.code, `${field}: ${reason.message}`, reason.hint, field);
  });
  const sizeBytes = opened.sizeBytes;
  await opened.close();
  if (sizeBytes < neededBytes) throw tooSmall(field, `${device.path} holds ${sizeBytes} bytes`, neededBytes, reserve);
  const holder = await inUseBy(device.path);
  if (holder !== undefined) throw new ConfigRefusal("DEVICE_IN_USE", `${field}: ${device.path} is in use (${holder})`, "A replica device must not be mounted or open elsewhere: unmount it, stop what holds it, or give another path", field);
  return realpath(device.path);
}

function tooSmall(field: string, what: string, neededBytes: number, reserve: string): ConfigRefusal {
  return new ConfigRefusal("REPLICA_DEVICE_TOO_SMALL", `${field}: ${what}, but it needs ${neededBytes}${reserve}`, `druvaa sizing --primary-size tells the size; grow an image with: truncate -s ${neededBytes} PATH`, field);
}
