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
 *   WRL name applied (or with a set open) under another    shipNack WRL_MISMATCH (re-created WRL)
 *     uuid
 *   with --wrl: a resync set of the WRL open, a record     handled alone, in a turn of its own:
 *     with the resync flag, or a coalesced span              ResyncSets.ship (resync-sets.ts and
 *                                                            coalesced-apply.ts: logged first)
 *   firstLsn > appliedLsn + 1                              shipNack LSN_GAP
 *   lastLsn <= appliedLsn                                  shipAck appliedLsn (re-delivery)
 *   coalesced (without --wrl)                              shipNack RS_WRL_NEEDED
 *   device unknown / declared bigger / record outside      shipNack DEVICE_UNKNOWN /
 *                                                            DEVICE_TOO_SMALL / OUT_OF_RANGE
 *   write or flush fails                                   shipNack IO_ERROR (device marked
 *                                                            inconsistent until re-delivered)
 *   state file cannot be saved                             shipNack IO_ERROR
 *   otherwise: records > appliedLsn written, devices       shipAck lastLsn (+ verify outcomes)
 *     flushed, appliedLsn = lastLsn persisted
 *
 * Records by kind: data is written, a ZERO record zeroes, a resyncEnd writes nothing, a verify
 * probe writes nothing and is compared at its place in the order (verify.ts); its outcome rides
 * on the next ack of its WRL (VerifyOutbox). Without --wrl, resync data is applied as it comes:
 * the WRL's devices are then marked inconsistent (state resyncUnbuffered, status, one warning;
 * a restore is refused) until their resyncEnd. A set apply is one turn of the lock, so a restore
 * asked for meanwhile waits for it and gets the set's end.
 *
 * Not guaranteed: consistency of the device while a shipment is being applied, or after a crash
 * in the middle of one: the state file still says the previous appliedLsn, and staging
 * re-delivers from there, which restores consistency (a resync set is redone from the RS-WRL).
 */
import { assert } from "../../assert.ts";
import { replicaApplyGroupBytesMax, replicaApplyGroupShipmentsMax } from "../../constants.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import { logger } from "../../log.ts";
import { recordFlags, type ResumeAckMessage, type ResumeMessage, type ShipMessage, type ShipNackMessage } from "../../protocol/messages.ts";
import { assertSeeded } from "./media-seed.ts";
import { applyWrites, type PlannedWrite, type ReplicaDevice, type ShipmentPlan } from "./apply.ts";
import { checkWrlIdentity, describe, failGroup, nack, nextState, prepareShipment, ShipQueue, type GroupMember, type InconsistentDevices, type QueuedShipment, type ShipReply } from "./apply-group.ts";
import { pointsOf, restoreDevice, snapshotDevice, type Point, type RecoveryHost, type RestoreCounts, type RestoreResult, type RestoreSend, type Snapshot } from "./core-recovery.ts";
import { unbufferedChange } from "./resync-apply.ts";
import type { ResyncLog } from "./resync-log.ts";
import { ResyncSets, type SetHost } from "./resync-sets.ts";
import type { ApplyStep, ReplicaHistory } from "./history.ts";
import { appliedLsnOf, emptyReplicaState, type ReplicaState, type ReplicaStateStore, type WrlState } from "./state.ts";
import { probeOutcomes, VerifyOutbox } from "./verify.ts";
import { replicaStatus, type ReplicaCoreStatus } from "./core-status.ts";

export type { ReplicaDevice } from "./apply.ts";
export type { ShipReply } from "./apply-group.ts";
export type { ReplicaCoreStatus } from "./core-status.ts";
export type { RestoreMessage, RestoreResult, RestoreSend } from "./restore-stream.ts";

const log = logger("replica:apply");

export interface ReplicaCoreOptions {
  devices: readonly ReplicaDevice[];
  store: ReplicaStateStore;
  /** Milliseconds since the epoch (for lastAppliedAt); Date.now unless a simulation gives one. */
  now?: () => number;
  /** The replica WRL (`--wrl`): resync sets are kept there and applied whole. The caller closes it. */
  rsWrl?: ResyncLog;
  /** Point-in-time journal and fast snapshots (history.ts); the caller closes it. */
  history?: ReplicaHistory;
  /** WRL uuids failed over (failover.ts): their shipments are refused FAILED_OVER. */
  failedOver?: ReadonlySet<string>;
}

