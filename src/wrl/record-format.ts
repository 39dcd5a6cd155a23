/**
 * On-disk WRL record: a fixed header at the start of a 4 KiB-aligned block, the payload right
 * after it, zeros up to the next 4 KiB boundary. Two checksums: `payloadCrc` over the payload and
 * `headerCrc` over the header including `payloadCrc`, so the header and payload are covered
 * together while a header alone can be validated without reading its payload (walking the log,
 * recovery's look-ahead).
 *
 *   off size field
 *     0   4  magic "WRLR"
 *     4   1  header version (1)
 *     5   1  type (1 write, 2 zero, 3 trim, 4 resync, 5 marker)
 *     6   1  device name length (0: the device is numbered)
 *     7   1  zero
 *     8   8  lsn
 *    16   8  epoch
 *    24   8  seq
 *    32   8  offset on the client device
 *    40   8  extent length on the client device
 *    48   8  durable LSN when the record was written: every LSN up to it was acknowledged
 *    56   4  payload bytes
 *    60   4  flags
 *    64   4  device number
 *    68   4  incarnation of the WRL that wrote it
 *    72  16  WRL uuid
 *    88  64  device name (UTF-8, zero padded)
 *   152   4  payloadCrc  crc32c(payload as stored: the ciphertext when the WRL encrypts payloads)
 *   156   4  headerCrc   crc32c(bytes 0..156)
 * Integers are little-endian; 8-byte fields hold safe integers (< 2^53). In an encrypted WRL
 * the payload is AES-256-CTR ciphertext of the same length (payload-cipher.ts); headers stay clear.
 */
import { assert } from "../assert.ts";
import { wrlAlignmentBytes, wrlDeviceNameBytesMax, wrlRecordHeaderBytes } from "../constants.ts";
import { crc32c } from "./crc32c.ts";
import type { PayloadCipher } from "./payload-cipher.ts";
import type { WrlRecordType } from "./types.ts";

export const recordMagic = 0x524c5257; // "WRLR" read as a little-endian u32
export const recordHeaderVersion = 1;

const typeCodes: Record<WrlRecordType, number> = { write: 1, zero: 2, trim: 3, resync: 4, marker: 5 };
const typesByCode: Array<WrlRecordType | undefined> = [undefined, "write", "zero", "trim", "resync", "marker"];

export function isRecordType(value: unknown): value is WrlRecordType {
  return typeof value === "string" && Object.hasOwn(typeCodes, value);
}

/** Header fields as stored; `device` is a number or a name. */
export interface RecordHeader {
  lsn: number;
  type: WrlRecordType;
  epoch: number;
  seq: number;
  offset: number;
  lengthBytes: number;
  /** Every LSN <= this was durable (acknowledged) before this record was written. */
  durableLsn: number;
  payloadBytes: number;
  flags: number;
  device: number | string;
  incarnation: number;
  uuid: Uint8Array;
  payloadCrc: number;
}

/** Bytes a record with this payload takes in the log (header + payload, rounded up to 4 KiB). */
export function recordSizeBytes(payloadBytes: number): number {
  return alignUp(wrlRecordHeaderBytes + payloadBytes, wrlAlignmentBytes);
}

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

export function alignDown(value: number, alignment: number): number {
  return Math.floor(value / alignment) * alignment;
}

const twoTo32 = 0x1_0000_0000;

