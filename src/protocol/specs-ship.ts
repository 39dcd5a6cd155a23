/**
 * Validators of the staging relay -> replica flow: resume / resumeAck once after the handshake,
 * then a window of ship / shipAck / shipNack.
 */
import { assert } from "../assert.ts";
import { frameSizeBytesMax, protocolDevicesMax, shipRecordsMax, verifyBlockBytesMax, verifyBlockBytesMin, verifyOutcomesPerAckMax, verifyRangeBytesMax, verifyRangesMax, writePayloadSizeBytesMax, zeroRecordBytesMax } from "../constants.ts";
import { badField, checkExtent, isMap, noPayload, readArray, readDeviceSizes, readEnum, readName, readOptionalBoolean, readText, readUint, readUuid, type Fields } from "./fields.ts";
import { checkpointLabelBytesMax } from "./checkpoint-label.ts";
import { checkpointLabelBytesOf, recordFlags, shipCodecs, shipNackCodes, shipRecordPayloadBytes, verifyBlockBytesOf, type ByteRange, type ResumeAckMessage, type ShipAckMessage, type ShipMessage, type ShipRecord, type SpecTable, type VerifyOutcome } from "./message-types.ts";

const kindFlags = recordFlags.zero | recordFlags.resync | recordFlags.resyncEnd | recordFlags.verify | recordFlags.checkpoint;

/** `differing`: byte ranges of a verify outcome, at most verifyRangesMax. */
export function readByteRanges(fields: Fields, where: string): ByteRange[] {
  return readArray(fields, where, "differing", verifyRangesMax).map((value, index) => {
    const at = `${where}.differing[${index}]`;
    if (!isMap(value)) throw badField(at, "a map with offset and length", value);
    const range = { offset: readUint(value, at, "offset"), length: readUint(value, at, "length", verifyRangeBytesMax) };
    checkExtent(at, range.offset, range.length);
    return range;
  });
}

/** A verify outcome's fields (shipAck.verified[i], and verifyReport which adds `wrl`). */
export function readVerifyOutcome(value: unknown, where: string): VerifyOutcome {
  if (!isMap(value)) throw badField(where, "a verify outcome map", value);
  const outcome = {
    device: readName(value, where, "device"),
    lsn: readUint(value, where, "lsn"),
    offset: readUint(value, where, "offset"),
    length: readUint(value, where, "length", verifyRangeBytesMax),
    differing: readByteRanges(value, where),
  };
  checkExtent(where, outcome.offset, outcome.length);
  return outcome;
}

function readShipRecord(value: unknown, where: string): ShipRecord {
  if (!isMap(value)) throw badField(where, "a record map", value);
  const lsn = readUint(value, where, "lsn");
  const epoch = readUint(value, where, "epoch");
  const device = readName(value, where, "device");
  const offset = readUint(value, where, "offset");
  // Read flags before length: a ZERO record carries no data, so its length has the larger bound.
  const flags = readUint(value, where, "flags", 0xffff_ffff);
  const kind = flags & kindFlags;
  if ((kind & (kind - 1)) !== 0) throw badField(`${where}.flags`, "at most one of zero, resync, resyncEnd, verify, checkpoint", flags);
  const lengthMax = kind === recordFlags.zero ? zeroRecordBytesMax : kind === recordFlags.verify ? verifyRangeBytesMax : writePayloadSizeBytesMax;
  const length = readUint(value, where, "length", lengthMax);
  checkExtent(where, offset, length);
  if (kind === recordFlags.resyncEnd && length !== 0) throw badField(`${where}.length`, "0 for a resyncEnd record", length);
  if (kind === recordFlags.checkpoint) {
    if (offset !== 0 || length !== 0) throw badField(`${where}.length`, "0 (with offset 0) for a checkpoint record", length);
    const labelBytes = checkpointLabelBytesOf(flags);
    if (labelBytes === 0 || labelBytes > checkpointLabelBytesMax) throw badField(`${where}.flags`, `a checkpoint label size in [1, ${checkpointLabelBytesMax}]`, flags);
  }
  if (kind === recordFlags.verify) {
    const blockBytes = verifyBlockBytesOf(flags);
    if (blockBytes < verifyBlockBytesMin || blockBytes > verifyBlockBytesMax) throw badField(`${where}.flags`, `a verify block size in [${verifyBlockBytesMin}, ${verifyBlockBytesMax}]`, flags);
    if (length === 0 || length % blockBytes !== 0) throw badField(`${where}.length`, `a positive multiple of the verify block size ${blockBytes}`, length);
  }
  return { lsn, epoch, device, offset, length, flags };
}

