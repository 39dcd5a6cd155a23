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
 * (nothing to apply) are swallowed. Anything else — resync data, a resyncEnd, a verify probe, a
 * checkpoint — ends the span before it (add() answers "stop"): a probe must see the device at its
 * own place in the order, a checkpoint names the state right after its LSN (the span ends just
 * before it, so the replica shows exactly that state, and the checkpoint travels uncoalesced right
 * after the span), and resync sets have their own atomicity (resync-sets.ts on the replica).
 *
 * Bounds: the shipment's limits (ShipmentLimits, one frame) are kept with an upper bound per added
 * record (its bytes, and two more extents: a record adds its own and may split one); add() answers
 * "full" instead of going past them. With a span budget larger than one frame (spanBytesMax), the
 * same bounds hold for the whole span scaled by the frames it may take, and buildParts() cuts the
 * result into parts of one frame each, at LSN boundaries: part k covers the LSNs
 * firstLsn_k..lastLsn_k (consecutive ranges from the span's first LSN to its last) and carries the
 * extents whose newest version comes from a record in that range, so parts never overlap and
 * applying all of them, in any order, is applying the span. Every part but the last is marked
 * `spanContinues` (the replica holds the parts and applies them together with the last one).
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

  /** The bounds add() keeps: one frame's (limits), times the frames the span may take. */
  readonly #spanLimits: ShipmentLimits;

  /** `spanBytesMax`: the most payload bytes the merged span may reach (default one frame's). */
  constructor(
    private readonly target: { wrl: string; wrlUuid: string; deviceSizes: ReadonlyMap<string, number> },
    private readonly limits: ShipmentLimits,
    spanBytesMax = limits.payloadBytesMax,
  ) {
    this.#headerBytes = fixedHeaderBytes + utf8Bytes(target.wrl);
    const frames = Math.max(1, Math.ceil(spanBytesMax / limits.payloadBytesMax));
    this.#spanLimits = { payloadBytesMax: Math.max(spanBytesMax, limits.payloadBytesMax), recordsMax: frames * limits.recordsMax, headerBytesMax: frames * limits.headerBytesMax };
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
        if (this.#dataBytes + addedBytes > this.#spanLimits.payloadBytesMax) return "full";
        if (this.#extents + 2 > this.#spanLimits.recordsMax) return "full";
        if (this.#headerBytes + worstHeader > this.#spanLimits.headerBytesMax) return "full";
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

  /**
   * The coalesced span of every record taken (at least one) as parts of one frame each (see the
   * file comment); undefined when the extents of a single record do not fit one frame (a record
   * cut into more pieces than a frame's records or header take): ship the records as they are.
   */
  buildParts(): Shipment[] | undefined {
    assert(this.#firstLsn !== undefined, "a coalesced span covers at least one record");
    if (this.#dataBytes <= this.limits.payloadBytesMax && this.#extents <= this.limits.recordsMax && this.#headerBytes <= this.limits.headerBytesMax) return [this.build()];
    const bounds = this.#partBounds();
    if (bounds === undefined) return undefined;
    const parts = bounds.map((firstLsn, index) => ({ firstLsn, lastLsn: index + 1 < bounds.length ? bounds[index + 1]! - 1 : this.#lastLsn, records: [] as ShipRecord[], data: [] as Uint8Array[], dataBytes: 0, devices: new Set<string>() }));
    for (const [device, extents] of this.#devices) {
      for (const extent of extents) {
        const part = parts[partOf(bounds, extent.lsn)]!;
        part.records.push(shipRecordOfExtent(device, extent));
        part.devices.add(device);
        if (extent.data !== undefined) {
          part.data.push(extent.data);
          part.dataBytes += extent.data.length;
        }
      }
    }
    return parts.map((part, index) => {
      const message: ShipMessage = { type: "ship", wrl: this.target.wrl, wrlUuid: this.target.wrlUuid, firstLsn: part.firstLsn, lastLsn: part.lastLsn, records: part.records, coalesced: true };
      if (index + 1 < parts.length) message.spanContinues = true;
      const declared = [...part.devices].flatMap((name) => (this.target.deviceSizes.has(name) ? [{ name, sizeBytes: this.target.deviceSizes.get(name)! }] : []));
      if (part.devices.size > 0 && declared.length === part.devices.size) message.devices = declared;
      return { message, payload: concat(part.data, part.dataBytes, (bytes) => new Uint8Array(bytes)), recordsUsed: part.lastLsn - part.firstLsn + 1 };
    });
  }

  /** Each part's first LSN (the first is the span's): whole records' extents, greedily, one frame each. */
  #partBounds(): number[] | undefined {
    const byLsn = new Map<number, { device: string; extent: Extent }[]>();
    for (const [device, extents] of this.#devices) {
      for (const extent of extents) {
        const group = byLsn.get(extent.lsn);
        if (group === undefined) byLsn.set(extent.lsn, [{ device, extent }]);
        else group.push({ device, extent });
      }
    }
    const bounds = [this.#firstLsn!];
    const fixed = fixedHeaderBytes + utf8Bytes(this.target.wrl);
    let part = { bytes: 0, records: 0, header: fixed, devices: new Set<string>() };
    for (const lsn of [...byLsn.keys()].sort((a, b) => a - b)) {
      const group = byLsn.get(lsn)!;
      const cost = (devices: ReadonlySet<string>) => {
        let bytes = 0;
        let header = 0;
        const added = new Set<string>();
        for (const { device, extent } of group) {
          if (extent.data !== undefined) bytes += extent.end - extent.start;
          header += recordHeaderBytes + utf8Bytes(device);
          if (!devices.has(device) && !added.has(device)) header += deviceHeaderBytes + utf8Bytes(device);
          added.add(device);
        }
        return { bytes, header, added };
      };
      const fits = (into: typeof part, add: ReturnType<typeof cost>) => into.bytes + add.bytes <= this.limits.payloadBytesMax && into.records + group.length <= this.limits.recordsMax && into.header + add.header <= this.limits.headerBytesMax;
      let add = cost(part.devices);
      if (part.records > 0 && !fits(part, add)) {
        bounds.push(lsn);
        part = { bytes: 0, records: 0, header: fixed, devices: new Set() };
        add = cost(part.devices);
      }
      if (!fits(part, add)) return undefined;
      part = { bytes: part.bytes + add.bytes, records: part.records + group.length, header: part.header + add.header, devices: new Set([...part.devices, ...add.added]) };
    }
    return bounds;
  }

  /** The coalesced shipment of every record taken (at least one), when it fits one frame. */
  build(allocate: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(bytes)): Shipment {
    assert(this.#firstLsn !== undefined, "a coalesced shipment covers at least one record");
    const records: ShipRecord[] = [];
    const data: Uint8Array[] = [];
    const declared: DeviceSize[] = [];
    for (const [device, extents] of this.#devices) {
      const sizeBytes = this.target.deviceSizes.get(device);
      if (sizeBytes !== undefined) declared.push({ name: device, sizeBytes });
      for (const extent of extents) {
        records.push(shipRecordOfExtent(device, extent));
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

function shipRecordOfExtent(device: string, extent: Extent): ShipRecord {
  return { lsn: extent.lsn, epoch: extent.epoch, device, offset: extent.start, length: extent.end - extent.start, flags: extent.data === undefined ? recordFlags.zero : 0 };
}

/** The index of the part whose range holds `lsn` (bounds: each part's first LSN, ascending). */
function partOf(bounds: readonly number[], lsn: number): number {
  let low = 0;
  let high = bounds.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >>> 1;
    if (bounds[middle]! <= lsn) low = middle;
    else high = middle - 1;
  }
  return low;
}
