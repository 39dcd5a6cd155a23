/**
 * Disconnected mode and resync of a client with a change map (DESIGN.md "Disconnected mode").
 *
 *   connected ──(link lost, ack timeout, WRL full)──▶ disconnected ──(link up / retry)──▶ resyncing
 *       ▲                                                   ▲                               │
 *       └──────────────(every dirty block resynced)─────────┴──────(chunk not taken)────────┘
 *
 * Entering disconnected mode diverts every write still waiting for staging: its blocks are
 * marked in the change map (durably) and then it completes locally, as every new write does
 * until a resync pass starts. While resyncing, new writes are logged at staging again (with their
 * epochs), and the pass sends the dirty blocks (resync.ts; #resyncChunk holds each range
 * in the overlap gate so a newer write lands after it). A write that staging does not acknowledge
 * within the ack timeout, a lost link or "WRL full" at any time goes back to disconnected mode.
 *
 * A diverted write may still be logged at staging (its ack came too late): harmless, its blocks
 * are dirty, and the resync sends their current contents after it.
 *
 * Resync sets: chunks travel as `kind: "resync"` records, which carry no write order; the replica
 * holds a device's records from its first resync record to its `resyncEnd` and applies them as a
 * whole. A device's set is open from the first chunk sent for it (or, at start, when the last
 * run may have left it open: options.resyncSetsOpen) until a `resyncEnd` for it was acked, which
 * is sent only when the device has no dirty bit left and every chunk of it was acked. A pass
 * interrupted by a disconnect leaves the set open; the next pass continues it and ends it.
 */
import { bufferPoolPooledBytesMin, clientAckTimeoutMsDefault, clientResyncChunkBytes, clientResyncChunkBytesMin, clientResyncInflightBytesMax, clientResyncRetryMs } from "../../constants.ts";
import { sharedBufferPool } from "../../io/buffer-pool.ts";
import { DruvaaError } from "../../errors.ts";
import type { ConsolaInstance } from "consola/basic";
import type { EpochAssigner } from "../../order/epochs.ts";
import type { WriteMessage } from "../../protocol/messages.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { openDirectReader, pagesAligned } from "./direct-reader.ts";
import { ResyncPass, type ResyncProgress } from "./resync.ts";
import type { ClientCoreOptions, ClientMode, ClientModeStatus, ClientTimers, DeviceState, PendingWrite } from "./types.ts";

/** What the controller needs of the core. */
export interface ModeHost {
  readonly log: ConsolaInstance;
  readonly timers: ClientTimers;
  now(): number;
  /** A staging connection is up and attached. */
  linkUp(): boolean;
  /** The core is shutting down. */
  closed(): boolean;
  /** Writes sent (or queued) and not acknowledged, in send order. */
  pendingWrites(): PendingWrite[];
  /** Removes a write from the pending set (its answer, if any comes, is ignored). */
  forget(entry: PendingWrite): void;
  devices(): DeviceState[];
  /** Holds a range in the core's overlap gate; resolves with its release. */
  lockRange(device: string, offsetBytes: number, lengthBytes: number): Promise<() => void>;
  /** Sends a write to staging (never diverted on the way in); resolves with its LSN or `diverted`. */
  send(state: DeviceState, fields: Pick<WriteMessage, "epoch" | "offset" | "length" | "kind">, payload: Uint8Array | undefined): Promise<number>;
  /** Queues a write without payload on the link now, not tracked (its answer is ignored, it is not resent). */
  sendUntracked(state: DeviceState, fields: Pick<WriteMessage, "epoch" | "offset" | "length" | "kind">): void;
  readonly epochs: EpochAssigner;
}

/** What a write's staging round trip resolves with when it was diverted to the change map. */
export const diverted = 0;

