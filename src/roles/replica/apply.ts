/**
 * Applying one shipment's records to the replica devices: first the whole shipment is checked
 * (planShipment), and only when every record is applicable is any byte written (applyWrites).
 * A refused shipment therefore never leaves the devices half-changed by a record the replica
 * could not take.
 *
 * Order: records are applied as the WRL ordered them where it matters — a record overlapping an
 * earlier record of the shipment on the same device is written only after that one finished —
 * and in parallel where it does not (non-overlapping records, up to
 * replicaApplyWritesInflightMax at once). The result after applyWrites() equals applying the
 * records one by one in LSN order. What it does NOT guarantee: any order of the device's own
 * writeback before flush() — the caller flushes before it declares the shipment applied.
 *
 * Record kinds (ShipRecord.flags): data and resync records are written, ZERO records zeroed, a
 * resyncEnd record writes nothing, and a verify probe writes nothing either: it is evaluated
 * (verify.ts) at its place in that order, after the overlapping records before it and before the
 * overlapping records after it. A checkpoint record (checkpoints.ts) writes nothing and orders
 * nothing: its PlannedWrite carries `checkpoint` (label, LSN) for whoever records consistent
 * points (checkpointsOf).
 */
import { assert } from "../../assert.ts";
import { directIoAlignmentBytes, pageCacheSyncWriteBytesMax, replicaApplyWritesInflightMax, replicaZeroPieceBytes } from "../../constants.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { recordFlags, shipRecordPayloadBytes, type ShipMessage, type ShipNackCode, type ShipRecord, type VerifyOutcome } from "../../protocol/messages.ts";
import type { SeedTracker } from "./media-seed.ts";
import { evaluateProbe } from "./verify.ts";
import { isCheckpointRecord, onlyCheckpointsOf, plannedCheckpoint, type CheckpointMark } from "./checkpoints.ts";

export { checkpointsOf, loggedPayloadOf, type CheckpointMark } from "./checkpoints.ts";
import { Slots } from "../../io/slots.ts";

/** A replica device as the apply code sees it. */
export interface ReplicaDevice {
  /** The name records and restores use (`--device NAME=PATH`). */
  readonly name: string;
  readonly device: BlockDevice;
  /** For status: the path it was opened from. */
  readonly path?: string;
  /**
   * True where a discarded range reads back as zeros (image files, memory and simulated disks):
   * ZERO records are then applied as a discard. Otherwise (raw block devices, whose discard
   * leaves contents unspecified) zeros are written.
   */
  readonly discardReadsZeros: boolean;
  /**
   * The same file opened again without O_DIRECT, when `device` is an O_DIRECT image file: records
   * of at most pageCacheSyncWriteBytesMax go through it (a page-cache copy rather than a disk
   * write and a thread-pool round trip each). Both handles are on one inode, so the kernel keeps
   * them coherent (a direct write or read first writes back and drops cached pages in its range;
   * overlapping records are applied one after the other), and `device.flush()` (fdatasync of the
   * inode) makes the writes of both durable.
   */
  smallWrites?: BlockDevice;
  /**
   * Media seeding (media-seed.ts): while the device awaits its seed, every range apply writes is
   * marked in this durable bitmap before it is written, so the import never overwrites it.
   */
  seed?: SeedTracker;
}

export interface PlannedWrite {
  readonly record: ShipRecord;
  readonly target: ReplicaDevice;
  /**
   * The record's bytes (a view into the shipment's payload); undefined for a ZERO, resyncEnd or
   * verify record.
   */
  readonly data: Uint8Array | undefined;
  /** A verify probe: its digests, and its outcome once applyWrites() reached it. */
  readonly probe: ProbeCheck | undefined;
  /**
   * A checkpoint record (recordFlags.checkpoint): its label and LSN (the record's); data and probe
   * are undefined and it writes nothing. Its target is the replica's device of that name or, when
   * the replica has none, a stand-in that is never written (checkpoints.ts).
   */
  readonly checkpoint?: CheckpointMark;
}

export interface ProbeCheck {
  /** One sha256 digest per block of verifyBlockBytesOf(record.flags) (a view into the payload). */
  readonly digests: Uint8Array;
  outcome: VerifyOutcome | undefined;
}

/** The records of a shipment to apply, and the OR of their flags (which kinds it holds). */
export interface ShipmentPlan {
  readonly writes: PlannedWrite[];
  readonly flags: number;
  /** Declared devices the replica lacks (only checkpoints name them): not to be recorded in its state. */
  readonly absent: ReadonlySet<string>;
}

