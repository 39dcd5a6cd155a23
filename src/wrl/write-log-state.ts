/**
 * The state of a WriteLog (write-log.ts) and the internal steps that move it: the reserved head,
 * the durable head and the tail; appends reserved and encoded for group commit and made durable;
 * the stop after an I/O error; and the serialised superblock writes (checkpoints, added devices).
 * WriteLog builds its public operations on these; nothing else uses this class.
 */
import { assert } from "../assert.ts";
import type { BlockDevice } from "../io/block-device.ts";
import { DruvaaError, exitCodes } from "../errors.ts";
import { logger } from "../log.ts";
import { wrlCacheBytesMax, wrlCheckpointIntervalBytes, wrlRecordHeaderBytes, writePayloadSizeBytesMax } from "../constants.ts";
import type { CheckedAppend } from "./append-input.ts";
import { batchCapacityBytes, type PendingRecord } from "./batch.ts";
import { GroupCommit } from "./group-commit.ts";
import { LogGeometry } from "./geometry.ts";
import { writeSuperblockCopy, type InitialState } from "./lifecycle.ts";
import { LogReader } from "./log-reader.ts";
import type { PayloadCipher } from "./payload-cipher.ts";
import { RecordLocator } from "./record-locator.ts";
import { RecordCache } from "./record-cache.ts";
import { encodeRecord, recordSizeBytes } from "./record-format.ts";
import { uuidToBytes, type Superblock } from "./superblock.ts";
import type { WrlAppendResult, WrlDeviceEntry, WrlRecord, WrlRecoveryReport } from "./types.ts";

/** Looked up when used, so the log level set at run time applies. */
const log = () => logger("wrl");

export abstract class WriteLogState {
  readonly recovery: WrlRecoveryReport | undefined;
  protected readonly devices: BlockDevice[];
  private readonly primary: BlockDevice;
  protected readonly readOnly: boolean;
  private readonly uuidBytes: Uint8Array;
  protected readonly uuidSource: () => string;
  protected sb: Superblock;
  protected geometry: LogGeometry;
  private reader: LogReader;
  protected readonly cache = new RecordCache(wrlCacheBytesMax);
  protected readonly incarnation: number;
  /** Encrypts payloads as they are encoded (the cache keeps plaintext); set iff the key was given. */
  private readonly cipher: PayloadCipher | undefined;

  // Reserved head: appends accepted, durable or not.
  private headPosition: number;
  protected reservedLsn: number;
  /** Bytes from the tail to the reserved head, device-end skips included. */
  protected usedBytes: number;
  // Durable head: the last committed batch.
  protected durableLsn: number;
  protected durablePosition: number;
  protected durableIncarnation: number | undefined;
  // Tail: mirrors the durable checkpoint; records <= tailLsn are freed.
  protected tailLsn: number;
  protected tailPosition: number;
  protected tailIncarnation: number;
  protected readonly locator: RecordLocator;
  protected bytesSinceCheckpoint = 0;

  protected readonly commits: GroupCommit;
  protected failure: DruvaaError | undefined;
  protected state: "open" | "closing" | "closed" = "open";
  protected superblockChain: Promise<void> = Promise.resolve();
  /** Serialises advanceTail() and addDevice(). */
  protected metaChain: Promise<void> = Promise.resolve();

