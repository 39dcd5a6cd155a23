/**
 * The protected replica device: a BlockDevice over the physical replica device whose first R bytes
 * (the reserve, default 1 MiB) are kept swapped with its last R bytes, so a replica is never taken
 * for a live volume (blkid, file -s, mount, LVM and multipath scans find no partition table or
 * file-system signature on it) while druvaa writes to it. With P the physical size and
 * L = P − R (the logical size, what the replica offers):
 *
 *   logical [0, R)   ⇄  physical [L, L + R)      the head: partition tables, superblocks
 *   logical [R, L)   ⇄  physical [R, L)          everything else, in place
 *   physical [0, R)     the marker (protected-marker.ts) in its first block, zeros after it
 *
 * Every read path of the replica (apply, restore, snapshot, verify, seed) goes through the
 * wrapper, so it sees the plain image. L and R are multiples of the protect unit (max(logical
 * block size, 4096): protectUnitBytes), so the mapping moves a request by a multiple of 4096 and a
 * request aligned for O_DIRECT stays aligned on the physical device, whatever block size the
 * device reports (an image file says 512 even on a file system with 4 KiB sectors, where O_DIRECT
 * refuses anything less than 4 KiB aligned). A request wholly at or past R goes straight through;
 * one that touches [0, R) is split where it crosses R (at most two pieces).
 *
 * openProtected() recognises, formats or refuses a device (decision table there); unprotect()
 * makes a protected device plain for good (failover); readPlain() gives tests and tools the
 * logical image of a protected image file.
 */
import type { BlockDevice } from "../../io/block-device.ts";
import { checkRange } from "../../io/checks.ts";
import { alignedBuffer } from "../../io/handle-device.ts";
import { openBlockDevice } from "../../io/open-device.ts";
import { assert } from "../../assert.ts";
import { DruvaaError, exitCodes, usageError } from "../../errors.ts";
import { directIoAlignmentBytes } from "../../constants.ts";
import { protectCopyPieceBytesMax, protectMarkerBlockBytes, protectMarkerBytes, protectReserveBytesDefault, protectReserveBytesMax } from "../../protect-constants.ts";
import { formatBytes } from "../../units.ts";
import { decodeMarker, encodeMarker, markerCrcHolds, type ProtectMarker } from "./protected-marker.ts";

export interface ProtectOptions {
  /** R: bytes of the logical head kept at the end of the device (default 1 MiB). */
  reserveBytes?: number;
  /** The uuid written into a new marker (32 hex digits); random by default. */
  uuid?: string;
}

/**
 * The unit of the layout on a device with `logicalBlockSizeBytes` blocks: L and R are multiples of
 * it, and unprotect moves the first logical unit (holding the marker) in one write. At least the
 * O_DIRECT alignment, so every physical I/O is 4 KiB aligned when the request is.
 */
export function protectUnitBytes(logicalBlockSizeBytes: number): number {
  return Math.max(logicalBlockSizeBytes, protectMarkerBlockBytes);
}

/**
 * The logical size of a physical device of `physicalSizeBytes` under a reserve of `reserveBytes`:
 * P − R rounded down to the protect unit (so a primary whose size is not a multiple of 4096 needs
 * its size rounded up to 4096 plus R: replicaDeviceSizeBytes in sizing.ts).
 */
export function protectedLogicalSizeBytes(physicalSizeBytes: number, reserveBytes: number, logicalBlockSizeBytes: number): number {
  const unitBytes = protectUnitBytes(logicalBlockSizeBytes);
  return Math.floor((physicalSizeBytes - reserveBytes) / unitBytes) * unitBytes;
}

/** A piece of a logical request: where it lives on the physical device and in the caller's buffer. */
interface Piece {
  physicalOffsetBytes: number;
  bufferOffsetBytes: number;
  lengthBytes: number;
}

export class ProtectedDevice implements BlockDevice {
  readonly sizeBytes: number;

