/**
 * The flags of a record as it travels in a shipment (ShipRecord.flags, and the WRL record's flags
 * for markers): what kind of record it is, for verify probes their block size, for checkpoints
 * their label's size; and what payload each kind carries. message-types.ts re-exports these names.
 */
import { assert } from "../assert.ts";

/**
 * Bits of ShipRecord.flags (and of the WRL record's flags for markers). Unknown bits are carried
 * as given. At most one of zero / resync / resyncEnd / verify / checkpoint is set.
 */
export const recordFlags = {
  /** The record's range reads as zeros (TRIM / WRITE_ZEROES); it carries no payload bytes. */
  zero: 1,
  /**
   * Resync data: the current content of a dirty range, read by the client after a disconnect or
   * a crash. Carries no write order of its own: it opens (or extends) the device's resync set,
   * which the replica keeps in its RS-WRL and applies only as a whole, when the set ends.
   */
  resync: 2,
  /** Ends the device's resync set (length 0, no payload): the device is in sync at this LSN. */
  resyncEnd: 4,
  /**
   * Verify probe: `length` bytes at `offset` are covered by the payload, one sha256 digest
   * (verifyDigestBytes) per block of verifyBlockBytes(flags) bytes, taken by the client of its
   * own device at this point of the write order. The replica compares at the same point and
   * reports the differing blocks in shipAck.verified; it writes nothing.
   */
  verify: 8,
  /**
   * Application-consistent checkpoint (`druvaa checkpoint --label NAME`): offset 0, length 0; the
   * payload is the label (UTF-8, checkpointLabelBytesOf(flags) bytes, checkpoint-label.ts). The
   * device's state right after this LSN is a point the application vouches for; it writes nothing,
   * and a coalesced span never covers one (the span ends before it).
   */
  checkpoint: 16,
} as const;

/** Bytes of one verify digest (sha256). */
export const verifyDigestBytes = 32;
/** Bits 16..23 of a verify record's flags hold log2 of its block size. */
const verifyBlockShift = 16;

/** The flags of a verify record over blocks of `blockBytes` (a power of two). */
export function verifyFlags(blockBytes: number): number {
  return recordFlags.verify | (Math.log2(blockBytes) << verifyBlockShift);
}

/** The block size a verify record's flags name. */
export function verifyBlockBytesOf(flags: number): number {
  return 2 ** ((flags >>> verifyBlockShift) & 0xff);
}

/** Bits 16..23 of a checkpoint record's flags hold its label's byte count. */
const checkpointLabelShift = 16;

/** The flags of a checkpoint record whose label is `labelBytes` UTF-8 bytes (1..255; labels keep to 64). */
export function checkpointFlags(labelBytes: number): number {
  assert(Number.isInteger(labelBytes) && labelBytes >= 1 && labelBytes <= 0xff, "a checkpoint label's size fits 8 bits");
  return recordFlags.checkpoint | (labelBytes << checkpointLabelShift);
}

/** The label's byte count a checkpoint record's flags name. */
export function checkpointLabelBytesOf(flags: number): number {
  return (flags >>> checkpointLabelShift) & 0xff;
}

/** Payload bytes a ship record carries: none for zero and resyncEnd, digests for verify, the label for a checkpoint. */
export function shipRecordPayloadBytes(record: { flags: number; length: number }): number {
  if ((record.flags & (recordFlags.zero | recordFlags.resyncEnd)) !== 0) return 0;
  if ((record.flags & recordFlags.checkpoint) !== 0) return checkpointLabelBytesOf(record.flags);
  if ((record.flags & recordFlags.verify) !== 0) return (record.length / verifyBlockBytesOf(record.flags)) * verifyDigestBytes;
  return record.length;
}
