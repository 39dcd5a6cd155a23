/**
 * Compressed shipments: the staging relay may send a `ship` message's payload (the records' data,
 * concatenated) as one zstd frame; the replica opens it before anything else reads the payload.
 *
 * On the wire (validated in specs-ship.ts): `codec: "zstd"`, `rawBytes` (the records' data bytes,
 * what the payload decompresses to), `rawCrc32` (CRC-32 of those bytes) and `wireBytes` (the
 * compressed payload's length, which the frame must carry exactly). A message without `codec`
 * carries its data as is, as before compression existed: the relay sends that whenever zstd does
 * not make the payload smaller (random or encrypted data), and always with --compression off.
 *
 * Why a CRC: Bun's zstd frames carry no content checksum, and a flipped bit in a compressed
 * payload usually still decodes, to different bytes of the right length. The CRC (~40 GB/s) turns
 * that into a refusal instead of wrong data on the replica.
 *
 * What openShipment refuses, as ProtocolError (the replica answers with an `error` message and
 * closes that connection; the relay resumes from what was applied):
 *   payload does not decode as zstd (garbage, corrupted block)     PROTO_BAD_PAYLOAD
 *   decodes to more than rawBytes (checked while decoding: a small
 *     frame can never make the replica allocate more than rawBytes) PROTO_PAYLOAD_LENGTH
 *   decodes to fewer than rawBytes (truncated frame)               PROTO_PAYLOAD_LENGTH
 *   decodes to rawBytes whose CRC-32 is not rawCrc32               PROTO_BAD_PAYLOAD
 *   a checkpoint record's label is not a valid label (compressed     PROTO_BAD_PAYLOAD
 *     or not; checkpoint-label.ts)
 *
 * Not guaranteed: integrity of an uncompressed payload (no CRC on the wire; TCP's and TLS's own
 * checks apply, as for every other message).
 */
import { zstdDecompressSync } from "node:zlib";
import { checkShipCheckpoints } from "./checkpoint-label.ts";
import { ProtocolError } from "./errors.ts";
import type { ShipMessage } from "./message-types.ts";
import { shipDataBytes } from "./specs-ship.ts";

export interface ShipmentFrame {
  message: ShipMessage;
  payload: Uint8Array;
}

/**
 * The shipment with its payload compressed at zstd `level`, or undefined when the compressed form
 * is not smaller (then send it as it is). Asynchronous: zstd runs on Bun's thread pool, so the
 * staging server keeps answering client writes meanwhile. `payload` must not change until it
 * resolves; afterwards the result no longer refers to it.
 */
export async function compressShipment(shipment: ShipmentFrame, level: number, inline = false): Promise<ShipmentFrame | undefined> {
  const { message, payload } = shipment;
  if (payload.length === 0 || message.codec !== undefined) return undefined;
  // inline: on the event loop, resolved within microtasks (deterministic: the simulation uses it).
  const compressed = inline ? Bun.zstdCompressSync(payload, { level }) : await Bun.zstdCompress(payload, { level });
  if (compressed.length >= payload.length) return undefined;
  return {
    message: { ...message, codec: "zstd", rawBytes: payload.length, rawCrc32: crc32(payload), wireBytes: compressed.length },
    payload: compressed,
  };
}

/**
 * The shipment as the replica applies it: the message without codec fields and the records'
 * data. A message without `codec` comes back as it is (same objects, no copy). Synchronous: a
 * 2 MiB shipment decompresses in about a millisecond, and shipments must reach the core in order.
 * Throws ProtocolError (see the table above) and nothing else.
 */
export function openShipment(shipment: ShipmentFrame): ShipmentFrame {
  const { message, payload } = shipment;
  if (message.codec === undefined) {
    checkShipCheckpoints(message, payload);
    return shipment;
  }
  const rawBytes = message.rawBytes ?? shipDataBytes(message);
  const where = `ship of WRL ${message.wrl} LSN ${message.firstLsn}..${message.lastLsn}`;
  let raw: Uint8Array;
  try {
    // node:zlib, not Bun.zstdDecompressSync: it stops at maxOutputLength instead of trusting the
    // sizes the frame declares (a few KiB of zstd can claim gigabytes).
    raw = rawBytes === 0 ? new Uint8Array(0) : zstdDecompressSync(payload, { maxOutputLength: rawBytes });
  } catch (error) {
    if ((error as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new ProtocolError("PROTO_PAYLOAD_LENGTH", `${where}: the ${message.codec} payload decompresses to more than the ${rawBytes} bytes its records hold`, corruptHint);
    }
    throw new ProtocolError("PROTO_BAD_PAYLOAD", `${where}: the ${message.codec} payload of ${payload.length} bytes does not decompress (${error instanceof Error ? error.message : String(error)})`, corruptHint);
  }
  if (raw.length !== rawBytes) {
    throw new ProtocolError("PROTO_PAYLOAD_LENGTH", `${where}: the ${message.codec} payload decompresses to ${raw.length} bytes, but its records hold ${rawBytes}`, corruptHint);
  }
  const crc = crc32(raw);
  if (crc !== message.rawCrc32) {
    throw new ProtocolError("PROTO_BAD_PAYLOAD", `${where}: the decompressed data has CRC-32 ${hex(crc)}, the shipment says ${hex(message.rawCrc32 ?? 0)}`, corruptHint);
  }
  checkShipCheckpoints(message, raw);
  const { codec: _codec, rawBytes: _rawBytes, rawCrc32: _rawCrc32, wireBytes: _wireBytes, ...plain } = message;
  return { message: plain, payload: raw };
}

const corruptHint = "The shipment was damaged on the way, or staging runs another druvaa release; staging resends it. If it keeps happening, run staging with --compression off and report it";

function crc32(bytes: Uint8Array): number {
  return Bun.hash.crc32(bytes) >>> 0;
}

const hex = (value: number) => `0x${value.toString(16).padStart(8, "0")}`;