export interface ShipRefusal {
  readonly code: ShipNackCode;
  readonly message: string;
}

/**
 * Checks a shipment against the replica's devices and picks the records to apply: those above
 * `appliedLsn` (the ones at or below it were applied before: re-delivery is skipped). Refuses,
 * before anything is written: a declared device the replica lacks (DEVICE_UNKNOWN) or that is
 * bigger than the replica's (DEVICE_TOO_SMALL); a record for an unknown device (DEVICE_UNKNOWN);
 * a record outside the device or the declared size, or not aligned to the device's logical block
 * size (OUT_OF_RANGE). A verify probe and a resyncEnd record are checked like a write of their
 * range. A checkpoint record is not checked against the devices (it writes nothing): a device
 * only checkpoints name (declared or not) is accepted. The payload must be what the frame codec checked: shipRecordPayloadBytes() of each
 * record, in record order.
 */
export function planShipment(ship: ShipMessage, payload: Uint8Array, appliedLsn: number, devices: ReadonlyMap<string, ReplicaDevice>): ShipmentPlan | ShipRefusal {
  const declared = new Map<string, number>();
  const absent = new Set<string>();
  for (const { name, sizeBytes } of ship.devices ?? []) {
    const target = devices.get(name);
    if (target === undefined && onlyCheckpointsOf(ship, name)) {
      absent.add(name);
      continue;
    }
    if (target === undefined) return unknownDevice(ship, name, devices);
    if (sizeBytes > target.device.sizeBytes) {
      return {
        code: "DEVICE_TOO_SMALL",
        message: `replica device ${name} (${target.path ?? target.device.name}) has ${target.device.sizeBytes} bytes, but WRL ${ship.wrl} declares ${sizeBytes} bytes for it; give the replica a device at least that big (rounded up to 4 KiB when protected), plus the header reserve of a protected replica device (--protect-headers, default 1 MiB; druvaa sizing --primary-size) (nothing of this shipment was applied)`,
      };
    }
    declared.set(name, sizeBytes);
  }
  const writes: PlannedWrite[] = [];
  let flags = 0;
  let payloadOffset = 0;
  for (const record of ship.records) {
    if (isCheckpointRecord(record)) {
      const labelBytes = shipRecordPayloadBytes(record);
      const label = payload.subarray(payloadOffset, payloadOffset + labelBytes);
      payloadOffset += labelBytes;
      if (record.lsn <= appliedLsn) continue;
      flags |= record.flags;
      writes.push(plannedCheckpoint(record, label, devices));
      continue;
    }
    let data: Uint8Array | undefined;
    let probe: ProbeCheck | undefined;
    if (record.flags === 0 || record.flags === recordFlags.resync) {
      data = payload.subarray(payloadOffset, payloadOffset + record.length);
      payloadOffset += record.length;
    } else if ((record.flags & recordFlags.verify) !== 0) {
      const digestBytes = shipRecordPayloadBytes(record);
      probe = { digests: payload.subarray(payloadOffset, payloadOffset + digestBytes), outcome: undefined };
      payloadOffset += digestBytes;
    } else if ((record.flags & (recordFlags.zero | recordFlags.resyncEnd)) === 0) {
      // Unknown bits only (carried as given): a data record.
      data = payload.subarray(payloadOffset, payloadOffset + record.length);
      payloadOffset += record.length;
    }
    if (record.lsn <= appliedLsn) continue;
    flags |= record.flags;
    const target = devices.get(record.device);
    if (target === undefined) return unknownDevice(ship, record.device, devices);
    const limit = Math.min(target.device.sizeBytes, declared.get(record.device) ?? Number.MAX_SAFE_INTEGER);
    const end = record.offset + record.length;
    if (end > limit) {
      return {
        code: "OUT_OF_RANGE",
        message: `record LSN ${record.lsn} ${(record.flags & recordFlags.verify) !== 0 ? "probes" : "writes"} ${record.device} at ${record.offset}+${record.length}, past the end of the device (${limit} bytes); nothing of this shipment was applied`,
      };
    }
    const block = target.device.logicalBlockSizeBytes;
    if (record.offset % block !== 0 || record.length % block !== 0) {
      return {
        code: "OUT_OF_RANGE",
        message: `record LSN ${record.lsn} ${(record.flags & recordFlags.verify) !== 0 ? "probes" : "writes"} ${record.device} at ${record.offset}+${record.length}, not aligned to the replica device's ${block}-byte logical block size; nothing of this shipment was applied`,
      };
    }
    writes.push({ record, target, data, probe });
  }
  assert(payloadOffset === payload.length, "the frame codec checked the shipment's payload length");
  return { writes, flags, absent };
}

