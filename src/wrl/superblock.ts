/**
 * WRL metadata on disk: the superblock on the primary device and the header of each secondary.
 *
 * The superblock area (wrlSuperblockAreaBytes at the start of the primary) holds two copies,
 * at 0 and at half the area. Writes alternate between them (copy = sequence % 2) and each is
 * flushed before the next, so at most one copy is ever in flight: a torn superblock write leaves
 * the other, older copy intact. Layout of one copy (wrlSuperblockCopyBytes):
 *
 *   off size field
 *     0   8  magic "DRUVAWRL"
 *     8   4  format version (1; 2 when payloads are encrypted, so a druvaa that predates
 *              encryption refuses the log instead of relaying ciphertext)
 *    12   4  copy size in bytes
 *    16   8  sequence (bumped on every superblock write)
 *    24  16  WRL uuid
 *    40   4  incarnation (bumped on every read-write open, before any record is written)
 *    44   4  device count
 *    48   8  total log size in bytes (cross-check of the device list)
 *    56   8  checkpoint tail position  (log position just past record tailLsn)
 *    64   8  checkpoint tail LSN       (every record <= it was shipped and is freed)
 *    72   4  incarnation of record tailLsn (0 if none)
 *    80   8  checkpoint head position  (log position just past record headLsn; durable)
 *    88   8  checkpoint head LSN
 *    96   4  version 2 only: feature flags (bit 0: payloads encrypted at rest, payload-cipher.ts)
 *   100  12  version 2 only: key check value
 *   112  16  version 2 only: key salt (random, drawn at create)
 *   128 256×n device entries: uuid 16, index 4, 0 4, size 8, data start 8, data bytes 8,
 *             path hint length 2, path hint (UTF-8)
 *   last 4   crc32c of everything before it
 *
 * A secondary device starts with a header (wrlSecondaryHeaderAreaBytes) naming the WRL and its
 * index, so a device is never used by a WRL it does not belong to:
 *     0 8 magic "DRUVAWLX", 8 4 version, 12 4 index, 16 16 WRL uuid, 32 16 device uuid,
 *    48 8 size, 56 8 data start, 64 8 data bytes, last 4 crc32c.
 */
import { assert } from "../assert.ts";
import {
  wrlDevicesMax,
  wrlPathHintBytesMax,
  wrlSecondaryHeaderAreaBytes,
  wrlSuperblockAreaBytes,
  wrlSuperblockCopyBytes,
} from "../constants.ts";
import { crc32c } from "./crc32c.ts";
import { getU64, setU64 } from "./record-format.ts";
import type { WrlDeviceEntry } from "./types.ts";

export const wrlFormatVersion = 1;
/** The format of a WRL whose payloads are encrypted (bytes 96..128 hold the key check). */
export const wrlFormatVersionEncrypted = 2;
const featureEncryptedPayloads = 1;
const superblockMagic = new TextEncoder().encode("DRUVAWRL");
const secondaryMagic = new TextEncoder().encode("DRUVAWLX");
const deviceEntriesAt = 128;
const deviceEntryBytes = 256;
assert(deviceEntriesAt + wrlDevicesMax * deviceEntryBytes + 4 <= wrlSuperblockCopyBytes, "device list fits a superblock copy");
assert(50 + wrlPathHintBytesMax <= deviceEntryBytes, "path hint fits a device entry");

/** Byte offset of superblock copy 0 or 1 on the primary device. */
export function superblockCopyOffset(copy: number): number {
  assert(copy === 0 || copy === 1, "two superblock copies");
  return copy * (wrlSuperblockAreaBytes / 2);
}

export interface Checkpoint {
  tailPosition: number;
  tailLsn: number;
  tailIncarnation: number;
  headPosition: number;
  headLsn: number;
}

export interface Superblock {
  formatVersion: number;
  sequence: number;
  uuid: string;
  incarnation: number;
  logSizeBytes: number;
  checkpoint: Checkpoint;
  devices: WrlDeviceEntry[];
  /** Set (with format version 2) when record payloads are encrypted at rest. */
  encryption?: SuperblockEncryption;
}

export interface SuperblockEncryption {
  /** keyCheckValue(key, uuid, salt) of the key the WRL was created with. */
  keyCheck: Uint8Array;
  salt: Uint8Array;
}