  protected constructor(init: InitialState) {
    this.devices = [...init.devices];
    this.primary = this.devices[0]!;
    this.readOnly = init.readOnly;
    this.sb = init.superblock;
    this.uuidBytes = uuidToBytes(this.sb.uuid);
    this.uuidSource = init.uuidSource;
    this.recovery = init.recovery;
    this.incarnation = this.sb.incarnation;
    this.geometry = new LogGeometry(this.sb.devices);
    this.cipher = init.cipher;
    this.reader = new LogReader(this.geometry, this.devices, this.uuidBytes, this.sb.encryption === undefined ? undefined : { cipher: this.cipher });
    const cp = this.sb.checkpoint;
    this.headPosition = this.durablePosition = init.headPosition;
    this.reservedLsn = this.durableLsn = init.headLsn;
    this.durableIncarnation = init.headIncarnation ?? (init.headLsn === cp.tailLsn ? cp.tailIncarnation : undefined);
    this.tailLsn = cp.tailLsn;
    this.tailIncarnation = cp.tailIncarnation;
    this.tailPosition = this.durableLsn === this.tailLsn ? init.headPosition : cp.tailPosition;
    this.usedBytes = this.durableLsn === this.tailLsn ? 0 : this.geometry.distance(this.tailPosition, this.headPosition) || this.geometry.totalBytes;
    const self = this; // the host reads live fields
    this.commits = new GroupCommit({
      get devices() { return self.devices; },
      get geometry() { return self.geometry; },
      get durableLsn() { return self.durableLsn; },
      encode: (buffer, record, durableLsn) => self.encode(buffer, record, durableLsn),
      durable: (progress) => self.madeDurable(progress),
      failed: (error) => self.fail(error),
    });
    this.locator = new RecordLocator({
      get uuid() { return self.sb.uuid; },
      get geometry() { return self.geometry; },
      get reader() { return self.reader; },
      get cache() { return self.cache; },
      get incarnation() { return self.incarnation; },
      get tail() { return { lsn: self.tailLsn, position: self.tailPosition, incarnation: self.tailIncarnation }; },
      get durableLsn() { return self.durableLsn; },
    });
  }

  // ---- appending ------------------------------------------------------------------------------

  protected maxPayloadBytes(): number {
    return Math.min(writePayloadSizeBytesMax, this.geometry.recordBytesMax - wrlRecordHeaderBytes, batchCapacityBytes(this.geometry) - wrlRecordHeaderBytes);
  }

  protected reserve(v: CheckedAppend): Promise<WrlAppendResult> {
    try {
      this.checkWritable();
      if (this.sb.encryption !== undefined && this.cipher === undefined) {
        throw new DruvaaError("WRL_KEY_REQUIRED", `write log ${this.sb.uuid} encrypts payloads at rest and was opened without the key`, "Open it with --encrypt-at-rest KEYFILE to append", exitCodes.refused);
      }
      const maxPayloadBytes = this.maxPayloadBytes();
      if (v.data.length > maxPayloadBytes) return Promise.resolve({ ok: false, reason: "too-large", payloadBytes: v.data.length, maxPayloadBytes });
      const recordBytes = recordSizeBytes(v.data.length);
      const start = this.geometry.place(this.headPosition, recordBytes);
      const consumedBytes = this.geometry.distance(this.headPosition, start) + recordBytes;
      const freeBytes = this.geometry.totalBytes - this.usedBytes;
      if (consumedBytes > freeBytes) return Promise.resolve({ ok: false, reason: "full", neededBytes: consumedBytes, freeBytes });

      const lsn = this.reservedLsn + 1;
      const promise = this.commits.enqueue({ lsn, start, recordBytes, consumedBytes, input: v });
      this.reservedLsn = lsn;
      this.headPosition = this.geometry.normalize(start + recordBytes);
      this.usedBytes += consumedBytes;
      const record: WrlRecord = { lsn, type: v.type, epoch: v.epoch, device: v.device, seq: v.seq, offset: v.offset, lengthBytes: v.lengthBytes, flags: v.flags, data: v.data };
      this.cache.add({ record, start, end: this.headPosition, incarnation: this.incarnation });
      return promise;
    } catch (error) {
      return Promise.reject(error);
    } finally {
      this.commits.admitNext(this.state !== "open");
    }
  }

  private encode(buffer: Uint8Array, record: PendingRecord, durableLsn: number): number {
    const v = record.input;
    return encodeRecord(buffer, record.bufferStart, {
      lsn: record.lsn,
      type: v.type,
      epoch: v.epoch,
      seq: v.seq,
      offset: v.offset,
      lengthBytes: v.lengthBytes,
      durableLsn,
      flags: v.flags,
      device: v.deviceField,
      incarnation: this.incarnation,
      uuid: this.uuidBytes,
    }, v.data, this.cipher);
  }

