/**
 * Validators of the messages every connection may carry: the handshake (hello, helloAck),
 * status, error, ping/pong. hello and helloAck must stay decodable by every version forever.
 */
import { protocolFeaturesMax, protocolMagic } from "../constants.ts";
import { ProtocolError } from "./errors.ts";
import { noPayload, readArray, readBoolean, readCode, readEnum, readErrorInfo, readMap, readName, readOptionalText, readText, readUint, type Fields } from "./fields.ts";
import { roles, type ErrorMessage, type HelloAckMessage, type HelloMessage, type SpecTable } from "./message-types.ts";

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

export const sessionSpecs: SpecTable<"hello" | "helloAck" | "statusRequest" | "statusReply" | "error" | "ping" | "pong"> = {
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
