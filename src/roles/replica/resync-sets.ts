/**
 * Resync sets with a replica WRL (RS-WRL, resync-log.ts): the replica side of issue 4.
 *
 * Resync data (recordFlags.resync) is the current content of ranges a client marked dirty while
 * it was disconnected: it carries no write order, so applying part of it leaves the replica
 * device at no consistent point. Per staging WRL (a consistency group), the first resync record
 * of a device opens that device's set, and the WRL's set is open while any of its devices' is.
 * While it is open EVERY record of that WRL (resync data, ordered writes, zero records, verify
 * probes, of any device) is logged durably in the RS-WRL instead of being applied, and acked
 * (shipAck.appliedLsn = the last LSN logged). When the resyncEnd of the last open device is
 * logged, the set (firstLsn..that LSN) is complete and is applied as a whole, in LSN order, in
 * one turn of the core's apply lock. Decision table (one shipment of a WRL with a set open, or
 * holding a resync record; checked in this order):
 *
 *   condition                                              answer
 *   WRL re-created (see core.ts)                           shipNack WRL_MISMATCH
 *   firstLsn > (logged or applied LSN) + 1                 shipNack LSN_GAP
 *   device unknown / declared bigger / record outside      shipNack DEVICE_UNKNOWN / DEVICE_TOO_SMALL /
 *                                                            OUT_OF_RANGE (nothing logged or applied)
 *   a complete set not applied yet (its apply failed)      applied first; failing again: IO_ERROR
 *                                                            (also retried when a relay resumes)
 *   lastLsn <= logged or applied LSN                       shipAck that LSN (re-delivery)
 *   records before the first resync record (no set open)   applied, flushed, appliedLsn saved with
 *                                                            the set marked open (state resyncSet)
 *   records while the set is open                          logged (one RS-WRL group); the RS-WRL
 *                                                            short of space: shipNack RS_WRL_FULL,
 *                                                            telling the size needed (what was logged
 *                                                            stays logged; staging resends the rest)
 *   the last open device's resyncEnd logged                durable "applying set firstLsn..lastLsn"
 *                                                            (state), records applied in LSN order,
 *                                                            flushed, appliedLsn = lastLsn saved with
 *                                                            the set closed, RS-WRL space freed;
 *                                                            failing: shipNack IO_ERROR
 *   the rest of the shipment                               the same rows again, from the top
 *   otherwise                                              shipAck lastLsn (logged or applied)
 *
 * Restart (recover): the RS-WRL is read back from its tail; each WRL's groups chained on its
 * applied LSN rebuild its open set (so resumeAck reports the LSN logged, nothing logged is
 * lost); a complete set, or one the state says was being applied, is applied (again: records
 * carry full data, so redoing is idempotent) before anything else is served. A WRL whose state
 * says a set is open in another RS-WRL refuses the start (RS_WRL_MISMATCH).
 *
 * Coalesced spans (coalesced-apply.ts) use the same RS-WRL: one of a WRL without a set open is
 * logged, applied and freed there in its turn; one of a WRL with a set open is logged into the set.
 *
 * Not guaranteed: verify outcomes survive a restart (verify.ts); a set bigger than the RS-WRL
 * ever completes (it is refused RS_WRL_FULL until the RS-WRL gets more space: the records stay
 * in staging's WRL meanwhile). Throughput: a shipment of a WRL with a set open is logged alone
 * (one RS-WRL group commit each), not grouped with others like ordinary shipments.
 */
import { DruvaaError, exitCodes } from "../../errors.ts";
import { logger } from "../../log.ts";
import { recordFlags, type ShipAckMessage, type ShipMessage, type ShipNackMessage } from "../../protocol/messages.ts";
import { formatBytes } from "../../units.ts";
import { loggedPayloadOf, planShipment, type PlannedWrite, type ReplicaDevice } from "./apply.ts";
import { describe, nack, type InconsistentDevices, type ShipReply } from "./apply-group.ts";
import { redoSpans, shipCoalesced, type PendingSpan, type SpanEvent } from "./coalesced-apply.ts";
import { applySegment, applySet, type OpenSet } from "./resync-apply.ts";
import { GroupReader, type LogEvent, type LogOutcome, type ResyncLog, type ResyncLogInfo } from "./resync-log.ts";
import { appliedLsnOf as appliedLsn, type ReplicaState, type WrlState } from "./state.ts";
import type { ReplicaHistory } from "./history.ts";
import type { VerifyOutbox } from "./verify.ts";

export type { OpenSet } from "./resync-apply.ts";

const log = logger("replica:resync");