  /**
   * Wraps `physical` without looking at it: openProtected() checks the marker first. Also used
   * for a second handle on a device already checked (the replica's buffered small-write handle).
   */
  constructor(readonly physical: BlockDevice, readonly reserveBytes: number) {
    assert(Number.isSafeInteger(reserveBytes) && reserveBytes > 0, "a protected device has a reserve");
    assert(reserveBytes % directIoAlignmentBytes === 0 && reserveBytes % physical.logicalBlockSizeBytes === 0, "the reserve is whole blocks");
    this.sizeBytes = protectedLogicalSizeBytes(physical.sizeBytes, reserveBytes, physical.logicalBlockSizeBytes);
    assert(this.sizeBytes >= reserveBytes, "the physical device holds the reserve twice");
  }

  get name(): string { return this.physical.name; }
  get logicalBlockSizeBytes(): number { return this.physical.logicalBlockSizeBytes; }

  /** Splits a checked logical range at R; an empty range is one empty piece. */
  private pieces(offsetBytes: number, lengthBytes: number): Piece[] {
    checkRange(this, offsetBytes, lengthBytes);
    const reserve = this.reserveBytes;
    const endBytes = offsetBytes + lengthBytes;
    const headBytes = Math.max(0, Math.min(endBytes, reserve) - offsetBytes);
    const pieces: Piece[] = [];
    if (headBytes > 0) pieces.push({ physicalOffsetBytes: this.sizeBytes + offsetBytes, bufferOffsetBytes: 0, lengthBytes: headBytes });
    if (lengthBytes - headBytes > 0 || lengthBytes === 0) {
      const start = offsetBytes + headBytes;
      pieces.push({ physicalOffsetBytes: start < reserve ? this.sizeBytes + start : start, bufferOffsetBytes: headBytes, lengthBytes: lengthBytes - headBytes });
    }
    return pieces;
  }

  private async readPiece(piece: Piece, into: Uint8Array): Promise<void> {
    const target = into.subarray(piece.bufferOffsetBytes, piece.bufferOffsetBytes + piece.lengthBytes);
    if (this.physical.readInto !== undefined) return this.physical.readInto(piece.physicalOffsetBytes, target);
    target.set(await this.physical.read(piece.physicalOffsetBytes, piece.lengthBytes));
  }

  /**
   * True (after the range check) when the request lies wholly at or past R: it maps to the same
   * physical range, no split. The check stays: the physical device is bigger than L.
   */
  private inPlace(offsetBytes: number, lengthBytes: number): boolean {
    if (offsetBytes < this.reserveBytes) return false;
    checkRange(this, offsetBytes, lengthBytes);
    return true;
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    if (this.inPlace(offsetBytes, lengthBytes)) return this.physical.read(offsetBytes, lengthBytes);
    const pieces = this.pieces(offsetBytes, lengthBytes);
    if (pieces.length === 1) return this.physical.read(pieces[0]!.physicalOffsetBytes, lengthBytes);
    const buffer = alignedBuffer(lengthBytes, directIoAlignmentBytes);
    await settleAll(pieces.map((piece) => this.readPiece(piece, buffer)));
    return buffer;
  }

  async readInto(offsetBytes: number, into: Uint8Array): Promise<void> {
    if (this.inPlace(offsetBytes, into.length)) return this.readPiece({ physicalOffsetBytes: offsetBytes, bufferOffsetBytes: 0, lengthBytes: into.length }, into);
    const pieces = this.pieces(offsetBytes, into.length);
    await settleAll(pieces.map((piece) => this.readPiece(piece, into)));
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    if (this.inPlace(offsetBytes, data.length)) return this.physical.write(offsetBytes, data);
    const pieces = this.pieces(offsetBytes, data.length);
    await settleAll(pieces.map((piece) => this.physical.write(piece.physicalOffsetBytes, data.subarray(piece.bufferOffsetBytes, piece.bufferOffsetBytes + piece.lengthBytes))));
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    if (this.inPlace(offsetBytes, lengthBytes)) return this.physical.discard(offsetBytes, lengthBytes);
    const pieces = this.pieces(offsetBytes, lengthBytes);
    await settleAll(pieces.map((piece) => this.physical.discard(piece.physicalOffsetBytes, piece.lengthBytes)));
  }

  flush(): Promise<void> {
    return this.physical.flush();
  }

  close(): Promise<void> {
    return this.physical.close();
  }
}

