/**
 * The activity log on disk: two copies of one small table, written alternately (the copy a
 * write's sequence selects), each flushed before the next is written, so a torn write leaves the
 * other, older copy intact. The activity log is a sibling of the change map (activity-log.ts).
 *
 *   [0, copyBytes)               copy 0   written when sequence is even
 *   [copyBytes, 2 × copyBytes)   copy 1   written when sequence is odd
 *
 * Layout of one copy (little-endian):
 *    off size field
 *      0   8  magic "DRUVAACT"
 *      8   4  format version (1)
 *     12   4  copy size in bytes
 *     16   8  sequence (bumped on every write)
 *     24  16  uuid of the change map it belongs to
 *     40   4  extent size in bytes
 *     44   4  flags: bit 0 = clean (the client shut down cleanly; the slot table is empty)
 *     48   4  slot count
 *     52   4  reserved (0)
 *     56   8  regions that may have an open resync set (bit i = region i of the change map)
 *     64  16×n slots: +0 region index u16, +2 reserved u16, +4 extent count u32, +8 first extent u64
 *   last   4  crc32c of everything before it
 *
 * Which copy counts when the log is opened (decision table; "zero" = every byte 0):
 *   both valid                       -> the higher sequence
 *   one valid, the other anything    -> the valid one (the other was torn or never written)
 *   both zero                        -> a new log: clean, no slots
 *   one zero, the other invalid      -> a torn first write (nothing was exported before the first
 *                                       write was durable): a new log, clean, no slots
 *   both invalid, neither zero       -> ACTIVITY_LOG_CORRUPT: outside damage, refused
 */
import { assert } from "../assert.ts";
import { changeMapRegionsMax } from "../constants.ts";
import { DruvaaError, exitCodes } from "../errors.ts";
import { crc32c } from "../wrl/crc32c.ts";
import { getU64, setU64 } from "../wrl/record-format.ts";
import { uuidFromBytes, uuidToBytes } from "../wrl/superblock.ts";

export const activityFormatVersion = 1;
const magic = new TextEncoder().encode("DRUVAACT");
const slotsAt = 64;
const slotBytes = 16;
const cleanFlag = 1;

assert(changeMapRegionsMax <= 64, "the open-resync mask has a bit for every region");

/** Extents [firstExtent, firstExtent + extentCount) of one change-map region. */
export interface ActivitySlotRecord {
  regionIndex: number;
  firstExtent: number;
  extentCount: number;
}

export interface ActivityTable {
  sequence: number;
  changeMapUuid: string;
  extentBytes: number;
  clean: boolean;
  /** Region indexes that may have a resync set open at the replica. */
  openResyncRegions: number[];
  slots: ActivitySlotRecord[];
}

/** Slots one copy of `copyBytes` holds. */
export function slotCapacity(copyBytes: number): number {
  return Math.floor((copyBytes - slotsAt - 4) / slotBytes);
}

/** Encodes `table` into `out` (one copy, zero-filled first). */
export function encodeActivityTable(table: ActivityTable, out: Uint8Array): void {
  assert(table.slots.length <= slotCapacity(out.length), "the slots fit one copy");
  out.fill(0);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out.set(magic, 0);
  view.setUint32(8, activityFormatVersion, true);
  view.setUint32(12, out.length, true);
  setU64(view, 16, table.sequence);
  out.set(uuidToBytes(table.changeMapUuid), 24);
  view.setUint32(40, table.extentBytes, true);
  view.setUint32(44, table.clean ? cleanFlag : 0, true);
  view.setUint32(48, table.slots.length, true);
  let low = 0;
  let high = 0;
  for (const region of table.openResyncRegions) {
    assert(Number.isInteger(region) && region >= 0 && region < 64, "region index fits the mask");
    if (region < 32) low = (low | (1 << region)) >>> 0;
    else high = (high | (1 << (region - 32))) >>> 0;
  }
  view.setUint32(56, low, true);
  view.setUint32(60, high, true);
  table.slots.forEach((slot, index) => {
    const at = slotsAt + index * slotBytes;
    view.setUint16(at, slot.regionIndex, true);
    view.setUint32(at + 4, slot.extentCount, true);
    setU64(view, at + 8, slot.firstExtent);
  });
  view.setUint32(out.length - 4, crc32c(out.subarray(0, out.length - 4)), true);
}

/** Decodes one copy: the table, or "zero" (never written), or "invalid" (torn or damaged). */
export function decodeActivityTable(bytes: Uint8Array): ActivityTable | "zero" | "invalid" {
  if (bytes.every((byte) => byte === 0)) return "zero";
  if (bytes.length < slotsAt + 4 || !magic.every((byte, index) => bytes[index] === byte)) return "invalid";
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(12, true) !== bytes.length || view.getUint32(8, true) !== activityFormatVersion) return "invalid";
  if (view.getUint32(bytes.length - 4, true) !== crc32c(bytes.subarray(0, bytes.length - 4))) return "invalid";
  const slotCount = view.getUint32(48, true);
  const extentBytes = view.getUint32(40, true);
  if (slotCount > slotCapacity(bytes.length) || extentBytes === 0) return "invalid";
  const openResyncRegions: number[] = [];
  const low = view.getUint32(56, true);
  const high = view.getUint32(60, true);
  for (let bit = 0; bit < 32; bit += 1) {
    if ((low >>> bit) & 1) openResyncRegions.push(bit);
  }
  for (let bit = 0; bit < 32; bit += 1) {
    if ((high >>> bit) & 1) openResyncRegions.push(bit + 32);
  }
  const slots: ActivitySlotRecord[] = [];
  for (let index = 0; index < slotCount; index += 1) {
    const at = slotsAt + index * slotBytes;
    slots.push({ regionIndex: view.getUint16(at, true), extentCount: view.getUint32(at + 4, true), firstExtent: getU64(view, at + 8) });
  }
  return {
    sequence: getU64(view, 16),
    changeMapUuid: uuidFromBytes(bytes.subarray(24, 40)),
    extentBytes,
    clean: (view.getUint32(44, true) & cleanFlag) !== 0,
    openResyncRegions,
    slots,
  };
}

/** Picks the copy that counts (decision table above); undefined: a new log. */
export function chooseActivityTable(path: string, copies: readonly [ActivityTable | "zero" | "invalid", ActivityTable | "zero" | "invalid"]): ActivityTable | undefined {
  const [first, second] = copies;
  if (typeof first === "object" && typeof second === "object") return first.sequence >= second.sequence ? first : second;
  if (typeof first === "object") return first;
  if (typeof second === "object") return second;
  if (first === "zero" || second === "zero") return undefined;
  throw new DruvaaError(
    "ACTIVITY_LOG_CORRUPT",
    `${path}: neither copy of the activity log is valid`,
    `Outside damage. If the client did not shut down cleanly, the extents it was writing are unknown: remove ${path} and resync the whole device; otherwise just remove it`,
    exitCodes.refused,
  );
}
