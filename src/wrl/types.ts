/** The WRL's public types: what callers append, what the relay reads back, what info() reports. */

/**
 * What a record stands for. `write` and `resync` carry the data; `zero` and `trim` carry only the
 * extent (`lengthBytes`, no payload); `marker` carries whatever its producer needs (a consistent
 * point, an epoch barrier).
 */
export type WrlRecordType = "write" | "zero" | "trim" | "resync" | "marker";

export interface WrlAppend {
  /** Default "write". */
  type?: WrlRecordType;
  /** Partial-write-order epoch of the write (see DESIGN.md). */
  epoch: number;
  /** The client device the write belongs to: a small number, or a name of up to 64 UTF-8 bytes. */
  device: number | string;
  /** The client's sequence number for the write. */
  seq: number;
  /** Byte offset of the extent on the client device. */
  offset: number;
  /**
   * The payload. Ownership passes to the WRL: the caller must not modify it afterwards, because
   * the record cache hands the same bytes to the relay without copying them.
   */
  data: Uint8Array;
  /** Extent length on the client device; defaults to data.length (must equal it for write/resync). */
  lengthBytes?: number;
  /** Caller-defined bits (u32), stored and returned as given. */
  flags?: number;
}

export type WrlAppendResult =
  | { ok: true; lsn: number }
  /** Not enough free space before the tail: nothing was written; ship and advanceTail() first. */
  | { ok: false; reason: "full"; neededBytes: number; freeBytes: number }
  /** The payload can never fit: a record may not straddle devices, so the smallest device bounds it. */
  | { ok: false; reason: "too-large"; payloadBytes: number; maxPayloadBytes: number };

/** A durable record, as read() returns it. */
export interface WrlRecord {
  lsn: number;
  type: WrlRecordType;
  epoch: number;
  device: number | string;
  seq: number;
  offset: number;
  lengthBytes: number;
  flags: number;
  data: Uint8Array;
}

/** One device of a WRL, as the superblock lists it. */
export interface WrlDeviceEntry {
  /** 0 is the primary; secondaries follow in the order the log consumes them. */
  index: number;
  uuid: string;
  /** The path the device had when it was added (a hint for finding it again, not an identity). */
  pathHint: string;
  /** Size of the device when it joined the WRL. */
  sizeBytes: number;
  /** Where the log area starts on the device (after the superblock area or secondary header). */
  dataStartBytes: number;
  /** Bytes of log area on the device. */
  dataBytes: number;
}

export interface WrlInfo {
  uuid: string;
  formatVersion: number;
  /** Total log space (sum of every device's log area). */
  sizeBytes: number;
  /** Bytes between the tail and the head, including space skipped at device ends. */
  usedBytes: number;
  freeBytes: number;
  /** Last durable (acknowledged) LSN; 0 when nothing was ever appended. */
  headLsn: number;
  /** Last LSN freed by advanceTail(); records tailLsn+1 … headLsn are held. */
  tailLsn: number;
  /** Records held: headLsn - tailLsn. */
  recordCount: number;
  /** Appends reserved but not yet durable. */
  pendingAppendCount: number;
  /** Largest payload one record can carry (bounded by the smallest device). */
  maxPayloadBytes: number;
  /** Bumped on every read-write open; records of a discarded history carry an older one. */
  incarnation: number;
  superblockSequence: number;
  /** How record payloads are stored: "aes-256-ctr" when the WRL encrypts them at rest. */
  payloadEncryption: "none" | "aes-256-ctr";
  devices: Array<WrlDeviceEntry & { name: string }>;
}

/** Opens a secondary device listed in the superblock (by its path hint, a config lookup, …). */
export type WrlDeviceResolver = (entry: WrlDeviceEntry) => Promise<import("../io/block-device.ts").BlockDevice>;

/** What recovery found, for `wrl info` and logs. */
export interface WrlRecoveryReport {
  /** Which superblock copy was used (0 or 1) and why the other was not. */
  superblockCopy: number;
  otherCopy: "valid-older" | "invalid" | "zeroed";
  /** Records accepted by the scan from the checkpoint head. */
  scannedRecordCount: number;
  /** Why the scan stopped (decision table in recovery.ts). */
  stopReason: string;
}
