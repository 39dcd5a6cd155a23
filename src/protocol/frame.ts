/**
 * Framing. One frame on the wire:
 *
 *   u32 BE frameLength | u16 BE headerLength | CBOR header (a message) | payload
 *
 * frameLength counts everything after itself (2 + headerLength + payload bytes) and is at most
 * frameSizeBytesMax; the payload is whatever follows the header, and must be exactly as long as
 * the message declares (data write, restoreData: `length`; zero write: 0; ship: the sum of its
 * non-ZERO records' lengths; others: 0).
 *
 * Payloads (write data, up to 8 MiB) never go through CBOR: encodeFrame returns the header bytes
 * and the caller's payload as separate chunks (no copy), and the decoder hands out the payload as
 * a view into the bytes it received — no copy when a frame arrives inside one chunk, exactly one
 * when it spans several.
 */
import { assert } from "../assert.ts";
import { frameHeaderSizeBytesMax, frameSizeBytesMax } from "../constants.ts";
import { cbor, checkHeaderCbor, decodeHeaderCbor } from "./cbor.ts";
import { notDruvaaHint, ProtocolError } from "./errors.ts";
import { validateMessage, type Message } from "./messages.ts";

export interface Frame {
  message: Message;
  /** The raw payload: a view into received bytes (empty for messages without payload). */
  payload: Uint8Array;
}

/** Bytes before the header: the u32 frame length and the u16 header length. */
export const framePreambleBytes = 6;
const lengthFieldBytes = 4;
/** The header length is a u16, so the bound from constants is clamped to what it can say. */
export const headerBytesMax = Math.min(frameHeaderSizeBytesMax, 0xffff);
const emptyPayload = new Uint8Array(0);

/**
 * Encodes a frame as chunks to write in order: [preamble + header] or [preamble + header,
 * payload]. The payload is not copied: the caller must not modify it until it has been written.
 * The message is validated first, with the same validator the peer will use, so a frame that
 * leaves here is one the peer accepts; a bad message throws ProtocolError (a bug in the sender).
 */
export function encodeFrame(message: Message, payload: Uint8Array = emptyPayload): Uint8Array[] {
  // The validator copies only known fields: what is encoded is exactly what the peer will read.
  const { message: clean, payloadBytes } = validateMessage(message as unknown as Record<string, unknown>);
  if (payloadBytes !== payload.length) {
    throw new ProtocolError("PROTO_PAYLOAD_LENGTH", `${message.type}: message declares ${payloadBytes} payload bytes, got ${payload.length}`);
  }
  const header = cbor.encode(clean); // a view into cbor-x's reused buffer: copied below, right away
  if (header.length > headerBytesMax) {
    throw new ProtocolError("PROTO_HEADER_TOO_LARGE", `${message.type}: header of ${header.length} bytes exceeds ${headerBytesMax}`, "Send fewer records per message");
  }
  checkHeaderCbor(header); // e.g. a Date inside a status reply would be a tag the peer refuses
  const frameLength = 2 + header.length + payload.length;
  if (frameLength > frameSizeBytesMax) {
    throw new ProtocolError("PROTO_FRAME_TOO_LARGE", `${message.type}: frame of ${frameLength} bytes exceeds ${frameSizeBytesMax}`, "Send less data per message");
  }
  const head = new Uint8Array(framePreambleBytes + header.length);
  const view = new DataView(head.buffer);
  view.setUint32(0, frameLength);
  view.setUint16(lengthFieldBytes, header.length);
  head.set(header, framePreambleBytes);
  return payload.length === 0 ? [head] : [head, payload];
}

/** encodeFrame as one contiguous buffer (one copy of the payload). */
export function encodeFrameBytes(message: Message, payload: Uint8Array = emptyPayload): Uint8Array {
  const chunks = encodeFrame(message, payload);
  const total = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const bytes = new Uint8Array(total);
  let position = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, position);
    position += chunk.length;
  }
  return bytes;
}

interface DecodedHeader {
  message: Message;
  headerBytes: number;
}

/**
 * Checks the preamble of the frame at the start of `bytes`. Returns the frame's total size (length
 * field included) once the 6 preamble bytes are there, undefined before. Oversized lengths are
 * refused as soon as the 4 length bytes are there, before anything is buffered.
 */
