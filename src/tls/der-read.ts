/**
 * A minimal DER reader for what druvaa parses itself: X.509 certificates (a peer's, or one given
 * to `admin cert revoke --cert`) and revocation lists. Input comes from the network and from
 * files, so every length is checked against the bytes present and anything
 * malformed is a TLS_BAD_DER error, never an exception from deep inside. There is no generic
 * recursive walk: each parser descends a fixed structure, which bounds the nesting it reads.
 *
 * It accepts only definite lengths and single-byte tags (all X.509 uses), and does not insist
 * on minimal encodings: signatures, not this reader, protect the bytes that matter.
 */
import { DruvaaError, exitCodes } from "../errors.ts";
import { derTags } from "./der.ts";

export interface DerNode {
  readonly tag: number;
  /** The whole encoding: tag, length, content (what a signature covers). */
  readonly bytes: Uint8Array;
  readonly content: Uint8Array;
}

export function derError(detail: string): DruvaaError {
  return new DruvaaError("TLS_BAD_DER", `malformed certificate data: ${detail}`, "Is this a PEM or DER certificate/CRL written by druvaa admin (or openssl)?", exitCodes.usage);
}

/** Reads the one TLV at `offset`; checks its length fits in `bytes`. */
export function readNode(bytes: Uint8Array, offset = 0): DerNode {
  if (offset + 2 > bytes.length) throw derError("truncated header");
  const tag = bytes[offset]!;
  if ((tag & 0x1f) === 0x1f) throw derError("multi-byte tags are not supported");
  let length = bytes[offset + 1]!;
  let headerLength = 2;
  if (length === 0x80) throw derError("indefinite length");
  if (length > 0x80) {
    const lengthBytes = length & 0x7f;
    if (lengthBytes > 4 || offset + 2 + lengthBytes > bytes.length) throw derError("bad length");
    length = 0;
    for (let index = 0; index < lengthBytes; index += 1) length = length * 256 + bytes[offset + 2 + index]!;
    headerLength += lengthBytes;
  }
  const end = offset + headerLength + length;
  if (end > bytes.length) throw derError("value runs past the end of its container");
  return { tag, bytes: bytes.subarray(offset, end), content: bytes.subarray(offset + headerLength, end) };
}

/** The single value that `bytes` must consist of, nothing after it. */
export function readSingle(bytes: Uint8Array, expectedTag?: number): DerNode {
  const node = readNode(bytes, 0);
  if (node.bytes.length !== bytes.length) throw derError("trailing bytes after the value");
  if (expectedTag !== undefined) expectTag(node, expectedTag, "top-level value");
  return node;
}

/** The values inside a constructed value (SEQUENCE, SET, context tag). */
export function children(node: DerNode): DerNode[] {
  if ((node.tag & 0x20) === 0) throw derError(`tag 0x${node.tag.toString(16)} is not constructed`);
  const items: DerNode[] = [];
  for (let offset = 0; offset < node.content.length; ) {
    const child = readNode(node.content, offset);
    items.push(child);
    offset += child.bytes.length;
  }
  return items;
}

export function expectTag(node: DerNode | undefined, tag: number, what: string): DerNode {
  if (node === undefined) throw derError(`${what} is missing`);
  if (node.tag !== tag) throw derError(`${what}: expected tag 0x${tag.toString(16)}, found 0x${node.tag.toString(16)}`);
  return node;
}

export function readOid(node: DerNode | undefined, what: string): string {
  const { content } = expectTag(node, derTags.oid, what);
  if (content.length === 0 || content.length > 64) throw derError(`${what}: bad object identifier`);
  const arcs: bigint[] = [];
  let value = 0n;
  for (const byte of content) {
    value = (value << 7n) | BigInt(byte & 0x7f);
    if ((byte & 0x80) === 0) {
      arcs.push(value);
      value = 0n;
    }
  }
  if ((content[content.length - 1]! & 0x80) !== 0) throw derError(`${what}: truncated object identifier`);
  const first = arcs[0]!;
  const head = first < 80n ? [first / 40n, first % 40n] : [2n, first - 80n];
  return [...head, ...arcs.slice(1)].join(".");
}

/** A non-negative INTEGER as lowercase hex without leading zeros ("0" for zero). */
export function readUnsignedHex(node: DerNode | undefined, what: string): string {
  const { content } = expectTag(node, derTags.integer, what);
  if (content.length === 0 || (content[0]! & 0x80) !== 0) throw derError(`${what}: not a positive integer`);
  const hex = Buffer.from(content).toString("hex").replace(/^0+/, "");
  return hex === "" ? "0" : hex;
}

export function readBoolean(node: DerNode | undefined, what: string): boolean {
  const { content } = expectTag(node, derTags.boolean, what);
  if (content.length !== 1) throw derError(`${what}: bad boolean`);
  return content[0] !== 0;
}

/** A BIT STRING's bytes (the unused-bit count is returned separately). */
export function readBitString(node: DerNode | undefined, what: string): { bytes: Uint8Array; unusedBits: number } {
  const { content } = expectTag(node, derTags.bitString, what);
  if (content.length === 0 || content[0]! > 7) throw derError(`${what}: bad bit string`);
  return { bytes: content.subarray(1), unusedBits: content[0]! };
}

/** UTCTime or GeneralizedTime in the forms RFC 5280 allows (seconds, "Z"). */
export function readTime(node: DerNode | undefined, what: string): Date {
  if (node === undefined) throw derError(`${what} is missing`);
  const text = new TextDecoder().decode(node.content);
  let match: RegExpExecArray | null;
  let year: number;
  if (node.tag === derTags.utcTime && (match = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(text))) {
    const yy = Number(match[1]);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
  } else if (node.tag === derTags.generalizedTime && (match = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(text))) {
    year = Number(match[1]);
  } else {
    throw derError(`${what}: bad time "${text.slice(0, 32)}"`);
  }
  const [month, day, hour, minute, second] = match.slice(2).map(Number) as [number, number, number, number, number];
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) throw derError(`${what}: no such time "${text}"`);
  return date;
}

/** The text of a string type (UTF8String, PrintableString, IA5String). */
export function readString(node: DerNode | undefined, what: string): string {
  if (node === undefined) throw derError(`${what} is missing`);
  if (node.tag !== derTags.utf8String && node.tag !== derTags.printableString && node.tag !== derTags.ia5String) throw derError(`${what}: not a string`);
  return new TextDecoder("utf-8", { fatal: false }).decode(node.content);
}
