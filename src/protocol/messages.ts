/**
 * Every message of the druvaa wire protocol: a discriminated union on `type`, and one table entry
 * per type with a hand-written validator and the payload length the message declares.
 *
 * Adding a message: add its interface to `Message`, and one entry to `messageSpecs` (TypeScript
 * refuses a table with a type missing). Fields only ever get added; a peer drops fields it does
 * not know, so optional fields are backward compatible. `hello` and `helloAck` must stay
 * decodable by every version forever: they are how two versions find out they differ.
 *
 * Numbers (offsets, lengths, LSNs, epochs, request ids) are safe integers >= 0: exact in a
 * JavaScript number up to 2^53, i.e. 8 PiB of byte offsets.
 */
import { protocolFeaturesMax, protocolMagic, shipRecordsMax, writePayloadSizeBytesMax } from "../constants.ts";
import { ProtocolError } from "./errors.ts";
import {
  badField, isMap, readArray, readBoolean, readCode, readEnum, readMap, readName, readOptionalBoolean, readOptionalText, readText,
  readUint, type Fields,
} from "./fields.ts";

export const roles = ["client", "staging", "replica", "control", "panel"] as const;
export type Role = (typeof roles)[number];

/** Why a staging server refused a write; WRL_FULL sends the client to disconnected mode. */
export const writeNackCodes = ["WRL_FULL", "WRL_UNKNOWN", "DEVICE_UNKNOWN", "OUT_OF_RANGE", "IO_ERROR", "BUSY", "SHUTTING_DOWN"] as const;
export type WriteNackCode = (typeof writeNackCodes)[number];

/** Why a replica refused a shipment; the relay keeps the records and retries or alerts. */
export const shipNackCodes = ["RS_WRL_FULL", "LSN_GAP", "WRL_UNKNOWN", "DEVICE_UNKNOWN", "OUT_OF_RANGE", "IO_ERROR", "BUSY", "SHUTTING_DOWN"] as const;
export type ShipNackCode = (typeof shipNackCodes)[number];

export interface ErrorInfo {
  code: string;
  message: string;
  hint?: string;
}

/** First message on every connection, from the side that connected. */
export interface HelloMessage {
  type: "hello";
  magic: number;
  version: number;
  role: Role;
  nodeId: string;
  features?: string[];
}

/** The answer to hello; `accepted: false` comes with the reason and is followed by a close. */
export interface HelloAckMessage {
  type: "helloAck";
  magic: number;
  version: number;
  role: Role;
  nodeId: string;
  features?: string[];
  accepted: boolean;
  error?: ErrorInfo;
}

/** Client -> staging: log these `length` bytes (the payload) for `device` at `offset`. */
export interface WriteMessage {
  type: "write";
  reqId: number;
  device: string;
  wrl: string;
  epoch: number;
  offset: number;
  length: number;
  fua?: boolean;
}

/** Staging -> client: the write is durable in the WRL at `lsn`. */
export interface WriteAckMessage {
  type: "writeAck";
  reqId: number;
  lsn: number;
}

export interface WriteNackMessage {
  type: "writeNack";
  reqId: number;
  code: WriteNackCode;
  message: string;
}

export interface ShipRecord {
  lsn: number;
  epoch: number;
  device: string;
  offset: number;
  length: number;
  flags: number;
}

/** Staging -> replica: records firstLsn..lastLsn (possibly with gaps after coalescing); the
 * payload is the records' data, concatenated in record order. */
export interface ShipMessage {
  type: "ship";
  wrl: string;
  firstLsn: number;
  lastLsn: number;
  records: ShipRecord[];
}

/** Replica -> staging: everything up to `appliedLsn` is durable on the replica side. */
export interface ShipAckMessage {
  type: "shipAck";
  wrl: string;
  appliedLsn: number;
}

export interface ShipNackMessage {
  type: "shipNack";
  wrl: string;
  code: ShipNackCode;
  message: string;
}

export interface StatusRequestMessage {
  type: "statusRequest";
}

export interface StatusReplyMessage {
  type: "statusReply";
  status: Record<string, unknown>;
}

/** Sent before closing a connection on an error, so the peer can say why it was dropped. */
export interface ErrorMessage {
  type: "error";
  code: string;
  message: string;
  hint?: string;
}

export interface PingMessage {
  type: "ping";
  nonce: number;
}

export interface PongMessage {
  type: "pong";
  nonce: number;
}

export type Message =
  | HelloMessage | HelloAckMessage
  | WriteMessage | WriteAckMessage | WriteNackMessage
  | ShipMessage | ShipAckMessage | ShipNackMessage
  | StatusRequestMessage | StatusReplyMessage
  | ErrorMessage | PingMessage | PongMessage;

export type MessageType = Message["type"];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

export interface MessageSpec<M extends Message> {
  /** Builds a clean message from a decoded header; throws ProtocolError on anything invalid. */
  readonly validate: (fields: Fields) => M;
  /** The exact payload length the message declares (0 for messages without payload). */
  readonly payloadBytes: (message: M) => number;
}

const noPayload = (): number => 0;

function readFeatures(fields: Fields, where: string): string[] | undefined {
  if (fields.features === undefined) return undefined;
  return readArray(fields, where, "features", protocolFeaturesMax).map((feature, index) => readName({ [`features[${index}]`]: feature }, where, `features[${index}]`));
}

