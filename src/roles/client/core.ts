/**
 * ClientCore: the client's write path, with no sockets of its own. Devices, the link to staging
 * and the clock are passed in, so the same code runs under `druvaa client attach` (real NBD
 * server, real staging connection) and in an in-process simulation.
 *
 * Every write of an NBD client (DESIGN.md "Partial write order", docs/pipeline.md):
 *   in-flight slot (bounded) → overlap gate on the device range → epoch = issue()
 *   → `write` (+ payload) to staging, in pieces of at most writePayloadSizeBytesMax
 *   → every piece acked (durable in the WRL) → write the primary device (flush too for FUA)
 *   → epochs.complete() → gate released → the NBD reply goes out.
 * Issue and send happen in the same tick, so writes reach staging in issue order; a write that
 * depends on another (issued after the other completed) is sent after the other was acked, so
 * the WRL order is a linear extension of "depends on".
 *
 * TRIM and WRITE_ZEROES go the same way as `write {zero: true}` without payload (pieces of at most
 * zeroRecordBytesMax), then the local range is zeroed: discard where the device reads zeros after
 * it (image files), written zeros elsewhere, so primary and replica hold the same bytes.
 *
 * Staging's answer to a piece (writeNack decision table):
 *   WRL_FULL                     -> with a change map: disconnected mode (modes.ts); without,
 *                                   EIO, logged once per episode
 *   OUT_OF_RANGE                 -> EINVAL (IO_OUT_OF_RANGE)
 *   BUSY, SHUTTING_DOWN          -> sent again after clientBusyRetryDelayMs (or on reconnect)
 *   IO_ERROR                     -> the same, never failed: the WRL failed with the record maybe
 *                                   written, and recovery after staging's restart may keep it
 *   WRL_FULL to a write sent on  -> the same, never failed: an earlier copy may be in the WRL
 *     an earlier connection         (its ack was lost with the connection)
 *   anything else                -> EIO with staging's message
 * (Failing a write that may be in the WRL, without writing it locally, would leave the replica
 * with bytes the primary never gets. Found by the simulation, tests/sim/.)
 * A refused piece is never written locally. Pieces of the same request that staging did ack are
 * (they are in the WRL and will reach the replica; the primary must not lack them).
 *
 * Link loss: every write sent and not acked stays pending, in reqId (= send) order; linkUp()
 * sends them all again in that order before anything newer. A write logged twice is harmless:
 * its range was held in the overlap gate the whole time, so nothing overlapping was issued.
 *
 * Not guaranteed: that the primary and the WRL agree after a local device error (staging acked,
 * the local pwrite failed): the NBD client gets EIO and the error is logged. Without a change
 * map there is no ack timeout: a staging that keeps the connection but never answers holds the
 * writes (and the NBD clients) until the connection drops. With one (--changemap), a lost link,
 * an ack timeout or "WRL full" switches to disconnected mode, and a resync follows (modes.ts).
 */
import type { ConsolaInstance } from "consola/basic";
import { assert } from "../../assert.ts";
import { clientBusyRetryDelayMs, clientInflightBytesMax, clientInflightWritesMax, writePayloadSizeBytesMax, zeroRecordBytesMax } from "../../constants.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import { logger } from "../../log.ts";
import type { NbdExport } from "../../nbd/backend.ts";
import { EpochAssigner } from "../../order/epochs.ts";
import { OverlapGate } from "../../order/overlap.ts";
import type { WriteMessage } from "../../protocol/messages.ts";
import { InflightLimit } from "./inflight-limit.ts";
import { diverted, ModeController } from "./modes.ts";
import { realTimers, type ClientCoreOptions, type ClientDevice, type ClientDeviceStatus, type ClientMode, type ClientModeStatus, type ClientTimers, type DeviceState, type PendingWrite, type StagingSender, type WriteReply } from "./types.ts";
import { deviceStatusOf, nackError, split, zeroLocal } from "./write-helpers.ts";
import { markActiveExtentsDirty } from "./crash-recovery.ts";
import type { ActiveRange } from "../../changemap/activity-log.ts";

