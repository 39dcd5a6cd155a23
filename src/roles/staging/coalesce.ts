/**
 * Coalescing a span of WRL records into one shipment that keeps only the newest version of each
 * block (issue 5 part 3; the wire format is ShipMessage.coalesced, docs/pipeline.md "Coalesced
 * shipments"). Pure: the relay feeds records in LSN order, this keeps, per device, a sorted list
 * of disjoint extents, each pointing at the bytes of the newest record that wrote it (or saying
 * "zeros" for a zero/trim record).
 *
 * Adding a record [start, end) cuts the extents it overlaps: one that starts before `start` keeps
 * its left part, one that ends after `end` keeps its right part (one extent may keep both: a
 * split), the parts in between are dropped, and the new record's extent goes in. So applying the
 * extents, in any order, to any image gives exactly what applying the records one by one in LSN
 * order gives (tests/staging/coalesce.property.test.ts).
 *
 * What coalesces: data records (write) and zero/trim records. Markers that are not shipped
 * (nothing to apply) are swallowed. Anything else — resync data, a resyncEnd, a verify probe —
 * ends the span before it (add() answers "stop"): a probe must see the device at its own place in
 * the order, and resync sets have their own atomicity (resync-sets.ts on the replica).
 *
 * Bounds: the shipment's limits (ShipmentLimits) are kept with an upper bound per added record
 * (its bytes, and two more extents: a record adds its own and may split one), so the result always
 * fits one frame; add() answers "full" instead of going past them.
 */
import { assert } from "../../assert.ts";
import { recordFlags, type DeviceSize, type ShipMessage, type ShipRecord } from "../../protocol/messages.ts";
import type { WrlRecord } from "../../wrl/types.ts";
import { shipRecordOf } from "./records.ts";
import { concat, deviceHeaderBytes, deviceName, fixedHeaderBytes, recordHeaderBytes, utf8Bytes, type Shipment, type ShipmentLimits } from "./shipment.ts";

/** One extent of a device: its newest bytes (undefined: zeros) and the record they come from. */
interface Extent {
  start: number;
  end: number;
  lsn: number;
  epoch: number;
  data: Uint8Array | undefined;
}

/** What add() did: took the record, ends the span before it (not coalescible), or has no room for it. */
export type AddOutcome = "added" | "stop" | "full";

export class Coalescer {
  readonly #devices = new Map<string, Extent[]>();
  #extents = 0;
  #dataBytes = 0;
  #headerBytes: number;
  #firstLsn: number | undefined;
  #lastLsn = 0;
  /** WRL records taken (markers included) and the data bytes they carried. */
  recordsIn = 0;
  bytesIn = 0;

  constructor(
    private readonly target: { wrl: string; wrlUuid: string; deviceSizes: ReadonlyMap<string, number> },
    private readonly limits: ShipmentLimits,
  ) {
    this.#headerBytes = fixedHeaderBytes + utf8Bytes(target.wrl);
  }

  get empty(): boolean {
    return this.recordsIn === 0;
  }

  /** Extents the shipment would carry now. */
  get recordsOut(): number {
    return this.#extents;
  }

  /** Payload bytes the shipment would carry now. */
  get bytesOut(): number {
    return this.#dataBytes;
  }

