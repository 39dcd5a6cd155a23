/**
 * Creating and opening a write log on its devices: the steps before a WriteLog can take appends.
 * Everything that could refuse (sizes, an existing log, membership) is checked before the first
 * byte is written, so a refused create leaves every device exactly as it was.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { BlockDevice } from "../io/block-device.ts";
import { alignedBuffer } from "../io/raw-device.ts";
import { DruvaaError, exitCodes, usageError } from "../errors.ts";
import { formatBytes } from "../units.ts";
import {
  directIoAlignmentBytes,
  wrlAlignmentBytes,
  wrlDeviceSizeBytesMin,
  wrlDevicesMax,
  wrlSecondaryHeaderAreaBytes,
  wrlSuperblockAreaBytes,
  wrlSuperblockCopyBytes,
} from "../constants.ts";
import { batchCapacityBytes } from "./batch.ts";
import { LogGeometry } from "./geometry.ts";
import { LogReader } from "./log-reader.ts";
import { keyCheckValue, PayloadCipher, wrlKeyBytes, wrlKeySaltBytes } from "./payload-cipher.ts";
import { alignDown } from "./record-format.ts";
import { readSuperblock, scanLog, verifySecondary } from "./recovery.ts";
import {
  decodeSecondaryHeader,
  decodeSuperblock,
  encodeSecondaryHeader,
  encodeSuperblock,
  isUuid,
  superblockCopyOffset,
  uuidToBytes,
  wrlFormatVersion,
  wrlFormatVersionEncrypted,
  type Superblock,
} from "./superblock.ts";
import type { WrlDeviceEntry, WrlDeviceResolver, WrlRecoveryReport } from "./types.ts";

export interface CreateOptions {
  /** The WRL's uuid; random by default. */
  uuid?: string;
  /** Source of device uuids (tests and fixtures pass a deterministic one). */
  uuidSource?: () => string;
  /** Overwrite devices that already hold a write log (or are a member of one). */
  force?: boolean;
  /** Use at most this many bytes of each device (the rest is left alone). */
  deviceBytesMax?: number;
  /** What to record as each device's path hint; defaults to device.name. */
  pathHints?: string[];
  /** Encrypt record payloads at rest with this 32-byte key (key-file.ts, payload-cipher.ts). */
  payloadKey?: Uint8Array;
}

export interface OpenOptions {
  /** Recover and report without writing anything (no incarnation bump, no checkpoint). */
  readOnly?: boolean;
  uuidSource?: () => string;
  /** The key of an encrypted WRL; refused for a WRL that does not encrypt (WRL_NOT_ENCRYPTED). */
  payloadKey?: Uint8Array;
  /**
   * Open an encrypted WRL read-write without its key, for metadata work (add-device): appends
   * and reads of records from disk then refuse with WRL_KEY_REQUIRED. Read-only opens may always
   * go without the key (recovery checks payloads as stored).
   */
  keyless?: boolean;
}

/** What a WriteLog starts from. */
export interface InitialState {
  devices: BlockDevice[];
  superblock: Superblock;
  readOnly: boolean;
  headPosition: number;
  headLsn: number;
  /** Incarnation of record headLsn, if known without reading the disk. */
  headIncarnation: number | undefined;
  recovery: WrlRecoveryReport | undefined;
  uuidSource: () => string;
  /** Set when the WRL encrypts payloads and the key was given. */
  cipher: PayloadCipher | undefined;
}

const defaultUuidSource = (): string => crypto.randomUUID();

function checkKeyLength(key: Uint8Array): void {
  if (key.length !== wrlKeyBytes) throw usageError(`a write log key has ${wrlKeyBytes} bytes, got ${key.length}`);
}

/**
 * Matches the key given to an open with what the superblock says:
 *   unencrypted WRL, key given      -> WRL_NOT_ENCRYPTED (its records are in the clear: re-create it)
 *   encrypted, key matches          -> the cipher
 *   encrypted, other key            -> WRL_KEY_MISMATCH (also read-only)
 *   encrypted, no key, read-write   -> WRL_KEY_REQUIRED, unless keyless (metadata work)
 *   encrypted, no key, read-only    -> no cipher: recovery and info work, reading payloads refuses
 */