function readPreamble(bytes: Uint8Array): number | undefined {
  if (bytes.length < lengthFieldBytes) return undefined;
  const frameLength = ((bytes[0]! << 24) >>> 0) + (bytes[1]! << 16) + (bytes[2]! << 8) + bytes[3]!;
  if (frameLength > frameSizeBytesMax) {
    throw new ProtocolError("PROTO_FRAME_TOO_LARGE", `frame of ${frameLength} bytes exceeds the ${frameSizeBytesMax}-byte limit`, notDruvaaHint);
  }
  if (frameLength < 3) throw new ProtocolError("PROTO_BAD_FRAME", `frame of ${frameLength} bytes cannot hold a header`, notDruvaaHint);
  if (bytes.length < framePreambleBytes) return undefined;
  const headerBytes = (bytes[4]! << 8) + bytes[5]!;
  if (headerBytes === 0 || headerBytes > frameLength - 2) {
    throw new ProtocolError("PROTO_BAD_FRAME", `header length ${headerBytes} does not fit a frame of ${frameLength} bytes`, notDruvaaHint);
  }
  if (headerBytes > headerBytesMax) {
    throw new ProtocolError("PROTO_HEADER_TOO_LARGE", `header of ${headerBytes} bytes exceeds the ${headerBytesMax}-byte limit`);
  }
  return lengthFieldBytes + frameLength;
}

/** Decodes the header once all its bytes are there (undefined before); checks the payload length. */
function readHeader(bytes: Uint8Array, frameBytes: number): DecodedHeader | undefined {
  const headerBytes = (bytes[4]! << 8) + bytes[5]!;
  if (bytes.length < framePreambleBytes + headerBytes) return undefined;
  const { message, payloadBytes } = validateMessage(decodeHeaderCbor(bytes.subarray(framePreambleBytes, framePreambleBytes + headerBytes)));
  const actualPayloadBytes = frameBytes - framePreambleBytes - headerBytes;
  if (payloadBytes !== actualPayloadBytes) {
    throw new ProtocolError("PROTO_PAYLOAD_LENGTH", `${message.type}: message declares ${payloadBytes} payload bytes but the frame carries ${actualPayloadBytes}`);
  }
  return { message, headerBytes };
}

function frameOf(bytes: Uint8Array, frameBytes: number, header: DecodedHeader): Frame {
  return { message: header.message, payload: bytes.subarray(framePreambleBytes + header.headerBytes, frameBytes) };
}

/** Decodes exactly one frame from `bytes` (payload is a view into it). Throws ProtocolError. */
export function decodeFrame(bytes: Uint8Array): Frame {
  const frameBytes = readPreamble(bytes);
  const header = frameBytes === undefined ? undefined : readHeader(bytes, frameBytes);
  if (frameBytes === undefined || header === undefined || bytes.length < frameBytes) {
    throw new ProtocolError("PROTO_TRUNCATED", `${bytes.length} bytes hold only part of a frame`);
  }
  if (bytes.length > frameBytes) throw new ProtocolError("PROTO_BAD_FRAME", `${bytes.length - frameBytes} bytes of trailing garbage after the frame`);
  return frameOf(bytes, frameBytes, header);
}

function* deliver(frames: Frame[], error: ProtocolError | undefined): Generator<Frame, void, undefined> {
  yield* frames;
  if (error !== undefined) throw error;
}

/** Gives the buffer a whole frame of `bytes` is assembled in; its payload starts at `payloadAt`. */
export type FrameAllocator = (bytes: number, payloadAt: number) => Uint8Array;

/**
 * Streaming decoder for one connection. push() takes chunks with arbitrary boundaries and yields
 * the frames they complete, in order; frames that arrived before a corruption are yielded before
 * the ProtocolError is thrown. After an error the decoder is poisoned: every later push throws
 * the same error, and the connection must be closed (the stream cannot be resynchronised).
 *
 * Bounds: it holds at most one incomplete frame. Its buffer grows with the bytes actually received
 * until the frame's header has arrived and validated; then it is sized to the frame (at most
 * frameSizeBytesMax, the same as a peer that sends the whole frame). Work per push is linear in the chunk plus the frames it completes. It throws
 * nothing but ProtocolError for any input.
 */
export class FrameDecoder {
  /** The incomplete frame at the front of the stream, in #buffer[0, #bufferedBytes). */
  #buffer: Uint8Array | undefined;
  #bufferedBytes = 0;
  /** Its total size, 0 until its preamble is complete. */
  #frameBytes = 0;
  /** Its decoded header, once complete (decoded once, however many chunks the payload takes). */
  #header: DecodedHeader | undefined;
  #error: ProtocolError | undefined;
  /** Where whole-frame buffers come from (a BufferPool's take, for consumers that give them back). */
  readonly #allocate: FrameAllocator;

  /**
   * `allocate(bytes, payloadAt)` provides the buffer a frame spanning several chunks is assembled
   * in, once its header has validated (`payloadAt`: where the payload starts in the frame, for an
   * allocator that aligns it); it is filled completely, so it need not be zeroed. A frame's
   * payload is a view into that buffer (or into a received chunk), never copied again.
   */
  constructor(allocate: FrameAllocator = (bytes) => new Uint8Array(bytes)) {
    this.#allocate = allocate;
  }

