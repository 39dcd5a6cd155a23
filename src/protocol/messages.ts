/**
 * The message table of the druvaa wire protocol: one entry per message type with a hand-written
 * validator and the payload length the message declares, and validateMessage(), the one entry
 * point the frame codec uses in both directions.
 *
 * Adding a message: add its interface to `Message` in message-types.ts, and its entry to the
 * specs-*.ts file of its flow (TypeScript refuses a table with a type missing). The types are
 * re-exported from here, so importers need one module.
 */
import { ProtocolError } from "./errors.ts";
import { badField, type Fields } from "./fields.ts";
import type { Message, MessageSpec, MessageType, SpecTable } from "./message-types.ts";
import { restoreSpecs } from "./specs-restore.ts";
import { sessionSpecs } from "./specs-session.ts";
import { shipSpecs } from "./specs-ship.ts";
import { writeSpecs } from "./specs-write.ts";

export * from "./message-types.ts";
export { shipRecordData } from "./specs-ship.ts";

export const messageSpecs: SpecTable<MessageType> = { ...sessionSpecs, ...writeSpecs, ...shipSpecs, ...restoreSpecs };

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
