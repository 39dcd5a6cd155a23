/**
 * The write log (WRL): a circular, sequential log over one primary device and optional
 * secondaries, consumed serially (see geometry.ts for the layout, record-format.ts and
 * superblock.ts for the bytes, recovery.ts for the crash rules).
 *
 * Appends reserve their LSN and log space synchronously, in call order (so "full" is decided at
 * once and never after anything was written), then group commit (group-commit.ts) writes and
 * flushes them; an append resolves only once its record is durable. Records stay in an
 * in-memory cache for the relay; older ones are found on disk (record-locator.ts).
 * The state these operations work on, and their internal steps, are in write-log-state.ts.
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
import { wrlDevicesMax, wrlReadBytesDefault, wrlReadRecordsMax } from "../constants.ts";
import { checkAppend, type CheckedAppend } from "./append-input.ts";
import {
  createLog,
  describeNewDevice,
  openLog,
  refuseExistingWrl,
  writeSecondaryHeader,
  type CreateOptions,
  type InitialState,
  type OpenOptions,
} from "./lifecycle.ts";
import type { WrlAppend, WrlAppendResult, WrlDeviceEntry, WrlDeviceResolver, WrlInfo, WrlRecord } from "./types.ts";
import { WriteLogState } from "./write-log-state.ts";

/** Looked up when used, so the log level set at run time applies. */
const log = () => logger("wrl");

export class WriteLog extends WriteLogState {
  private freedDataSink: ((data: Uint8Array) => void) | undefined;
  private closing: Promise<void> | undefined;
  /** advanceTail() callers waiting for a checkpoint, and the highest LSN any of them asked for. */
  private tailWaiters: { lsn: number; resolve: () => void; reject: (error: unknown) => void }[] = [];
  private tailTarget = 0;
  private tailPumping = false;

  private constructor(init: InitialState) {
    super(init);
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
    try {
      this.checkWritable(true);
    } catch (error) {
      return Promise.reject(error);
    }
    if (lsn <= this.tailLsn) return Promise.resolve();
    if (lsn > this.durableLsn) {
      return Promise.reject(new DruvaaError("WRL_LSN_AHEAD", `write log ${this.sb.uuid}: cannot free up to LSN ${lsn}, the durable head is ${this.durableLsn}`, undefined, exitCodes.refused));
    }
    // Calls made while a checkpoint is being written share the next one (the relay frees the
    // tail at every shipment ack: one durable superblock write each made the checkpoint flushes
    // outnumber the WRL's own).
    return new Promise<void>((resolve, reject) => {
      this.tailWaiters.push({ lsn, resolve, reject });
      this.tailTarget = Math.max(this.tailTarget, lsn);
      if (!this.tailPumping) void this.pumpTail();
    });
  }

  /** Writes checkpoints until the tail reached every target asked for; settles the callers. */
  private async pumpTail(): Promise<void> {
    this.tailPumping = true;
    try {
      while (this.tailWaiters.length > 0) {
        const target = this.tailTarget;
        try {
          await this.serialise(() => this.freeThrough(target));
        } catch (error) {
          for (const waiter of this.tailWaiters.splice(0)) waiter.reject(error);
          return;
        }
        const settled = this.tailWaiters.filter((waiter) => waiter.lsn <= this.tailLsn);
        this.tailWaiters = this.tailWaiters.filter((waiter) => waiter.lsn > this.tailLsn);
        for (const waiter of settled) waiter.resolve();
      }
    } finally {
      this.tailPumping = false;
    }
  }

  /** Frees records <= lsn: a durable checkpoint first, then the space (run serialised). */
  private async freeThrough(lsn: number): Promise<void> {
    this.checkWritable(true);
    if (lsn <= this.tailLsn) return;
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
      payloadEncryption: this.sb.encryption === undefined ? "none" : "aes-256-ctr",
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
}