/** Waits for every piece (the caller's buffer stays in use until all settled); throws the first error. */
async function settleAll(operations: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(operations);
  const failed = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
  if (failed !== undefined) throw failed.reason;
}

/**
 * Refuses a reserve a device with `logicalBlockSizeBytes` blocks cannot use (the CLI edge:
 * --protect-headers; with the default 4096, before any device is known).
 */
export function checkReserve(reserveBytes: number, logicalBlockSizeBytes = protectMarkerBlockBytes): void {
  if (!Number.isSafeInteger(reserveBytes) || reserveBytes <= 0 || reserveBytes > protectReserveBytesMax || reserveBytes % protectMarkerBlockBytes !== 0 || reserveBytes % logicalBlockSizeBytes !== 0) {
    throw usageError(
      `--protect-headers ${reserveBytes}: the reserve must be a multiple of ${Math.max(protectMarkerBlockBytes, logicalBlockSizeBytes)} bytes (whole ${protectMarkerBlockBytes}-byte blocks and whole device blocks), at most ${formatBytes(protectReserveBytesMax)}`,
      `Use the default (${formatBytes(protectReserveBytesDefault)}), or 0 to replicate unprotected`,
    );
  }
}

/** Whether every byte is zero. */
function allZero(bytes: Uint8Array): boolean {
  const words = bytes.byteOffset % 4 === 0 && bytes.length % 4 === 0 ? new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4) : bytes;
  for (let index = 0; index < words.length; index += 1) if (words[index] !== 0) return false;
  return true;
}

/**
 * Writes the marker block: the marker (state protected) in sector 0 and, while an unprotect runs,
 * a copy of it with state unswapping in sector 1. Sector 0 is written with the same bytes each
 * time, so a torn write of the block never damages it (a torn sector 1 only loses the state).
 */
export async function writeMarker(physical: BlockDevice, marker: ProtectMarker): Promise<void> {
  const block = alignedBuffer(protectMarkerBlockBytes, directIoAlignmentBytes);
  block.set(encodeMarker({ ...marker, state: "protected" }));
  if (marker.state === "unswapping") block.set(encodeMarker(marker), protectMarkerBytes);
  await physical.write(0, block);
  await physical.flush();
}

/**
 * Opens `physical` as a protected replica device. Decision table (P physical size, R reserve,
 * L = P − R):
 *
 *   marker, CRC bad                                     refuse REPLICA_MARKER_DAMAGED
 *   marker, state unswapping                            refuse REPLICA_UNPROTECTING
 *   marker, reserve ≠ R                                 refuse REPLICA_RESERVE_MISMATCH
 *   marker, logical size ≠ L (device grew or shrank)    refuse REPLICA_SIZE_CHANGED
 *   marker, all match                                   open
 *   no marker, P < 2R (L would not hold the head)       refuse REPLICA_DEVICE_TOO_SMALL (+ truncate)
 *   no marker, physical [0, R) all zeros (new replica)  write the marker (flushed), open
 *   no marker, anything else there (a file system…)     refuse REPLICA_HOLDS_DATA
 *
 * Nothing is written except the marker of a new replica. The caller keeps `physical` on refusal.
 */
