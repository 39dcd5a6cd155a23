/**
 * Validators of the client -> staging flow: attach / attachAck (one per device, after the
 * handshake), then write / writeAck / writeNack for every write of the NBD client.
 */
import { protocolLogicalBlockSizeBytesMax, sectorSizeBytes, verifyBlockBytesMax, verifyBlockBytesMin, verifyRangeBytesMax, writePayloadSizeBytesMax, zeroRecordBytesMax } from "../constants.ts";
import {
  badField, checkExtent, noPayload, readBoolean, readEnum, readErrorInfo, readName, readOptionalBoolean, readText, readUint, readUuid,
} from "./fields.ts";
import { readCheckpointLabel } from "./checkpoint-label.ts";
import { readVerifyOutcome } from "./specs-ship.ts";
import { verifyDigestBytes, writeKinds, writeNackCodes, type AttachAckMessage, type AttachMessage, type SpecTable, type WriteMessage } from "./message-types.ts";

export const writeSpecs: SpecTable<"attach" | "attachAck" | "write" | "writeAck" | "writeNack" | "verifyReport"> = {
  attach: {
    validate: (fields) => {
      const where = "attach";
      const attach: AttachMessage = {
        type: "attach",
        device: readName(fields, where, "device"),
        wrl: readName(fields, where, "wrl"),
        sizeBytes: readUint(fields, where, "sizeBytes"),
        logicalBlockSizeBytes: readUint(fields, where, "logicalBlockSizeBytes", protocolLogicalBlockSizeBytesMax),
      };
      const blockBytes = attach.logicalBlockSizeBytes;
      if (blockBytes < sectorSizeBytes || (blockBytes & (blockBytes - 1)) !== 0) {
        throw badField("attach.logicalBlockSizeBytes", `a power of two in [${sectorSizeBytes}, ${protocolLogicalBlockSizeBytesMax}]`, blockBytes);
      }
      // A device is whole logical blocks (BlockDevice contract): anything else is a confused peer.
      if (attach.sizeBytes % blockBytes !== 0) throw badField("attach.sizeBytes", `a multiple of the logical block size ${blockBytes}`, attach.sizeBytes);
      return attach;
    },
    payloadBytes: noPayload,
  },
  attachAck: {
    validate: (fields) => {
      const where = "attachAck";
      const ack: AttachAckMessage = { type: "attachAck", device: readName(fields, where, "device"), wrl: readName(fields, where, "wrl"), accepted: readBoolean(fields, where, "accepted") };
      if (fields.wrlUuid !== undefined) ack.wrlUuid = readUuid(fields, where, "wrlUuid");
      if (fields.error !== undefined) ack.error = readErrorInfo(fields.error, "attachAck.error");
      // An accepted attach without the uuid would leave the client unable to tell WRLs apart;
      // a refusal without a reason would leave the operator guessing.
      if (ack.accepted && ack.wrlUuid === undefined) throw badField("attachAck.wrlUuid", "the WRL's uuid when accepted", undefined);
      if (!ack.accepted && ack.error === undefined) throw badField("attachAck.error", "the reason when not accepted", undefined);
      return ack;
    },
    payloadBytes: noPayload,
  },
  write: {
    validate: (fields) => {
      const where = "write";
      const zero = readOptionalBoolean(fields, where, "zero");
      const kind = fields.kind === undefined ? undefined : readEnum(fields, where, "kind", writeKinds);
      if (kind !== undefined && zero === true) throw badField("write.zero", "absent or false for a resync, resyncEnd, verify or checkpoint write", zero);
      const lengthMax = zero === true ? zeroRecordBytesMax : kind === "verify" ? verifyRangeBytesMax : writePayloadSizeBytesMax;
      const write: WriteMessage = {
        type: "write",
        reqId: readUint(fields, where, "reqId"),
        device: readName(fields, where, "device"),
        wrl: readName(fields, where, "wrl"),
        epoch: readUint(fields, where, "epoch"),
        offset: readUint(fields, where, "offset"),
        // A zero write carries no data, so it may cover far more than a data write.
        length: readUint(fields, where, "length", lengthMax),
      };
      checkExtent(where, write.offset, write.length);
      if (kind !== undefined) write.kind = kind;
      if (kind === "resyncEnd" && (write.offset !== 0 || write.length !== 0)) throw badField("write.length", "0 (with offset 0) for a resyncEnd write", write.length);
      if (kind === "verify") {
        const blockBytes = readUint(fields, where, "verifyBlockBytes", verifyBlockBytesMax);
        if (blockBytes < verifyBlockBytesMin || (blockBytes & (blockBytes - 1)) !== 0) {
          throw badField("write.verifyBlockBytes", `a power of two in [${verifyBlockBytesMin}, ${verifyBlockBytesMax}]`, blockBytes);
        }
        if (write.length === 0 || write.length % blockBytes !== 0) throw badField("write.length", `a positive multiple of verifyBlockBytes ${blockBytes}`, write.length);
        write.verifyBlockBytes = blockBytes;
      } else if (fields.verifyBlockBytes !== undefined) {
        throw badField("write.verifyBlockBytes", "absent unless kind is verify", fields.verifyBlockBytes);
      }
      if (kind === "checkpoint") {
        if (write.offset !== 0 || write.length !== 0) throw badField("write.length", "0 (with offset 0) for a checkpoint write", write.length);
        write.label = readCheckpointLabel(fields, where, "label");
      } else if (fields.label !== undefined) {
        throw badField("write.label", "absent unless kind is checkpoint", fields.label);
      }
      const fua = readOptionalBoolean(fields, where, "fua");
      if (fua !== undefined) write.fua = fua;
      if (zero !== undefined) write.zero = zero;
      return write;
    },
    payloadBytes: (write) => {
      if (write.zero === true || write.kind === "resyncEnd" || write.kind === "checkpoint") return 0;
      if (write.kind === "verify") return (write.length / write.verifyBlockBytes!) * verifyDigestBytes;
      return write.length;
    },
  },
  writeAck: {
    validate: (fields) => ({ type: "writeAck", reqId: readUint(fields, "writeAck", "reqId"), lsn: readUint(fields, "writeAck", "lsn") }),
    payloadBytes: noPayload,
  },
  writeNack: {
    validate: (fields) => ({
      type: "writeNack",
      reqId: readUint(fields, "writeNack", "reqId"),
      code: readEnum(fields, "writeNack", "code", writeNackCodes),
      message: readText(fields, "writeNack", "message"),
    }),
    payloadBytes: noPayload,
  },
  verifyReport: {
    validate: (fields) => ({ type: "verifyReport", wrl: readName(fields, "verifyReport", "wrl"), ...readVerifyOutcome(fields, "verifyReport") }),
    payloadBytes: noPayload,
  },
};