export type MetadataProbe<T> =
  | { kind: "valid"; value: T }
  | { kind: "zeroed" }
  | { kind: "no-magic" }
  /** Magic present, checksum or fields wrong: torn write or damage. */
  | { kind: "corrupt"; detail: string }
  | { kind: "unsupported-version"; version: number };

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function uuidToBytes(uuid: string): Uint8Array {
  const hex = uuid.replace(/-/g, "");
  assert(/^[0-9a-f]{32}$/i.test(hex), `not a uuid: ${uuid}`);
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 16; i += 1) bytes[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

export function uuidFromBytes(bytes: Uint8Array): string {
  const hex = [...bytes.subarray(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function isUuid(text: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text);
}

/** Path hints longer than the field keep their end (the distinctive part of a path). */
export function truncatePathHint(path: string): string {
  let hint = path;
  while (encoder.encode(hint).length > wrlPathHintBytesMax) hint = hint.slice(1);
  return hint;
}

function hasMagic(bytes: Uint8Array, magic: Uint8Array): boolean {
  for (let i = 0; i < magic.length; i += 1) if (bytes[i] !== magic[i]) return false;
  return true;
}

function isZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i += 1) if (bytes[i] !== 0) return false;
  return true;
}

function checksumHolds(bytes: Uint8Array): boolean {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  return crc32c(bytes.subarray(0, bytes.length - 4)) === view.getUint32(bytes.length - 4, true);
}

function seal(bytes: Uint8Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  view.setUint32(bytes.length - 4, crc32c(bytes.subarray(0, bytes.length - 4)), true);
}

export function encodeSuperblock(sb: Superblock, target: Uint8Array): void {
  assert(target.length === wrlSuperblockCopyBytes, "superblock copy buffer");
  assert(sb.devices.length >= 1 && sb.devices.length <= wrlDevicesMax, "device count");
  target.fill(0);
  const view = new DataView(target.buffer, target.byteOffset, target.length);
  target.set(superblockMagic, 0);
  view.setUint32(8, sb.formatVersion, true);
  view.setUint32(12, wrlSuperblockCopyBytes, true);
  setU64(view, 16, sb.sequence);
  target.set(uuidToBytes(sb.uuid), 24);
  view.setUint32(40, sb.incarnation, true);
  view.setUint32(44, sb.devices.length, true);
  setU64(view, 48, sb.logSizeBytes);
  const cp = sb.checkpoint;
  setU64(view, 56, cp.tailPosition);
  setU64(view, 64, cp.tailLsn);
  view.setUint32(72, cp.tailIncarnation, true);
  setU64(view, 80, cp.headPosition);
  setU64(view, 88, cp.headLsn);
  assert((sb.formatVersion === wrlFormatVersionEncrypted) === (sb.encryption !== undefined), "format version 2 exactly for encrypted WRLs");
  if (sb.encryption !== undefined) {
    assert(sb.encryption.keyCheck.length === 12 && sb.encryption.salt.length === 16, "key check and salt sizes");
    view.setUint32(96, featureEncryptedPayloads, true);
    target.set(sb.encryption.keyCheck, 100);
    target.set(sb.encryption.salt, 112);
  }
  sb.devices.forEach((device, i) => {
    const at = deviceEntriesAt + i * deviceEntryBytes;
    target.set(uuidToBytes(device.uuid), at);
    view.setUint32(at + 16, device.index, true);
    setU64(view, at + 24, device.sizeBytes);
    setU64(view, at + 32, device.dataStartBytes);
    setU64(view, at + 40, device.dataBytes);
    const hint = encoder.encode(truncatePathHint(device.pathHint));
    view.setUint16(at + 48, hint.length, true);
    target.set(hint, at + 50);
  });
  seal(target);
}

export function decodeSuperblock(bytes: Uint8Array): MetadataProbe<Superblock> {
  assert(bytes.length === wrlSuperblockCopyBytes, "superblock copy buffer");
  if (!hasMagic(bytes, superblockMagic)) return isZero(bytes) ? { kind: "zeroed" } : { kind: "no-magic" };
  if (!checksumHolds(bytes)) return { kind: "corrupt", detail: "checksum mismatch" };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const formatVersion = view.getUint32(8, true);
  if (formatVersion !== wrlFormatVersion && formatVersion !== wrlFormatVersionEncrypted) return { kind: "unsupported-version", version: formatVersion };
  let encryption: SuperblockEncryption | undefined;
  if (formatVersion === wrlFormatVersionEncrypted) {
    // Version 2 always names encryption; other feature bits are a format this druvaa does not know.
    if (view.getUint32(96, true) !== featureEncryptedPayloads) return { kind: "unsupported-version", version: formatVersion };
    encryption = { keyCheck: bytes.slice(100, 112), salt: bytes.slice(112, 128) };
  }
  const deviceCount = view.getUint32(44, true);
  if (view.getUint32(12, true) !== wrlSuperblockCopyBytes || deviceCount < 1 || deviceCount > wrlDevicesMax) {
    return { kind: "corrupt", detail: "copy size or device count out of range" };
  }
  const devices: WrlDeviceEntry[] = [];
  for (let i = 0; i < deviceCount; i += 1) {
    const at = deviceEntriesAt + i * deviceEntryBytes;
    const hintLength = view.getUint16(at + 48, true);
    if (hintLength > wrlPathHintBytesMax) return { kind: "corrupt", detail: `device ${i}: path hint length` };
    let pathHint: string;
    try {
      pathHint = decoder.decode(bytes.subarray(at + 50, at + 50 + hintLength));
    } catch {
      return { kind: "corrupt", detail: `device ${i}: path hint is not UTF-8` };
    }
    devices.push({
      index: view.getUint32(at + 16, true),
      uuid: uuidFromBytes(bytes.subarray(at, at + 16)),
      pathHint,
      sizeBytes: getU64(view, at + 24),
      dataStartBytes: getU64(view, at + 32),
      dataBytes: getU64(view, at + 40),
    });
  }
  const sb: Superblock = {
    formatVersion,
    sequence: getU64(view, 16),
    uuid: uuidFromBytes(bytes.subarray(24, 40)),
    incarnation: view.getUint32(40, true),
    logSizeBytes: getU64(view, 48),
    checkpoint: {
      tailPosition: getU64(view, 56),
      tailLsn: getU64(view, 64),
      tailIncarnation: view.getUint32(72, true),
      headPosition: getU64(view, 80),
      headLsn: getU64(view, 88),
    },
    devices,
    ...(encryption === undefined ? {} : { encryption }),
  };
  const problem = superblockProblem(sb);
  return problem === undefined ? { kind: "valid", value: sb } : { kind: "corrupt", detail: problem };
}

/** Cross-checks a checksummed superblock; a message if it is inconsistent (a bug wrote it). */
function superblockProblem(sb: Superblock): string | undefined {
  const cp = sb.checkpoint;
  const numbers = [sb.sequence, sb.logSizeBytes, cp.tailPosition, cp.tailLsn, cp.headPosition, cp.headLsn];
  if (numbers.some(Number.isNaN)) return "field out of range";
  let total = 0;
  for (const [i, device] of sb.devices.entries()) {
    if (device.index !== i) return `device ${i}: index ${device.index}`;
    if ([device.sizeBytes, device.dataStartBytes, device.dataBytes].some(Number.isNaN)) return `device ${i}: size out of range`;
    if (device.dataStartBytes + device.dataBytes > device.sizeBytes || device.dataBytes <= 0) return `device ${i}: log area outside the device`;
    total += device.dataBytes;
  }
  if (total !== sb.logSizeBytes) return `device sizes add up to ${total}, superblock says ${sb.logSizeBytes}`;
  if (cp.tailPosition >= total || cp.headPosition >= total) return "checkpoint position outside the log";
  if (cp.tailLsn > cp.headLsn) return "checkpoint tail is ahead of its head";
  if (sb.incarnation < 1) return "incarnation 0";
  return undefined;
}

export interface SecondaryHeader {
  index: number;
  wrlUuid: string;
  deviceUuid: string;
  sizeBytes: number;
  dataStartBytes: number;
  dataBytes: number;
}

export function encodeSecondaryHeader(header: SecondaryHeader, target: Uint8Array): void {
  assert(target.length === wrlSecondaryHeaderAreaBytes, "secondary header buffer");
  target.fill(0);
  const view = new DataView(target.buffer, target.byteOffset, target.length);
  target.set(secondaryMagic, 0);
  view.setUint32(8, wrlFormatVersion, true);
  view.setUint32(12, header.index, true);
  target.set(uuidToBytes(header.wrlUuid), 16);
  target.set(uuidToBytes(header.deviceUuid), 32);
  setU64(view, 48, header.sizeBytes);
  setU64(view, 56, header.dataStartBytes);
  setU64(view, 64, header.dataBytes);
  seal(target);
}

export function decodeSecondaryHeader(bytes: Uint8Array): MetadataProbe<SecondaryHeader> {
  assert(bytes.length === wrlSecondaryHeaderAreaBytes, "secondary header buffer");
  if (!hasMagic(bytes, secondaryMagic)) return isZero(bytes) ? { kind: "zeroed" } : { kind: "no-magic" };
  if (!checksumHolds(bytes)) return { kind: "corrupt", detail: "checksum mismatch" };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const version = view.getUint32(8, true);
  if (version !== wrlFormatVersion) return { kind: "unsupported-version", version };
  return {
    kind: "valid",
    value: {
      index: view.getUint32(12, true),
      wrlUuid: uuidFromBytes(bytes.subarray(16, 32)),
      deviceUuid: uuidFromBytes(bytes.subarray(32, 48)),
      sizeBytes: getU64(view, 48),
      dataStartBytes: getU64(view, 56),
      dataBytes: getU64(view, 64),
    },
  };
}
