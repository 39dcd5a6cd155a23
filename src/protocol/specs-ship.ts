/**
 * Validators of the staging relay -> replica flow: resume / resumeAck once after the handshake,
 * then a window of ship / shipAck / shipNack.
 */
import { assert } from "../assert.ts";
import { protocolDevicesMax, shipRecordsMax, writePayloadSizeBytesMax, zeroRecordBytesMax } from "../constants.ts";
import { badField, checkExtent, isMap, noPayload, readArray, readDeviceSizes, readEnum, readName, readText, readUint, readUuid } from "./fields.ts";
import { recordFlags, shipNackCodes, type ShipMessage, type ShipRecord, type SpecTable } from "./message-types.ts";

function readShipRecord(value: unknown, where: string): ShipRecord {
  if (!isMap(value)) throw badField(where, "a record map", value);
  const lsn = readUint(value, where, "lsn");
  const epoch = readUint(value, where, "epoch");
  const device = readName(value, where, "device");
  const offset = readUint(value, where, "offset");
  // Read flags before length: a ZERO record carries no data, so its length has the larger bound.
  const flags = readUint(value, where, "flags", 0xffff_ffff);
  const length = readUint(value, where, "length", (flags & recordFlags.zero) !== 0 ? zeroRecordBytesMax : writePayloadSizeBytesMax);
  checkExtent(where, offset, length);
  return { lsn, epoch, device, offset, length, flags };
}

export const shipSpecs: SpecTable<"resume" | "resumeAck" | "ship" | "shipAck" | "shipNack"> = {
  resume: {
    validate: (fields) => ({ type: "resume", wrl: readName(fields, "resume", "wrl"), wrlUuid: readUuid(fields, "resume", "wrlUuid") }),
    payloadBytes: noPayload,
  },
  resumeAck: {
    validate: (fields) => ({
      type: "resumeAck",
      wrl: readName(fields, "resumeAck", "wrl"),
      wrlUuid: readUuid(fields, "resumeAck", "wrlUuid"),
      appliedLsn: readUint(fields, "resumeAck", "appliedLsn"),
      devices: readDeviceSizes(fields, "resumeAck", "devices", protocolDevicesMax),
    }),
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
      let previousLsn = -1;
      for (const [index, record] of ship.records.entries()) {
        // Coalescing may leave gaps, but never reorders: LSNs rise strictly inside the range.
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
      return ship;
    },
    // The data of the non-ZERO records: at most shipRecordsMax * writePayloadSizeBytesMax, a safe
    // integer; the frame bound decides what actually fits.
    payloadBytes: (ship) => ship.records.reduce((sum, record) => ((record.flags & recordFlags.zero) !== 0 ? sum : sum + record.length), 0),
  },
  shipAck: {
    validate: (fields) => ({ type: "shipAck", wrl: readName(fields, "shipAck", "wrl"), appliedLsn: readUint(fields, "shipAck", "appliedLsn") }),
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
 * `payload` (no copy), empty for a ZERO record. The frame decoder has already checked that the
 * payload is exactly as long as the records say, so the split cannot run short.
 */
export function shipRecordData(ship: ShipMessage, payload: Uint8Array): Uint8Array[] {
  let position = 0;
  const data = ship.records.map((record) => {
    if ((record.flags & recordFlags.zero) !== 0) return noData;
    const view = payload.subarray(position, position + record.length);
    position += record.length;
    return view;
  });
  assert(position === payload.length, "ship payload is exactly its records' data");
  return data;
}