  /** Group commit made records up to `lastLsn` durable. */
  private madeDurable(progress: { lastLsn: number; endPosition: number; consumedBytes: number }): void {
    assert(progress.lastLsn > this.durableLsn && progress.lastLsn <= this.reservedLsn, "durability advances in LSN order");
    this.durableLsn = progress.lastLsn;
    this.durablePosition = progress.endPosition;
    this.durableIncarnation = this.incarnation;
    this.bytesSinceCheckpoint += progress.consumedBytes;
    this.reader.invalidate();
    if (this.bytesSinceCheckpoint >= Math.min(wrlCheckpointIntervalBytes, this.geometry.totalBytes / 4)) {
      this.checkpoint().catch(() => undefined); // a failure stops the log through fail()
    }
  }

  /** Stops the log after an I/O error: every append not yet acknowledged is rejected. */
  private fail(error: unknown): DruvaaError {
    if (this.failure !== undefined) return this.failure;
    const detail = error instanceof Error ? error.message : String(error);
    this.failure = new DruvaaError(
      "WRL_IO_FAILED",
      `write log ${this.sb.uuid}: I/O failed (${detail}); appends after LSN ${this.durableLsn} were not acknowledged`,
      "Check the device (dmesg, smartctl), then reopen the write log: recovery keeps every acknowledged record",
      exitCodes.failure,
      { cause: error },
    );
    log().error(this.failure.message);
    this.commits.failAll(this.failure);
    return this.failure;
  }

  protected checkNotClosed(): void {
    if (this.state === "closed") throw new DruvaaError("WRL_CLOSED", `write log ${this.sb.uuid} is closed`);
  }

  protected checkWritable(duringClose = false): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.readOnly) throw new DruvaaError("WRL_READ_ONLY", `write log ${this.sb.uuid} is open read-only`, "Open it without readOnly to write");
    if (this.state === "closed" || (this.state === "closing" && !duringClose)) throw new DruvaaError("WRL_CLOSED", `write log ${this.sb.uuid} is closed`);
  }

  // ---- metadata -------------------------------------------------------------------------------

  protected serialise<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.metaChain.then(operation);
    this.metaChain = result.then(() => undefined, () => undefined);
    return result;
  }

  /** Writes the next superblock copy (serialised); `applied` runs once it is durable. */
  protected writeSuperblock(next: (current: Superblock) => Superblock, applied?: () => void): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.failure !== undefined) throw this.failure;
      const sb: Superblock = { ...next(this.sb), sequence: this.sb.sequence + 1 };
      try {
        await writeSuperblockCopy(this.primary, sb);
      } catch (error) {
        throw this.fail(error);
      }
      this.sb = sb;
      applied?.();
    };
    const result = this.superblockChain.then(run);
    this.superblockChain = result.then(() => undefined, () => undefined);
    return result;
  }

  /** Records the durable head in the superblock, bounding the next recovery scan. */
  protected checkpoint(): Promise<void> {
    this.bytesSinceCheckpoint = 0;
    return this.writeSuperblock((sb) => ({ ...sb, checkpoint: { ...sb.checkpoint, headPosition: this.durablePosition, headLsn: this.durableLsn } }));
  }

  protected grow(device: BlockDevice, entry: WrlDeviceEntry): void {
    const oldTotalBytes = this.geometry.totalBytes;
    this.devices.push(device);
    this.geometry = new LogGeometry(this.sb.devices);
    this.reader.reshape(this.geometry, this.devices);
    this.commits.reshape();
    // The new device sits where the log used to wrap. Positions of records already placed stay
    // valid; what changes is whether the new space is ahead of the head or behind the tail.
    if (this.usedBytes === 0 || this.tailPosition + this.usedBytes < oldTotalBytes) return; // ahead of the head: free
    if (this.tailPosition + this.usedBytes === oldTotalBytes) {
      // The live records end exactly at the old end, so the head (normalised to 0) is really the
      // start of the new device, and so is the end of the newest record wherever it is noted.
      this.headPosition = oldTotalBytes;
      if (this.durableLsn === this.reservedLsn) this.durablePosition = oldTotalBytes;
      const newest = this.cache.get(this.reservedLsn);
      if (newest !== undefined) newest.end = oldTotalBytes;
      this.commits.patchEndPosition(this.reservedLsn, oldTotalBytes);
      this.locator.movePosition(this.reservedLsn + 1, 0, oldTotalBytes);
      return;
    }
    // The live records wrap round the old end: the new device lies inside them and counts as
    // used until the tail passes it, so nothing is ever written between tail and head.
    this.usedBytes += entry.dataBytes;
  }
}