function unknownDevice(ship: ShipMessage, name: string, devices: ReadonlyMap<string, ReplicaDevice>): ShipRefusal {
  const known = [...devices.keys()].join(", ") || "none";
  return {
    code: "DEVICE_UNKNOWN",
    message: `WRL ${ship.wrl} ships device ${name}, which this replica does not have (it has: ${known}); start the replica with --device ${name}=PATH (nothing of this shipment was applied)`,
  };
}

/** Shared zeros for ZERO records on devices without zeroing discard; never written into. */
let zeroPiece: Uint8Array | undefined;

/** Marks, durably and before any of them is written, the ranges that devices awaiting a seed will get. */
async function markSeeded(writes: readonly PlannedWrite[]): Promise<void> {
  const marks: Promise<void>[] = [];
  for (const write of writes) {
    const seed = write.target.seed;
    if (seed === undefined || seed.completed || write.probe !== undefined || write.record.length === 0) continue;
    marks.push(seed.markWritten(write.record.offset, write.record.length));
  }
  if (marks.length > 0) await Promise.all(marks);
}

async function writeOne(write: PlannedWrite): Promise<void> {
  const { record, target, data } = write;
  if (write.probe !== undefined) return evaluateProbe(write.record, write.target, write.probe);
  if (data !== undefined) {
    if (data.length === 0) return; // an empty resync record only opens its device's set
    const via = target.smallWrites !== undefined && data.length <= pageCacheSyncWriteBytesMax ? target.smallWrites : target.device;
    return via.write(record.offset, data);
  }
  if (record.length === 0) return;
  if (target.discardReadsZeros) return target.device.discard(record.offset, record.length);
  zeroPiece ??= new Uint8Array(replicaZeroPieceBytes);
  for (let doneBytes = 0; doneBytes < record.length; doneBytes += zeroPiece.length) {
    const pieceBytes = Math.min(zeroPiece.length, record.length - doneBytes);
    await target.device.write(record.offset + doneBytes, zeroPiece.subarray(0, pieceBytes));
  }
}


/**
 * Writes the planned records: overlapping ones (same device, ranges sharing a 4 KiB page) strictly in
 * LSN order, the others concurrently; a verify probe takes its place in that order like a write
 * (its outcome is left in write.probe); a checkpoint is skipped. Waits for every write to settle; throws the first error
 * (a record whose predecessor failed is not written). Returns the devices written, for the
 * caller to flush (a checkpoint's target is not among them).
 */
export async function applyWrites(writes: readonly PlannedWrite[], inflightMax = replicaApplyWritesInflightMax): Promise<Set<ReplicaDevice>> {
  await markSeeded(writes);
  const slots = new Slots(inflightMax);
  const started: { target: ReplicaDevice; start: number; end: number; done: Promise<void> }[] = [];
  for (const write of writes) {
    if (write.checkpoint !== undefined) continue; // writes nothing, overlaps nothing
    // Whole pages: two records in one page must not race even when their bytes do not overlap,
    // as one may go through the page cache and the other O_DIRECT (ReplicaDevice.smallWrites),
    // and a direct write writes back and drops the page the other is dirtying.
    const start = write.record.length === 0 ? write.record.offset : Math.floor(write.record.offset / directIoAlignmentBytes) * directIoAlignmentBytes;
    const end = write.record.length === 0 ? start : Math.ceil((write.record.offset + write.record.length) / directIoAlignmentBytes) * directIoAlignmentBytes;
    // Earlier records this one must follow. Zero-length records overlap nothing.
    const before = started.filter((other) => other.target === write.target && other.start < end && start < other.end).map((other) => other.done);
    const done = (async () => {
      if (before.length > 0) await Promise.all(before);
      await slots.take();
      try {
        await writeOne(write);
      } finally {
        slots.give();
      }
    })();
    done.catch(() => undefined); // reported below, once, by allSettled
    started.push({ target: write.target, start, end, done });
  }
  const results = await Promise.allSettled(started.map((entry) => entry.done));
  const failed = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
  if (failed !== undefined) throw failed.reason;
  const touched = new Set<ReplicaDevice>();
  for (const write of writes) if (write.checkpoint === undefined) touched.add(write.target);
  return touched;
}
