/**
 * Every message of the druvaa wire protocol, as TypeScript types: a discriminated union on `type`.
 * docs/pipeline.md tells the order in which they flow; the validators are in specs-*.ts (one file
 * per flow), assembled into one table in messages.ts.
 *
 * Fields only ever get added; a peer drops fields it does not know, so optional fields are
 * backward compatible. `hello` and `helloAck` must stay decodable by every version forever: they
 * are how two versions find out they differ.
 *
 * Numbers (offsets, lengths, LSNs, epochs, request ids, sizes) are safe integers >= 0: exact in a
 * JavaScript number up to 2^53, i.e. 8 PiB of byte offsets. Names (devices, WRLs, node ids) are
 * 1..protocolNameLengthMax printable characters. WRL uuids are lower-case 8-4-4-4-12 hex text
 * (validators lower-case what they receive, so compare them as strings).
 */
import type { Fields } from "./fields.ts";

export const roles = ["client", "staging", "replica", "control", "panel"] as const;
export type Role = (typeof roles)[number];

/**
 * Why a staging server refused a write or an attach (attachAck.error.code uses these too).
 * WRL_FULL sends the client to disconnected mode. DEVICE_BUSY: another connected client holds
 * that device name in the WRL. DEVICE_TOO_BIG: the device is bigger than the replica's device of
 * that name.
 */
export const writeNackCodes = [
  "WRL_FULL", "WRL_UNKNOWN", "DEVICE_UNKNOWN", "DEVICE_BUSY", "DEVICE_TOO_BIG", "OUT_OF_RANGE", "IO_ERROR", "BUSY", "SHUTTING_DOWN",
] as const;
export type WriteNackCode = (typeof writeNackCodes)[number];

/**
 * Why a replica refused a shipment (or a resume); the relay keeps the records and retries or
 * alerts. DEVICE_TOO_SMALL: the replica's device is smaller than the size the shipment declares.
 * WRL_MISMATCH: the wrlUuid is not the one this replica applied for that WRL name (the WRL was
 * re-created: applying it would mix two histories). RS_WRL_NEEDED: a coalesced shipment reached a
 * replica without a replica WRL (it never said it takes them). FAILED_OVER: the WRL's devices were
 * failed over at the replica (druvaa failover): its records wait in the WRL until failback.
 */
export const shipNackCodes = [
  "RS_WRL_FULL", "LSN_GAP", "WRL_UNKNOWN", "WRL_MISMATCH", "DEVICE_UNKNOWN", "DEVICE_TOO_SMALL", "OUT_OF_RANGE", "IO_ERROR", "BUSY", "SHUTTING_DOWN", "RS_WRL_NEEDED", "FAILED_OVER",
] as const;
export type ShipNackCode = (typeof shipNackCodes)[number];

export { checkpointFlags, checkpointLabelBytesOf, recordFlags, shipRecordPayloadBytes, verifyBlockBytesOf, verifyDigestBytes, verifyFlags } from "./record-flags.ts";

/** A byte range of a device. */
export interface ByteRange {
  offset: number;
  length: number;
}

export interface ErrorInfo {
  code: string;
  message: string;
  hint?: string;
}

/** A device by name and its size in bytes, as one side knows it. */
export interface DeviceSize {
  name: string;
  sizeBytes: number;
}

// ---- session: every connection -----------------------------------------------------------------

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

// ---- client -> staging --------------------------------------------------------------------------

/**
 * Client -> staging, once per device after the handshake: bind `device` to the WRL `wrl`.
 * `sizeBytes` is a multiple of `logicalBlockSizeBytes`, a power of two in
 * [sectorSizeBytes, protocolLogicalBlockSizeBytesMax].
 */
export interface AttachMessage {
  type: "attach";
  device: string;
  wrl: string;
  sizeBytes: number;
  logicalBlockSizeBytes: number;
}

/**
 * Staging -> client. Accepted: carries the WRL's uuid. Refused: carries the reason (`error.code`
 * one of writeNackCodes: WRL_UNKNOWN, DEVICE_BUSY, DEVICE_TOO_BIG, ...). The validator insists
 * on both: an accepted ack without wrlUuid, or a refusal without error, is refused.
 */
export interface AttachAckMessage {
  type: "attachAck";
  device: string;
  wrl: string;
  accepted: boolean;
  wrlUuid?: string;
  error?: ErrorInfo;
}