export { realTimers, type ClientCoreOptions, type ClientDevice, type ClientDeviceStatus, type ClientMode, type ClientModeStatus, type ClientTimers, type StagingSender, type WriteReply } from "./types.ts";

export class ClientCore {
  readonly epochs: EpochAssigner;
  readonly #gate = new OverlapGate();
  readonly #limit: InflightLimit;
  readonly #devices = new Map<string, DeviceState>();
  readonly #pending = new Map<number, PendingWrite>();
  readonly #timers: ClientTimers;
  readonly #log: ConsolaInstance;
  #sender: StagingSender | undefined;
  #nextReqId = 1;
  #inflight = 0;
  #idleWaiters: (() => void)[] = [];
  #closedReason: DruvaaError | undefined;
  /** WRLs staging reported full and has not acked a write of since (log once per episode). */
  readonly #fullWrls = new Set<string>();
  /** With a change map on every device: disconnected mode instead of waiting or failing. */
  readonly #modes: ModeController | undefined;
  readonly #recoverActiveExtents: NonNullable<ClientCoreOptions["recoverActiveExtents"]>;

  constructor(options: ClientCoreOptions) {
    assert(options.devices.length > 0, "a client serves at least one device");
    for (const spec of options.devices) {
      assert(!this.#devices.has(spec.name), "device names are unique");
      this.#devices.set(spec.name, { spec, ackedLsn: 0, writes: 0, bytesWritten: 0, zeroedBytes: 0, inflightWrites: 0, failedWrites: 0 });
    }
    this.epochs = new EpochAssigner(options.startEpoch ?? 1);
    this.#timers = options.timers ?? realTimers;
    this.#log = options.log ?? logger("client");
    this.#limit = new InflightLimit(options.inflightWritesMax ?? clientInflightWritesMax, options.inflightBytesMax ?? clientInflightBytesMax);
    this.#recoverActiveExtents = options.recoverActiveExtents ?? markActiveExtentsDirty;
    const tracked = options.devices.filter((spec) => spec.changeMap !== undefined).length;
    assert(tracked === 0 || tracked === options.devices.length, "a change map covers every device or none");
    if (tracked > 0) {
      this.#modes = new ModeController(options, {
        log: this.#log,
        timers: this.#timers,
        now: () => this.#now(),
        linkUp: () => this.#sender !== undefined,
        closed: () => this.#closedReason !== undefined,
        pendingWrites: () => [...this.#pending.values()],
        forget: (entry) => void (this.#pending.delete(entry.message.reqId), entry.cancelRetry?.(), delete entry.cancelRetry),
        devices: () => [...this.#devices.values()],
        lockRange: (name, offset, length) => this.#gate.acquire(name, offset, length),
        send: (state, fields, payload) => this.#sendToStaging(state, fields, payload),
        sendUntracked: (state, fields) => this.#sender?.send({ type: "write", reqId: this.#nextReqId++, device: state.spec.name, wrl: state.spec.wrl, ...fields }, undefined),
        epochs: this.epochs,
      });
    }
  }

  readonly #now = (): number => this.#timers.now?.() ?? Date.now();
  /** Verify probes (verify.ts): the overlap gate, and request ids from the writes' own sequence. */
  readonly verifyAccess = { lockRange: (device: string, offset: number, length: number) => this.#gate.acquire(device, offset, length), takeReqId: () => this.#nextReqId++ };

  // ---- NBD side -------------------------------------------------------------------------------

  /** The NBD export of each device, in the order given. */
  exports(): NbdExport[] {
    return [...this.#devices.values()].map((state) => this.#exportOf(state));
  }

  #exportOf(state: DeviceState): NbdExport {
    const { spec } = state;
    const device = spec.device;
    return {
      name: spec.name,
      description: `druvaa ${spec.name} (${spec.path}) replicated through WRL ${spec.wrl}`,
      sizeBytes: device.sizeBytes,
      logicalBlockSizeBytes: device.logicalBlockSizeBytes,
      readOnly: false,
      // Every connection shares the one device and flush() flushes it: a flush on one connection
      // covers writes completed on all of them.
      canMultiConn: true,
      read: (offset, length) => device.read(offset, length),
      write: (offset, data, fua) => this.#dataWrite(state, offset, data, fua),
      // Every acked write is already durable in staging's WRL; only the primary needs the flush.
      flush: () => device.flush(),
      trim: (offset, length) => this.#zeroWrite(state, offset, length, false, true),
      writeZeroes: (offset, length, fua, noHole) => this.#zeroWrite(state, offset, length, fua, !noHole),
    };
  }

  /**
   * The NBD payload is not copied: the NBD layer lends it until our promise settles (backend.ts),
   * and we settle only after every piece was acked or refused and removed from #pending, so no
   * resend can touch it later. Bun never reuses received chunks, so the bytes do not change
   * while a frame holding them waits in the connection's send queue.
   */
  async #dataWrite(state: DeviceState, offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    const device = state.spec.device;
    await this.#run(state, offset, data.length, data.length, async (epoch) => {
      const pieces = split(offset, data.length, writePayloadSizeBytesMax);
      const sent = pieces.map(([at, length]) => this.#submit(state, { epoch, offset: at, length, ...(fua ? { fua } : {}) }, data.subarray(at - offset, at - offset + length)));
      const settled = await Promise.allSettled(sent);
      const refused = settled.find((result) => result.status === "rejected");
      if (refused === undefined) {
        await device.write(offset, data);
      } else {
        for (const [index, [at, length]] of pieces.entries()) {
          if (settled[index]!.status === "fulfilled") await device.write(at, data.subarray(at - offset, at - offset + length));
        }
        throw refused.reason;
      }
      if (fua) await device.flush();
      state.bytesWritten += data.length;
    });
  }

  async #zeroWrite(state: DeviceState, offset: number, length: number, fua: boolean, mayDiscard: boolean): Promise<void> {
    await this.#run(state, offset, length, 0, async (epoch) => {
      const pieces = split(offset, length, zeroRecordBytesMax);
      const sent = pieces.map(([at, pieceLength]) => this.#submit(state, { epoch, offset: at, length: pieceLength, zero: true, ...(fua ? { fua } : {}) }, undefined));
      const settled = await Promise.allSettled(sent);
      for (const [index, [at, pieceLength]] of pieces.entries()) {
        if (settled[index]!.status === "fulfilled") await zeroLocal(state.spec, at, pieceLength, mayDiscard);
      }
      const refused = settled.find((result) => result.status === "rejected");
      if (refused !== undefined) throw refused.reason;
      if (fua) await state.spec.device.flush();
      state.zeroedBytes += length;
    });
  }

  /** Admission, overlap gate and epoch around one NBD write request; `body` sends and applies it. */
  async #run(state: DeviceState, offset: number, length: number, heldBytes: number, body: (epoch: number) => Promise<void>): Promise<void> {
    this.#checkOpen();
    const releaseSlot = await this.#limit.acquire(heldBytes);
    this.#inflight += 1;
    state.inflightWrites += 1;
    try {
      const releaseRange = await this.#gate.acquire(state.spec.name, offset, length);
      try {
        this.#checkOpen();
        await body(this.epochs.issue());
        state.writes += 1;
      } finally {
        // Also after a failure: the application saw this request end, so what it issues next may
        // depend on it. An extra epoch bump is always safe (epochs over-approximate the order).
        this.epochs.complete();
        releaseRange();
      }
    } catch (error) {
      state.failedWrites += 1;
      throw error;
    } finally {
      state.inflightWrites -= 1;
      this.#inflight -= 1;
      releaseSlot();
      if (this.#inflight === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
    }
  }

  /**
   * The staging round trip of one piece: resolves with its LSN once logged, or with `diverted`
   * (0) once its blocks are durably marked in the change map instead (disconnected mode); either
   * way the caller then writes it locally.
   */
  #submit(state: DeviceState, fields: Pick<WriteMessage, "epoch" | "offset" | "length" | "fua" | "zero">, payload: Uint8Array | undefined): Promise<number> {
    if (this.#modes !== undefined && (this.#modes.mode === "disconnected" || this.#sender === undefined)) {
      if (this.#modes.mode !== "disconnected") this.#modes.goDisconnected("staging is not connected");
      return state.spec.changeMap!.markDirty(fields.offset, fields.length).then(() => diverted);
    }
    return this.#sendToStaging(state, fields, payload);
  }

  #sendToStaging(state: DeviceState, fields: Pick<WriteMessage, "epoch" | "offset" | "length" | "fua" | "zero" | "kind">, payload: Uint8Array | undefined): Promise<number> {
    const message: WriteMessage = { type: "write", reqId: this.#nextReqId, device: state.spec.name, wrl: state.spec.wrl, ...fields };
    this.#nextReqId += 1;
    return new Promise<number>((resolve, reject) => {
      const entry: PendingWrite = { message, payload, state, resolve, reject };
      this.#pending.set(message.reqId, entry);
      this.#send(entry);
    });
  }

  #send(entry: PendingWrite): void {
    if (this.#sender === undefined) return;
    entry.sent = true;
    entry.sentAt = this.#now();
    this.#sender.send(entry.message, entry.payload);
    this.#modes?.armAckCheck();
  }

  #checkOpen(): void {
    if (this.#closedReason !== undefined) throw this.#closedReason;
  }

  // ---- staging side ---------------------------------------------------------------------------

  /** True while a staging connection is up and attached. */
  get connected(): boolean {
    return this.#sender !== undefined;
  }

  /** Staging connected and attached every device: resend everything unacked, in send order. */
  linkUp(sender: StagingSender): void {
    this.#sender = sender;
    if (this.#modes !== undefined) this.#log.info("staging link up");
    if (this.#pending.size > 0) this.#log.info(`staging link up: sending ${this.#pending.size} unacknowledged write(s) again`);
    for (const entry of this.#pending.values()) {
      entry.cancelRetry?.();
      delete entry.cancelRetry;
      this.#send(entry);
    }
    this.#modes?.maybeResync();
  }

  /**
   * The staging connection is gone: writes stay pending (and new ones queue) until linkUp; with a
   * change map they are diverted to it at once (disconnected mode).
   */
  linkDown(): void {
    this.#sender = undefined;
    for (const entry of this.#pending.values()) {
      if (entry.sent === true) entry.mayBeLogged = true;
      entry.cancelRetry?.();
      delete entry.cancelRetry;
    }
    this.#modes?.goDisconnected("the staging connection was lost");
  }

  /** A writeAck or writeNack from staging. */
  handleReply(reply: WriteReply): void {
    const entry = this.#pending.get(reply.reqId);
    if (entry === undefined) {
      // Not ours (any more): diverted to the change map (its ack came late), failed at shutdown,
      // or staging answered twice.
      this.#log.debug(`staging answered request ${reply.reqId}, which is not pending; ignored`);
      return;
    }
    const { message, state } = entry;
    if (reply.type === "writeAck") {
      this.#pending.delete(reply.reqId);
      state.ackedLsn = Math.max(state.ackedLsn, reply.lsn);
      if (this.#fullWrls.delete(message.wrl)) this.#log.info(`WRL ${message.wrl} accepts writes again`);
      entry.resolve(reply.lsn);
      return;
    }
    if (reply.code === "WRL_FULL" && this.#modes !== undefined) {
      // Disconnected mode: the write completes locally with its blocks marked (so do the others).
      this.#modes.goDisconnected(`staging's WRL ${message.wrl} is full`, true);
      return;
    }
    // Answers that leave it open whether the WRL holds the write: it must not fail (table above).
    const mayBeInWrl = reply.code === "IO_ERROR" || (reply.code === "WRL_FULL" && entry.mayBeLogged === true);
    if (reply.code === "BUSY" || reply.code === "SHUTTING_DOWN" || mayBeInWrl) {
      // Transient: staging will take it later (or after the reconnect a shutdown leads to).
      this.#log.debug(`staging answered ${reply.code} to write ${reply.reqId}; sending it again in ${clientBusyRetryDelayMs} ms`);
      entry.cancelRetry?.();
      entry.cancelRetry = this.#timers.schedule(clientBusyRetryDelayMs, () => {
        delete entry.cancelRetry;
        if (this.#pending.get(reply.reqId) === entry) this.#send(entry);
      });
      return;
    }
    this.#pending.delete(reply.reqId);
    if (reply.code === "WRL_FULL" && !this.#fullWrls.has(message.wrl)) {
      this.#fullWrls.add(message.wrl);
      this.#log.error(`staging's WRL ${message.wrl} is full: writes to ${message.device} fail with EIO until the replica catches up (disconnected mode with a change map is not implemented yet)`);
    }
    entry.reject(nackError(reply, message));
  }

  // ---- disconnected mode and resync (with a change map: modes.ts) -----------------------------
  get mode(): ClientMode {
    return this.#modes?.mode ?? "connected";
  }
  /** Starts a resync pass now if one is due (druvaa resync); what the client is doing. */
  requestResync(): ClientModeStatus {
    this.#modes?.maybeResync();
    return this.modeStatus();
  }
  modeStatus(): ClientModeStatus {
    return this.#modes?.status() ?? { mode: "connected", changeMap: false, disconnectedSeconds: 0, disconnectReason: null, dirtyBytes: null, resync: null, lastResync: null, resyncSetsOpen: [] };
  }
  // ---- lifecycle and status -------------------------------------------------------------------

  /** NBD write requests being executed (all devices). */
  get inflightWrites(): number {
    return this.#inflight;
  }

  /** Staging writes sent (or queued for sending) and not yet acked. */
  get unackedWrites(): number {
    return this.#pending.size;
  }

  /** Resolves once no write request is in flight (at once if none is). */
  idle(): Promise<void> {
    if (this.#inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Refuses new writes with `reason` and fails every unacked one (shutdown after the wait for
   * in-flight writes ran out). The NBD clients get error replies; nothing is written locally.
   */
  abort(reason: DruvaaError = new DruvaaError("SHUTTING_DOWN", "the client is shutting down", undefined, exitCodes.failure)): void {
    this.#closedReason ??= reason;
    this.#modes?.stop();
    const entries = [...this.#pending.values()];
    this.#pending.clear();
    for (const entry of entries) {
      entry.cancelRetry?.();
      entry.reject(reason);
    }
  }

  /** Refuses new writes (shutdown begins); in-flight ones go on. */
  refuseNewWrites(reason: DruvaaError = new DruvaaError("SHUTTING_DOWN", "the client is shutting down", undefined, exitCodes.failure)): void {
    this.#closedReason ??= reason;
    this.#modes?.stop();
  }

  /** Flushes every device (shutdown, and FLUSH of every export). */
  async flushAll(): Promise<void> {
    await Promise.all([...this.#devices.values()].map((state) => state.spec.device.flush()));
  }

  /** The highest epoch handed out so far (persisted so a restart starts above it). */
  get epochHigh(): number {
    return this.epochs.current;
  }

  deviceStatus(): ClientDeviceStatus[] {
    return [...this.#devices.values()].map(deviceStatusOf);
  }

  /**
   * After a crash, when checksum-first recovery cannot verify the active extents (crash-recovery.ts):
   * repairs them (default: marks them dirty, durably, so the resync sends them whole).
   */
  recoverActiveExtents(ranges: readonly ActiveRange[]): Promise<void> {
    return this.#recoverActiveExtents(ranges, [...this.#devices.values()].map((state) => state.spec));
  }
}
