/**
 * ReplicaCore: the replica's logic without sockets. Devices, the state store and the clock come
 * from outside, so the same code runs in `druvaa replica apply` and in an in-process simulation.
 *
 * Shipments and restores take turns on one FIFO lock: one group of shipments applies at a time
 * (the shipments waiting when it starts and while its writes run, see #applyQueued: one flush and
 * one state save for the group, then each shipment is acked), and a restore runs between two
 * groups (a consistent point: the device then holds exactly the records up to appliedLsn, a
 * prefix of the WRL order). Shipments waiting for the lock are
 * bounded (replicaShipQueueMax / replicaShipQueueBytesMax); past that they are refused with BUSY
 * and the relay sends them again.
 *
 * A shipment, decision table (checked in this order; nothing is written unless the last row):
 *
 *   condition                                              answer
 *   replica stopping                                       shipNack SHUTTING_DOWN
 *   queue full                                             shipNack BUSY
 *   WRL name applied before under another uuid             shipNack WRL_MISMATCH (re-created WRL)
 *   firstLsn > appliedLsn + 1                              shipNack LSN_GAP
 *   lastLsn <= appliedLsn                                  shipAck appliedLsn (re-delivery)
 *   device unknown / declared bigger / record outside      shipNack DEVICE_UNKNOWN /
 *                                                            DEVICE_TOO_SMALL / OUT_OF_RANGE
 *   write or flush fails                                   shipNack IO_ERROR (device marked
 *                                                            inconsistent until re-delivered)
 *   state file cannot be saved                             shipNack IO_ERROR
 *   otherwise: records > appliedLsn written, devices       shipAck lastLsn
 *     flushed, appliedLsn = lastLsn persisted
 *
 * Not guaranteed: consistency of the device while a shipment is being applied, or after a crash
 * in the middle of one (no replica WRL yet, issue 4): the state file still says the previous
 * appliedLsn, and staging re-delivers from there, which restores consistency.
 */
import { assert } from "../../assert.ts";
import { protocolTextLengthMax, replicaApplyGroupBytesMax, replicaApplyGroupShipmentsMax, replicaShipQueueBytesMax, replicaShipQueueMax } from "../../constants.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import { logger } from "../../log.ts";
import type { ResumeAckMessage, ResumeMessage, ShipMessage, ShipNackMessage } from "../../protocol/messages.ts";
import { applyWrites, planShipment, type PlannedWrite, type ReplicaDevice } from "./apply.ts";
import { describe, failGroup, nack, nextState, type GroupMember, type InconsistentDevices, type QueuedShipment, type ShipReply } from "./apply-group.ts";
import { shuttingDown, streamRestore, type RestoreResult, type RestoreSend } from "./restore-stream.ts";
import { emptyReplicaState, type ReplicaState, type ReplicaStateStore, type WrlState } from "./state.ts";

export type { ReplicaDevice } from "./apply.ts";
export type { ShipReply } from "./apply-group.ts";
export type { RestoreMessage, RestoreResult, RestoreSend } from "./restore-stream.ts";

const log = logger("replica:apply");

export interface ReplicaCoreOptions {
  devices: readonly ReplicaDevice[];
  store: ReplicaStateStore;
  /** Milliseconds since the epoch (for lastAppliedAt); Date.now unless a simulation gives one. */
  now?: () => number;
}

export interface ReplicaCoreStatus {
  devices: { name: string; path: string; sizeBytes: number; declaredSizeBytes: number | null; consistent: boolean }[];
  wrls: { name: string; uuid: string; appliedLsn: number; lastAppliedAt: string | null }[];
  applying: boolean;
  restores: number;
  queuedShipments: number;
}

export class ReplicaCore {
  readonly #devices: ReadonlyMap<string, ReplicaDevice>;
  readonly #store: ReplicaStateStore;
  readonly #now: () => number;
  /** Committed state: what the store holds. Replaced, never mutated, after a successful save. */
  #state: ReplicaState;
  /** WRLs seen by resume or ship but not applied yet (shown in status; persisted once applied). */
  readonly #seen = new Map<string, WrlState>();
  /** Devices a failed apply may have left half-written, until their WRL passes `untilLsn`. */
  readonly #inconsistent: InconsistentDevices = new Map();
  #lockTail: Promise<void> = Promise.resolve();
  /** Shipments waiting for the lock, in arrival order. */
  readonly #shipQueue: QueuedShipment[] = [];
  #queuedShipments = 0;
  #queuedBytes = 0;
  #applying = false;
  #restores = 0;
  #stopping = false;

