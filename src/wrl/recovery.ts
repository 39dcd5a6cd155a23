/**
 * WRL recovery: pick the superblock, check the secondaries belong, and find the head by scanning
 * forward from the checkpoint head while checksums and LSN continuity hold.
 *
 * Decision table (TigerBeetle journal style). Every row has a test in tests/wrl/recovery.test.ts.
 *
 * Superblock copies A (offset 0) and B (half the superblock area):
 *   S1  A valid, B valid                  -> use the one with the higher sequence
 *   S2  one valid, other torn/corrupt     -> use the valid one (the other was the write in flight)
 *   S3  one valid, other zeroed/no magic  -> use the valid one
 *   S4  either has an unknown version     -> refuse WRL_VERSION_UNSUPPORTED (never roll back
 *                                            past a copy a newer druvaa wrote)
 *   S5  neither valid, a magic present    -> refuse WRL_SUPERBLOCK_CORRUPT
 *   S6  neither has the magic             -> refuse WRL_NOT_FOUND (not a write log)
 *
 * Secondary device i listed in the superblock:
 *   D1  header valid, same WRL uuid, device uuid and index, large enough -> use it
 *   D2  header missing, torn, of another WRL, or another index           -> refuse WRL_DEVICE_NOT_MEMBER
 *   D3  device smaller than its log area                                 -> refuse WRL_DEVICE_TOO_SMALL
 *   D4  device not given / cannot be opened                              -> refuse WRL_DEVICE_MISSING
 *
 * Scan, at position p expecting LSN L, superblock incarnation I (every record after the
 * checkpoint head was written by incarnation I: open() persists I before writing any record):
 *   R1  record at p: this WRL, incarnation I, LSN L, payload checksum ok -> accept, p = its end
 *   R2  not R1 at p, but R1 at the start of a following device (or 0)    -> accept there (the
 *                                                                           writer skipped a device end)
 *   R3  at p: zeroed, no record, another WRL's record                     -> end of log (*)
 *   R4  at p: record with LSN < L, or incarnation < I (an earlier lap, or a history discarded
 *       by an earlier recovery)                                           -> end of log (*)
 *   R5  at p: torn or damaged header or payload (checksum mismatch)       -> end of log (*)
 *   R6  at p: record of incarnation I with LSN > L                        -> refuse WRL_CORRUPT (gap)
 *   R7  at p: record of an incarnation > I                                -> refuse WRL_CORRUPT
 *   (*) look-ahead: every record names the LSN that was durable (acknowledged) when it was
 *       written, and group commit keeps at most about one batch written but not yet durable.
 *       So a header of incarnation I with LSN > L naming a durable LSN >= L, within reach of
 *       the records in flight from p, proves L was acknowledged before the crash:
 *   R8  such a header found                                               -> refuse WRL_CORRUPT
 *                                                                           (acknowledged records lost)
 *   R9  none found                                                        -> stop: head = p,
 *                                                                           head LSN = L - 1 (a torn
 *                                                                           tail of unacknowledged appends)
 * Not detected: damage to acknowledged records that no later record vouches for (it looks
 * exactly like a torn, unacknowledged tail), and damage to records between the tail and the
 * checkpoint head (read() reports it when the relay reaches them).
 */
import type { BlockDevice } from "../io/block-device.ts";
import { DruvaaError, exitCodes } from "../errors.ts";
import { wrlAlignmentBytes, wrlSecondaryHeaderAreaBytes, wrlSuperblockCopyBytes } from "../constants.ts";
import type { LogGeometry } from "./geometry.ts";
import type { LogReader, RecordProbe } from "./log-reader.ts";
import { probeHeader, sameBytes } from "./record-format.ts";
import { decodeSecondaryHeader, decodeSuperblock, superblockCopyOffset, uuidToBytes, type MetadataProbe, type Superblock } from "./superblock.ts";
import type { WrlDeviceEntry, WrlRecoveryReport } from "./types.ts";

export interface ChosenSuperblock {
  superblock: Superblock;
  copy: number;
  other: WrlRecoveryReport["otherCopy"];
}

