/**
 * Turning WRL records into one `ship` message + payload (docs/pipeline.md "Staging"). Pure: the
 * relay reads the records, this decides how many go into one shipment and lays out the frame.
 *
 * Bounds, whichever binds first: stagingShipmentBytesMax of payload (a single larger record
 * travels alone: it fits a frame by construction), shipRecordsMax records, and an estimated CBOR
 * header of at most stagingShipmentHeaderBytesMax (the estimate is an upper bound of what cbor-x
 * writes for the fields below, so the real header stays under frameHeaderSizeBytesMax).
 *
 * Record types (records.ts): write and resync carry their data; zero and trim travel with the
 * ZERO flag and no payload (the range reads as zeros at the replica); resyncEnd and verify markers
 * travel with their flags (a probe with its digests); other markers (nothing to apply) are left
 * out of `records` but stay inside firstLsn..lastLsn, which the protocol allows (gaps, never
 * reordering).
 */
import { assert } from "../../assert.ts";
import { shipRecordsMax, stagingShipmentBytesMax, stagingShipmentHeaderBytesMax } from "../../constants.ts";
import { shipRecordPayloadBytes, type DeviceSize, type ShipMessage, type ShipRecord } from "../../protocol/messages.ts";
import { shipRecordOf } from "./records.ts";
import type { WrlRecord } from "../../wrl/types.ts";

export interface ShipmentLimits {
  payloadBytesMax: number;
  recordsMax: number;
  headerBytesMax: number;
}

export const defaultShipmentLimits: ShipmentLimits = { payloadBytesMax: stagingShipmentBytesMax, recordsMax: shipRecordsMax, headerBytesMax: stagingShipmentHeaderBytesMax };

export interface Shipment {
  message: ShipMessage;
  /** The data of the non-ZERO records, in record order. */
  payload: Uint8Array;
  /** How many of the given records (markers included) it covers. */
  recordsUsed: number;
}

const encoder = new TextEncoder();
export const utf8Bytes = (text: string) => encoder.encode(text).length;

/**
 * Upper bounds of the CBOR bytes of the shipment's parts (keys, 9-byte integers, string headers).
 * The fixed part (~120 bytes) leaves room for the codec fields compression adds (~65 bytes).
 */
export const fixedHeaderBytes = 256;
export const recordHeaderBytes = 96;
export const deviceHeaderBytes = 40;

export function deviceName(record: WrlRecord): string {
  // Staging always logs names; a numbered device (a log written by something else) keeps its
  // number as its name, and the replica refuses it if it has no such device.
  return typeof record.device === "string" ? record.device : String(record.device);
}

/**
 * Builds the shipment of a prefix of `records` (consecutive LSNs, at least one, from the WRL).
 * `deviceSizes` are the attached devices' sizes: when every device the shipment names is known
 * they are declared in `devices`, otherwise the field is left out (the replica then checks its
 * own device size only).
 */
export function buildShipment(
  records: readonly WrlRecord[],
  target: { wrl: string; wrlUuid: string; deviceSizes: ReadonlyMap<string, number> },
  limits: ShipmentLimits = defaultShipmentLimits,
  allocate: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(bytes),
): Shipment {
  assert(records.length > 0, "a shipment has at least one record");
  const shipRecords: ShipRecord[] = [];
  const data: Uint8Array[] = [];
  const devices = new Set<string>();
  let payloadBytes = 0;
  let headerBytes = fixedHeaderBytes + utf8Bytes(target.wrl);
  let used = 0;
  for (const record of records) {
    if (used > 0) assert(record.lsn === records[used - 1]!.lsn + 1, "records come in consecutive LSN order");
    const name = deviceName(record);
    const shipRecord = shipRecordOf(record, name);
    if (shipRecord === undefined) {
      used += 1;
      continue;
    }
    const recordBytes = shipRecordPayloadBytes(shipRecord);
    const addedHeaderBytes = recordHeaderBytes + utf8Bytes(name) + (devices.has(name) ? 0 : deviceHeaderBytes + utf8Bytes(name));
    if (shipRecords.length > 0) {
      if (payloadBytes + recordBytes > limits.payloadBytesMax) break;
      if (shipRecords.length + 1 > limits.recordsMax) break;
      if (headerBytes + addedHeaderBytes > limits.headerBytesMax) break;
    }
    shipRecords.push(shipRecord);
    if (recordBytes > 0) data.push(record.data);
    devices.add(name);
    payloadBytes += recordBytes;
    headerBytes += addedHeaderBytes;
    used += 1;
  }
  const message: ShipMessage = { type: "ship", wrl: target.wrl, wrlUuid: target.wrlUuid, firstLsn: records[0]!.lsn, lastLsn: records[used - 1]!.lsn, records: shipRecords };
  const declared: DeviceSize[] = [];
  for (const name of devices) {
    const sizeBytes = target.deviceSizes.get(name);
    if (sizeBytes === undefined) break;
    declared.push({ name, sizeBytes });
  }
  if (devices.size > 0 && declared.length === devices.size) message.devices = declared;
  return { message, payload: concat(data, payloadBytes, allocate), recordsUsed: used };
}

/**
 * One buffer of the records' data: the record's own bytes when there is one (no copy), else one
 * copy into `allocate(totalBytes)` (the relay recycles shipment buffers).
 */
export function concat(parts: readonly Uint8Array[], totalBytes: number, allocate: (bytes: number) => Uint8Array): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = allocate(totalBytes);
  assert(out.length === totalBytes, "allocate returns exactly the bytes asked for");
  let position = 0;
  for (const part of parts) {
    out.set(part, position);
    position += part.length;
  }
  return out;
}
