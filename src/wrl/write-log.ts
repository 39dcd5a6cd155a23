/**
 * The write log (WRL): a circular, sequential log over one primary device and optional
 * secondaries, consumed serially (see geometry.ts for the layout, record-format.ts and
 * superblock.ts for the bytes, recovery.ts for the crash rules).
 *
 * Appends reserve their LSN and log space synchronously, in call order (so "full" is decided at
 * once and never after anything was written), then group commit (group-commit.ts) writes and
 * flushes them; an append resolves only once its record is durable. Records stay in an
 * in-memory cache for the relay; older ones are found on disk (record-locator.ts).
 *
 * After an I/O error the log stops (WRL_IO_FAILED) instead of guessing what reached the disk;
 * reopening runs recovery, which keeps every acknowledged record.
 *
 * Not safe for concurrent read()/advanceTail() callers racing over the same LSNs: there is one
 * relay per WRL.
 */
import { assert } from "../assert.ts";
import type { BlockDevice } from "../io/block-device.ts";
import { DruvaaError, exitCodes, usageError } from "../errors.ts";
import { logger } from "../log.ts";
import {
  wrlCacheBytesMax,
  wrlCheckpointIntervalBytes,
  wrlDevicesMax,
  wrlReadBytesDefault,
  wrlReadRecordsMax,
  wrlRecordHeaderBytes,
  writePayloadSizeBytesMax,
} from "../constants.ts";
import { checkAppend, type CheckedAppend } from "./append-input.ts";
import { batchCapacityBytes, type PendingRecord } from "./batch.ts";
import { GroupCommit } from "./group-commit.ts";
import { LogGeometry } from "./geometry.ts";
import {
  createLog,
  describeNewDevice,
  openLog,
  refuseExistingWrl,
  writeSecondaryHeader,
  writeSuperblockCopy,
  type CreateOptions,
  type InitialState,
  type OpenOptions,
} from "./lifecycle.ts";
import { LogReader } from "./log-reader.ts";
import { RecordLocator } from "./record-locator.ts";
import { RecordCache } from "./record-cache.ts";
import { encodeRecord, recordSizeBytes } from "./record-format.ts";
import { uuidToBytes, type Superblock } from "./superblock.ts";
import type { WrlAppend, WrlAppendResult, WrlDeviceEntry, WrlDeviceResolver, WrlInfo, WrlRecord, WrlRecoveryReport } from "./types.ts";

/** Looked up when used, so the log level set at run time applies. */
const log = () => logger("wrl");

export class WriteLog {
  readonly recovery: WrlRecoveryReport | undefined;
  private readonly devices: BlockDevice[];
  private readonly primary: BlockDevice;
  private readonly readOnly: boolean;
  private readonly uuidBytes: Uint8Array;
  private readonly uuidSource: () => string;
  private sb: Superblock;
  private geometry: LogGeometry;
  private reader: LogReader;
  private readonly cache = new RecordCache(wrlCacheBytesMax);
  private freedDataSink: ((data: Uint8Array) => void) | undefined;
  private readonly incarnation: number;

  // Reserved head: appends accepted, durable or not.
  private headPosition: number;
  private reservedLsn: number;
  /** Bytes from the tail to the reserved head, device-end skips included. */
  private usedBytes: number;
  // Durable head: the last committed batch.
  private durableLsn: number;
  private durablePosition: number;
  private durableIncarnation: number | undefined;
  // Tail: mirrors the durable checkpoint; records <= tailLsn are freed.
  private tailLsn: number;
  private tailPosition: number;
  private tailIncarnation: number;
  private readonly locator: RecordLocator;
  private bytesSinceCheckpoint = 0;

  private readonly commits: GroupCommit;
  private failure: DruvaaError | undefined;
  private state: "open" | "closing" | "closed" = "open";
  private closing: Promise<void> | undefined;
  private superblockChain: Promise<void> = Promise.resolve();
  /** Serialises advanceTail() and addDevice(). */
  private metaChain: Promise<void> = Promise.resolve();