function cipherFor(name: string, sb: Superblock, opts: OpenOptions): PayloadCipher | undefined {
  const key = opts.payloadKey;
  if (sb.encryption === undefined) {
    if (key === undefined) return undefined;
    throw new DruvaaError("WRL_NOT_ENCRYPTED", `${name}: write log ${sb.uuid} was created without encryption at rest; its payloads are stored in the clear`, `Drain it, then re-create it encrypted: druvaa wrl create --force --encrypt-at-rest KEYFILE --primary ${name}; or start without --encrypt-at-rest`, exitCodes.refused);
  }
  const uuid = uuidToBytes(sb.uuid);
  if (key === undefined) {
    if (opts.readOnly === true || opts.keyless === true) return undefined;
    throw new DruvaaError("WRL_KEY_REQUIRED", `${name}: write log ${sb.uuid} encrypts payloads at rest and no key was given`, "Give the key file it was created with: --encrypt-at-rest KEYFILE", exitCodes.refused);
  }
  checkKeyLength(key);
  const check = keyCheckValue(key, uuid, sb.encryption.salt);
  if (!timingSafeEqual(check, sb.encryption.keyCheck)) {
    throw new DruvaaError("WRL_KEY_MISMATCH", `${name}: the key given is not the key write log ${sb.uuid} was created with`, "Give the key file used at druvaa wrl create --encrypt-at-rest (check the path, and that the file was not regenerated)", exitCodes.refused);
  }
  return new PayloadCipher(key, uuid, sb.encryption.salt);
}

/** Writes `sb` to the copy its sequence selects and flushes the primary. */
export async function writeSuperblockCopy(primary: BlockDevice, sb: Superblock): Promise<void> {
  const buffer = alignedBuffer(wrlSuperblockCopyBytes, directIoAlignmentBytes);
  encodeSuperblock(sb, buffer);
  await primary.write(superblockCopyOffset(sb.sequence % 2), buffer);
  await primary.flush();
}

/** A device entry for a new member, after checking its size. */
export function describeNewDevice(device: BlockDevice, index: number, uuid: string, pathHint: string, deviceBytesMax: number | undefined): WrlDeviceEntry {
  const usableBytes = alignDown(Math.min(device.sizeBytes, deviceBytesMax ?? Number.MAX_SAFE_INTEGER), wrlAlignmentBytes);
  if (usableBytes < wrlDeviceSizeBytesMin) {
    const limited = deviceBytesMax !== undefined && deviceBytesMax < device.sizeBytes ? ` (limited to ${formatBytes(deviceBytesMax)} by --size)` : "";
    throw new DruvaaError(
      "WRL_TOO_SMALL",
      `${device.name}: ${formatBytes(usableBytes)}${limited} is too small for a write log device; the minimum is ${formatBytes(wrlDeviceSizeBytesMin)}`,
      "Use a larger device or image (size it with: druvaa sizing), e.g. truncate -s 10G IMAGE",
      exitCodes.refused,
    );
  }
  const dataStartBytes = index === 0 ? wrlSuperblockAreaBytes : wrlSecondaryHeaderAreaBytes;
  return { index, uuid, pathHint, sizeBytes: device.sizeBytes, dataStartBytes, dataBytes: usableBytes - dataStartBytes };
}

/**
 * Refuses (WRL_EXISTS) a device that already holds a write log or belongs to one, unless forced.
 * `rejoining` accepts a secondary header of that WRL at an index it does not list yet: the
 * leftover of an add-device that was interrupted before its superblock write.
 */
export async function refuseExistingWrl(device: BlockDevice, force: boolean, rejoining?: { wrlUuid: string; firstFreeIndex: number }): Promise<void> {
  if (force) return;
  const owner = await existingWrl(device);
  if (owner === undefined) return;
  if (rejoining !== undefined && owner.wrlUuid === rejoining.wrlUuid && owner.secondaryIndex !== undefined && owner.secondaryIndex >= rejoining.firstFreeIndex) return;
  throw new DruvaaError("WRL_EXISTS", `${device.name}: already ${owner.description}`, `Inspect it with: druvaa wrl info ${device.name}; to overwrite it, add --force (its records are lost)`, exitCodes.refused);
}