  /** Takes the next record (LSNs consecutive), unless it must not or cannot be coalesced. */
  add(record: WrlRecord): AddOutcome {
    if (this.#firstLsn !== undefined) assert(record.lsn === this.#lastLsn + 1, "records come in consecutive LSN order");
    const name = deviceName(record);
    const shipRecord = shipRecordOf(record, name);
    if (shipRecord !== undefined && shipRecord.flags !== 0 && shipRecord.flags !== recordFlags.zero) return "stop";
    if (shipRecord !== undefined && shipRecord.length > 0) {
      const zero = shipRecord.flags === recordFlags.zero;
      const addedBytes = zero ? 0 : shipRecord.length;
      const nameBytes = utf8Bytes(name);
      const newDevice = !this.#devices.has(name);
      const worstHeader = 2 * (recordHeaderBytes + nameBytes) + (newDevice ? deviceHeaderBytes + nameBytes : 0);
      if (!this.empty) {
        if (this.#dataBytes + addedBytes > this.limits.payloadBytesMax) return "full";
        if (this.#extents + 2 > this.limits.recordsMax) return "full";
        if (this.#headerBytes + worstHeader > this.limits.headerBytesMax) return "full";
      }
      if (newDevice) {
        this.#devices.set(name, []);
        this.#headerBytes += deviceHeaderBytes + nameBytes;
      }
      const before = this.#extents;
      this.#put(this.#devices.get(name)!, { start: shipRecord.offset, end: shipRecord.offset + shipRecord.length, lsn: record.lsn, epoch: record.epoch, data: zero ? undefined : record.data.subarray(0, shipRecord.length) });
      this.#headerBytes += (this.#extents - before) * (recordHeaderBytes + nameBytes);
      this.bytesIn += addedBytes;
    }
    this.#firstLsn ??= record.lsn;
    this.#lastLsn = record.lsn;
    this.recordsIn += 1;
    return "added";
  }

  /** The coalesced shipment of every record taken (at least one). */
  build(allocate: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(bytes)): Shipment {
    assert(this.#firstLsn !== undefined, "a coalesced shipment covers at least one record");
    const records: ShipRecord[] = [];
    const data: Uint8Array[] = [];
    const declared: DeviceSize[] = [];
    for (const [device, extents] of this.#devices) {
      const sizeBytes = this.target.deviceSizes.get(device);
      if (sizeBytes !== undefined) declared.push({ name: device, sizeBytes });
      for (const extent of extents) {
        records.push({ lsn: extent.lsn, epoch: extent.epoch, device, offset: extent.start, length: extent.end - extent.start, flags: extent.data === undefined ? recordFlags.zero : 0 });
        if (extent.data !== undefined) data.push(extent.data);
      }
    }
    const message: ShipMessage = { type: "ship", wrl: this.target.wrl, wrlUuid: this.target.wrlUuid, firstLsn: this.#firstLsn, lastLsn: this.#lastLsn, records, coalesced: true };
    if (this.#devices.size > 0 && declared.length === this.#devices.size) message.devices = declared;
    return { message, payload: concat(data, this.#dataBytes, allocate), recordsUsed: this.recordsIn };
  }

  /** Puts `added` into the device's sorted disjoint extents, cutting what it overlaps. */
  #put(extents: Extent[], added: Extent): void {
    // First extent ending after the new start (extents are disjoint and sorted, so ends ascend).
    let low = 0;
    let high = extents.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (extents[middle]!.end <= added.start) low = middle + 1;
      else high = middle;
    }
    let last = low;
    while (last < extents.length && extents[last]!.start < added.end) last += 1;
    const replacing: Extent[] = [];
    let droppedBytes = 0;
    for (let index = low; index < last; index += 1) {
      const old = extents[index]!;
      if (old.data !== undefined) droppedBytes += old.end - old.start;
      if (old.start < added.start) replacing.push(cut(old, old.start, added.start));
    }
    replacing.push(added);
    if (last > low) {
      const old = extents[last - 1]!;
      if (old.end > added.end) replacing.push(cut(old, added.end, old.end));
    }
    let keptBytes = 0;
    for (const extent of replacing) if (extent.data !== undefined) keptBytes += extent.end - extent.start;
    extents.splice(low, last - low, ...replacing);
    this.#extents += replacing.length - (last - low);
    this.#dataBytes += keptBytes - droppedBytes;
  }
}

/** The part start..end of an extent (inside it). */
function cut(extent: Extent, start: number, end: number): Extent {
  assert(extent.start <= start && start < end && end <= extent.end, "a cut stays inside its extent");
  const data = extent.data === undefined ? undefined : extent.data.subarray(start - extent.start, end - extent.start);
  return { start, end, lsn: extent.lsn, epoch: extent.epoch, data };
}