export async function openProtected(physical: BlockDevice, opts: ProtectOptions = {}): Promise<ProtectedDevice> {
  const reserveBytes = opts.reserveBytes ?? protectReserveBytesDefault;
  checkReserve(reserveBytes, physical.logicalBlockSizeBytes);
  const name = physical.name;
  const logicalSizeBytes = protectedLogicalSizeBytes(physical.sizeBytes, reserveBytes, physical.logicalBlockSizeBytes);
  const marker = physical.sizeBytes >= protectMarkerBlockBytes ? await decodeMarkerAt(physical) : undefined;
  if (marker === undefined && logicalSizeBytes < reserveBytes) {
    const neededBytes = 2 * reserveBytes;
    throw new DruvaaError(
      "REPLICA_DEVICE_TOO_SMALL",
      `${name}: ${physical.sizeBytes} bytes is too small for a protected replica: it needs the primary's size (rounded up to 4 KiB) plus the ${formatBytes(reserveBytes)} header reserve (--protect-headers), at least ${neededBytes} bytes`,
      `Make it the primary's size (rounded up to 4 KiB) plus ${reserveBytes} bytes (druvaa sizing --primary-size SIZE tells it), e.g. for an image: truncate -s ${neededBytes} ${name}`,
      exitCodes.refused,
    );
  }
  if (marker === undefined) {
    if (!allZero(await physical.read(0, reserveBytes))) {
      throw new DruvaaError(
        "REPLICA_HOLDS_DATA",
        `${name}: its first ${formatBytes(reserveBytes)} hold data but no druvaa replica marker: it looks like it holds data (a partition table or file system?), so it is not a druvaa replica`,
        `If it is the right device, wipe its first MiB (dd if=/dev/zero of=${name} bs=1M count=${Math.ceil(reserveBytes / (1024 * 1024))} conv=notrunc), or pass --protect-headers 0 to replicate onto it unprotected`,
        exitCodes.refused,
      );
    }
    const uuid = opts.uuid ?? crypto.randomUUID().replaceAll("-", "");
    await writeMarker(physical, { state: "protected", reserveBytes, logicalSizeBytes, logicalBlockSizeBytes: physical.logicalBlockSizeBytes, uuid });
    return new ProtectedDevice(physical, reserveBytes);
  }
  if (marker.state === "unswapping") {
    throw new DruvaaError("REPLICA_UNPROTECTING", `${name}: an unprotect (failover) of this replica device was started and not finished`, "Finish the failover (it is safe to run again); the header copy at the end of the device is intact", exitCodes.refused);
  }
  if (marker.reserveBytes !== reserveBytes) {
    throw new DruvaaError("REPLICA_RESERVE_MISMATCH", `${name}: this replica device was protected with a ${marker.reserveBytes}-byte header reserve, not ${reserveBytes}`, `Start with --protect-headers ${marker.reserveBytes} (the reserve it was formatted with)`, exitCodes.refused);
  }
  if (marker.logicalSizeBytes !== logicalSizeBytes) {
    const formattedBytes = marker.logicalSizeBytes + marker.reserveBytes;
    throw new DruvaaError(
      "REPLICA_SIZE_CHANGED",
      `${name}: is ${physical.sizeBytes} bytes now, but was protected at ${formattedBytes} bytes (logical size ${marker.logicalSizeBytes}); its header copy is in the last ${marker.reserveBytes} bytes of the size it had`,
      `Give it back its size (an image: truncate -s ${formattedBytes} ${name}), or use the device it was`,
      exitCodes.refused,
    );
  }
  return new ProtectedDevice(physical, reserveBytes);
}

/** The marker of sector 0 with the state sector 1 adds (unswapping), or undefined without one. */
async function decodeMarkerAt(physical: BlockDevice): Promise<ProtectMarker | undefined> {
  const block = await physical.read(0, protectMarkerBlockBytes);
  const marker = decodeMarker(block, physical.name);
  if (marker === undefined) return undefined;
  let record: ProtectMarker | undefined;
  try {
    record = decodeMarker(block.subarray(protectMarkerBytes), physical.name);
  } catch {
    record = undefined; // torn while being written, or overwritten by the header copy: no state
  }
  const unswapping = record?.state === "unswapping" && record.uuid === marker.uuid;
  return unswapping ? { ...marker, state: "unswapping" } : marker;
}

/** Copies physical [from, from + length) to [to, to + length) in pieces. */
export async function copyPhysical(physical: BlockDevice, fromBytes: number, toBytes: number, lengthBytes: number): Promise<void> {
  for (let doneBytes = 0; doneBytes < lengthBytes; doneBytes += protectCopyPieceBytesMax) {
    const pieceBytes = Math.min(protectCopyPieceBytesMax, lengthBytes - doneBytes);
    await physical.write(toBytes + doneBytes, await physical.read(fromBytes + doneBytes, pieceBytes));
  }
}

async function rangesEqual(physical: BlockDevice, aBytes: number, bBytes: number, lengthBytes: number): Promise<boolean> {
  for (let doneBytes = 0; doneBytes < lengthBytes; doneBytes += protectCopyPieceBytesMax) {
    const pieceBytes = Math.min(protectCopyPieceBytesMax, lengthBytes - doneBytes);
    const [a, b] = await Promise.all([physical.read(aBytes + doneBytes, pieceBytes), physical.read(bBytes + doneBytes, pieceBytes)]);
    if (Buffer.compare(a, b) !== 0) return false;
  }
  return true;
}