/** Reads both superblock copies of `primary` (rows S1–S6). */
export async function readSuperblock(primary: BlockDevice): Promise<ChosenSuperblock> {
  if (primary.sizeBytes < superblockCopyOffset(1) + wrlSuperblockCopyBytes) throw notAWrl(primary.name, "too small to hold a superblock");
  const probes = [
    decodeSuperblock(await primary.read(superblockCopyOffset(0), wrlSuperblockCopyBytes)),
    decodeSuperblock(await primary.read(superblockCopyOffset(1), wrlSuperblockCopyBytes)),
  ] as const;
  return chooseSuperblock(primary.name, probes);
}

export function chooseSuperblock(name: string, probes: readonly [MetadataProbe<Superblock>, MetadataProbe<Superblock>]): ChosenSuperblock {
  const unsupported = probes.find((p) => p.kind === "unsupported-version");
  if (unsupported?.kind === "unsupported-version") {
    throw new DruvaaError("WRL_VERSION_UNSUPPORTED", `${name}: write log format version ${unsupported.version} is newer than this druvaa understands`, "Upgrade druvaa on this host", exitCodes.refused);
  }
  const [a, b] = probes;
  if (a.kind === "valid" && b.kind === "valid") {
    const copy = b.value.sequence > a.value.sequence ? 1 : 0;
    return { superblock: (copy === 0 ? a : b).value, copy, other: "valid-older" };
  }
  if (a.kind === "valid" || b.kind === "valid") {
    const copy = a.kind === "valid" ? 0 : 1;
    const chosen = (copy === 0 ? a : b) as { kind: "valid"; value: Superblock };
    const other = copy === 0 ? b : a;
    return { superblock: chosen.value, copy, other: other.kind === "zeroed" ? "zeroed" : "invalid" };
  }
  const corrupt = probes.find((p) => p.kind === "corrupt");
  if (corrupt?.kind === "corrupt") {
    throw new DruvaaError(
      "WRL_SUPERBLOCK_CORRUPT",
      `${name}: both write log superblock copies are damaged (${corrupt.detail})`,
      "The log cannot be trusted; copy the device for analysis, then recreate it: druvaa wrl create --force --primary PATH (clients resync from their change maps)",
      exitCodes.refused,
    );
  }
  throw notAWrl(name, "no write log superblock");
}

export function notAWrl(name: string, detail: string): DruvaaError {
  return new DruvaaError("WRL_NOT_FOUND", `${name}: not a druvaa write log (${detail})`, `Create one with: druvaa wrl create --primary ${name}`, exitCodes.notFound);
}

/** Checks that `device` is secondary `entry` of WRL `wrlUuid` (rows D1–D3). */
export async function verifySecondary(device: BlockDevice, entry: WrlDeviceEntry, wrlUuid: string): Promise<void> {
  if (device.sizeBytes < entry.dataStartBytes + entry.dataBytes) {
    throw new DruvaaError("WRL_DEVICE_TOO_SMALL", `${device.name}: device ${entry.index} of write log ${wrlUuid} is ${device.sizeBytes} bytes, its log area needs ${entry.dataStartBytes + entry.dataBytes}`, "Was the device or image shrunk, or is this the wrong device?", exitCodes.refused);
  }
  const probe = decodeSecondaryHeader(await device.read(0, wrlSecondaryHeaderAreaBytes));
  const problem =
    probe.kind !== "valid" ? `no valid secondary header (${probe.kind})`
    : probe.value.wrlUuid !== wrlUuid ? `it belongs to write log ${probe.value.wrlUuid}`
    : probe.value.index !== entry.index || probe.value.deviceUuid !== entry.uuid ? `it is device ${probe.value.index} (${probe.value.deviceUuid}), expected device ${entry.index} (${entry.uuid})`
    : undefined;
  if (problem !== undefined) {
    throw new DruvaaError("WRL_DEVICE_NOT_MEMBER", `${device.name}: not device ${entry.index} of write log ${wrlUuid}: ${problem}`, `Give the device that was added as ${entry.pathHint}`, exitCodes.refused);
  }
}

export interface ScanResult {
  headPosition: number;
  headLsn: number;
  /** Incarnation of record headLsn, when the scan accepted at least one record. */
  headIncarnation: number | undefined;
  scannedRecordCount: number;
  stopReason: string;
}

