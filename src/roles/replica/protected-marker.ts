/**
 * The marker of a protected replica device: the first 512 bytes of physical block 0 (the rest of
 * the reserve stays zeros, so blkid, file -s and mount find nothing there; during an unprotect
 * sector 1 holds a copy with state unswapping, see protected-device.ts). Little-endian:
 *
 *   0   16  magic "DRUVAA-REPLICA\0\0"
 *   16   4  version (1)
 *   20   4  state: 1 protected (replicating), 2 unswapping (an unprotect was started)
 *   24   8  reserve bytes R (the logical head kept at physical [L, L+R))
 *   32   8  logical size L (= physical size − R when the device was formatted)
 *   40   4  logical block size the device had
 *   48  16  uuid (random, names this replica device in messages)
 *   508  4  CRC32C of bytes [0, 508)
 *
 * Paired check: the CRC is computed when the marker is encoded and verified when it is decoded; a
 * magic with a bad CRC is reported as a damaged marker, never taken for data or for no marker.
 */
import { DruvaaError, exitCodes } from "../../errors.ts";
import { protectMarkerBlockBytes, protectMarkerBytes, protectReserveBytesMax } from "../../protect-constants.ts";
import { crc32c } from "../../wrl/crc32c.ts";

export const protectMarkerMagic = new TextEncoder().encode("DRUVAA-REPLICA\0\0");
const version = 1;
const crcOffset = protectMarkerBytes - 4;

export type ProtectState = "protected" | "unswapping";
const stateCodes: Record<ProtectState, number> = { protected: 1, unswapping: 2 };

export interface ProtectMarker {
  state: ProtectState;
  reserveBytes: number;
  logicalSizeBytes: number;
  logicalBlockSizeBytes: number;
  /** 32 hex digits. */
  uuid: string;
}

/** The marker as `protectMarkerBytes` bytes (caller places them at the start of a zeroed block). */
export function encodeMarker(marker: ProtectMarker): Uint8Array {
  const bytes = new Uint8Array(protectMarkerBytes);
  const view = new DataView(bytes.buffer);
  bytes.set(protectMarkerMagic, 0);
  view.setUint32(16, version, true);
  view.setUint32(20, stateCodes[marker.state], true);
  view.setBigUint64(24, BigInt(marker.reserveBytes), true);
  view.setBigUint64(32, BigInt(marker.logicalSizeBytes), true);
  view.setUint32(40, marker.logicalBlockSizeBytes, true);
  if (!/^[0-9a-f]{32}$/.test(marker.uuid)) throw new RangeError(`marker uuid must be 32 hex digits, got ${marker.uuid}`);
  bytes.set(Buffer.from(marker.uuid, "hex"), 48);
  view.setUint32(crcOffset, crc32c(bytes.subarray(0, crcOffset)), true);
  return bytes;
}

/** True if `block` starts with the marker's magic (valid or not). */
export function hasMarkerMagic(block: Uint8Array): boolean {
  return block.length >= protectMarkerMagic.length && protectMarkerMagic.every((byte, index) => block[index] === byte);
}

/**
 * True when `block` starts with the magic and a CRC that holds: whatever its fields, no torn write
 * made it (a tear mixes bytes of two writes, which the CRC catches).
 */
export function markerCrcHolds(block: Uint8Array): boolean {
  if (!hasMarkerMagic(block) || block.length < protectMarkerBytes) return false;
  const view = new DataView(block.buffer, block.byteOffset, protectMarkerBytes);
  return view.getUint32(crcOffset, true) === crc32c(block.subarray(0, crcOffset));
}

/**
 * Decodes the marker at the start of `block`: undefined when there is no magic; a DruvaaError
 * REPLICA_MARKER_DAMAGED when the magic is there but the CRC, version or fields are wrong.
 */
export function decodeMarker(block: Uint8Array, deviceName: string): ProtectMarker | undefined {
  if (!hasMarkerMagic(block)) return undefined;
  const bytes = block.subarray(0, protectMarkerBytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const damaged = (what: string) =>
    new DruvaaError("REPLICA_MARKER_DAMAGED", `${deviceName}: its druvaa replica marker is damaged (${what})`, "The header copy at the end of the device is intact; restore from another replica, or wipe the first MiB and re-seed this one", exitCodes.refused);
  if (view.getUint32(crcOffset, true) !== crc32c(bytes.subarray(0, crcOffset))) throw damaged("CRC mismatch");
  const markerVersion = view.getUint32(16, true);
  if (markerVersion !== version) throw new DruvaaError("REPLICA_MARKER_VERSION", `${deviceName}: replica marker version ${markerVersion}, this druvaa knows ${version}`, "Run the druvaa release that protected this device", exitCodes.refused);
  const stateCode = view.getUint32(20, true);
  const state = (Object.keys(stateCodes) as ProtectState[]).find((key) => stateCodes[key] === stateCode);
  if (state === undefined) throw damaged(`unknown state ${stateCode}`);
  const reserveBytes = Number(view.getBigUint64(24, true));
  const logicalSizeBytes = Number(view.getBigUint64(32, true));
  const logicalBlockSizeBytes = view.getUint32(40, true);
  // A valid CRC over fields druvaa never writes (another tool, a bug): damaged, never an assert in
  // the wrapper later. The rules are those of checkReserve and protectedLogicalSizeBytes.
  if (logicalBlockSizeBytes !== 512 && logicalBlockSizeBytes !== 4096) throw damaged(`logical block size ${logicalBlockSizeBytes}, not 512 or 4096`);
  if (!Number.isSafeInteger(reserveBytes) || reserveBytes <= 0 || reserveBytes % protectMarkerBlockBytes !== 0 || reserveBytes > protectReserveBytesMax) {
    throw damaged(`reserve ${reserveBytes}, not a multiple of ${protectMarkerBlockBytes} bytes up to ${protectReserveBytesMax}`);
  }
  if (!Number.isSafeInteger(logicalSizeBytes) || logicalSizeBytes < reserveBytes || logicalSizeBytes % logicalBlockSizeBytes !== 0) {
    throw damaged(`logical size ${logicalSizeBytes}, not whole ${logicalBlockSizeBytes}-byte blocks of at least the reserve (${reserveBytes})`);
  }
  return { state, reserveBytes, logicalSizeBytes, logicalBlockSizeBytes, uuid: Buffer.from(bytes.subarray(48, 64)).toString("hex") };
}