/**
 * Whether [0, U) can be the first unit of an unprotect's last step, whole or torn: past the two
 * sectors that held the marker and its unswapping copy, the marker block was zeros, so each byte
 * there is a zero or the header copy's byte ([L, L + U)). A plain device with data of its own in
 * its first 4 KiB fails this (unless that data equals its last bytes past L).
 */
async function tornCopyOrPlain(physical: BlockDevice, logicalSizeBytes: number, unitBytes: number): Promise<boolean> {
  const [front, copy] = await Promise.all([physical.read(0, unitBytes), physical.read(logicalSizeBytes, unitBytes)]);
  for (let index = 2 * protectMarkerBytes; index < unitBytes; index += 1) if (front[index] !== 0 && front[index] !== copy[index]) return false;
  return true;
}

/**
 * Turns a protected device into a plain one for good (failover): afterwards physical [0, L) is
 * the logical image and the bytes past L are to be ignored. Returns L. With U the protect unit
 * (protectUnitBytes: 4 KiB, or the block size if bigger; the marker block lies in the first U,
 * and every write below is U-aligned, so an O_DIRECT device takes it), steps, each flushed:
 *
 *   1. sector 1 says "unswapping" (openProtected refuses the device from here on; sector 0 keeps
 *      the marker unchanged, so a torn write cannot damage it)
 *   2. header copy [L + U, L + R) → [U, R)          (physical [0, U), the marker block, untouched)
 *   3. header copy [L, L + U) → [0, U)              the marker goes, in one U-byte write
 *
 * Until step 3 the device stays a valid protected device in state unswapping (the mapping never
 * reads [U, R), and step 2 does not touch the marker block); running unprotect again redoes the
 * steps from the header copy. The header copy at the end is only read, never written, so no crash
 * loses a header byte. A crash inside step 3 on a disk that tears the U-byte write leaves each
 * 512-byte sector old, new (the header's) or, on a disk that tears inside a sector, a mix:
 *
 *   sector 0 still the marker, sector 1 still unswapping   refused REPLICA_UNPROTECTING; run again
 *   sector 0 still the marker, sector 1 already header     a protected device again (its logical
 *                                                           image intact); run again
 *   sector 0 header (no marker, or a torn one)             running again (with the same reserve)
 *                                                           refuses REPLICA_UNPROTECT_INTERRUPTED
 *                                                           and names the dd command that ends it
 *
 * Without a marker the device counts as cut short in step 3 only if [U, R) equals its copy and the
 * rest of [0, U) could be one (tornCopyOrPlain); a marker whose CRC holds over bad fields is no
 * tear and is refused REPLICA_MARKER_DAMAGED. A device already plain (front equals the end copy)
 * is accepted again: unprotect is idempotent. `reserveBytes` only matters when no marker is left.
 */