  private constructor(options: ReplicaCoreOptions, state: ReplicaState) {
    const devices = new Map<string, ReplicaDevice>();
    for (const device of options.devices) {
      assert(!devices.has(device.name), `device ${device.name} given twice (the CLI refuses that)`);
      devices.set(device.name, device);
    }
    this.#devices = devices;
    this.#store = options.store;
    this.#now = options.now ?? Date.now;
    this.#state = state;
  }

  /** Loads the persisted state (none yet: every WRL at appliedLsn 0). */
  static async open(options: ReplicaCoreOptions): Promise<ReplicaCore> {
    const state = (await options.store.load()) ?? emptyReplicaState();
    return new ReplicaCore(options, state);
  }

  get applying(): boolean {
    return this.#applying;
  }

  get queuedShipments(): number {
    return this.#queuedShipments;
  }

  /** The last LSN applied and persisted for the WRL with this uuid (0: none). */
  appliedLsn(wrlUuid: string): number {
    return this.#state.wrls.find((wrl) => wrl.uuid === wrlUuid)?.appliedLsn ?? 0;
  }

  /** Answers a relay's resume: where this replica is with that WRL, and its devices. */
  resume(message: ResumeMessage): ResumeAckMessage | ShipNackMessage {
    const mismatch = this.#checkWrl(message.wrl, message.wrlUuid);
    if (mismatch !== undefined) return mismatch;
    if (!this.#state.wrls.some((wrl) => wrl.uuid === message.wrlUuid) && !this.#seen.has(message.wrlUuid)) {
      this.#seen.set(message.wrlUuid, { name: message.wrl, uuid: message.wrlUuid, appliedLsn: 0, lastAppliedAt: null });
    }
    return {
      type: "resumeAck",
      wrl: message.wrl,
      wrlUuid: message.wrlUuid,
      appliedLsn: this.appliedLsn(message.wrlUuid),
      devices: [...this.#devices.values()].map((entry) => ({ name: entry.name, sizeBytes: entry.device.sizeBytes })),
    };
  }

  /** Applies a shipment (see the decision table above); resolves with the answer for the relay. */
  ship(message: ShipMessage, payload: Uint8Array): Promise<ShipReply> {
    if (this.#stopping) return Promise.resolve(nack(message, "SHUTTING_DOWN", "the replica is shutting down; send it again after the restart"));
    if (this.#queuedShipments >= replicaShipQueueMax || this.#queuedBytes + payload.length > replicaShipQueueBytesMax) {
      return Promise.resolve(nack(message, "BUSY", `the replica has ${this.#queuedShipments} shipments (${this.#queuedBytes} bytes) waiting; send it again later`));
    }
    this.#queuedShipments += 1;
    this.#queuedBytes += payload.length;
    return new Promise<ShipReply>((resolve, reject) => {
      this.#shipQueue.push({ message, payload, resolve, reject });
      // One turn of the lock per shipment, so a restore asked for in between keeps its place; a
      // turn finds its shipment already applied when an earlier group took it along.
      void this.#exclusive(() => this.#applyQueued());
    });
  }

  /**
   * Streams a device to `send` at a consistent point: waits for the shipment being applied to
   * finish, holds apply until the last chunk is sent (or `send` throws: the restorer is gone),
   * then lets apply resume. The image is the size the client declared for the device, if a
   * shipment ever said, else the replica device's size. Throws DEVICE_UNKNOWN,
   * REPLICA_INCONSISTENT (a failed apply left the device half-written) or SHUTTING_DOWN.
   */
  async restore(deviceName: string, send: RestoreSend): Promise<RestoreResult> {
    const target = this.#devices.get(deviceName);
    if (target === undefined) {
      throw new DruvaaError("DEVICE_UNKNOWN", `the replica has no device ${deviceName}`, `Devices on this replica: ${[...this.#devices.keys()].join(", ") || "none"}`, exitCodes.notFound);
    }
    if (this.#stopping) throw shuttingDown();
    this.#restores += 1;
    try {
      return await this.#exclusive(() => this.#stream(target, send));
    } finally {
      this.#restores -= 1;
    }
  }

  status(): ReplicaCoreStatus {
    const declared = new Map(this.#state.devices.map((device) => [device.name, device.declaredSizeBytes]));
    return {
      devices: [...this.#devices.values()].map((entry) => ({
        name: entry.name,
        path: entry.path ?? entry.device.name,
        sizeBytes: entry.device.sizeBytes,
        declaredSizeBytes: declared.get(entry.name) ?? null,
        consistent: !this.#inconsistent.has(entry.name),
      })),
      wrls: [...this.#state.wrls, ...this.#seen.values()].map((wrl) => ({ ...wrl })),
      applying: this.#applying,
      restores: this.#restores,
      queuedShipments: this.#queuedShipments,
    };
  }

  /** Lets the shipment being applied finish, refuses the queued ones (SHUTTING_DOWN), ends restores. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#exclusive(async () => undefined);
  }

  // ---- internals ----

  /** Runs `task` alone, after everything that asked before it (FIFO). */
  async #exclusive<T>(task: () => Promise<T>): Promise<T> {
    const previous = this.#lockTail;
    let release!: () => void;
    this.#lockTail = new Promise<void>((resolve) => (release = resolve));
    await previous;
    try {
      return await task();
    } finally {
      release();
    }
  }

  #checkWrl(name: string, uuid: string, state: ReplicaState = this.#state): ShipNackMessage | undefined {
    const other = state.wrls.find((wrl) => wrl.name === name && wrl.uuid !== uuid && wrl.appliedLsn > 0);
    if (other !== undefined) {
      return {
        type: "shipNack",
        wrl: name,
        code: "WRL_MISMATCH",
        message: (
          `WRL ${name} now has uuid ${uuid}, but this replica applied WRL ${name} (uuid ${other.uuid}) up to LSN ${other.appliedLsn}: ` +
          `the WRL was re-created, and its records cannot be applied over the old history. The replica needs an initial sync; to start it afresh, stop it and remove ${this.#store.where}`
        ).slice(0, protocolTextLengthMax),
      };
    }
    // A WRL only seen (never applied) under another uuid is simply forgotten.
    for (const [seenUuid, seen] of this.#seen) if (seen.name === name && seenUuid !== uuid) this.#seen.delete(seenUuid);
    return undefined;
  }

  #take(): QueuedShipment | undefined {
    const entry = this.#shipQueue.shift();
    if (entry !== undefined) {
      this.#queuedShipments -= 1;
      this.#queuedBytes -= entry.payload.length;
    }
    return entry;
  }

  /**
   * Applies queued shipments as one group (holding the lock): the first one queued, then, each
   * time the writes issued so far have completed, every shipment that arrived meanwhile — until
   * none is waiting, the replica is stopping, a restore is waiting for its turn, or the group
   * reaches replicaApplyGroupBytesMax / replicaApplyGroupShipmentsMax. Then ONE flush of the devices written
   * and ONE save of the state (appliedLsn = the last shipment's lastLsn per WRL), and only then
   * every shipment of the group is answered, in order. Each shipment is checked against the state
   * the group has reached (same decision table as one at a time); a refused one ends the group
   * (it is answered after the group's acks), the ones taken after it go back to the queue.
   * The group's end is a consistent point like a single shipment's: the devices then hold the
   * records up to appliedLsn of every WRL. A failed write, flush or save answers every shipment
   * of the group IO_ERROR (nothing of it is acknowledged; staging re-delivers from the saved LSN).
   */
  async #applyQueued(): Promise<void> {
    const first = this.#take();
    if (first === undefined) return;
    if (this.#stopping) return first.resolve(nack(first.message, "SHUTTING_DOWN", "the replica is shutting down; send it again after the restart"));
    this.#applying = true;
    const members: GroupMember[] = [];
    /** Every shipment taken from the queue and not put back. */
    const taken = new Set<QueuedShipment>([first]);
    let state = this.#state;
    let groupBytes = 0;
    let ended = false;
    const touched = new Set<ReplicaDevice>();
    try {
      for (let batch: QueuedShipment[] = [first]; batch.length > 0 && !ended; ) {
        const plans: PlannedWrite[] = [];
        for (const [index, entry] of batch.entries()) {
          const outcome = this.#prepare(entry.message, entry.payload, state);
          if (Array.isArray(outcome)) {
            const planned = new Set(outcome.map((write) => write.target.name));
            members.push({ entry, planned, applied: true, reply: { type: "shipAck", wrl: entry.message.wrl, appliedLsn: entry.message.lastLsn } });
            for (const write of outcome) plans.push(write);
            state = nextState(state, entry.message, planned, this.#now());
          } else {
            members.push({ entry, planned: new Set(), applied: false, reply: outcome });
            if (outcome.type === "shipNack") {
              log.warn(`WRL ${entry.message.wrl}: refused LSN ${entry.message.firstLsn}..${entry.message.lastLsn}: ${outcome.code}: ${outcome.message}`);
              const rest = batch.slice(index + 1);
              for (const other of rest) taken.delete(other);
              this.#putBack(rest);
              ended = true;
              break;
            }
          }
          groupBytes += entry.payload.length;
        }
        if (plans.length > 0) {
          try {
            for (const device of await applyWrites(plans)) touched.add(device);
          } catch (error) {
            return failGroup(members, `applying failed: ${describe(error)}`, this.#inconsistent);
          }
        }
        batch = [];
        while (!ended && !this.#stopping && this.#restores === 0 && groupBytes < replicaApplyGroupBytesMax && members.length + batch.length < replicaApplyGroupShipmentsMax) {
          const next = this.#take();
          if (next === undefined) break;
          batch.push(next);
          taken.add(next);
        }
      }
      if (state !== this.#state) {
        try {
          await Promise.all([...touched].map((entry) => entry.device.flush()));
        } catch (error) {
          return failGroup(members, `applying failed: ${describe(error)}`, this.#inconsistent);
        }
        try {
          await this.#store.save(state);
        } catch (error) {
          return failGroup(members, `applied but could not save ${this.#store.where}: ${describe(error)}`, this.#inconsistent);
        }
        this.#state = state;
      }
      for (const { entry, applied } of members) {
        if (!applied) continue;
        const ship = entry.message;
        this.#seen.delete(ship.wrlUuid);
        for (const [name, mark] of this.#inconsistent) if (mark.wrlUuid === ship.wrlUuid && ship.lastLsn >= mark.untilLsn) this.#inconsistent.delete(name);
      }
      for (const { entry, reply } of members) entry.resolve(reply);
    } catch (error) {
      // A bug: every shipment taken learns it (the server then closes the relay's connection).
      log.error(`applying shipments failed unexpectedly: ${describe(error)}`);
      for (const entry of taken) entry.reject(error);
    } finally {
      this.#applying = false;
    }
  }

  /** Shipments taken for a group that ended early wait again, at the front, in their order. */
  #putBack(entries: readonly QueuedShipment[]): void {
    for (const entry of entries) {
      this.#queuedShipments += 1;
      this.#queuedBytes += entry.payload.length;
    }
    this.#shipQueue.unshift(...entries);
  }

  /** One shipment against the state reached so far: its writes, or the answer it gets without any. */
  #prepare(ship: ShipMessage, payload: Uint8Array, state: ReplicaState): PlannedWrite[] | ShipReply {
    const mismatch = this.#checkWrl(ship.wrl, ship.wrlUuid, state);
    if (mismatch !== undefined) return mismatch;
    const appliedLsn = state.wrls.find((wrl) => wrl.uuid === ship.wrlUuid)?.appliedLsn ?? 0;
    if (ship.firstLsn > appliedLsn + 1) {
      return nack(ship, "LSN_GAP", `the shipment starts at LSN ${ship.firstLsn}, but the replica applied WRL ${ship.wrl} only up to LSN ${appliedLsn}: records ${appliedLsn + 1}..${ship.firstLsn - 1} are missing (nothing was applied); resume from ${appliedLsn + 1}`);
    }
    if (ship.lastLsn <= appliedLsn) return { type: "shipAck", wrl: ship.wrl, appliedLsn };
    const plan = planShipment(ship, payload, appliedLsn, this.#devices);
    if (!Array.isArray(plan)) return nack(ship, plan.code, plan.message);
    return plan;
  }

  async #stream(target: ReplicaDevice, send: RestoreSend): Promise<RestoreResult> {
    if (this.#stopping) throw shuttingDown();
    const mark = this.#inconsistent.get(target.name);
    if (mark !== undefined) {
      throw new DruvaaError("REPLICA_INCONSISTENT", `device ${target.name} is not at a consistent point: applying a shipment to it failed, and LSN ${mark.untilLsn} has not been re-applied yet`, "Check the replica's log and status (druvaa status --connect REPLICA:6004); try again once staging has re-delivered", exitCodes.refused);
    }
    const deviceState = this.#state.devices.find((device) => device.name === target.name);
    const sizeBytes = deviceState?.declaredSizeBytes ?? target.device.sizeBytes;
    const appliedLsn = deviceState?.wrlUuid === undefined ? 0 : this.appliedLsn(deviceState.wrlUuid);
    assert(sizeBytes <= target.device.sizeBytes, "declared sizes above the device are refused before they are saved");
    return streamRestore(target, sizeBytes, appliedLsn, send, () => this.#stopping);
  }
}
