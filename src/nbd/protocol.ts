/**
 * NBD wire constants and encoders (NetworkBlockDevice/nbd doc/proto.md), server side, fixed
 * newstyle handshake and simple replies only. Every number on the wire is big-endian.
 *
 * Not implemented, on purpose: oldstyle and non-fixed newstyle handshakes, TLS, structured and
 * extended replies, metadata contexts (block status). Clients are told NBD_REP_ERR_UNSUP and
 * fall back to simple replies, which every client supports.
 */

// ---- magics ------------------------------------------------------------------------------------
/** "NBDMAGIC", first 8 bytes the server sends. */
export const nbdMagic = 0x4e42444d41474943n;
/** "IHAVEOPT": the newstyle magic; also starts every option the client sends. */
export const optionMagic = 0x49484156454f5054n;
/** Starts every option reply. */
export const optionReplyMagic = 0x3e889045565a9n;
export const requestMagic = 0x25609513;
export const simpleReplyMagic = 0x67446698;

// ---- handshake ---------------------------------------------------------------------------------
export const handshakeFlags = { fixedNewstyle: 1 << 0, noZeroes: 1 << 1 } as const;
export const clientFlags = { fixedNewstyle: 1 << 0, noZeroes: 1 << 1 } as const;
export const clientFlagsKnown = clientFlags.fixedNewstyle | clientFlags.noZeroes;

export const opt = {
  exportName: 1,
  abort: 2,
  list: 3,
  peekExport: 4,
  startTls: 5,
  info: 6,
  go: 7,
  structuredReply: 8,
  listMetaContext: 10,
  setMetaContext: 11,
  extendedHeaders: 12,
} as const;

export const rep = {
  ack: 1,
  server: 2,
  info: 3,
  errUnsup: 0x8000_0001,
  errPolicy: 0x8000_0002,
  errInvalid: 0x8000_0003,
  errPlatform: 0x8000_0004,
  errTlsReqd: 0x8000_0005,
  errUnknown: 0x8000_0006,
  errShutdown: 0x8000_0007,
  errBlockSizeReqd: 0x8000_0008,
  errTooBig: 0x8000_0009,
} as const;

export const info = { export: 0, name: 1, description: 2, blockSize: 3 } as const;

/** Transmission flags (16 bits, sent with the export size). */
export const tflag = {
  hasFlags: 1 << 0,
  readOnly: 1 << 1,
  sendFlush: 1 << 2,
  sendFua: 1 << 3,
  rotational: 1 << 4,
  sendTrim: 1 << 5,
  sendWriteZeroes: 1 << 6,
  sendDf: 1 << 7,
  canMultiConn: 1 << 8,
  sendResize: 1 << 9,
  sendCache: 1 << 10,
  sendFastZero: 1 << 11,
} as const;

// ---- transmission ------------------------------------------------------------------------------
export const cmd = {
  read: 0,
  write: 1,
  disc: 2,
  flush: 3,
  trim: 4,
  cache: 5,
  writeZeroes: 6,
  blockStatus: 7,
} as const;

export const cmdFlag = {
  fua: 1 << 0,
  noHole: 1 << 1,
  df: 1 << 2,
  reqOne: 1 << 3,
  fastZero: 1 << 4,
  payloadLen: 1 << 5,
} as const;

/** The only error values the spec allows in a reply (they match Linux errno numbers). */
export const nbdErrno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type NbdErrno = (typeof nbdErrno)[keyof typeof nbdErrno];

export const requestHeaderBytes = 28;
export const simpleReplyHeaderBytes = 16;
export const optionHeaderBytes = 16;
/** Zeroes after the EXPORT_NAME reply unless the client set NBD_FLAG_C_NO_ZEROES. */
export const exportNameZeroesBytes = 124;

export const cmdNames: Record<number, string> = {
  0: "READ", 1: "WRITE", 2: "DISC", 3: "FLUSH", 4: "TRIM", 5: "CACHE", 6: "WRITE_ZEROES", 7: "BLOCK_STATUS",
};

export const optNames: Record<number, string> = {
  1: "EXPORT_NAME", 2: "ABORT", 3: "LIST", 4: "PEEK_EXPORT", 5: "STARTTLS", 6: "INFO", 7: "GO",
  8: "STRUCTURED_REPLY", 9: "BLOCK_SIZE", 10: "LIST_META_CONTEXT", 11: "SET_META_CONTEXT", 12: "EXTENDED_HEADERS",
};