export async function unprotect(physical: BlockDevice, opts: { reserveBytes?: number } = {}): Promise<number> {
  const name = physical.name;
  const blockBytes = physical.logicalBlockSizeBytes;
  const unitBytes = protectUnitBytes(blockBytes);
  let damaged: unknown;
  const marker = await decodeMarkerAt(physical).catch(async (error: unknown) => {
    if ((error as { code?: unknown }).code !== "REPLICA_MARKER_DAMAGED") throw error;
    // A CRC that holds over bad fields was written so, not torn: refuse it as it is.
    if (markerCrcHolds(await physical.read(0, protectMarkerBlockBytes))) throw error;
    damaged = error; // a torn marker block: the last step may have been cut short (below)
    return undefined;
  });
  if (marker === undefined) {
    const reserveBytes = opts.reserveBytes ?? protectReserveBytesDefault;
    checkReserve(reserveBytes, blockBytes);
    const logicalSizeBytes = protectedLogicalSizeBytes(physical.sizeBytes, reserveBytes, blockBytes);
    if (logicalSizeBytes >= reserveBytes && (await rangesEqual(physical, unitBytes, logicalSizeBytes + unitBytes, reserveBytes - unitBytes)) && (await tornCopyOrPlain(physical, logicalSizeBytes, unitBytes))) {
      if (await rangesEqual(physical, 0, logicalSizeBytes, unitBytes)) return logicalSizeBytes; // plain already
      throw new DruvaaError(
        "REPLICA_UNPROTECT_INTERRUPTED",
        `${name}: no replica marker, and block 0 differs from its header copy while the rest of the reserve was copied back: an unprotect was interrupted in its last step`,
        `Finish it by copying the first block back: dd if=${name} of=${name} bs=${unitBytes} skip=${logicalSizeBytes / unitBytes} seek=0 count=1 conv=notrunc,fsync`,
        exitCodes.refused,
      );
    }
    if (damaged !== undefined) throw damaged;
    throw new DruvaaError("NOT_PROTECTED", `${name}: has no druvaa replica marker: it is not a protected replica device`, "Give the replica device (druvaa replica apply --device NAME=PATH); a plain device needs no unprotect", exitCodes.refused);
  }
  const { reserveBytes, logicalSizeBytes } = marker;
  if (protectedLogicalSizeBytes(physical.sizeBytes, reserveBytes, blockBytes) !== logicalSizeBytes || reserveBytes % unitBytes !== 0) {
    throw new DruvaaError("REPLICA_SIZE_CHANGED", `${name}: is ${physical.sizeBytes} bytes, but was protected at ${logicalSizeBytes + reserveBytes} bytes`, `Give it back its size (an image: truncate -s ${logicalSizeBytes + reserveBytes} ${name}) before unprotecting`, exitCodes.refused);
  }
  if (marker.state === "protected") await writeMarker(physical, { ...marker, state: "unswapping" });
  await copyPhysical(physical, logicalSizeBytes + unitBytes, unitBytes, reserveBytes - unitBytes);
  await physical.flush();
  await physical.write(0, await physical.read(logicalSizeBytes, unitBytes));
  await physical.flush();
  return logicalSizeBytes;
}

/** Runs `use` on the protected device at `physicalPath`, opened read-only; NOT_PROTECTED (with `hint`) without a marker. */
async function withPlainView<T>(physicalPath: string, hint: string, use: (device: ProtectedDevice) => Promise<T>): Promise<T> {
  const physical = await openBlockDevice(physicalPath, { readOnly: true });
  try {
    const marker = await decodeMarkerAt(physical);
    if (marker === undefined) throw new DruvaaError("NOT_PROTECTED", `${physicalPath}: has no druvaa replica marker`, hint, exitCodes.refused);
    return await use(new ProtectedDevice(physical, marker.reserveBytes));
  } finally {
    await physical.close();
  }
}

/**
 * The logical image of the protected image file or device at `physicalPath` (for tests and
 * tools: what the primary holds once replicated), or its first `sizeBytes`. Opens read-only.
 */
export function readPlain(physicalPath: string, sizeBytes?: number): Promise<Uint8Array> {
  return withPlainView(physicalPath, "Read a plain device as it is", (device) => device.read(0, Math.min(sizeBytes ?? device.sizeBytes, device.sizeBytes)));
}

/**
 * The hex SHA-256 of the logical image of the protected image file or device at `physicalPath`
 * (or of its first `sizeBytes`), read in pieces: what sha256sum of the primary gives once the
 * replica caught up. For tests, benchmarks and tools comparing a replica with its primary.
 */
export function plainSha256(physicalPath: string, sizeBytes?: number): Promise<string> {
  return withPlainView(physicalPath, "Hash a plain device as it is (sha256sum)", async (device) => {
    const limitBytes = Math.min(sizeBytes ?? device.sizeBytes, device.sizeBytes);
    const hash = new Bun.CryptoHasher("sha256");
    for (let offsetBytes = 0; offsetBytes < limitBytes; offsetBytes += protectCopyPieceBytesMax * 4) {
      hash.update(await device.read(offsetBytes, Math.min(protectCopyPieceBytesMax * 4, limitBytes - offsetBytes)));
    }
    return hash.digest("hex");
  });
}