  private constructor(init: InitialState) {
    this.devices = [...init.devices];
    this.primary = this.devices[0]!;
    this.readOnly = init.readOnly;
    this.sb = init.superblock;
    this.uuidBytes = uuidToBytes(this.sb.uuid);
    this.uuidSource = init.uuidSource;
    this.recovery = init.recovery;
    this.incarnation = this.sb.incarnation;
    this.geometry = new LogGeometry(this.sb.devices);
    this.reader = new LogReader(this.geometry, this.devices, this.uuidBytes);
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

  /**
   * Makes a new, empty write log on `devices` (primary first) and opens it. Refuses, before
   * writing anything: a device that already holds or belongs to a write log (WRL_EXISTS, unless
   * `force`), a device below wrlDeviceSizeBytesMin (WRL_TOO_SMALL), duplicates (USAGE).
   * The WriteLog owns the devices from then on: close() closes them.
   */
  static async create(devices: BlockDevice[], opts: CreateOptions = {}): Promise<WriteLog> {
    return new WriteLog(await createLog(devices, opts));
  }

  /**
   * Opens an existing write log and runs recovery (decision table in recovery.ts). Give all its
   * devices in order, or the primary and a resolver that opens each secondary the superblock
   * lists. Unless `readOnly`, a new incarnation is made durable before this resolves. On success
   * the WriteLog owns the devices; on failure, devices the resolver opened are closed again.
   */
  static async open(devices: BlockDevice[] | { primary: BlockDevice; resolve: WrlDeviceResolver }, opts: OpenOptions = {}): Promise<WriteLog> {
    return new WriteLog(await openLog(devices, opts));
  }

  /**
   * Appends one record. Resolves {ok:true, lsn} once the record is durable (after its batch's
   * flush); {ok:false, reason:"full"} at once, writing nothing, when the free space before the
   * tail is too small; {ok:false, reason:"too-large"} for a payload no device can hold. Rejects
   * with WRL_BAD_APPEND for malformed input, WRL_IO_FAILED after an I/O error, WRL_CLOSED after
   * close(). Waits first when wrlPendingAppendsMax / wrlPendingBytesMax are reached.
   */
  append(input: WrlAppend): Promise<WrlAppendResult> {
    let checked: CheckedAppend;
    try {
      checked = checkAppend(input);
      this.checkWritable();
    } catch (error) {
      return Promise.reject(error);
    }
    const room = this.commits.waitForRoom();
    return room === undefined ? this.reserve(checked) : room.then(() => this.reserve(checked));
  }

  /**
   * Durable records from `fromLsn` on, in order, up to `maxBytes` of payload (at least one
   * record when one is available). Served from memory for recent records, from disk otherwise.
   * Refuses LSNs already freed (WRL_LSN_FREED) or beyond the durable head + 1 (WRL_LSN_AHEAD);
   * a record on disk that fails its checks is WRL_CORRUPT.
   */
  async read(fromLsn: number, maxBytes: number = wrlReadBytesDefault): Promise<WrlRecord[]> {
    if (!Number.isSafeInteger(fromLsn) || fromLsn < 1 || !Number.isSafeInteger(maxBytes) || maxBytes < 0) {
      throw usageError(`write log read: bad arguments (fromLsn ${fromLsn}, maxBytes ${maxBytes})`);
    }
    this.checkNotClosed();
    if (fromLsn <= this.tailLsn) {
      throw new DruvaaError("WRL_LSN_FREED", `write log ${this.sb.uuid}: LSN ${fromLsn} was shipped and freed (tail is ${this.tailLsn})`, "Read from tailLsn + 1 (see druvaa wrl info)", exitCodes.refused);
    }
    if (fromLsn > this.durableLsn + 1) {
      throw new DruvaaError("WRL_LSN_AHEAD", `write log ${this.sb.uuid}: LSN ${fromLsn} is past the durable head ${this.durableLsn}`, undefined, exitCodes.refused);
    }
    const records: WrlRecord[] = [];
    let payloadBytes = 0;
    for (let lsn = fromLsn; lsn <= this.durableLsn && records.length < wrlReadRecordsMax; lsn += 1) {
      let record = this.cache.get(lsn)?.record;
      if (record === undefined) record = await this.locator.read(lsn);
      if (records.length > 0 && payloadBytes + record.data.length > maxBytes) break;
      records.push(record);
      payloadBytes += record.data.length;
      if (payloadBytes >= maxBytes) break;
    }
    return records;
  }

  /**
   * Frees every record <= lsn (shipped and durable at the replica). Writes a checkpoint and
   * flushes it before the space is reused, so a crash never exposes a freed record as live.
   * Idempotent for lsn <= tailLsn; refuses lsn beyond the durable head (WRL_LSN_AHEAD).
   */
  advanceTail(lsn: number): Promise<void> {
    if (!Number.isSafeInteger(lsn) || lsn < 0) return Promise.reject(usageError(`write log advanceTail: bad LSN ${lsn}`));
    return this.serialise(async () => {
      this.checkWritable(true);
      if (lsn <= this.tailLsn) return;
      if (lsn > this.durableLsn) {
        throw new DruvaaError("WRL_LSN_AHEAD", `write log ${this.sb.uuid}: cannot free up to LSN ${lsn}, the durable head is ${this.durableLsn}`, undefined, exitCodes.refused);
      }
      const end = lsn === this.durableLsn && this.durableIncarnation !== undefined
        ? { position: this.durablePosition, incarnation: this.durableIncarnation }
        : await this.locator.endOf(lsn);
      await this.writeSuperblock(
        (sb) => ({ ...sb, checkpoint: { tailPosition: end.position, tailLsn: lsn, tailIncarnation: end.incarnation, headPosition: this.durablePosition, headLsn: this.durableLsn } }),
        () => {
          const freedBytes = lsn === this.reservedLsn ? this.usedBytes : this.geometry.distance(this.tailPosition, end.position);
          assert(freedBytes > 0 && freedBytes <= this.usedBytes, `freeing ${freedBytes} of ${this.usedBytes} used bytes`);
          this.usedBytes -= freedBytes;
          this.tailLsn = lsn;
          this.tailPosition = end.position;
          this.tailIncarnation = end.incarnation;
          this.cache.dropThrough(lsn, this.freedDataSink);
          this.locator.forgetThrough(lsn);
          this.bytesSinceCheckpoint = 0;
        },
      );
    });
  }

  /**
   * Adds a secondary device at the end of the log. Its space is used once the head reaches it;
   * if the live records currently wrap round the end of the log, that is after the tail has
   * passed the end. Refuses devices that hold or belong to a write log (unless `force`), small
   * ones, and more than wrlDevicesMax devices.
   */
  addDevice(device: BlockDevice, opts: { pathHint?: string; force?: boolean; deviceBytesMax?: number } = {}): Promise<WrlDeviceEntry> {
    return this.serialise(async () => {
      this.checkWritable(true);
      if (this.devices.length >= wrlDevicesMax) {
        throw new DruvaaError("WRL_TOO_MANY_DEVICES", `write log ${this.sb.uuid} already has ${wrlDevicesMax} devices`, "Create a second write log instead", exitCodes.refused);
      }
      if (this.devices.some((d) => d === device || d.name === device.name)) throw usageError(`${device.name} is already a device of write log ${this.sb.uuid}`);
      const entry = describeNewDevice(device, this.devices.length, this.uuidSource(), opts.pathHint ?? device.name, opts.deviceBytesMax);
      await refuseExistingWrl(device, opts.force ?? false, { wrlUuid: this.sb.uuid, firstFreeIndex: this.devices.length });
      await writeSecondaryHeader(device, entry, this.sb.uuid);
      await this.writeSuperblock(
        (sb) => ({ ...sb, devices: [...sb.devices, entry], logSizeBytes: sb.logSizeBytes + entry.dataBytes }),
        () => this.grow(device, entry),
      );
      log().info(`write log ${this.sb.uuid}: added ${device.name} as device ${entry.index} (${entry.dataBytes} bytes)`);
      return entry;
    });
  }

  /**
   * From now on, the payload of every record freed by advanceTail() while still in the record
   * cache is handed to `sink` (the appender's own buffer, given at append(): see
   * RecordCache). By then it is durable, written, shipped and acknowledged, and this log holds no
   * view of it any more: the staging server gives it back to the buffer pool it came from. A
   * record evicted from the cache earlier is not handed over (a read() may still hold it).
   */
  onFreedData(sink: (data: Uint8Array) => void): void {
    this.freedDataSink = sink;
  }

  info(): WrlInfo {
    return {
      uuid: this.sb.uuid,
      formatVersion: this.sb.formatVersion,
      sizeBytes: this.geometry.totalBytes,
      usedBytes: this.usedBytes,
      freeBytes: this.geometry.totalBytes - this.usedBytes,
      headLsn: this.durableLsn,
      tailLsn: this.tailLsn,
      recordCount: this.durableLsn - this.tailLsn,
      pendingAppendCount: this.commits.pendingAppendCount,
      maxPayloadBytes: this.maxPayloadBytes(),
      incarnation: this.incarnation,
      superblockSequence: this.sb.sequence,
      devices: this.sb.devices.map((entry) => ({ ...entry, name: this.devices[entry.index]?.name ?? entry.pathHint })),
    };
  }

  /**
   * Waits for pending appends to commit, writes a final checkpoint (read-write logs) and closes
   * the devices. Appends after close() starts are refused with WRL_CLOSED.
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.state = "closing";
    try {
      await this.commits.drained();
      await this.metaChain;
      if (!this.readOnly && this.failure === undefined) await this.checkpoint();
      await this.superblockChain;
    } finally {
      this.state = "closed";
      this.commits.wakeAll();
      const results = await Promise.allSettled(this.devices.map((device) => device.close()));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed !== undefined) throw failed.reason;
    }
  }

  // ---- appending ------------------------------------------------------------------------------

  private maxPayloadBytes(): number {
    return Math.min(writePayloadSizeBytesMax, this.geometry.recordBytesMax - wrlRecordHeaderBytes, batchCapacityBytes(this.geometry) - wrlRecordHeaderBytes);
  }

  private reserve(v: CheckedAppend): Promise<WrlAppendResult> {
    try {
      this.checkWritable();
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
    }, v.data);
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

  private checkNotClosed(): void {
    if (this.state === "closed") throw new DruvaaError("WRL_CLOSED", `write log ${this.sb.uuid} is closed`);
  }

  private checkWritable(duringClose = false): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.readOnly) throw new DruvaaError("WRL_READ_ONLY", `write log ${this.sb.uuid} is open read-only`, "Open it without readOnly to write");
    if (this.state === "closed" || (this.state === "closing" && !duringClose)) throw new DruvaaError("WRL_CLOSED", `write log ${this.sb.uuid} is closed`);
  }

  // ---- metadata -------------------------------------------------------------------------------

  private serialise<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.metaChain.then(operation);
    this.metaChain = result.then(() => undefined, () => undefined);
    return result;
  }

  /** Writes the next superblock copy (serialised); `applied` runs once it is durable. */
  private writeSuperblock(next: (current: Superblock) => Superblock, applied?: () => void): Promise<void> {
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
  private checkpoint(): Promise<void> {
    this.bytesSinceCheckpoint = 0;
    return this.writeSuperblock((sb) => ({ ...sb, checkpoint: { ...sb.checkpoint, headPosition: this.durablePosition, headLsn: this.durableLsn } }));
  }

  private grow(device: BlockDevice, entry: WrlDeviceEntry): void {
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