// ---- byte helpers (no DataView allocation per request on the hot path) -------------------------
export function readU16(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 8) | bytes[at + 1]!) >>> 0;
}

export function readU32(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
}

/**
 * A u64 as a number. Values past 2^53 lose precision but stay past 2^53, which is larger than any
 * export, so range checks on them still refuse them.
 */
export function readU64(bytes: Uint8Array, at: number): number {
  return readU32(bytes, at) * 0x1_0000_0000 + readU32(bytes, at + 4);
}

export function readBigU64(bytes: Uint8Array, at: number): bigint {
  return (BigInt(readU32(bytes, at)) << 32n) | BigInt(readU32(bytes, at + 4));
}

export function writeU16(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 8;
  bytes[at + 1] = value;
}

export function writeU32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 24;
  bytes[at + 1] = value >>> 16;
  bytes[at + 2] = value >>> 8;
  bytes[at + 3] = value;
}

export function writeU64(bytes: Uint8Array, at: number, value: number | bigint): void {
  const big = BigInt(value);
  writeU32(bytes, at, Number(big >> 32n));
  writeU32(bytes, at + 4, Number(big & 0xffff_ffffn));
}

const utf8 = new TextEncoder();

export function encodeString(text: string): Uint8Array {
  return utf8.encode(text);
}

/** The 18 bytes the server sends first: NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeGreeting(): Uint8Array {
  const bytes = new Uint8Array(18);
  writeU64(bytes, 0, nbdMagic);
  writeU64(bytes, 8, optionMagic);
  writeU16(bytes, 16, handshakeFlags.fixedNewstyle | handshakeFlags.noZeroes);
  return bytes;
}

/** One option reply: magic, option, reply type, length, data. */
export function encodeOptionReply(option: number, replyType: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const bytes = new Uint8Array(20 + data.length);
  writeU64(bytes, 0, optionReplyMagic);
  writeU32(bytes, 8, option);
  writeU32(bytes, 12, replyType);
  writeU32(bytes, 16, data.length);
  bytes.set(data, 20);
  return bytes;
}

/** NBD_REP_SERVER data: u32 name length, name. */
export function encodeServerReplyData(name: string): Uint8Array {
  const nameBytes = encodeString(name);
  const bytes = new Uint8Array(4 + nameBytes.length);
  writeU32(bytes, 0, nameBytes.length);
  bytes.set(nameBytes, 4);
  return bytes;
}

export function encodeInfoExport(sizeBytes: number, transmissionFlags: number): Uint8Array {
  const bytes = new Uint8Array(12);
  writeU16(bytes, 0, info.export);
  writeU64(bytes, 2, sizeBytes);
  writeU16(bytes, 10, transmissionFlags);
  return bytes;
}

export function encodeInfoString(type: typeof info.name | typeof info.description, text: string): Uint8Array {
  const textBytes = encodeString(text);
  const bytes = new Uint8Array(2 + textBytes.length);
  writeU16(bytes, 0, type);
  bytes.set(textBytes, 2);
  return bytes;
}

export function encodeInfoBlockSize(minimumBytes: number, preferredBytes: number, maximumBytes: number): Uint8Array {
  const bytes = new Uint8Array(14);
  writeU16(bytes, 0, info.blockSize);
  writeU32(bytes, 2, minimumBytes);
  writeU32(bytes, 6, preferredBytes);
  writeU32(bytes, 10, maximumBytes);
  return bytes;
}

/** Reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zeroes unless the client declined them. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Uint8Array {
  const bytes = new Uint8Array(10 + (noZeroes ? 0 : exportNameZeroesBytes));
  writeU64(bytes, 0, sizeBytes);
  writeU16(bytes, 8, transmissionFlags);
  return bytes;
}

/** Simple reply header; `cookie` is the 8 bytes the client sent, echoed unchanged. */
export function encodeSimpleReply(error: number, cookie: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(simpleReplyHeaderBytes);
  writeU32(bytes, 0, simpleReplyMagic);
  writeU32(bytes, 4, error);
  bytes.set(cookie, 8);
  return bytes;
}