  /** Bytes held for an incomplete frame. */
  get bufferedBytes(): number {
    return this.#bufferedBytes;
  }

  /** The error that poisoned this decoder, if any. */
  get error(): ProtocolError | undefined {
    return this.#error;
  }

  /**
   * Decodes `chunk` now and returns an iterator over the frames it completed, which throws the
   * ProtocolError (after those frames) if the chunk was malformed. Iterate it to the end.
   */
  push(chunk: Uint8Array): Generator<Frame, void, undefined> {
    const frames: Frame[] = [];
    if (this.#error === undefined) {
      try {
        this.#consume(chunk, frames);
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error; // a bug: let it be loud
        this.#poison(error);
      }
    }
    return deliver(frames, this.#error);
  }

  /** End of stream: throws PROTO_TRUNCATED if it ended inside a frame (and poisons). */
  finish(): void {
    if (this.#error !== undefined) throw this.#error;
    if (this.#bufferedBytes > 0) {
      this.#poison(new ProtocolError("PROTO_TRUNCATED", `connection ended inside a frame (${this.#bufferedBytes} of ${this.#frameBytes || "?"} bytes received)`));
      throw this.#error;
    }
  }

  #poison(error: ProtocolError): void {
    this.#error = error;
    this.#buffer = undefined;
    this.#bufferedBytes = 0;
    this.#frameBytes = 0;
    this.#header = undefined;
  }

  #consume(chunk: Uint8Array, frames: Frame[]): void {
    let position = 0;
    // 1. Complete a frame begun in an earlier chunk. Append only up to its end, so the bytes of
    //    the next frame stay in `chunk` for the zero-copy path below.
    while (this.#bufferedBytes > 0 && position < chunk.length) {
      const targetBytes = this.#frameBytes === 0 ? framePreambleBytes : this.#frameBytes;
      const takeBytes = Math.min(targetBytes - this.#bufferedBytes, chunk.length - position);
      this.#append(chunk.subarray(position, position + takeBytes));
      position += takeBytes;
      const buffered = this.#buffer!.subarray(0, this.#bufferedBytes);
      if (this.#frameBytes === 0) this.#frameBytes = readPreamble(buffered) ?? 0;
      if (this.#frameBytes !== 0 && this.#header === undefined) this.#header = readHeader(buffered, this.#frameBytes);
      if (this.#header !== undefined && this.#bufferedBytes === this.#frameBytes) {
        frames.push(frameOf(buffered, this.#frameBytes, this.#header));
        // The frame's payload is a view into #buffer: never reuse it.
        this.#buffer = undefined;
        this.#bufferedBytes = 0;
        this.#frameBytes = 0;
        this.#header = undefined;
      }
    }
    // 2. Whole frames inside the chunk: views, no copy. Keep (copy) an incomplete tail.
    while (position < chunk.length) {
      const rest = chunk.subarray(position);
      const frameBytes = readPreamble(rest);
      const header = frameBytes === undefined ? undefined : readHeader(rest, frameBytes);
      if (frameBytes !== undefined && header !== undefined && rest.length >= frameBytes) {
        frames.push(frameOf(rest, frameBytes, header));
        position += frameBytes;
        continue;
      }
      this.#frameBytes = frameBytes ?? 0;
      this.#header = header;
      this.#append(rest);
      position = chunk.length;
    }
  }

  #append(bytes: Uint8Array): void {
    const requiredBytes = this.#bufferedBytes + bytes.length;
    const limitBytes = this.#frameBytes === 0 ? framePreambleBytes : this.#frameBytes;
    assert(requiredBytes <= limitBytes, "decoder buffers at most one frame");
    if (this.#buffer === undefined || requiredBytes > this.#buffer.length) {
      // Until the header is decoded and validated, grow geometrically, capped at the frame: a
      // peer that announces 8 MiB and sends 6 bytes costs 6 bytes, not 8 MiB. Once a valid
      // header declared the payload, take the whole frame at once: growing a 1-8 MiB payload by
      // doubling allocated and copied it about twice more, and each fresh allocation of that size
      // is page-faulted in, which dominated the CPU profile of staging and replica.
      const whole = this.#header !== undefined;
      const capacityBytes = whole ? limitBytes : Math.min(limitBytes, Math.max(requiredBytes, 2 * (this.#buffer?.length ?? 0), 4096));
      const grown = whole ? this.#allocate(capacityBytes, framePreambleBytes + this.#header!.headerBytes) : new Uint8Array(capacityBytes);
      if (this.#buffer !== undefined) grown.set(this.#buffer.subarray(0, this.#bufferedBytes));
      this.#buffer = grown;
    }
    this.#buffer.set(bytes, this.#bufferedBytes);
    this.#bufferedBytes = requiredBytes;
  }
}
