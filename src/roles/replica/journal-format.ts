/**
 * One entry of the point-in-time journal (journal.ts) as it lies in a segment file:
 *
 *   offset  bytes  field
 *   0       4      magic "DRJ1"
 *   4       4      meta bytes (u32 LE)
 *   8       8      data bytes (u64 LE)
 *   16      4      CRC32C of meta and data
 *   20      4      CRC32C of bytes 0..20
 *   24      meta   JSON: JournalChunkMeta
 *   ...     data   the before-images, in the order of meta.ranges
 *   padding to journalEntryAlignBytes
 *
 * A torn entry (a crash while appending) fails a CRC or ends early: the scan stops there and the
 * tail is cut (it was never fsynced, so its writes were never issued). Only the last segment can
 * hold a torn entry: the body CRC is checked there; older segments' headers and metas are.
 */
import { crc32c } from "../../wrl/crc32c.ts";

export const journalEntryMagic = 0x314a5244; // "DRJ1" little-endian
export const journalHeaderBytes = 24;
export const journalEntryAlignBytes = 4096;

/** A range of a device whose content before the chunk is kept. */
export interface JournalRange {
  device: string;
  offset: number;
  length: number;
}

/**
 * A chunk: the before-images of everything one apply step of a WRL overwrote. Undoing it takes the
 * WRL's devices from the point `toLsn` back to the point `fromLsn`.
 */
export interface JournalChunkMeta {
  wrlUuid: string;
  wrlName: string;
  fromLsn: number;
  toLsn: number;
  /** When the point toLsn was reached (ms since the epoch). */
  timeMs: number;
  /** When the point fromLsn was reached, as far as the journal knows. */
  fromTimeMs: number;
  /** An application-consistent checkpoint (druvaa checkpoint --label) at toLsn. */
  label?: string;
  /** toLsn falls inside a resync applied as it came (no replica WRL): not a consistent point. */
  unsettled?: true;
  /** fromLsn did (the step before ended unsettled): not a point either. */
  fromUnsettled?: true;
  /** The piece of a step given in pieces (a resync set): 0, 1, …; the step counts only whole. */
  piece?: number;
  ranges: JournalRange[];
}

export function entryBytes(metaBytes: number, dataBytes: number): number {
  const raw = journalHeaderBytes + metaBytes + dataBytes;
  return Math.ceil(raw / journalEntryAlignBytes) * journalEntryAlignBytes;
}

/**
 * The head of an entry (header with its CRCs still zero, then the meta), to be followed by
 * `dataBytes` of before-images and sealed (sealHeader) once their CRC is known. `bodyCrc` starts
 * the body CRC: continue it over the data with crc32c(piece, crc).
 */
export function entryHead(meta: JournalChunkMeta, dataBytes: number): { head: Uint8Array; bodyCrc: number; paddingBytes: number } {
  const metaBytes = new TextEncoder().encode(JSON.stringify(meta));
  const head = new Uint8Array(journalHeaderBytes + metaBytes.length);
  const view = new DataView(head.buffer);
  view.setUint32(0, journalEntryMagic, true);
  view.setUint32(4, metaBytes.length, true);
  view.setBigUint64(8, BigInt(dataBytes), true);
  head.set(metaBytes, journalHeaderBytes);
  const paddingBytes = entryBytes(metaBytes.length, dataBytes) - head.length - dataBytes;
  return { head, bodyCrc: crc32c(metaBytes), paddingBytes };
}

/** The entry's first journalHeaderBytes with both CRCs filled in. */
export function sealHeader(head: Uint8Array, bodyCrc: number): Uint8Array {
  const header = head.slice(0, journalHeaderBytes);
  const view = new DataView(header.buffer);
  view.setUint32(16, bodyCrc >>> 0, true);
  view.setUint32(20, crc32c(header.subarray(0, 20)), true);
  return header;
}

/** A header read back: the sizes it names, or why it is not a valid header. */
export function decodeHeader(header: Uint8Array): { metaBytes: number; dataBytes: number; crc: number } | string {
  if (header.length < journalHeaderBytes) return "ends before its header";
  const view = new DataView(header.buffer, header.byteOffset, journalHeaderBytes);
  if (view.getUint32(0, true) !== journalEntryMagic) return "no entry magic";
  if (view.getUint32(20, true) !== crc32c(header.subarray(0, 20))) return "header CRC mismatch";
  const dataBytes = Number(view.getBigUint64(8, true));
  return { metaBytes: view.getUint32(4, true), dataBytes, crc: view.getUint32(16, true) };
}

/** The meta of an entry whose body (meta and data) is `body`; or why it is not valid. */
export function decodeBody(body: Uint8Array, metaBytes: number, crc: number | undefined): JournalChunkMeta | string {
  if (crc !== undefined && crc32c(body) >>> 0 !== crc) return "body CRC mismatch";
  try {
    const meta = JSON.parse(new TextDecoder().decode(body.subarray(0, metaBytes))) as JournalChunkMeta;
    if (typeof meta.wrlUuid !== "string" || !Number.isSafeInteger(meta.fromLsn) || !Number.isSafeInteger(meta.toLsn) || !Array.isArray(meta.ranges)) return "meta is not a chunk";
    return meta;
  } catch {
    return "meta is not JSON";
  }
}

/** Where each range's before-image starts in the file, for data starting at `dataStart`. */
export function positionsOf(ranges: readonly JournalRange[], dataStart: number): number[] {
  const positions: number[] = [];
  let at = dataStart;
  for (const range of ranges) {
    positions.push(at);
    at += range.length;
  }
  return positions;
}