async function existingWrl(device: BlockDevice): Promise<{ description: string; wrlUuid?: string; secondaryIndex?: number } | undefined> {
  if (device.sizeBytes >= wrlSuperblockAreaBytes) {
    for (const copy of [0, 1]) {
      const probe = decodeSuperblock(await device.read(superblockCopyOffset(copy), wrlSuperblockCopyBytes));
      if (probe.kind === "valid") return { description: `holds write log ${probe.value.uuid}`, wrlUuid: probe.value.uuid };
      if (probe.kind === "corrupt" || probe.kind === "unsupported-version") return { description: "holds a write log superblock (damaged or of a newer version)" };
    }
  }
  if (device.sizeBytes >= wrlSecondaryHeaderAreaBytes) {
    const probe = decodeSecondaryHeader(await device.read(0, wrlSecondaryHeaderAreaBytes));
    if (probe.kind === "valid") return { description: `device ${probe.value.index} of write log ${probe.value.wrlUuid}`, wrlUuid: probe.value.wrlUuid, secondaryIndex: probe.value.index };
  }
  return undefined;
}

/** Lays a new, empty write log over `devices` (primary first). */
export async function createLog(devices: BlockDevice[], opts: CreateOptions): Promise<InitialState> {
  if (devices.length < 1 || devices.length > wrlDevicesMax) throw usageError(`a write log has 1 to ${wrlDevicesMax} devices, got ${devices.length}`);
  if (new Set(devices).size !== devices.length || new Set(devices.map((d) => d.name)).size !== devices.length) {
    throw usageError("the same device is given twice", "Give each device once: --primary PATH [--secondary PATH ...]");
  }
  const uuid = opts.uuid ?? defaultUuidSource();
  if (!isUuid(uuid)) throw usageError(`not a uuid: ${uuid}`);
  if (opts.payloadKey !== undefined) checkKeyLength(opts.payloadKey);
  const uuidSource = opts.uuidSource ?? defaultUuidSource;
  const entries = devices.map((device, index) => describeNewDevice(device, index, uuidSource(), opts.pathHints?.[index] ?? device.name, opts.deviceBytesMax));
  for (const device of devices) await refuseExistingWrl(device, opts.force ?? false);

  // Secondaries first: until the superblock lists them, their headers are harmless.
  for (const [index, device] of devices.entries()) {
    if (index === 0) continue;
    await writeSecondaryHeader(device, entries[index]!, uuid);
  }
  const primary = devices[0]!;
  // Clear both copies first: an older log's copy must never outrank a half-written new one.
  await primary.write(0, alignedBuffer(wrlSuperblockAreaBytes, directIoAlignmentBytes));
  await primary.flush();
  const logSizeBytes = entries.reduce((sum, e) => sum + e.dataBytes, 0);
  const checkpoint = { tailPosition: 0, tailLsn: 0, tailIncarnation: 0, headPosition: 0, headLsn: 0 };
  let superblock: Superblock = { formatVersion: wrlFormatVersion, sequence: 1, uuid, incarnation: 1, logSizeBytes, checkpoint, devices: entries };
  let cipher: PayloadCipher | undefined;
  if (opts.payloadKey !== undefined) {
    const salt = new Uint8Array(randomBytes(wrlKeySaltBytes));
    const uuidBytes = uuidToBytes(uuid);
    superblock = { ...superblock, formatVersion: wrlFormatVersionEncrypted, encryption: { keyCheck: keyCheckValue(opts.payloadKey, uuidBytes, salt), salt } };
    cipher = new PayloadCipher(opts.payloadKey, uuidBytes, salt);
  }
  await writeSuperblockCopy(primary, superblock);
  superblock = { ...superblock, sequence: 2 };
  await writeSuperblockCopy(primary, superblock);
  return { devices, superblock, readOnly: false, headPosition: 0, headLsn: 0, headIncarnation: undefined, recovery: undefined, uuidSource, cipher };
}

