/**
 * Errors raised while decoding what a peer sent, or while checking its handshake. Every one of
 * them means the connection can no longer be trusted to be in sync: the transport logs it once,
 * tells the peer (an `error` message) and closes the connection. Codes are stable.
 */
import { DruvaaError } from "../errors.ts";

export type ProtocolErrorCode =
  /** The length prefix announces a frame larger than frameSizeBytesMax. */
  | "PROTO_FRAME_TOO_LARGE"
  /** The length prefix and the header length do not describe a possible frame. */
  | "PROTO_BAD_FRAME"
  /** The header is longer than frameHeaderSizeBytesMax. */
  | "PROTO_HEADER_TOO_LARGE"
  /** The header is not one well-formed CBOR item of the accepted subset. */
  | "PROTO_BAD_CBOR"
  /** The header is well-formed CBOR but not a map. */
  | "PROTO_NOT_A_MAP"
  /** The header's `type` names no known message. */
  | "PROTO_UNKNOWN_TYPE"
  /** A field is missing, has the wrong type or is out of range. */
  | "PROTO_BAD_FIELD"
  /** The payload is not as long as the message says. */
  | "PROTO_PAYLOAD_LENGTH"
  /** The payload does not decode as the message says (a compressed shipment that does not decompress, or whose CRC differs). */
  | "PROTO_BAD_PAYLOAD"
  /** The stream ended inside a frame. */
  | "PROTO_TRUNCATED"
  /** The peer's hello carries another protocol's magic number. */
  | "PROTO_BAD_MAGIC"
  /** The peer speaks another protocol version. */
  | "PROTO_VERSION"
  /** The peer has a role this endpoint does not serve. */
  | "PROTO_ROLE"
  /** The peer did not complete the handshake in time. */
  | "PROTO_HANDSHAKE_TIMEOUT"
  /** The peer sent a message that is valid but not allowed at this point (e.g. before hello). */
  | "PROTO_UNEXPECTED"
  /** The peer refused the handshake for a reason of its own. */
  | "PROTO_REFUSED";

export class ProtocolError extends DruvaaError {
  override readonly name: string = "ProtocolError";
  declare readonly code: ProtocolErrorCode;

  constructor(code: ProtocolErrorCode, message: string, hint?: string, options?: { cause?: unknown }) {
    super(code, message, hint, 1, options);
  }
}

/** The hint for anything that suggests the peer does not speak druvaa at all. */
export const notDruvaaHint = "Is the peer a druvaa node of the same release? Check the address and port it connects to";
