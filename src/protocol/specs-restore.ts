/**
 * Validators of the replica's restore port: restoreRequest -> restoreBegin -> restoreData* ->
 * restoreEnd. Whether the data messages cover the device, in order, is the restorer's check (it
 * compares restoreEnd's CRC32C with what it received); here each message is checked on its own.
 */
import { writePayloadSizeBytesMax } from "../constants.ts";
import { checkExtent, noPayload, readName, readOptionalText, readUint } from "./fields.ts";
import type { RestoreDataMessage, SpecTable } from "./message-types.ts";

export const restoreSpecs: SpecTable<"restoreRequest" | "restoreBegin" | "restoreData" | "restoreEnd"> = {
  restoreRequest: {
    validate: (fields) => {
      const at = readOptionalText(fields, "restoreRequest", "at");
      return { type: "restoreRequest", device: readName(fields, "restoreRequest", "device"), ...(at === undefined ? {} : { at }) };
    },
    payloadBytes: noPayload,
  },
  restoreBegin: {
    validate: (fields) => ({
      type: "restoreBegin",
      device: readName(fields, "restoreBegin", "device"),
      sizeBytes: readUint(fields, "restoreBegin", "sizeBytes"),
      appliedLsn: readUint(fields, "restoreBegin", "appliedLsn"),
    }),
    payloadBytes: noPayload,
  },
  restoreData: {
    validate: (fields) => {
      const where = "restoreData";
      const data: RestoreDataMessage = {
        type: "restoreData",
        device: readName(fields, where, "device"),
        offset: readUint(fields, where, "offset"),
        length: readUint(fields, where, "length", writePayloadSizeBytesMax),
      };
      checkExtent(where, data.offset, data.length);
      return data;
    },
    payloadBytes: (data) => data.length,
  },
  restoreEnd: {
    validate: (fields) => ({
      type: "restoreEnd",
      device: readName(fields, "restoreEnd", "device"),
      sizeBytes: readUint(fields, "restoreEnd", "sizeBytes"),
      crc32c: readUint(fields, "restoreEnd", "crc32c", 0xffffffff),
    }),
    payloadBytes: noPayload,
  },
};