export class ModeController {
  #mode: ClientMode = "connected";
  #disconnectedSince: number | undefined;
  #disconnectReason: string | undefined;
  #resync: ResyncPass | undefined;
  #lastResync: (ResyncProgress & { outcome: string; endedAt: number }) | undefined;
  #cancelAckCheck: (() => void) | undefined;
  #cancelResyncRetry: (() => void) | undefined;
  /** Bytes in flight and longest chunk of the next pass: halved after a pass hit "WRL full". */
  #resyncInflightBytes = clientResyncInflightBytesMax;
  #resyncChunkBytes = clientResyncChunkBytes;
  #wrlFullDuringResync = false;
  /**
   * What staging's WRL holds, as far as known, for the process's life: once it refused a chunk as
   * too large for one record (OUT_OF_RANGE: a tiny WRL), chunks are half that and no more than
   * that is in flight (the whole WRL holds little more), so a retry need not halve its way there.
   */
  #chunkBytesFit = clientResyncChunkBytes;
  #inflightBytesFit = Number.POSITIVE_INFINITY;
  /** The shortest chunk of the running pass refused as too large for the WRL. */
  #refusedChunkBytes: number | undefined;
  /** O_DIRECT readers of the devices for bulk chunks (direct-reader.ts), opened once per pass. */
  readonly #readers = new Map<string, Promise<BlockDevice | undefined>>();
  /** Devices whose resync set may be open at the replica (a resyncEnd is due once they are clean). */
  readonly #openSets: Set<string>;
  readonly #ackTimeoutMs: number;
  readonly #resyncRate: number;
  readonly #onResynced: (() => void) | undefined;

  constructor(options: ClientCoreOptions, private readonly host: ModeHost) {
    this.#ackTimeoutMs = options.ackTimeoutMs ?? clientAckTimeoutMsDefault;
    this.#resyncRate = options.resyncRateBytesPerSecond ?? 0;
    this.#onResynced = options.onResynced;
    this.#openSets = new Set(options.resyncSetsOpen ?? []);
  }

  get mode(): ClientMode {
    return this.#mode;
  }

  /**
   * Staging cannot take writes now: every write waiting for it completes locally once its blocks
   * are durably marked dirty, and so do new ones until a resync pass has sent them all.
   */
  goDisconnected(reason: string, wrlFull = false): void {
    if (wrlFull && this.#resync !== undefined) this.#wrlFullDuringResync = true;
    this.#resync?.stop();
    if (this.#mode !== "disconnected") {
      this.host.log.warn(`disconnected mode: ${reason}; writes complete locally and are marked in the change map until they are resynced`);
      this.#mode = "disconnected";
      this.#disconnectedSince ??= this.host.now();
      this.#disconnectReason = reason;
    }
    for (const entry of this.host.pendingWrites()) this.#divert(entry);
    this.#scheduleResyncRetry();
  }

  #divert(entry: PendingWrite): void {
    this.host.forget(entry);
    const { offset, length, device } = entry.message;
    entry.state.spec.changeMap!.markDirty(offset, length).then(
      () => entry.resolve(diverted),
      (error: unknown) => entry.reject(error instanceof DruvaaError ? error : new DruvaaError("CHANGEMAP_IO", `marking ${device}@${offset}+${length} in the change map failed: ${String(error)}`)),
    );
  }

  /** Watches the oldest unacknowledged write while any is pending. */
  armAckCheck(): void {
    if (this.#cancelAckCheck !== undefined) return;
    this.#cancelAckCheck = this.host.timers.schedule(Math.max(10, this.#ackTimeoutMs / 4), () => {
      this.#cancelAckCheck = undefined;
      const pending = this.host.pendingWrites();
      if (pending.length === 0) return;
      const now = this.host.now();
      let oldest = now;
      for (const entry of pending) if (entry.sentAt !== undefined && entry.sentAt < oldest) oldest = entry.sentAt;
      if (now - oldest >= this.#ackTimeoutMs) this.goDisconnected(`staging did not acknowledge a write within ${this.#ackTimeoutMs} ms`);
      else this.armAckCheck();
    });
  }

