/**
 * A minimal DER (ASN.1 Distinguished Encoding Rules) encoder: just the types an X.509
 * certificate and CRL need. node:crypto generates keys, signs, and parses certificates, but
 * cannot create them; this module and x509-build.ts / crl.ts do that.
 *
 * Every function returns the complete encoding (tag, length, content) of one value, so values
 * nest by plain function calls: `sequence(integer(1n), oid("2.5.4.3"))`. DER means one encoding
 * per value: definite lengths in the fewest bytes, minimal integers, SET OF sorted (setOf does
 * it). It does not check that strings hold only their type's characters beyond what is asserted:
 * callers validate names at the edge (identity.ts).
 */
import { assert } from "../assert.ts";

export const derTags = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  utf8String: 0x0c,
  printableString: 0x13,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

/** One TLV: `tag`, the length in DER's shortest form, then `content`. */
export function tlv(tag: number, content: Uint8Array): Uint8Array {
  assert(Number.isInteger(tag) && tag >= 0 && tag <= 0xff, "single-byte tags only");
  const length = content.length;
  let header: number[];
  if (length < 0x80) header = [tag, length];
  else if (length <= 0xff) header = [tag, 0x81, length];
  else if (length <= 0xffff) header = [tag, 0x82, length >> 8, length & 0xff];
  else {
    assert(length <= 0xffffff, "DER values up to 16 MiB");
    header = [tag, 0x83, length >> 16, (length >> 8) & 0xff, length & 0xff];
  }
  const out = new Uint8Array(header.length + length);
  out.set(header, 0);
  out.set(content, header.length);
  return out;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export function sequence(...items: Uint8Array[]): Uint8Array {
  return tlv(derTags.sequence, concat(items));
}

/** SET OF: DER sorts the encoded elements (X.690 11.6). */
export function setOf(...items: Uint8Array[]): Uint8Array {
  return tlv(derTags.set, concat([...items].sort(compareBytes)));
}

export function boolean(value: boolean): Uint8Array {
  return tlv(derTags.boolean, Uint8Array.of(value ? 0xff : 0x00));
}

/** INTEGER from a non-negative bigint. */
export function integer(value: bigint): Uint8Array {
  assert(value >= 0n, "non-negative integers only");
  let hex = value.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  return unsignedInteger(Uint8Array.from(Buffer.from(hex, "hex")));
}

/** INTEGER whose value is the big-endian unsigned `bytes` (e.g. a serial number). */
export function unsignedInteger(bytes: Uint8Array): Uint8Array {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start += 1;
  const trimmed = bytes.length === 0 ? Uint8Array.of(0) : bytes.subarray(start);
  // A set top bit would make it negative: DER prefixes one zero byte.
  return tlv(derTags.integer, (trimmed[0]! & 0x80) !== 0 ? concat([Uint8Array.of(0), trimmed]) : trimmed);
}

/** OBJECT IDENTIFIER from dotted text, e.g. "1.2.840.10045.4.3.2". */
export function oid(dotted: string): Uint8Array {
  const arcs = dotted.split(".").map((arc) => {
    assert(/^\d+$/.test(arc), `OID arc is a number: ${dotted}`);
    return BigInt(arc);
  });
  assert(arcs.length >= 2 && arcs[0]! <= 2n && (arcs[0]! === 2n || arcs[1]! < 40n), `valid OID: ${dotted}`);
  const bytes: number[] = [];
  for (const arc of [arcs[0]! * 40n + arcs[1]!, ...arcs.slice(2)]) {
    const groups: number[] = [Number(arc & 0x7fn)];
    for (let rest = arc >> 7n; rest > 0n; rest >>= 7n) groups.unshift(Number(rest & 0x7fn) | 0x80);
    bytes.push(...groups);
  }
  return tlv(derTags.oid, Uint8Array.from(bytes));
}

export function utf8String(text: string): Uint8Array {
  return tlv(derTags.utf8String, new TextEncoder().encode(text));
}

export function octetString(bytes: Uint8Array): Uint8Array {
  return tlv(derTags.octetString, bytes);
}

/** BIT STRING of whole bytes (keys, signatures) or of flags with `unusedBits` padding. */
export function bitString(bytes: Uint8Array, unusedBits = 0): Uint8Array {
  assert(unusedBits >= 0 && unusedBits <= 7 && (unusedBits === 0 || bytes.length > 0), "valid unused bit count");
  return tlv(derTags.bitString, concat([Uint8Array.of(unusedBits), bytes]));
}

/**
 * A named-bit BIT STRING (keyUsage): bit 0 is the most significant bit of the first byte. DER
 * drops trailing zero bits, so the unused-bit count follows the highest set bit.
 */
export function namedBits(bits: readonly number[]): Uint8Array {
  if (bits.length === 0) return bitString(new Uint8Array(0));
  const highest = Math.max(...bits);
  const bytes = new Uint8Array(Math.floor(highest / 8) + 1);
  for (const bit of bits) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  return bitString(bytes, 7 - (highest & 7));
}

/**
 * X.509 Time (RFC 5280 4.1.2.5): UTCTime for 1950..2049, GeneralizedTime otherwise, both in
 * whole seconds, UTC ("Z"). Milliseconds are dropped.
 */
export function time(date: Date): Uint8Array {
  const year = date.getUTCFullYear();
  assert(Number.isFinite(date.getTime()) && year >= 1950 && year <= 9999, "time between 1950 and 9999");
  const two = (n: number) => String(n).padStart(2, "0");
  const rest = `${two(date.getUTCMonth() + 1)}${two(date.getUTCDate())}${two(date.getUTCHours())}${two(date.getUTCMinutes())}${two(date.getUTCSeconds())}Z`;
  if (year < 2050) return tlv(derTags.utcTime, new TextEncoder().encode(`${two(year % 100)}${rest}`));
  return tlv(derTags.generalizedTime, new TextEncoder().encode(`${year}${rest}`));
}

/** [n] EXPLICIT: a constructed context tag wrapping one complete value. */
export function explicit(tagNumber: number, value: Uint8Array): Uint8Array {
  assert(tagNumber >= 0 && tagNumber <= 30, "low tag numbers only");
  return tlv(0xa0 | tagNumber, value);
}

/** [n] IMPLICIT over a primitive type: the content bytes under a context tag. */
export function implicitPrimitive(tagNumber: number, content: Uint8Array): Uint8Array {
  assert(tagNumber >= 0 && tagNumber <= 30, "low tag numbers only");
  return tlv(0x80 | tagNumber, content);
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let index = 0; index < length; index += 1) {
    if (a[index] !== b[index]) return a[index]! - b[index]!;
  }
  return a.length - b.length;
}
