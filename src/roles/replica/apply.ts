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
 */
import { assert } from "../../assert.ts";
import { directIoAlignmentBytes, pageCacheSyncWriteBytesMax, replicaApplyWritesInflightMax, replicaZeroPieceBytes } from "../../constants.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { recordFlags, type ShipMessage, type ShipNackCode, type ShipRecord } from "../../protocol/messages.ts";

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
}

export interface PlannedWrite {
  readonly record: ShipRecord;
  readonly target: ReplicaDevice;
  /** The record's bytes (a view into the shipment's payload); undefined for a ZERO record. */
  readonly data: Uint8Array | undefined;
}

export interface ShipRefusal {
  readonly code: ShipNackCode;
  readonly message: string;
}

export const isZeroRecord = (record: ShipRecord): boolean => (record.flags & recordFlags.zero) !== 0;

/**
 * Checks a shipment against the replica's devices and picks the records to apply: those above
 * `appliedLsn` (the ones at or below it were applied before: re-delivery is skipped). Refuses,
 * before anything is written: a declared device the replica lacks (DEVICE_UNKNOWN) or that is
 * bigger than the replica's (DEVICE_TOO_SMALL); a record for an unknown device (DEVICE_UNKNOWN);
 * a record outside the device or the declared size, or not aligned to the device's logical block
 * size (OUT_OF_RANGE). The payload must be what the frame codec checked: the data of the
 * non-ZERO records in record order.
 */
export function planShipment(ship: ShipMessage, payload: Uint8Array, appliedLsn: number, devices: ReadonlyMap<string, ReplicaDevice>): PlannedWrite[] | ShipRefusal {
  const declared = new Map<string, number>();
  for (const { name, sizeBytes } of ship.devices ?? []) {
    const target = devices.get(name);
    if (target === undefined) return unknownDevice(ship, name, devices);
    if (sizeBytes > target.device.sizeBytes) {
      return {
        code: "DEVICE_TOO_SMALL",
        message: `replica device ${name} (${target.path ?? target.device.name}) has ${target.device.sizeBytes} bytes, but WRL ${ship.wrl} declares ${sizeBytes} bytes for it; give the replica a device at least that big (nothing of this shipment was applied)`,
      };
    }
    declared.set(name, sizeBytes);
  }
  const writes: PlannedWrite[] = [];
  let payloadOffset = 0;
  for (const record of ship.records) {
    const zero = isZeroRecord(record);
    const data = zero ? undefined : payload.subarray(payloadOffset, payloadOffset + record.length);
    if (!zero) payloadOffset += record.length;
    if (record.lsn <= appliedLsn) continue;
    const target = devices.get(record.device);
    if (target === undefined) return unknownDevice(ship, record.device, devices);
    const limit = Math.min(target.device.sizeBytes, declared.get(record.device) ?? Number.MAX_SAFE_INTEGER);
    const end = record.offset + record.length;
    if (end > limit) {
      return {
        code: "OUT_OF_RANGE",
        message: `record LSN ${record.lsn} writes ${record.device} at ${record.offset}+${record.length}, past the end of the device (${limit} bytes); nothing of this shipment was applied`,
      };
    }
    const block = target.device.logicalBlockSizeBytes;
    if (record.offset % block !== 0 || record.length % block !== 0) {
      return {
        code: "OUT_OF_RANGE",
        message: `record LSN ${record.lsn} writes ${record.device} at ${record.offset}+${record.length}, not aligned to the replica device's ${block}-byte logical block size; nothing of this shipment was applied`,
      };
    }
    writes.push({ record, target, data });
  }
  assert(payloadOffset === payload.length, "the frame codec checked the shipment's payload length");
  return writes;
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

async function writeOne(write: PlannedWrite): Promise<void> {
  const { record, target, data } = write;
  if (data !== undefined) {
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

/** A counting semaphore, FIFO. */
class Slots {
  #free: number;
  #waiting: (() => void)[] = [];
  constructor(count: number) {
    this.#free = count;
  }
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free -= 1;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }
  release(): void {
    const next = this.#waiting.shift();
    if (next !== undefined) next();
    else this.#free += 1;
  }
}

/**
 * Writes the planned records: overlapping ones (same device, ranges sharing a 4 KiB page) strictly in
 * LSN order, the others concurrently. Waits for every write to settle; throws the first error
 * (a record whose predecessor failed is not written). Returns the devices written, for the
 * caller to flush.
 */
export async function applyWrites(writes: readonly PlannedWrite[], inflightMax = replicaApplyWritesInflightMax): Promise<Set<ReplicaDevice>> {
  const slots = new Slots(inflightMax);
  const started: { target: ReplicaDevice; start: number; end: number; done: Promise<void> }[] = [];
  for (const write of writes) {
    // Whole pages: two records in one page must not race even when their bytes do not overlap,
    // as one may go through the page cache and the other O_DIRECT (ReplicaDevice.smallWrites),
    // and a direct write writes back and drops the page the other is dirtying.
    const start = write.record.length === 0 ? write.record.offset : Math.floor(write.record.offset / directIoAlignmentBytes) * directIoAlignmentBytes;
    const end = write.record.length === 0 ? start : Math.ceil((write.record.offset + write.record.length) / directIoAlignmentBytes) * directIoAlignmentBytes;
    // Earlier records this one must follow. Zero-length records overlap nothing.
    const before = started.filter((other) => other.target === write.target && other.start < end && start < other.end).map((other) => other.done);
    const done = (async () => {
      if (before.length > 0) await Promise.all(before);
      await slots.acquire();
      try {
        await writeOne(write);
      } finally {
        slots.release();
      }
    })();
    done.catch(() => undefined); // reported below, once, by allSettled
    started.push({ target: write.target, start, end, done });
  }
  const results = await Promise.allSettled(started.map((entry) => entry.done));
  const failed = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
  if (failed !== undefined) throw failed.reason;
  return new Set(writes.map((write) => write.target));
}