  #scheduleResyncRetry(): void {
    if (this.#cancelResyncRetry !== undefined || this.host.closed()) return;
    this.#cancelResyncRetry = this.host.timers.schedule(clientResyncRetryMs, () => {
      this.#cancelResyncRetry = undefined;
      this.maybeResync();
    });
  }

  /** Starts a resync pass when the link is up and something is dirty (or disconnected mode is on). */
  maybeResync(): void {
    if (this.#resync !== undefined || !this.host.linkUp() || this.host.closed()) return;
    const states = this.host.devices();
    if (this.#mode === "connected" && this.#openSets.size === 0 && states.every((state) => state.spec.changeMap!.dirtyBytes === 0)) return;
    // Open each dirty device's resync set before any new write can reach staging (new writes
    // flow once the mode is "resyncing"): the replica holds back everything logged after an open
    // set until it ends, so no write that depends on a block still dirty here is applied alone.
    for (const state of states) if (state.spec.changeMap!.dirtyBytes > 0) this.#openResyncSet(state);
    this.#mode = "resyncing";
    const byName = new Map(states.map((state) => [state.spec.name, state]));
    const pass = (this.#resync = new ResyncPass({
      targets: states.map((state) => ({ device: state.spec.name, region: state.spec.changeMap! })),
      chunk: (device, offset, length) => this.#resyncChunk(byName.get(device)!, offset, length),
      endSet: (device) => this.#endResyncSet(byName.get(device)!),
      timers: this.host.timers,
      now: () => this.host.now(),
      rateLimitBytesPerSecond: this.#resyncRate,
      inflightBytes: Math.min(this.#resyncInflightBytes, this.#inflightBytesFit),
      chunkBytes: Math.min(this.#resyncChunkBytes, this.#chunkBytesFit),
    }));
    this.host.log.info(`resync: sending ${pass.progress.remainingBytes} dirty byte(s) to staging`);
    void pass.run().then(
      (outcome) => this.#resyncEnded(pass, outcome),
      (error: unknown) => {
        this.host.log.error(`resync failed: ${error instanceof Error ? error.message : String(error)}`);
        this.#resyncEnded(pass, "interrupted");
      },
    );
  }

  #resyncEnded(pass: ResyncPass, outcome: "done" | "interrupted"): void {
    this.#resync = undefined;
    // Every chunk of the pass has settled (run() waits for them): nothing reads through these.
    for (const reader of this.#readers.values()) {
      void reader.then((device) => device?.close()).catch((error: unknown) => this.host.log.warn(`closing a resync reader failed: ${error instanceof Error ? error.message : String(error)}`));
    }
    this.#readers.clear();
    const now = this.host.now();
    if (this.#refusedChunkBytes !== undefined) {
      this.#chunkBytesFit = Math.max(clientResyncChunkBytesMin, Math.min(this.#chunkBytesFit, this.#refusedChunkBytes >> 1));
      this.#inflightBytesFit = Math.max(this.#chunkBytesFit, Math.min(this.#inflightBytesFit, this.#refusedChunkBytes));
      this.#refusedChunkBytes = undefined;
    }
    if (this.#wrlFullDuringResync) {
      // The WRL could not hold what this pass had in flight (a small WRL, or a replica behind):
      // the next pass sends half as much at a time, down to one small chunk.
      this.#wrlFullDuringResync = false;
      this.#resyncInflightBytes = Math.max(clientResyncChunkBytesMin, this.#resyncInflightBytes >> 1);
      this.#resyncChunkBytes = Math.min(this.#resyncChunkBytes, this.#resyncInflightBytes);
    } else if (outcome === "done") {
      this.#resyncInflightBytes = clientResyncInflightBytesMax;
      this.#resyncChunkBytes = clientResyncChunkBytes;
    }
    this.#lastResync = { ...pass.progress, outcome, endedAt: now };
    if (outcome === "done" && this.#mode === "resyncing") {
      const seconds = this.#disconnectedSince === undefined ? 0 : (now - this.#disconnectedSince) / 1000;
      this.host.log.info(`resync complete: ${pass.progress.sentBytes} byte(s) sent; connected${seconds > 0 ? ` again after ${seconds.toFixed(1)} s` : ""}`);
      this.#mode = "connected";
      this.#disconnectedSince = undefined;
      this.#disconnectReason = undefined;
      this.#onResynced?.();
      return;
    }
    if (this.#mode === "resyncing") this.#mode = "disconnected";
    this.#disconnectedSince ??= now;
    this.#scheduleResyncRetry();
  }

  /**
   * One resync chunk: the range is held in the overlap gate from the read until staging's ack,
   * so an application write to it is logged after the chunk; the bits are cleared only then.
   * Bulk chunks (at least bufferPoolPooledBytesMin: runs of dirty blocks, the initial sync) are
   * read O_DIRECT where the device allows it (no page-cache copy), into a buffer lent by the
   * process's pool (a fresh one per chunk cost page faults on every 4 KiB), given back once
   * staging acked: it then received the whole frame, so no send queue holds the bytes (a chunk is
   * never sent twice at once: a refused one is sent again only after its refusal came back). A
   * chunk that was not acked keeps its buffer (its frame may still be queued): the GC takes it.
   * Small chunks (a few blocks just written while disconnected) are read through the page cache,
   * where they likely still are.
   */
  async #resyncChunk(state: DeviceState, offset: number, length: number): Promise<boolean> {
    const release = await this.host.lockRange(state.spec.name, offset, length);
    try {
      if (this.#mode !== "resyncing" || !this.host.linkUp()) return false;
      const bulk = length >= bufferPoolPooledBytesMin;
      const direct = bulk && pagesAligned(offset, length) ? await this.#readerFor(state) : undefined;
      const device = direct ?? state.spec.device;
      const pooled = bulk && device.readInto !== undefined;
      const data = pooled ? sharedBufferPool.take(length, 0) : await device.read(offset, length);
      if (pooled) await device.readInto!(offset, data);
      const epoch = this.host.epochs.issue();
      this.#openSets.add(state.spec.name);
      try {
        const lsn = await this.host.send(state, { kind: "resync", epoch, offset, length }, data);
        if (lsn === diverted) return false;
        if (pooled) sharedBufferPool.give(data);
        state.ackedLsn = Math.max(state.ackedLsn, lsn);
        state.spec.changeMap!.clearClean(offset, length);
        return true;
      } finally {
        this.host.epochs.complete();
      }
    } catch (error) {
      this.host.log.warn(`resync of ${state.spec.name}@${offset}+${length} failed: ${error instanceof Error ? error.message : String(error)}`);
      if (error instanceof DruvaaError && error.code === "IO_OUT_OF_RANGE" && length > clientResyncChunkBytesMin) {
        this.#refusedChunkBytes = Math.min(length, this.#refusedChunkBytes ?? length);
      }
      return false;
    } finally {
      release();
    }
  }

  #readerFor(state: DeviceState): Promise<BlockDevice | undefined> {
    const name = state.spec.name;
    let reader = this.#readers.get(name);
    if (reader === undefined) this.#readers.set(name, (reader = openDirectReader(state.spec, this.host.log)));
    return reader;
  }

  /**
   * Queues an empty resync record for the device on the link, ahead of anything sent after it.
   * Not tracked: if it is lost with the link, the next pass sends another; if staging refuses it
   * (WRL full), the pass's chunks are refused too and the pass retries.
   */
  #openResyncSet(state: DeviceState): void {
    this.#openSets.add(state.spec.name);
    this.host.sendUntracked(state, { kind: "resync", epoch: this.host.epochs.current, offset: 0, length: 0 });
  }

  /**
   * Ends the device's resync set, if one is open: a `resyncEnd` write, acked like any write. The
   * pass calls it only once the device is clean and every chunk of it was acked. False (the pass
   * is not done; a later one retries) when it could not be sent or was diverted.
   */
  async #endResyncSet(state: DeviceState): Promise<boolean> {
    const name = state.spec.name;
    if (!this.#openSets.has(name)) return true;
    if (this.#mode !== "resyncing" || !this.host.linkUp()) return false;
    const epoch = this.host.epochs.issue();
    try {
      const lsn = await this.host.send(state, { kind: "resyncEnd", epoch, offset: 0, length: 0 }, undefined);
      if (lsn === diverted) return false;
      state.ackedLsn = Math.max(state.ackedLsn, lsn);
      this.#openSets.delete(name);
      this.host.log.info(`resync set of ${name} complete at LSN ${lsn}`);
      return true;
    } catch (error) {
      this.host.log.warn(`ending the resync set of ${name} failed: ${error instanceof Error ? error.message : String(error)}`);
      return false;
    } finally {
      this.host.epochs.complete();
    }
  }

  /** Devices whose resync set may be open at the replica (for status, and saved at shutdown). */
  get openResyncSets(): string[] {
    return [...this.#openSets];
  }

  /** Shutdown: no more passes or retries. */
  stop(): void {
    this.#resync?.stop();
    this.#cancelResyncRetry?.();
    this.#cancelResyncRetry = undefined;
    this.#cancelAckCheck?.();
    this.#cancelAckCheck = undefined;
  }

  status(): ClientModeStatus {
    const now = this.host.now();
    const progress = this.#resync?.progress;
    const last = this.#lastResync;
    return {
      mode: this.#mode,
      changeMap: true,
      disconnectedSeconds: this.#disconnectedSince === undefined ? 0 : (now - this.#disconnectedSince) / 1000,
      disconnectReason: this.#disconnectReason ?? null,
      dirtyBytes: this.host.devices().reduce((sum, state) => sum + state.spec.changeMap!.dirtyBytes, 0),
      resyncSetsOpen: this.openResyncSets,
      resync: progress === undefined ? null : { sentBytes: progress.sentBytes, remainingBytes: progress.remainingBytes, seconds: (now - progress.startedAt) / 1000 },
      lastResync: last === undefined ? null : { outcome: last.outcome, sentBytes: last.sentBytes, seconds: (last.endedAt - last.startedAt) / 1000 },
    };
  }
}