/**
 * Client -> staging: log `length` bytes for `device` at `offset`. A data write carries them as
 * its payload (length <= writePayloadSizeBytesMax); a zero write (`zero: true`: TRIM or
 * WRITE_ZEROES) carries no payload, the range reads as zeros, and length <= zeroRecordBytesMax.
 */
export interface WriteMessage {
  type: "write";
  /**
   * Absent: an ordered application write. `resync`: resync data (recordFlags.resync).
   * `resyncEnd`: the device's resync set is complete (offset 0, length 0, no payload).
   * `verify`: a verify probe over offset/length whose payload is one sha256 digest per block of
   * `verifyBlockBytes` (recordFlags.verify). `checkpoint`: an application-consistent point named
   * `label` (offset 0, length 0, no payload; staging logs the label as the record's payload,
   * recordFlags.checkpoint).
   */
  kind?: WriteKind;
  /** Verify probes only: the block size of the digests, a power of two in [512, 1 MiB]. */
  verifyBlockBytes?: number;
  /** Checkpoints only: the label (checkpoint-label.ts rules). */
  label?: string;
  reqId: number;
  device: string;
  wrl: string;
  epoch: number;
  offset: number;
  length: number;
  fua?: boolean;
  zero?: boolean;
}

export const writeKinds = ["resync", "resyncEnd", "verify", "checkpoint"] as const;
export type WriteKind = (typeof writeKinds)[number];

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

// ---- staging relay -> replica -------------------------------------------------------------------

/**
 * Relay -> replica, after the handshake: "where are you with this WRL?". A replica that cannot
 * resume it (WRL_MISMATCH, ...) answers shipNack instead of resumeAck.
 */
export interface ResumeMessage {
  type: "resume";
  wrl: string;
  wrlUuid: string;
}

/** Replica -> relay: it applied `wrl` up to `appliedLsn` (0: nothing yet); `devices` are its own
 * devices and their sizes, so staging can refuse to attach a bigger client device. Names unique.
 * `acceptsCoalesced`: true when the replica has a replica WRL and so takes coalesced shipments
 * (absent or false: the relay never sends one). */
export interface ResumeAckMessage {
  type: "resumeAck";
  wrl: string;
  wrlUuid: string;
  appliedLsn: number;
  devices: DeviceSize[];
  acceptsCoalesced?: boolean;
}

/** One WRL record in a shipment. A record with flags & recordFlags.zero carries no payload bytes
 * and its length may be up to zeroRecordBytesMax; any other is <= writePayloadSizeBytesMax. */
export interface ShipRecord {
  lsn: number;
  epoch: number;
  device: string;
  offset: number;
  length: number;
  flags: number;
}

/**
 * Relay -> replica: records firstLsn..lastLsn (possibly with gaps: markers not shipped; never
 * reordered) of the WRL `wrl` whose uuid is `wrlUuid`. The payload is the data of the non-ZERO
 * records, concatenated in record order. `devices`, when present, declares every device the
 * records name (unique names) with the client's size, so the replica can refuse a device bigger
 * than its own (DEVICE_TOO_SMALL).
 */
export interface ShipMessage {
  type: "ship";
  wrl: string;
  wrlUuid: string;
  firstLsn: number;
  lastLsn: number;
  records: ShipRecord[];
  devices?: DeviceSize[];
  /**
   * A coalesced span (docs/pipeline.md "Coalesced shipments"): the records are the newest version
   * of every block WRL records firstLsn..lastLsn wrote, as non-overlapping extents (ascending
   * offsets per device, data or ZERO only), each carrying the LSN and epoch of the record its
   * bytes come from (so LSNs need not rise). They do not map 1:1 to LSNs: only the whole span
   * applied at once shows a consistent point (lastLsn), so the replica logs it in its RS-WRL
   * first. Absent: records are WRL records in LSN order (possibly with gaps).
   */
  coalesced?: true;
  /**
   * With `coalesced`: this shipment is one part of a span too big for one frame, and more parts
   * follow (the next one starts at lastLsn + 1). A part carries the extents whose newest version
   * comes from a record of its own LSN range, so no two parts overlap; the replica logs each part
   * in its RS-WRL, answers it `shipAck {held: true}`, and applies the span only with its last part
   * (the one without this flag): only the whole span shows a consistent point.
   */
  spanContinues?: true;
  /**
   * How the payload is encoded (ship-codec.ts): absent, the records' data as is; "zstd", one zstd
   * frame of it, `wireBytes` long, that decompresses to exactly `rawBytes` (the records' data
   * bytes) whose CRC-32 is `rawCrc32`. The four come together or not at all.
   */
  codec?: ShipCodec;
  rawBytes?: number;
  rawCrc32?: number;
  wireBytes?: number;
}