/** What the sets need of the core (ReplicaCore gives its own fields). */
export interface SetHost {
  readonly devices: ReadonlyMap<string, ReplicaDevice>;
  readonly outbox: VerifyOutbox;
  readonly inconsistent: InconsistentDevices;
  /** The committed state. */
  state(): ReplicaState;
  /** Saves `state` durably and makes it the committed one. */
  save(state: ReplicaState): Promise<void>;
  now(): number;
  /** WRL_MISMATCH (a re-created WRL) or nothing. */
  checkWrl(name: string, uuid: string, state: ReplicaState): ShipNackMessage | undefined;
  /** Point-in-time journal and snapshots: applies go through it when there is one. */
  readonly history?: ReplicaHistory;
}

/** A WRL's resync state for status. */
export interface ResyncStatus {
  state: "open" | "applying";
  firstLsn: number;
  loggedLsn: number;
  openDevices: string[];
  endedDevices: string[];
  records: number;
  bytes: number;
}

export class ResyncSets {
  readonly #sets = new Map<string, OpenSet>();
  /** Parts of coalesced spans held until their last part (coalesced-apply.ts), per WRL uuid. */
  readonly #spans = new Map<string, PendingSpan>();
  /** The set being applied now (status, and the log line of a restore that waits for it). */
  applying: { wrl: string; firstLsn: number; lastLsn: number } | undefined;

  private constructor(
    readonly log: ResyncLog,
    private readonly host: SetHost,
  ) {}