/** Finds the head (rows R1–R9). `batchBytesMax` bounds how far one batch reaches. */
export async function scanLog(reader: LogReader, geometry: LogGeometry, sb: Superblock, batchBytesMax: number): Promise<ScanResult> {
  let position = sb.checkpoint.headPosition;
  let expected = sb.checkpoint.headLsn + 1;
  let headIncarnation: number | undefined;
  let scannedRecordCount = 0;
  let scannedBytes = 0;
  const fail = (detail: string) =>
    new DruvaaError(
      "WRL_CORRUPT",
      `write log ${sb.uuid}: ${detail}`,
      "Records that were acknowledged are damaged. Copy the devices for analysis, then recreate the log (druvaa wrl create --force); clients resync from their change maps",
      exitCodes.refused,
    );
  for (;;) {
    let atPosition: RecordProbe | undefined;
    let accepted: Extract<RecordProbe, { kind: "record" }> | undefined;
    for (const candidate of geometry.candidates(position)) {
      const probe = await reader.probe(candidate, true);
      if (candidate === position) atPosition = probe;
      if (probe.kind === "record" && probe.header.lsn === expected && probe.header.incarnation === sb.incarnation) {
        accepted = probe; // R1 at p, R2 at a following device start
        break;
      }
    }
    if (accepted !== undefined) {
      scannedBytes += geometry.distance(position, accepted.start) + accepted.sizeBytes;
      if (scannedBytes > geometry.totalBytes) throw fail(`records after the checkpoint fill more than the whole log (at LSN ${expected})`);
      position = geometry.normalize(accepted.start + accepted.sizeBytes);
      headIncarnation = accepted.header.incarnation;
      expected += 1;
      scannedRecordCount += 1;
      continue;
    }
    if (atPosition?.kind === "record") {
      const { lsn, incarnation } = atPosition.header;
      if (incarnation > sb.incarnation) throw fail(`record LSN ${lsn} at position ${position} has incarnation ${incarnation}, newer than the superblock's ${sb.incarnation}`); // R7
      if (incarnation === sb.incarnation && lsn > expected) throw fail(`LSN gap at position ${position}: expected ${expected}, found ${lsn}`); // R6
    }
    const later = await findLaterBatch(reader, geometry, sb, position, expected, batchBytesMax);
    if (later !== undefined) throw fail(`LSN ${expected} at position ${position} is ${describe(atPosition)}, but LSN ${later} of a later batch was made durable after it`); // R8
    return { headPosition: position, headLsn: expected - 1, headIncarnation, scannedRecordCount, stopReason: `LSN ${expected} at position ${position}: ${describe(atPosition)}` }; // R9
  }
}

function describe(probe: RecordProbe | undefined): string {
  switch (probe?.kind) {
    case undefined: return "unreadable";
    case "record": return `a record of an earlier lap or history (LSN ${probe.header.lsn}, incarnation ${probe.header.incarnation})`;
    case "zeroed": return "zeroed (never written)";
    case "no-record": return "not a record";
    case "foreign": return "a record of another write log";
    case "bad-header": return `a torn or damaged header (${probe.detail})`;
    case "bad-payload": return `a torn or damaged record, LSN ${probe.header.lsn} (${probe.detail})`;
  }
}

/**
 * Looks for a header of incarnation I with LSN > L written when L was already durable, in the
 * stretch of log that the records in flight at any moment (plus a skip at each device end) can
 * cover from `position`. Returns its LSN.
 */
async function findLaterBatch(reader: LogReader, geometry: LogGeometry, sb: Superblock, position: number, expected: number, batchBytesMax: number): Promise<number | undefined> {
  const uuid = uuidToBytes(sb.uuid);
  const windowBytes = Math.min(geometry.totalBytes, 2 * batchBytesMax + geometry.segments.length * geometry.recordBytesMax);
  let cursor = position;
  for (let walkedBytes = 0; walkedBytes < windowBytes; walkedBytes += wrlAlignmentBytes) {
    const probe = probeHeader(await reader.bytesAt(cursor, wrlAlignmentBytes));
    if (probe.kind === "header") {
      const h = probe.header;
      if (sameBytes(h.uuid, uuid) && h.incarnation === sb.incarnation && h.lsn > expected && h.durableLsn >= expected) return h.lsn;
    }
    cursor = geometry.normalize(cursor + wrlAlignmentBytes);
  }
  return undefined;
}