function readHelloFields(fields: Fields, where: string): Omit<HelloMessage, "type"> {
  const magic = readUint(fields, where, "magic");
  // The magic is checked here, not later: a frame that claims to be a hello but carries another
  // magic is not druvaa talking, and nothing else in it can be trusted.
  if (magic !== protocolMagic) {
    throw new ProtocolError("PROTO_BAD_MAGIC", `${where}: magic 0x${magic.toString(16)} is not druvaa's 0x${protocolMagic.toString(16)}`, "The peer is not a druvaa node; check the address and port");
  }
  const hello: Omit<HelloMessage, "type"> = {
    magic,
    version: readUint(fields, where, "version"),
    role: readEnum(fields, where, "role", roles),
    nodeId: readName(fields, where, "nodeId"),
  };
  const features = readFeatures(fields, where);
  if (features !== undefined) hello.features = features;
  return hello;
}

function readErrorInfo(value: unknown, where: string): ErrorInfo {
  if (!isMap(value)) throw badField(where, "a map with code and message", value);
  const info: ErrorInfo = { code: readCode(value, where, "code"), message: readText(value, where, "message") };
  const hint = readOptionalText(value, where, "hint");
  if (hint !== undefined) info.hint = hint;
  return info;
}

function readShipRecord(value: unknown, where: string): ShipRecord {
  if (!isMap(value)) throw badField(where, "a record map", value);
  const record: ShipRecord = {
    lsn: readUint(value, where, "lsn"),
    epoch: readUint(value, where, "epoch"),
    device: readName(value, where, "device"),
    offset: readUint(value, where, "offset"),
    length: readUint(value, where, "length", writePayloadSizeBytesMax),
    flags: readUint(value, where, "flags", 0xffff_ffff),
  };
  if (!Number.isSafeInteger(record.offset + record.length)) throw badField(`${where}.offset`, "offset + length below 2^53", record.offset);
  return record;
}

export const messageSpecs: { readonly [T in MessageType]: MessageSpec<MessageOf<T>> } = {
  hello: {
    validate: (fields) => ({ type: "hello", ...readHelloFields(fields, "hello") }),
    payloadBytes: noPayload,
  },
  helloAck: {
    validate: (fields) => {
      const ack: HelloAckMessage = { type: "helloAck", ...readHelloFields(fields, "helloAck"), accepted: readBoolean(fields, "helloAck", "accepted") };
      if (fields.error !== undefined) ack.error = readErrorInfo(fields.error, "helloAck.error");
      return ack;
    },
    payloadBytes: noPayload,
  },
  write: {
    validate: (fields) => {
      const where = "write";
      const write: WriteMessage = {
        type: "write",
        reqId: readUint(fields, where, "reqId"),
        device: readName(fields, where, "device"),
        wrl: readName(fields, where, "wrl"),
        epoch: readUint(fields, where, "epoch"),
        offset: readUint(fields, where, "offset"),
        length: readUint(fields, where, "length", writePayloadSizeBytesMax),
      };
      if (!Number.isSafeInteger(write.offset + write.length)) throw badField("write.offset", "offset + length below 2^53", write.offset);
      const fua = readOptionalBoolean(fields, where, "fua");
      if (fua !== undefined) write.fua = fua;
      return write;
    },
    payloadBytes: (write) => write.length,
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
  ship: {
    validate: (fields) => {
      const where = "ship";
      const ship: ShipMessage = {
        type: "ship",
        wrl: readName(fields, where, "wrl"),
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
      return ship;
    },
    // At most shipRecordsMax * writePayloadSizeBytesMax: a safe integer; the frame bound decides.
    payloadBytes: (ship) => ship.records.reduce((sum, record) => sum + record.length, 0),
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
  statusRequest: {
    validate: () => ({ type: "statusRequest" }),
    payloadBytes: noPayload,
  },
  statusReply: {
    validate: (fields) => ({ type: "statusReply", status: { ...readMap(fields, "statusReply", "status") } }),
    payloadBytes: noPayload,
  },
  error: {
    validate: (fields) => {
      const error: ErrorMessage = { type: "error", code: readCode(fields, "error", "code"), message: readText(fields, "error", "message") };
      const hint = readOptionalText(fields, "error", "hint");
      if (hint !== undefined) error.hint = hint;
      return error;
    },
    payloadBytes: noPayload,
  },
  ping: {
    validate: (fields) => ({ type: "ping", nonce: readUint(fields, "ping", "nonce") }),
    payloadBytes: noPayload,
  },
  pong: {
    validate: (fields) => ({ type: "pong", nonce: readUint(fields, "pong", "nonce") }),
    payloadBytes: noPayload,
  },
};

export const messageTypes = Object.keys(messageSpecs) as MessageType[];

/**
 * Validates a decoded header: picks the spec by `type`, returns the clean message and the
 * payload length it declares. Throws PROTO_BAD_FIELD / PROTO_UNKNOWN_TYPE and what the spec throws.
 */
export function validateMessage(fields: Fields): { message: Message; payloadBytes: number } {
  const type = fields.type;
  if (typeof type !== "string") throw badField("header.type", "a message type name", type);
  if (!Object.hasOwn(messageSpecs, type)) {
    throw new ProtocolError("PROTO_UNKNOWN_TYPE", `unknown message type ${JSON.stringify(type.slice(0, 64))}`, "The peer may be a newer druvaa release; run the same release on both ends");
  }
  const spec = messageSpecs[type as MessageType] as MessageSpec<Message>;
  const message = spec.validate(fields);
  return { message, payloadBytes: spec.payloadBytes(message) };
}
