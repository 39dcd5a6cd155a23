/**
 * The CBOR layer of frame headers: one shared cbor-x encoder, and a strict well-formedness check
 * that runs before cbor-x ever sees bytes from the network.
 *
 * Why check before decoding: cbor-x is a fast, lenient decoder with extensions (tags that build
 * Dates, RegExps, Sets, typed arrays, shared references, record structures). A header is a plain
 * map of strings, numbers, booleans, byte strings, arrays and maps, so the check accepts exactly
 * that subset — no tags, no indefinite lengths, no simple values other than false/true/null/
 * undefined — as ONE item that spans the whole header, nested at most protocolCborDepthMax deep.
 * Every length is checked against the bytes that remain, so the work is linear in the header
 * size and nothing is allocated from a length the peer made up.
 */
import "./cbor-pure.ts"; // first: must run before cbor-x is evaluated
import { Encoder, isNativeAccelerationEnabled } from "cbor-x";
import { assert } from "../assert.ts";
import { protocolCborDepthMax } from "../constants.ts";
import { ProtocolError } from "./errors.ts";

assert(!isNativeAccelerationEnabled, "cbor-x was imported before src/protocol/cbor.ts: its native addon crashes Bun; import cbor through src/protocol/cbor.ts");

/**
 * The one encoder/decoder. `useRecords: false` turns off cbor-x's non-standard record extension,
 * `tagUint8Array: false` sends byte strings without tag 64 (the check refuses tags), and
 * `variableMapSize` writes the shortest map length (2 bytes less per record in a shipment).
 */
export const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, variableMapSize: true });

const majorUnsigned = 0;
const majorNegative = 1;
const majorBytes = 2;
const majorText = 3;
const majorArray = 4;
const majorMap = 5;
const majorTag = 6;
const majorSimple = 7;

function bad(message: string): ProtocolError {
  return new ProtocolError("PROTO_BAD_CBOR", `frame header is not valid CBOR: ${message}`);
}

/**
 * Throws PROTO_BAD_CBOR unless `bytes` is exactly one well-formed item of the accepted subset,
 * and PROTO_NOT_A_MAP if that item is not a map.
 */
export function checkHeaderCbor(bytes: Uint8Array): void {
  const end = bytes.length;
  let position = 0;

  // Reads the argument of the initial byte at `position - 1`; returns it as a number (64-bit
  // arguments above 2^53 lose precision, which only matters for integers the field validators
  // reject anyway, and for lengths, which are compared with the bytes left).
  function argument(info: number): number {
    if (info < 24) return info;
    const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
    if (size === 0) throw bad(info === 31 ? `indefinite length at byte ${position - 1}` : `reserved additional information ${info} at byte ${position - 1}`);
    if (position + size > end) throw bad(`truncated argument at byte ${position - 1}`);
    let value = 0;
    for (let index = 0; index < size; index += 1) value = value * 256 + bytes[position + index]!;
    position += size;
    return value;
  }

  function item(depth: number): void {
    if (position >= end) throw bad("truncated item");
    const initial = bytes[position]!;
    position += 1;
    const major = initial >> 5;
    const info = initial & 0x1f;
    switch (major) {
      case majorUnsigned:
      case majorNegative:
        argument(info);
        return;
      case majorBytes:
      case majorText: {
        const lengthBytes = argument(info);
        if (lengthBytes > end - position) throw bad(`string of ${lengthBytes} bytes runs past the end`);
        position += lengthBytes;
        return;
      }
      case majorArray:
      case majorMap: {
        if (depth >= protocolCborDepthMax) throw bad(`nested deeper than ${protocolCborDepthMax}`);
        const count = argument(info);
        const itemsPerEntry = major === majorMap ? 2 : 1;
        // Every item takes at least one byte: a count the remaining bytes cannot hold is a lie.
        if (count * itemsPerEntry > end - position) throw bad(`${major === majorMap ? "map" : "array"} of ${count} entries runs past the end`);
        for (let index = 0; index < count; index += 1) {
          if (major === majorMap) {
            if (position < end && bytes[position]! >> 5 !== majorText) throw bad(`map key at byte ${position} is not a text string`);
            item(depth + 1);
          }
          item(depth + 1);
        }
        return;
      }
      case majorTag:
        throw bad(`tag at byte ${position - 1} (tags are not accepted)`);
      case majorSimple:
        if (info >= 20 && info <= 23) return; // false, true, null, undefined
        if (info >= 25 && info <= 27) {
          const size = info === 25 ? 2 : info === 26 ? 4 : 8;
          if (position + size > end) throw bad("truncated float");
          position += size;
          return;
        }
        throw bad(info === 31 ? `break code outside an indefinite-length item at byte ${position - 1}` : `simple value ${info} at byte ${position - 1}`);
      default:
        throw bad(`major type ${major}`);
    }
  }

  if (end === 0) throw bad("empty header");
  item(0);
  if (position !== end) throw bad(`${end - position} trailing bytes after the header item`);
  if (bytes[0]! >> 5 !== majorMap) {
    throw new ProtocolError("PROTO_NOT_A_MAP", `frame header is CBOR major type ${bytes[0]! >> 5}, not a map`);
  }
}

/** Checks, then decodes a header into a plain object. Throws only ProtocolError. */
export function decodeHeaderCbor(bytes: Uint8Array): Record<string, unknown> {
  checkHeaderCbor(bytes);
  let value: unknown;
  try {
    value = cbor.decode(bytes);
  } catch (error) {
    // The check above should leave nothing for cbor-x to refuse; keep the edge total anyway.
    throw new ProtocolError("PROTO_BAD_CBOR", `frame header is not valid CBOR: ${error instanceof Error ? error.message : String(error)}`, undefined, { cause: error });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw new ProtocolError("PROTO_NOT_A_MAP", "frame header is not a map");
  }
  return value as Record<string, unknown>;
}