/** The bytes of the records' data: the payload's size, or what a compressed payload decompresses to. */
export function shipDataBytes(ship: ShipMessage): number {
  return ship.records.reduce((sum, record) => sum + shipRecordPayloadBytes(record), 0);
}

const codecFields = ["rawBytes", "rawCrc32", "wireBytes"] as const;

/**
 * The payload encoding of a shipment (ship-codec.ts): codec, rawBytes, rawCrc32 and wireBytes
 * come together or not at all. rawBytes must be the records' data bytes, and is bounded like an
 * uncompressed payload (frameSizeBytesMax): a small frame never makes the replica allocate more
 * than a large plain one would.
 */
function readShipCodec(fields: Fields, ship: ShipMessage): void {
  if (fields.codec === undefined) {
    const stray = codecFields.find((key) => fields[key] !== undefined);
    if (stray !== undefined) throw badField("ship.codec", `a codec (${shipCodecs.join(", ")}) alongside ${stray}`, fields.codec);
    return;
  }
  ship.codec = readEnum(fields, "ship", "codec", shipCodecs);
  ship.rawBytes = readUint(fields, "ship", "rawBytes", frameSizeBytesMax);
  ship.rawCrc32 = readUint(fields, "ship", "rawCrc32", 0xffff_ffff);
  ship.wireBytes = readUint(fields, "ship", "wireBytes", frameSizeBytesMax);
  const dataBytes = shipDataBytes(ship);
  if (ship.rawBytes !== dataBytes) throw badField("ship.rawBytes", `the records' data bytes, ${dataBytes}`, ship.rawBytes);
  if (ship.wireBytes === 0) throw badField("ship.wireBytes", "at least 1 byte of compressed data", ship.wireBytes);
}

/**
 * A coalesced shipment's records (ShipMessage.coalesced): data or ZERO records only (resync data,
 * resyncEnd, verify probes and checkpoints are never coalesced), each with an LSN in [firstLsn, lastLsn], at
 * least one byte long, and per device in ascending offset order without overlap: one version of
 * each block, so the order they are applied in cannot matter.
 */
function checkCoalescedRecords(ship: ShipMessage): void {
  const endOf = new Map<string, number>();
  for (const [index, record] of ship.records.entries()) {
    const where = `ship.records[${index}]`;
    if (record.flags !== 0 && record.flags !== recordFlags.zero) throw badField(`${where}.flags`, "0 or zero in a coalesced shipment", record.flags);
    if (record.lsn < ship.firstLsn || record.lsn > ship.lastLsn) throw badField(`${where}.lsn`, `an LSN in [${ship.firstLsn}, ${ship.lastLsn}]`, record.lsn);
    if (record.length === 0) throw badField(`${where}.length`, "at least 1 byte in a coalesced shipment", record.length);
    const previousEnd = endOf.get(record.device) ?? 0;
    if (record.offset < previousEnd) throw badField(`${where}.offset`, `at or past ${previousEnd}, the end of the previous extent of device ${record.device} (coalesced extents ascend and never overlap)`, record.offset);
    endOf.set(record.device, record.offset + record.length);
  }
}