export function setU64(view: DataView, at: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64 field must be a safe non-negative integer, got ${value}`);
  view.setUint32(at, value % twoTo32, true);
  view.setUint32(at + 4, Math.floor(value / twoTo32), true);
}

/** Reads a u64 field; returns NaN past 2^53 so callers reject it as corrupt. */
export function getU64(view: DataView, at: number): number {
  const high = view.getUint32(at + 4, true);
  if (high >= 0x20_0000) return Number.NaN;
  return high * twoTo32 + view.getUint32(at, true);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 bytes of a device name, or undefined if it is too long for a record. */
export function deviceNameBytes(name: string): Uint8Array | undefined {
  const bytes = encoder.encode(name);
  return bytes.length === 0 || bytes.length > wrlDeviceNameBytesMax ? undefined : bytes;
}

/**
 * Writes a complete record (header, payload, zero padding) at `at` in `target`, which must hold
 * recordSizeBytes(payload.length) bytes from there. `deviceName` is the pre-encoded name when the
 * device is named. With `cipher` the payload is stored encrypted (and checksummed as stored).
 * Returns the record's size in bytes.
 */
export function encodeRecord(
  target: Uint8Array,
  at: number,
  header: Omit<RecordHeader, "payloadBytes" | "payloadCrc" | "device"> & { device: number | Uint8Array },
  payload: Uint8Array,
  cipher?: PayloadCipher,
): number {
  const sizeBytes = recordSizeBytes(payload.length);
  assert(at % wrlAlignmentBytes === 0 && at + sizeBytes <= target.length, "record fits its slot");
  const view = new DataView(target.buffer, target.byteOffset + at, wrlRecordHeaderBytes);
  const named = header.device instanceof Uint8Array;
  view.setUint32(0, recordMagic, true);
  view.setUint8(4, recordHeaderVersion);
  view.setUint8(5, typeCodes[header.type]);
  view.setUint8(6, named ? (header.device as Uint8Array).length : 0);
  view.setUint8(7, 0);
  setU64(view, 8, header.lsn);
  setU64(view, 16, header.epoch);
  setU64(view, 24, header.seq);
  setU64(view, 32, header.offset);
  setU64(view, 40, header.lengthBytes);
  setU64(view, 48, header.durableLsn);
  view.setUint32(56, payload.length, true);
  view.setUint32(60, header.flags >>> 0, true);
  view.setUint32(64, named ? 0 : (header.device as number), true);
  view.setUint32(68, header.incarnation, true);
  target.set(header.uuid, at + 72);
  target.fill(0, at + 88, at + 152);
  if (named) target.set(header.device as Uint8Array, at + 88);
  const stored = target.subarray(at + wrlRecordHeaderBytes, at + wrlRecordHeaderBytes + payload.length);
  stored.set(payload);
  cipher?.encryptInPlace(stored, header.incarnation, header.lsn);
  target.fill(0, at + wrlRecordHeaderBytes + payload.length, at + sizeBytes);
  view.setUint32(152, crc32c(stored), true);
  view.setUint32(156, crc32c(target.subarray(at, at + 156)), true);
  return sizeBytes;
}

/** What the first bytes of a 4 KiB block hold. */
export type HeaderProbe =
  | { kind: "header"; header: RecordHeader }
  /** All zeros: never written, or discarded. */
  | { kind: "zeroed" }
  /** No record magic: payload of another record, or anything else. */
  | { kind: "no-record" }
  /** Record magic, but the header checksum or a field does not hold: torn or damaged. */
  | { kind: "bad-header"; detail: string };

/** Decodes and checks the header in `block` (at least wrlRecordHeaderBytes long). Never throws. */
export function probeHeader(block: Uint8Array): HeaderProbe {
  assert(block.length >= wrlRecordHeaderBytes, "a header probe needs the whole header");
  const view = new DataView(block.buffer, block.byteOffset, wrlRecordHeaderBytes);
  if (view.getUint32(0, true) !== recordMagic) {
    for (let i = 0; i < wrlRecordHeaderBytes; i += 1) if (block[i] !== 0) return { kind: "no-record" };
    return { kind: "zeroed" };
  }
  const storedCrc = view.getUint32(156, true);
  if (crc32c(block.subarray(0, 156)) !== storedCrc) return { kind: "bad-header", detail: "header checksum mismatch" };
  if (view.getUint8(4) !== recordHeaderVersion) return { kind: "bad-header", detail: `header version ${view.getUint8(4)}` };
  const type = typesByCode[view.getUint8(5)];
  if (type === undefined) return { kind: "bad-header", detail: `record type ${view.getUint8(5)}` };
  const nameLength = view.getUint8(6);
  if (nameLength > wrlDeviceNameBytesMax) return { kind: "bad-header", detail: "device name length" };
  let device: number | string = view.getUint32(64, true);
  if (nameLength > 0) {
    try {
      device = decoder.decode(block.subarray(88, 88 + nameLength));
    } catch {
      return { kind: "bad-header", detail: "device name is not UTF-8" };
    }
  }
  const header: RecordHeader = {
    lsn: getU64(view, 8),
    type,
    epoch: getU64(view, 16),
    seq: getU64(view, 24),
    offset: getU64(view, 32),
    lengthBytes: getU64(view, 40),
    durableLsn: getU64(view, 48),
    payloadBytes: view.getUint32(56, true),
    flags: view.getUint32(60, true),
    device,
    incarnation: view.getUint32(68, true),
    uuid: block.slice(72, 88),
    payloadCrc: view.getUint32(152, true),
  };
  const numbers = [header.lsn, header.epoch, header.seq, header.offset, header.lengthBytes, header.durableLsn];
  if (numbers.some(Number.isNaN) || header.lsn < 1 || header.durableLsn >= header.lsn) {
    return { kind: "bad-header", detail: "field out of range" };
  }
  return { kind: "header", header };
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return false;
  return true;
}