export class ReplicaCore {
  readonly #devices: Map<string, ReplicaDevice>; // the one map every part looks devices up in (changeDevices)
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
  readonly #queue = new ShipQueue();
  #applying = false;
  /** Restores running, and those waiting for a resync set being applied (core-recovery.ts). */
  readonly #restoreCounts: RestoreCounts = { restores: 0, waitingForLock: 0, waitingForSet: 0 };
  readonly #recovery: RecoveryHost;
  readonly #failedOver: ReadonlySet<string>;
  #stopping = false;
  /** With --wrl: the open resync sets. */
  #resync: ResyncSets | undefined;
  readonly #outbox = new VerifyOutbox();
  /** WRLs warned about an unbuffered resync (once per resync). */
  readonly #warnedUnbuffered = new Set<string>();
  readonly #history: ReplicaHistory | undefined;

  private constructor(options: ReplicaCoreOptions, state: ReplicaState) {
    const devices = (this.#devices = new Map<string, ReplicaDevice>());
    for (const device of options.devices) {
      assert(!devices.has(device.name), `device ${device.name} given twice (the CLI refuses that)`);
      devices.set(device.name, device);
    }
    this.#store = options.store;
    this.#now = options.now ?? Date.now;
    this.#state = state;
    this.#history = options.history;
    this.#recovery = {
      devices,
      state: () => this.#state,
      inconsistent: this.#inconsistent,
      history: options.history,
      stopping: () => this.#stopping,
      exclusive: (task) => this.#exclusive(task),
      now: this.#now,
      setApplying: () => this.#resync?.applying,
      counts: this.#restoreCounts,
      save: (state) => this.#host().save(state),
      resyncOpen: (uuid) => this.#resync?.isOpen(uuid) ?? false,
      failedOver: (this.#failedOver = options.failedOver ?? new Set()),
    };
  }

  /**
   * Loads the persisted state (none yet: every WRL at appliedLsn 0); with an RS-WRL, recovers its
   * resync sets (a complete one is applied before this resolves). Refuses (RS_WRL_NEEDED) to
   * start without an RS-WRL while the state says a set is open in one.
   */
  static async open(options: ReplicaCoreOptions): Promise<ReplicaCore> {
    const state = (await options.store.load()) ?? emptyReplicaState();
    const core = new ReplicaCore(options, state);
    await options.history?.recover(state, core.#devices);
    if (options.rsWrl === undefined) ResyncSets.refuseWithout(state);
    else core.#resync = await ResyncSets.recover(options.rsWrl, core.#host());
    return core;
  }

  get applying(): boolean { return this.#applying; } // prettier-ignore
  get queuedShipments(): number { return this.#queue.count; } // prettier-ignore

  /** Before answering a resume: applies again a resync set whose apply failed; why it still fails, if it does. */
  retryFailedSets = (): Promise<string | undefined> => (this.#resync?.failedSetWaiting === true ? this.#exclusive(() => this.#resync!.retryFailed()) : Promise.resolve(undefined));

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
      appliedLsn: Math.max(this.appliedLsn(message.wrlUuid), this.#resync?.loggedLsn(message.wrlUuid) ?? 0),
      devices: [...this.#devices.values()].map((entry) => ({ name: entry.name, sizeBytes: entry.device.sizeBytes })),
      ...(this.#resync === undefined ? {} : { acceptsCoalesced: true }),
    };
  }

  /** Applies a shipment (see the decision table above); resolves with the answer for the relay. */
  ship(message: ShipMessage, payload: Uint8Array): Promise<ShipReply> {
    if (this.#stopping) return Promise.resolve(nack(message, "SHUTTING_DOWN", "the replica is shutting down; send it again after the restart"));
    if (!this.#queue.fits(payload.length)) {
      return Promise.resolve(nack(message, "BUSY", `the replica has ${this.#queue.count} shipments (${this.#queue.bytes} bytes) waiting; send it again later`));
    }
    return new Promise<ShipReply>((resolve, reject) => {
      this.#queue.push({ message, payload, resolve, reject });
      // One turn of the lock per shipment, so a restore asked for in between keeps its place; a
      // turn finds its shipment already applied when an earlier group took it along.
      void this.#exclusive(() => this.#applyQueued());
    });
  }

  /** Streams a device at a consistent point to `send` (core-recovery.ts restoreDevice). */
  restore = (deviceName: string, send: RestoreSend, at?: string): Promise<RestoreResult> => restoreDevice(this.#recovery, deviceName, send, at);
  /** A fast snapshot of a device at a point, taken between two apply groups; the caller releases it. */
  snapshot = (deviceName: string, at?: string): Promise<Snapshot> => snapshotDevice(this.#recovery, deviceName, at);
  /** The consistent points a restore, snapshot or failover of the device can go to, oldest first. */
  points = (deviceName: string): Point[] => pointsOf(this.#recovery, deviceName);

  get history(): ReplicaHistory | undefined { return this.#history; } // prettier-ignore

  /** What failover (failover.ts) works with: the lock, the state, the devices, the history. */
  get recoveryHost(): RecoveryHost { return this.#recovery; } // prettier-ignore

  /** Runs `task` alone under the apply lock, between two apply groups (media seeding). */
  exclusive = <T>(task: () => Promise<T>): Promise<T> => this.#exclusive(task);
  /** Managed mode (managed.ts): adds or removes devices under the apply lock, between two apply groups. */
  changeDevices = <T>(change: (devices: Map<string, ReplicaDevice>) => Promise<T>): Promise<T> => this.#exclusive(() => change(this.#devices));

  status(): ReplicaCoreStatus {
    return replicaStatus({
      devices: this.#devices,
      state: this.#state,
      seen: this.#seen,
      inconsistent: this.#inconsistent,
      resync: this.#resync,
      counts: { applying: this.#applying, restores: this.#restoreCounts.restores, queuedShipments: this.#queue.count, restoresWaitingForSet: this.#restoreCounts.waitingForSet },
    });
  }

  /** Lets the shipment being applied finish, refuses the queued ones (SHUTTING_DOWN), ends restores. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#exclusive(async () => undefined);
  }

  // ---- internals ----

  /** What ResyncSets needs of this core. */
  #host(): SetHost {
    return {
      devices: this.#devices,
      outbox: this.#outbox,
      inconsistent: this.#inconsistent,
      state: () => this.#state,
      save: async (state) => {
        await this.#store.save(state);
        this.#state = state;
        await this.#history?.committed(state);
      },
      history: this.#history,
      now: this.#now,
      checkWrl: (name, uuid, state) => this.#checkWrl(name, uuid, state),
    };
  }

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
    if (this.#failedOver.has(uuid)) return nack({ wrl: name }, "FAILED_OVER", `the devices of WRL ${name} were failed over at this replica (druvaa failover): its records wait in the WRL until druvaa failback`);
    return checkWrlIdentity(state, this.#seen, name, uuid, this.#store.where);
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
    const first = this.#queue.take();
    if (first === undefined) return;
    if (this.#stopping) return first.resolve(nack(first.message, "SHUTTING_DOWN", "the replica is shutting down; send it again after the restart"));
    // A failed apply whose undo failed too is undone first: nothing is applied over a half-undone device.
    const undone = await this.#history?.retryUndo(this.#state, this.#devices).then(() => undefined, (error: unknown) => describe(error));
    if (undone !== undefined) return first.resolve(nack(first.message, "IO_ERROR", `undoing an earlier failed apply still fails (${undone}); nothing was applied`));
    this.#applying = true;
    const members: GroupMember[] = [];
    /** Every shipment taken from the queue and not put back. */
    const taken = new Set<QueuedShipment>([first]);
    let state = this.#state;
    let groupBytes = 0;
    let ended = false;
    const touched = new Set<ReplicaDevice>();
    /** The probes of the group, to report once it is durable. */
    const probed: { wrlUuid: string; writes: readonly PlannedWrite[] }[] = [];
    try {
      for (let batch: QueuedShipment[] = [first]; batch.length > 0 && !ended; ) {
        const plans: ApplyStep[] = [];
        for (const [index, entry] of batch.entries()) {
          const ship = entry.message;
          const outcome = this.#resync?.isOpen(ship.wrlUuid) || (ship.coalesced === true && this.#resync !== undefined) ? undefined : this.#prepare(ship, entry.payload, state);
          if (outcome === undefined || ("writes" in outcome && this.#resync !== undefined && (outcome.flags & recordFlags.resync) !== 0)) {
            // Records of a resync set: logged by ResyncSets, in a turn of their own.
            if (members.length === 0) return await this.#shipAlone(entry);
            const rest = batch.slice(index);
            for (const other of rest) taken.delete(other);
            this.#queue.putBack(rest);
            ended = true;
            break;
          }
          if ("writes" in outcome) {
            const planned = new Set(outcome.writes.flatMap((write) => (write.checkpoint === undefined ? [write.target.name] : [])));
            members.push({ entry, planned, applied: true, reply: { type: "shipAck", wrl: ship.wrl, appliedLsn: ship.lastLsn } });
            plans.push({ wrlUuid: ship.wrlUuid, wrlName: ship.wrl, fromLsn: appliedLsnOf(state, ship.wrlUuid), toLsn: ship.lastLsn, writes: outcome.writes });
            if ((outcome.flags & recordFlags.verify) !== 0) probed.push({ wrlUuid: ship.wrlUuid, writes: outcome.writes });
            state = nextState(state, ship, planned, this.#now(), unbufferedChange(state, ship, outcome, this.#warnedUnbuffered));
            plans.at(-1)!.unsettled = (state.wrls.find((wrl) => wrl.uuid === ship.wrlUuid)?.resyncUnbuffered?.length ?? 0) > 0;
          } else {
            members.push({ entry, planned: new Set(), applied: false, reply: outcome });
            if (outcome.type === "shipNack") {
              log.warn(`WRL ${entry.message.wrl}: refused LSN ${entry.message.firstLsn}..${entry.message.lastLsn}: ${outcome.code}: ${outcome.message}`);
              const rest = batch.slice(index + 1);
              for (const other of rest) taken.delete(other);
              this.#queue.putBack(rest);
              ended = true;
              break;
            }
          }
          groupBytes += entry.payload.length;
        }
        if (plans.length > 0) {
          try {
            for (const device of await (this.#history?.apply(plans) ?? applyWrites(plans.flatMap((step) => step.writes)))) touched.add(device);
          } catch (error) {
            await this.#history?.abort(this.#state, this.#devices);
            return failGroup(members, `applying failed: ${describe(error)}`, this.#inconsistent);
          }
        }
        batch = [];
        while (!ended && !this.#stopping && this.#restoreCounts.waitingForLock === 0 && groupBytes < replicaApplyGroupBytesMax && members.length + batch.length < replicaApplyGroupShipmentsMax) {
          const next = this.#queue.take();
          if (next === undefined) break;
          batch.push(next);
          taken.add(next);
        }
      }
      if (state !== this.#state) {
        try {
          await Promise.all([...touched].map((entry) => entry.device.flush()));
        } catch (error) {
          await this.#history?.abort(this.#state, this.#devices);
          return failGroup(members, `applying failed: ${describe(error)}`, this.#inconsistent);
        }
        try {
          await this.#store.save(state);
        } catch (error) {
          await this.#history?.abort(this.#state, this.#devices);
          return failGroup(members, `applied but could not save ${this.#store.where}: ${describe(error)}`, this.#inconsistent);
        }
        this.#state = state;
        await this.#history?.committed(state);
      }
      for (const { wrlUuid, writes } of probed) this.#outbox.add(wrlUuid, probeOutcomes(writes));
      for (const { entry, applied } of members) {
        if (!applied) continue;
        const ship = entry.message;
        this.#seen.delete(ship.wrlUuid);
        for (const [name, mark] of this.#inconsistent) if (mark.wrlUuid === ship.wrlUuid && ship.lastLsn >= mark.untilLsn) this.#inconsistent.delete(name);
      }
      for (const { entry, reply } of members) entry.resolve(this.#withOutcomes(entry.message.wrlUuid, reply));
    } catch (error) {
      // A bug: every shipment taken learns it (the server then closes the relay's connection).
      log.error(`applying shipments failed unexpectedly: ${describe(error)}`);
      for (const entry of taken) entry.reject(error);
    } finally {
      this.#applying = false;
    }
  }

  /** A shipment whose records go to a resync set: ResyncSets answers it, alone (holding the lock). */
  async #shipAlone(entry: QueuedShipment): Promise<void> {
    const ship = entry.message;
    try {
      const reply = await this.#resync!.ship(ship, entry.payload);
      if (reply.type === "shipNack") log.warn(`WRL ${ship.wrl}: refused LSN ${ship.firstLsn}..${ship.lastLsn}: ${reply.code}: ${reply.message}`);
      else this.#seen.delete(ship.wrlUuid);
      entry.resolve(this.#withOutcomes(ship.wrlUuid, reply));
    } catch (error) {
      log.error(`applying a resync shipment failed unexpectedly: ${describe(error)}`);
      entry.reject(error);
    }
  }

  /** An ack with the verify outcomes waiting for its WRL. */
  #withOutcomes(wrlUuid: string, reply: ShipReply): ShipReply {
    return reply.type === "shipAck" ? this.#outbox.attach(wrlUuid, reply) : reply;
  }

  /** One shipment against the state reached so far: its writes, or the answer it gets without any. */
  #prepare(ship: ShipMessage, payload: Uint8Array, state: ReplicaState): ShipmentPlan | ShipReply {
    return prepareShipment(ship, payload, state, this.#devices, this.#checkWrl(ship.wrl, ship.wrlUuid, state));
  }
}