export const shipSpecs: SpecTable<"resume" | "resumeAck" | "ship" | "shipAck" | "shipNack"> = {
  resume: {
    validate: (fields) => ({ type: "resume", wrl: readName(fields, "resume", "wrl"), wrlUuid: readUuid(fields, "resume", "wrlUuid") }),
    payloadBytes: noPayload,
  },
  resumeAck: {
    validate: (fields) => {
      const ack: ResumeAckMessage = {
        type: "resumeAck",
        wrl: readName(fields, "resumeAck", "wrl"),
        wrlUuid: readUuid(fields, "resumeAck", "wrlUuid"),
        appliedLsn: readUint(fields, "resumeAck", "appliedLsn"),
        devices: readDeviceSizes(fields, "resumeAck", "devices", protocolDevicesMax),
      };
      const accepts = readOptionalBoolean(fields, "resumeAck", "acceptsCoalesced");
      if (accepts !== undefined) ack.acceptsCoalesced = accepts;
      return ack;
    },
    payloadBytes: noPayload,
  },
  ship: {
    validate: (fields) => {
      const where = "ship";
      const ship: ShipMessage = {
        type: "ship",
        wrl: readName(fields, where, "wrl"),
        wrlUuid: readUuid(fields, where, "wrlUuid"),
        firstLsn: readUint(fields, where, "firstLsn"),
        lastLsn: readUint(fields, where, "lastLsn"),
        records: readArray(fields, where, "records", shipRecordsMax).map((record, index) => readShipRecord(record, `ship.records[${index}]`)),
      };
      if (ship.firstLsn > ship.lastLsn) throw badField("ship.lastLsn", `an LSN >= firstLsn ${ship.firstLsn}`, ship.lastLsn);
      if (fields.coalesced !== undefined) {
        if (fields.coalesced !== true) throw badField("ship.coalesced", "true (or absent)", fields.coalesced);
        ship.coalesced = true;
        checkCoalescedRecords(ship);
      }
      if (fields.spanContinues !== undefined) {
        if (fields.spanContinues !== true || ship.coalesced !== true) throw badField("ship.spanContinues", "true, and only on a coalesced shipment (or absent)", fields.spanContinues);
        ship.spanContinues = true;
      }
      let previousLsn = -1;
      for (const [index, record] of ship.records.entries()) {
        if (ship.coalesced === true) break; // checked above: extents, not LSN order
        // Markers left out leave gaps, but nothing reorders: LSNs rise strictly inside the range.
        if (record.lsn <= previousLsn || record.lsn < ship.firstLsn || record.lsn > ship.lastLsn) {
          throw badField(`ship.records[${index}].lsn`, `an LSN in [${ship.firstLsn}, ${ship.lastLsn}] above the previous record's ${previousLsn}`, record.lsn);
        }
        previousLsn = record.lsn;
      }
      if (fields.devices !== undefined) {
        const devices = readDeviceSizes(fields, where, "devices", protocolDevicesMax);
        // The list declares every device the records name: a record for an undeclared device
        // would dodge the replica's size check, so the shipment contradicts itself.
        const declared = new Set(devices.map((device) => device.name));
        const undeclared = ship.records.findIndex((record) => !declared.has(record.device));
        if (undeclared >= 0) throw badField(`ship.records[${undeclared}].device`, "a device listed in ship.devices", ship.records[undeclared]!.device);
        ship.devices = devices;
      }
      readShipCodec(fields, ship);
      return ship;
    },
    // The data of the non-ZERO records (at most shipRecordsMax * writePayloadSizeBytesMax, a safe
    // integer; the frame bound decides what actually fits), or its compressed form.
    payloadBytes: (ship) => ship.wireBytes ?? shipDataBytes(ship),
  },
  shipAck: {
    validate: (fields) => {
      const ack: ShipAckMessage = { type: "shipAck", wrl: readName(fields, "shipAck", "wrl"), appliedLsn: readUint(fields, "shipAck", "appliedLsn") };
      if (fields.verified !== undefined) {
        ack.verified = readArray(fields, "shipAck", "verified", verifyOutcomesPerAckMax).map((value, index) => readVerifyOutcome(value, `shipAck.verified[${index}]`));
      }
      if (fields.held !== undefined) {
        if (fields.held !== true) throw badField("shipAck.held", "true (or absent)", fields.held);
        ack.held = true;
      }
      return ack;
    },
    payloadBytes: noPayload,
  },
  shipNack: {
    validate: (fields) => ({
      type: "shipNack",
      wrl: readName(fields, "shipNack", "wrl"),
      code: readEnum(fields, "shipNack", "code", shipNackCodes),
      message: readText(fields, "shipNack", "message"),
    }),
    payloadBytes: noPayload,
  },
};

const noData = new Uint8Array(0);

/**
 * Splits a validated shipment's payload into each record's data, in record order: views into
 * `payload` (no copy), empty for a ZERO or resyncEnd record, the digests for a verify record. The
 * frame decoder (and openShipment, for a compressed one) has already checked that the payload is
 * exactly as long as the records say, so the split cannot run short.
 */
export function shipRecordData(ship: ShipMessage, payload: Uint8Array): Uint8Array[] {
  assert(ship.codec === undefined, "a compressed shipment is opened (openShipment) before its records are read");
  let position = 0;
  const data = ship.records.map((record) => {
    const bytes = shipRecordPayloadBytes(record);
    if (bytes === 0) return noData;
    const view = payload.subarray(position, position + bytes);
    position += bytes;
    return view;
  });
  assert(position === payload.length, "ship payload is exactly its records' data");
  return data;
}