/** Opens an existing log: superblock, membership, recovery scan; persists a new incarnation unless read-only. */
export async function openLog(
  given: BlockDevice[] | { primary: BlockDevice; resolve: WrlDeviceResolver },
  opts: OpenOptions,
): Promise<InitialState> {
  const primary = Array.isArray(given) ? given[0] : given.primary;
  if (primary === undefined) throw usageError("no primary device given");
  const chosen = await readSuperblock(primary);
  const sb = chosen.superblock;
  const cipher = cipherFor(primary.name, sb, opts); // before any device is opened or written
  const devices: BlockDevice[] = [primary];
  const resolved: BlockDevice[] = [];
  try {
    if (Array.isArray(given) && given.length > sb.devices.length) {
      throw new DruvaaError("WRL_DEVICE_NOT_MEMBER", `${given[sb.devices.length]!.name}: write log ${sb.uuid} has only ${sb.devices.length} device(s)`, "Add it first: druvaa wrl add-device WRL PATH", exitCodes.refused);
    }
    for (const entry of sb.devices.slice(1)) {
      let device: BlockDevice | undefined;
      if (Array.isArray(given)) {
        device = given[entry.index];
      } else {
        device = await given.resolve(entry).catch((error: unknown) => {
          throw new DruvaaError("WRL_DEVICE_MISSING", `write log ${sb.uuid}: cannot open device ${entry.index} (${entry.pathHint}): ${error instanceof Error ? error.message : String(error)}`, `Attach the device that was added as ${entry.pathHint}`, exitCodes.notFound, { cause: error });
        });
        resolved.push(device);
      }
      if (device === undefined) {
        throw new DruvaaError("WRL_DEVICE_MISSING", `write log ${sb.uuid}: device ${entry.index} (${entry.pathHint}) was not given`, `Open it with all ${sb.devices.length} devices, in order`, exitCodes.notFound);
      }
      await verifySecondary(device, entry, sb.uuid);
      devices.push(device);
    }
    if (primary.sizeBytes < sb.devices[0]!.dataStartBytes + sb.devices[0]!.dataBytes) {
      throw new DruvaaError("WRL_DEVICE_TOO_SMALL", `${primary.name}: ${primary.sizeBytes} bytes, but its write log area needs ${sb.devices[0]!.dataStartBytes + sb.devices[0]!.dataBytes}`, "Was the image or device shrunk?", exitCodes.refused);
    }
    const geometry = new LogGeometry(sb.devices);
    const reader = new LogReader(geometry, devices, uuidToBytes(sb.uuid));
    const scan = await scanLog(reader, geometry, sb, batchCapacityBytes(geometry));
    const recovery: WrlRecoveryReport = { superblockCopy: chosen.copy, otherCopy: chosen.other, scannedRecordCount: scan.scannedRecordCount, stopReason: scan.stopReason };
    let superblock = sb;
    const readOnly = opts.readOnly ?? false;
    if (!readOnly) {
      // The new incarnation is durable before any record carries it: stale records of this
      // open's predecessors can then never pass for records written after it.
      const checkpoint = { ...sb.checkpoint, headPosition: scan.headPosition, headLsn: scan.headLsn };
      if (checkpoint.headLsn === checkpoint.tailLsn) checkpoint.tailPosition = checkpoint.headPosition;
      superblock = { ...sb, sequence: sb.sequence + 1, incarnation: sb.incarnation + 1, checkpoint };
      await writeSuperblockCopy(primary, superblock);
    }
    return {
      devices,
      superblock,
      readOnly,
      headPosition: scan.headPosition,
      headLsn: scan.headLsn,
      headIncarnation: scan.headIncarnation,
      recovery,
      uuidSource: opts.uuidSource ?? defaultUuidSource,
      cipher,
    };
  } catch (error) {
    await Promise.allSettled(resolved.map((device) => device.close()));
    throw error;
  }
}

/** The secondary header for a device joining an open log. */
export async function writeSecondaryHeader(device: BlockDevice, entry: WrlDeviceEntry, wrlUuid: string): Promise<void> {
  const header = alignedBuffer(wrlSecondaryHeaderAreaBytes, directIoAlignmentBytes);
  encodeSecondaryHeader({ index: entry.index, wrlUuid, deviceUuid: entry.uuid, sizeBytes: entry.sizeBytes, dataStartBytes: entry.dataStartBytes, dataBytes: entry.dataBytes }, header);
  await device.write(0, header);
  await device.flush();
}