  /**
   * Opens the sets kept in `rsLog` (see the file comment): refuses an RS-WRL that is not the one
   * the state names, applies the complete sets, frees what is applied.
   */
  static async recover(rsLog: ResyncLog, host: SetHost): Promise<ResyncSets> {
    const sets = new ResyncSets(rsLog, host);
    const state = host.state();
    for (const wrl of state.wrls) {
      if (wrl.resyncSet !== undefined && wrl.resyncSet.rsWrlUuid !== rsLog.uuid) {
        throw new DruvaaError(
          "RS_WRL_MISMATCH",
          `WRL ${wrl.name} has a resync set open since LSN ${wrl.resyncSet.firstLsn}, kept in the replica WRL ${wrl.resyncSet.rsWrlUuid}, but --wrl ${rsLog.path} is ${rsLog.uuid}`,
          "Start the replica with --wrl naming the replica WRL it used before (druvaa wrl info PATH shows a WRL's uuid)",
          exitCodes.refused,
        );
      }
    }
    const reader = new GroupReader(new Map(state.wrls.map((wrl) => [wrl.uuid, wrl.appliedLsn])));
    const spans: SpanEvent[] = [];
    for await (const events of rsLog.readAll(reader)) sets.#noteAll(events, spans);
    await redoSpans(host, spans); // before any set is applied (and the RS-WRL freed)
    for (const wrl of state.wrls) {
      if (wrl.resyncSet !== undefined && !sets.#sets.has(wrl.uuid)) sets.#sets.set(wrl.uuid, newSet(wrl, wrl.resyncSet.firstLsn));
    }
    for (const set of [...sets.#sets.values()]) {
      const saved = state.wrls.find((wrl) => wrl.uuid === set.wrlUuid)?.resyncSet?.applyingLastLsn;
      if (saved !== undefined && saved !== set.completeLsn) {
        throw new DruvaaError("RS_WRL_CORRUPT", `the state says the resync set of WRL ${set.wrl} was being applied through LSN ${saved}, but the replica WRL ${rsLog.path} holds it only through LSN ${set.loggedLsn}`, "The replica WRL lost acknowledged records: the replica needs an initial sync", exitCodes.failure);
      }
      log.info(`WRL ${set.wrl}: resync set open since LSN ${set.firstLsn}, ${set.records} records (${formatBytes(set.bytes)}) logged through LSN ${set.loggedLsn}${set.completeLsn === undefined ? "" : ", complete: applying it"}`);
      if (set.completeLsn !== undefined) await sets.#apply(set);
    }
    await sets.#free();
    return sets;
  }

  /** Without an RS-WRL: refuses (RS_WRL_NEEDED) a state with a set open, whose records are in one. */
  static refuseWithout(state: ReplicaState): void {
    const open = state.wrls.find((wrl) => wrl.resyncSet !== undefined);
    if (open === undefined) return;
    throw new DruvaaError(
      "RS_WRL_NEEDED",
      `WRL ${open.name} has a resync set open since LSN ${open.resyncSet!.firstLsn}: its records are only in the replica WRL ${open.resyncSet!.rsWrlUuid}`,
      "Start the replica with --wrl PATH of that replica WRL (druvaa wrl info PATH shows a WRL's uuid)",
      exitCodes.refused,
    );
  }

  isOpen(wrlUuid: string): boolean {
    return this.#sets.has(wrlUuid);
  }

  /** The last LSN logged for the WRL's open set (undefined: none open). */
  loggedLsn(wrlUuid: string): number | undefined {
    return this.#sets.get(wrlUuid)?.loggedLsn;
  }

  status(wrlUuid: string): ResyncStatus | undefined {
    const set = this.#sets.get(wrlUuid);
    if (set === undefined) return undefined;
    return {
      state: set.applying ? "applying" : "open",
      firstLsn: set.firstLsn,
      loggedLsn: set.loggedLsn,
      openDevices: [...set.open].sort(),
      endedDevices: [...set.ended].sort(),
      records: set.records,
      bytes: set.bytes,
    };
  }

  logInfo(): ResyncLogInfo {
    return this.log.info();
  }

  /** A shipment of a WRL with a set open, or holding a resync record: the decision table above. */
  async ship(ship: ShipMessage, payload: Uint8Array): Promise<ShipReply> {
    const uuid = ship.wrlUuid;
    const mismatch = this.host.checkWrl(ship.wrl, uuid, this.host.state());
    if (mismatch !== undefined) return mismatch;
    if (ship.coalesced === true && !this.#sets.has(uuid)) return shipCoalesced(this.host, this.log, () => this.#free(), this.#spans, ship, payload);
    this.#spans.delete(uuid); // a shipment that is no span part: nothing held continues
    const durable = () => Math.max(appliedLsn(this.host.state(), uuid), this.#sets.get(uuid)?.loggedLsn ?? 0);
    const startLsn = durable();
    if (ship.firstLsn > startLsn + 1) {
      return nack(ship, "LSN_GAP", `the shipment starts at LSN ${ship.firstLsn}, but the replica holds WRL ${ship.wrl} (applied, or logged in its resync set) only up to LSN ${startLsn}: records ${startLsn + 1}..${ship.firstLsn - 1} are missing (nothing was applied); resume from ${startLsn + 1}`);
    }
    // A coalesced span goes into the set whole (its extents' LSNs say nothing about order).
    if (ship.coalesced === true && ship.lastLsn > startLsn && ship.firstLsn <= appliedLsn(this.host.state(), uuid)) return nack(ship, "LSN_GAP", `the coalesced span ${ship.firstLsn}..${ship.lastLsn} reaches below the resync set of WRL ${ship.wrl}; resume from ${startLsn + 1}`);
    const plan = ship.lastLsn <= startLsn ? undefined : planShipment(ship, payload, ship.coalesced === true ? 0 : startLsn, this.host.devices);
    if (plan !== undefined && !("writes" in plan)) return nack(ship, plan.code, plan.message);
    // A complete set whose apply failed: again now (a re-delivery of its last shipment too).
    const pending = this.#sets.get(uuid);
    if (pending?.completeLsn !== undefined) {
      const failed = await this.#applyOrRefuse(ship, pending);
      if (failed !== undefined) return failed;
    }
    if (plan === undefined) return ack(ship, startLsn);
    const writes = plan.writes;
    for (let index = 0; ; ) {
      const set = this.#sets.get(uuid);
      if (set === undefined) {
        let end = index;
        while (end < writes.length && (writes[end]!.record.flags & recordFlags.resync) === 0) end += 1;
        const opensAt = end < writes.length ? writes[end]!.record.lsn : undefined;
        // Nothing left to apply, and applied through lastLsn (a set completed at its last record).
        if (end === index && opensAt === undefined && appliedLsn(this.host.state(), uuid) >= ship.lastLsn) break;
        try {
          await applySegment(this.host, ship, writes.slice(index, end), opensAt === undefined ? ship.lastLsn : opensAt - 1, opensAt === undefined ? undefined : { rsWrlUuid: this.log.uuid, firstLsn: opensAt });
        } catch (error) {
          return nack(ship, "IO_ERROR", `LSN ${ship.firstLsn}..${ship.lastLsn}: applying failed: ${describe(error)}`);
        }
        if (opensAt === undefined) break;
        const opened = newSet(this.host.state().wrls.find((wrl) => wrl.uuid === uuid)!, opensAt);
        this.#sets.set(uuid, opened);
        log.info(`WRL ${ship.wrl}: resync set opens at LSN ${opensAt} (device ${writes[end]!.record.device}): the WRL's records are kept in the replica WRL until every device's resync ends`);
        index = end;
        continue;
      }
      // Everything logged through lastLsn (the last LSNs may carry no record: an empty group).
      if (index === writes.length && set.loggedLsn >= ship.lastLsn) break;
      const { count, completes } = partToLog(set, writes, index);
      const part = writes.slice(index, index + count);
      let outcome: LogOutcome;
      try {
        outcome = await this.log.append({
          wrl: ship.wrl,
          wrlUuid: uuid,
          prevLsn: set.loggedLsn,
          throughLsn: completes ? part[part.length - 1]!.record.lsn : ship.lastLsn,
          records: part.map((write) => ({ record: write.record, payload: loggedPayloadOf(write) })),
        });
      } catch (error) {
        return nack(ship, "IO_ERROR", `LSN ${ship.firstLsn}..${ship.lastLsn}: logging to the replica WRL ${this.log.path} failed: ${describe(error)}`);
      }
      this.#noteAll(outcome.events);
      if (outcome.refused !== undefined) return this.#full(ship, set, outcome.refused);
      if (completes) {
        const failed = await this.#applyOrRefuse(ship, set);
        if (failed !== undefined) return failed;
      }
      index += count;
    }
    return ack(ship, durable());
  }

  /** A complete set waits to be applied again (its apply failed). */
  get failedSetWaiting(): boolean {
    return [...this.#sets.values()].some((set) => set.completeLsn !== undefined && !set.applying);
  }

  /**
   * Applies again the complete sets whose apply failed (under the apply lock): the relay has
   * nothing left to send for them (they were logged and acked), so the core calls this when a
   * relay resumes, i.e. after the refusal ended its session; still failing, the resume is refused
   * IO_ERROR, so the relay tries again after its backoff.
   */
  async retryFailed(): Promise<string | undefined> {
    for (const set of [...this.#sets.values()]) {
      if (set.completeLsn === undefined || set.applying) continue;
      try {
        await this.#apply(set);
      } catch (error) {
        const why = `applying the resync set ${set.firstLsn}..${set.completeLsn} of WRL ${set.wrl} failed again: ${describe(error)}`;
        log.error(`${why}; it stays in the replica WRL and is tried again at the next resume`);
        return why;
      }
    }
    return undefined;
  }

  /** Applies a complete set; the shipNack IO_ERROR to answer when that fails. */
  async #applyOrRefuse(ship: ShipMessage, set: OpenSet): Promise<ShipNackMessage | undefined> {
    try {
      await this.#apply(set);
      return undefined;
    } catch (error) {
      log.error(`WRL ${set.wrl}: applying the resync set ${set.firstLsn}..${set.completeLsn} failed: ${describe(error)}; it stays in the replica WRL and is applied again with the next shipment or resume`);
      return nack(ship, "IO_ERROR", `LSN ${ship.firstLsn}..${ship.lastLsn}: applying the resync set ${set.firstLsn}..${set.completeLsn} failed: ${describe(error)}`);
    }
  }

  async #apply(set: OpenSet): Promise<void> {
    this.applying = { wrl: set.wrl, firstLsn: set.firstLsn, lastLsn: set.completeLsn! };
    set.applying = true;
    try {
      await applySet(this.host, this.log, set);
    } finally {
      set.applying = false;
      this.applying = undefined;
    }
    this.#sets.delete(set.wrlUuid);
    log.info(`WRL ${set.wrl}: resync set ${set.firstLsn}..${set.completeLsn} applied (${set.records} records, ${formatBytes(set.bytes)}): the replica is at a consistent point again`);
    await this.#free();
  }

  /** Frees the RS-WRL up to the first record an open set or a held span still needs (everything when none). */
  async #free(): Promise<void> {
    let keepFrom = Number.POSITIVE_INFINITY;
    // A held span whose WRL applied something else since was dropped by staging: its parts go too.
    for (const [uuid, span] of this.#spans) if (span.prevLsn !== appliedLsn(this.host.state(), uuid)) this.#spans.delete(uuid);
    for (const set of [...this.#sets.values(), ...this.#spans.values()]) if (set.firstRsLsn !== undefined) keepFrom = Math.min(keepFrom, set.firstRsLsn);
    const through = keepFrom === Number.POSITIVE_INFINITY ? this.log.headLsn : keepFrom - 1;
    if (through <= 0) return;
    try {
      await this.log.freeThrough(through);
    } catch (error) {
      // The sets are applied and saved: only the space waits. The RS-WRL refuses appends from now
      // on (its I/O failed), which refuses the next set's shipments: loud, nothing lost.
      log.error(`freeing the replica WRL ${this.log.path} up to its LSN ${through} failed: ${describe(error)}`);
    }
  }

  #noteAll(events: readonly LogEvent[], spans?: SpanEvent[]): void {
    for (const event of events) {
      if (event.kind === "span") {
        spans?.push(event); // a coalesced span: only recovery looks at it
        continue;
      }
      let set = this.#sets.get(event.wrlUuid);
      if (set === undefined) {
        const wrl = this.host.state().wrls.find((entry) => entry.uuid === event.wrlUuid);
        if (wrl === undefined) continue; // GroupReader only accepts WRLs the state knows
        set = newSet(wrl, wrl.resyncSet?.firstLsn ?? wrl.appliedLsn + 1);
        this.#sets.set(event.wrlUuid, set);
      }
      noteEvent(set, event);
    }
  }

  #full(ship: ShipMessage, set: OpenSet, refused: NonNullable<LogOutcome["refused"]>): ShipNackMessage {
    const info = this.log.info();
    const held = [...this.#sets.values()].reduce((sum, other) => sum + other.bytes, 0);
    const message = refused.reason === "too-large"
      ? `a record of LSN ${ship.firstLsn}..${ship.lastLsn} needs ${formatBytes(refused.neededBytes)} in one replica WRL record, but ${this.log.path} takes at most ${formatBytes(refused.maxPayloadBytes)} (its smallest device is too small): give it devices of at least ${formatBytes(refused.neededBytes + 128 * 1024)}`
      : `the replica WRL ${this.log.path} (${formatBytes(info.sizeBytes)} of log) has ${formatBytes(refused.freeBytes)} free, but LSN ${ship.firstLsn}..${ship.lastLsn} of the resync set of WRL ${ship.wrl} (open since LSN ${set.firstLsn}) needs ${formatBytes(refused.neededBytes)}; open resync sets hold ${formatBytes(held)} already. ` +
        `A set is applied only whole, so it must fit: this one needs a replica WRL of at least ${formatBytes(info.usedBytes + refused.neededBytes)} of log (more if the resync goes on). Staging keeps the records and retries meanwhile. If no other set is going to end and free space: stop the replica and add a device to its replica WRL (druvaa wrl add-device ${this.log.path} NEWPATH --size SIZE keeps the records logged), or, once no set is open, replace it by a bigger one (druvaa wrl create --primary PATH --size SIZE)`;
    return nack(ship, "RS_WRL_FULL", message);
  }
}

function newSet(wrl: WrlState, firstLsn: number): OpenSet {
  return { wrl: wrl.name, wrlUuid: wrl.uuid, firstLsn, loggedLsn: wrl.appliedLsn, open: new Set(), ended: new Set(), firstRsLsn: undefined, lastRsLsn: undefined, records: 0, bytes: 0, completeLsn: undefined, applying: false };
}

/** What one logged (or read back) event does to its WRL's set. */
function noteEvent(set: OpenSet, event: Exclude<LogEvent, { kind: "span" }>): void {
  if (event.kind === "group") {
    set.firstRsLsn ??= event.rsLsn;
  } else if (event.kind === "through") {
    set.loggedLsn = Math.max(set.loggedLsn, event.lsn);
  } else {
    set.lastRsLsn = event.rsLsn;
    set.records += 1;
    set.bytes += event.payload.length;
    const { flags, device, lsn } = event.record;
    if ((flags & recordFlags.resync) !== 0) {
      set.open.add(device);
      set.ended.delete(device);
    } else if ((flags & recordFlags.resyncEnd) !== 0 && set.open.delete(device)) {
      set.ended.add(device);
      if (set.open.size === 0) set.completeLsn = lsn;
    }
  }
}

/** How many of `writes` from `index` go to the set's log: up to the resyncEnd completing it, or all. */
function partToLog(set: OpenSet, writes: readonly PlannedWrite[], index: number): { count: number; completes: boolean } {
  const open = new Set(set.open);
  for (let at = index; at < writes.length; at += 1) {
    const { flags, device } = writes[at]!.record;
    if ((flags & recordFlags.resync) !== 0) open.add(device);
    else if ((flags & recordFlags.resyncEnd) !== 0 && open.delete(device) && open.size === 0) return { count: at - index + 1, completes: true };
  }
  return { count: writes.length - index, completes: false };
}

function ack(ship: ShipMessage, lsn: number): ShipAckMessage {
  return { type: "shipAck", wrl: ship.wrl, appliedLsn: lsn };
}