/** Payload encodings of a shipment. */
export const shipCodecs = ["zstd"] as const;
export type ShipCodec = (typeof shipCodecs)[number];

/**
 * What the replica found for one verify probe (the record at `lsn`), once it reached that point
 * of the write order: the blocks whose digest differs, as ranges (empty: equal). A probe with
 * more differing ranges than verifyRangesMax reports its whole range.
 */
export interface VerifyOutcome {
  device: string;
  lsn: number;
  offset: number;
  length: number;
  differing: ByteRange[];
}

/**
 * Replica -> staging: everything up to `appliedLsn` is durable on the replica side (applied, or
 * logged in its RS-WRL while a resync set is open). `verified`: outcomes of verify probes the
 * replica evaluated since its previous ack (they may belong to earlier shipments).
 */
export interface ShipAckMessage {
  type: "shipAck";
  wrl: string;
  appliedLsn: number;
  verified?: VerifyOutcome[];
  /**
   * The answer to a span part with `spanContinues`: logged durably in the RS-WRL and held until
   * the span's last part; nothing applied (`appliedLsn` did not move), so staging keeps the
   * records.
   */
  held?: true;
}

/** Staging -> client: the outcome of one of its verify probes (forwarded from shipAck.verified). */
export interface VerifyReportMessage {
  type: "verifyReport";
  wrl: string;
  device: string;
  lsn: number;
  offset: number;
  length: number;
  differing: ByteRange[];
}

export interface ShipNackMessage {
  type: "shipNack";
  wrl: string;
  code: ShipNackCode;
  message: string;
}

// ---- restore port of the replica ----------------------------------------------------------------

/**
 * Restorer -> replica: send me `device` whole. The replica pauses apply at a shipment boundary
 * (a consistent point) and answers restoreBegin, or an `error` message and a close.
 */
export interface RestoreRequestMessage {
  type: "restoreRequest";
  device: string;
  /** The point to restore (TIME|LSN|LABEL, as `druvaa restore --at` takes it); absent: the current one. */
  at?: string;
}

/** Replica -> restorer: the image that follows is the device at `appliedLsn`. */
export interface RestoreBeginMessage {
  type: "restoreBegin";
  device: string;
  sizeBytes: number;
  appliedLsn: number;
}

/** Replica -> restorer: `length` bytes at `offset` (the payload, <= writePayloadSizeBytesMax). */
export interface RestoreDataMessage {
  type: "restoreData";
  device: string;
  offset: number;
  length: number;
}

/** Replica -> restorer: done; `crc32c` is of the whole image of `sizeBytes` bytes (CRC32C
 * continued over the chunks), for the restorer to check what it received end to end. */
export interface RestoreEndMessage {
  type: "restoreEnd";
  device: string;
  sizeBytes: number;
  crc32c: number;
}

export type Message =
  | HelloMessage | HelloAckMessage | StatusRequestMessage | StatusReplyMessage | ErrorMessage | PingMessage | PongMessage
  | AttachMessage | AttachAckMessage | WriteMessage | WriteAckMessage | WriteNackMessage | VerifyReportMessage
  | ResumeMessage | ResumeAckMessage | ShipMessage | ShipAckMessage | ShipNackMessage
  | RestoreRequestMessage | RestoreBeginMessage | RestoreDataMessage | RestoreEndMessage;

export type MessageType = Message["type"];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

export interface MessageSpec<M extends Message> {
  /** Builds a clean message from a decoded header; throws ProtocolError on anything invalid. */
  readonly validate: (fields: Fields) => M;
  /** The exact payload length the message declares (0 for messages without payload). */
  readonly payloadBytes: (message: M) => number;
}

/** The specs of some message types; TypeScript refuses a table with one of them missing. */
export type SpecTable<T extends MessageType> = { readonly [K in T]: MessageSpec<MessageOf<K>> };
