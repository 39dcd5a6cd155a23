/**
 * The writing steps of resync sets (resync-sets.ts holds the decisions): applying the records of
 * a shipment that come before a set opens, and applying a complete set from the RS-WRL. Both
 * flush the devices before they save the state that says so, like a grouped apply (core.ts).
 */
import { DruvaaError, exitCodes } from "../../errors.ts";
import { logger } from "../../log.ts";
import { recordFlags, type ShipMessage, type ShipRecord, type VerifyOutcome } from "../../protocol/messages.ts";
import { applyWrites, type PlannedWrite, type ReplicaDevice, type ShipmentPlan } from "./apply.ts";
import { nextState, type InconsistentDevices } from "./apply-group.ts";
import { isCheckpointRecord, plannedCheckpoint } from "./checkpoints.ts";
import { GroupReader, type ResyncLog } from "./resync-log.ts";
import type { SetHost } from "./resync-sets.ts";
import { appliedLsnOf, type ReplicaState, type ResyncSetState, type WrlState } from "./state.ts";
import { probeOutcomes } from "./verify.ts";

/** One WRL's open resync set, in memory (rebuilt from the RS-WRL at a restart). */
export interface OpenSet {
  wrl: string;
  wrlUuid: string;
  /** Staging LSN of the resync record that opened it. */
  firstLsn: number;
  /** Last staging LSN durable in the RS-WRL: what the replica acknowledges. */
  loggedLsn: number;
  /** Devices with resync data and no resyncEnd yet, and those whose resyncEnd was logged. */
  open: Set<string>;
  ended: Set<string>;
  /** RS-WRL LSNs of its first group marker and its last record (undefined: nothing logged yet). */
  firstRsLsn: number | undefined;
  lastRsLsn: number | undefined;
  records: number;
  bytes: number;
  /** The resyncEnd that completed it (its LSN), until it is applied. */
  completeLsn: number | undefined;
  applying: boolean;
}

/**
 * Applies `writes` (records of `ship` before a set opens, none of them resync data), flushes,
 * then saves appliedLsn = `appliedThrough` and, when `opening` is given, the set as open. On a
 * failed write or flush the devices written are marked inconsistent and the error is thrown.
 */
export async function applySegment(host: SetHost, ship: ShipMessage, writes: readonly PlannedWrite[], appliedThrough: number, opening: ResyncSetState | undefined): Promise<void> {
  const uuid = ship.wrlUuid;
  try {
    const step = { wrlUuid: uuid, wrlName: ship.wrl, fromLsn: appliedLsnOf(host.state(), uuid), toLsn: appliedThrough, writes };
    const touched = host.history !== undefined ? await host.history.apply([step]) : writes.length > 0 ? await applyWrites(writes) : new Set<ReplicaDevice>();
    await Promise.all([...touched].map((entry) => entry.device.flush()));
  } catch (error) {
    await host.history?.abort(host.state(), host.devices);
    for (const { target, checkpoint } of writes) if (checkpoint === undefined) host.inconsistent.set(target.name, { wrlUuid: uuid, untilLsn: appliedThrough });
    throw error;
  }
  const state = host.state();
  const before = state.wrls.find((wrl) => wrl.uuid === uuid)?.resyncUnbuffered;
  const written = new Set(writes.flatMap((write) => (write.checkpoint === undefined ? [write.target.name] : [])));
  await host.save(nextState(state, ship, written, host.now(), { appliedLsn: appliedThrough, resyncSet: opening, resyncUnbuffered: before === undefined ? undefined : unbufferedAfter(before, writes), absent: absentDevices(ship, host.devices) }));
  host.outbox.add(uuid, probeOutcomes(writes));
  clearInconsistent(host.inconsistent, uuid, appliedThrough);
}

/**
 * Applies a complete set: saves "applying firstLsn..lastLsn" first, then reads the set's records
 * back from the RS-WRL and applies them in LSN order (applyWrites keeps the order of overlapping
 * records within each piece read; pieces follow each other; verify probes are evaluated at their
 * place), flushes, and saves appliedLsn = lastLsn with the set closed. The caller frees the
 * RS-WRL. A failure marks the devices inconsistent and throws; the set stays to be applied again.
 */
export async function applySet(host: SetHost, rsLog: ResyncLog, set: OpenSet): Promise<void> {
  const lastLsn = set.completeLsn!;
  const uuid = set.wrlUuid;
  const entry = host.state().wrls.find((wrl) => wrl.uuid === uuid)!;
  const appliedLsn = entry.appliedLsn;
  if (entry.resyncSet?.applyingLastLsn !== lastLsn) {
    await host.save(withWrl(host.state(), { ...entry, resyncSet: { rsWrlUuid: rsLog.uuid, firstLsn: set.firstLsn, applyingLastLsn: lastLsn } }));
  }
  const touched = new Set<ReplicaDevice>();
  const written = new Set<string>();
  const outcomes: VerifyOutcome[] = [];
  try {
    if (set.firstRsLsn !== undefined && set.lastRsLsn !== undefined) {
      const reader = new GroupReader(new Map([[uuid, appliedLsn]]));
      let pieces = 0;
      for await (const events of rsLog.read(set.firstRsLsn, set.lastRsLsn, reader)) {
        const writes: PlannedWrite[] = [];
        for (const event of events) {
          if (event.kind !== "record" || event.wrlUuid !== uuid || event.record.lsn <= appliedLsn || event.record.lsn > lastLsn) continue;
          const write = plannedOf(host.devices, set.wrl, event.record, event.payload);
          writes.push(write);
          if (write.checkpoint === undefined) written.add(event.record.device);
        }
        if (writes.length === 0) continue;
        const step = { wrlUuid: uuid, wrlName: set.wrl, fromLsn: appliedLsn, toLsn: lastLsn, writes, atomic: true, piece: pieces++ };
        for (const device of await (host.history?.apply([step]) ?? applyWrites(writes))) touched.add(device);
        outcomes.push(...probeOutcomes(writes));
      }
    }
    await Promise.all([...touched].map((target) => target.device.flush()));
  } catch (error) {
    await host.history?.abort(host.state(), host.devices);
    for (const name of written) host.inconsistent.set(name, { wrlUuid: uuid, untilLsn: lastLsn });
    throw error;
  }
  const state = host.state();
  const before = state.wrls.find((wrl) => wrl.uuid === uuid)?.resyncUnbuffered;
  const closing: ShipMessage = { type: "ship", wrl: set.wrl, wrlUuid: uuid, firstLsn: set.firstLsn, lastLsn, records: [] };
  await host.save(nextState(state, closing, written, host.now(), { appliedLsn: lastLsn, resyncSet: null, resyncUnbuffered: before?.filter((name) => !set.ended.has(name)) }));
  host.outbox.add(uuid, outcomes);
  clearInconsistent(host.inconsistent, uuid, lastLsn);
}

/** The devices `ship` declares that the replica lacks (planShipment let them in: only checkpoints name them). */
function absentDevices(ship: ShipMessage, devices: ReadonlyMap<string, ReplicaDevice>): Set<string> {
  return new Set((ship.devices ?? []).flatMap(({ name }) => (devices.has(name) ? [] : [name])));
}

/**
 * A record read back from the RS-WRL as a write to apply (a set's, a coalesced span's); its device
 * must still be there, unless it is a checkpoint (it writes nothing: checkpoints.ts).
 */
export function plannedOf(devices: ReadonlyMap<string, ReplicaDevice>, wrl: string, record: ShipRecord, payload: Uint8Array): PlannedWrite {
  if (isCheckpointRecord(record)) return plannedCheckpoint(record, payload, devices);
  const target = devices.get(record.device);
  if (target === undefined) {
    throw new DruvaaError("DEVICE_UNKNOWN", `the resync set of WRL ${wrl} has records for device ${record.device}, which this replica no longer has`, `Start the replica with --device ${record.device}=PATH`, exitCodes.refused);
  }
  if (record.offset + record.length > target.device.sizeBytes) {
    throw new DruvaaError("OUT_OF_RANGE", `the resync set of WRL ${wrl} writes ${record.device} at ${record.offset}+${record.length}, past the end of the device (${target.device.sizeBytes} bytes)`, "Give the replica the device it had when the set was logged", exitCodes.refused);
  }
  const probe = (record.flags & recordFlags.verify) !== 0 ? { digests: payload, outcome: undefined } : undefined;
  const data = probe === undefined && (record.flags & (recordFlags.zero | recordFlags.resyncEnd)) === 0 ? payload : undefined;
  return { record, target, data, probe };
}

function withWrl(state: ReplicaState, entry: WrlState): ReplicaState {
  return { ...state, wrls: state.wrls.map((wrl) => (wrl.uuid === entry.uuid ? entry : wrl)) };
}

/** Marks of failed applies that the WRL has now passed. */
export function clearInconsistent(inconsistent: InconsistentDevices, wrlUuid: string, appliedLsn: number): void {
  for (const [name, mark] of inconsistent) if (mark.wrlUuid === wrlUuid && appliedLsn >= mark.untilLsn) inconsistent.delete(name);
}

/**
 * Without an RS-WRL: the devices left in an unbuffered resync after `writes` (resync data adds
 * its device, a resyncEnd removes it), from `before`.
 */
export function unbufferedAfter(before: readonly string[] | undefined, writes: readonly PlannedWrite[]): string[] {
  const devices = new Set(before ?? []);
  for (const { record } of writes) {
    if ((record.flags & recordFlags.resync) !== 0) devices.add(record.device);
    else if ((record.flags & recordFlags.resyncEnd) !== 0) devices.delete(record.device);
  }
  return [...devices].sort();
}

/**
 * What nextState() changes for `plan` of `ship` beyond the default: the declared devices the
 * replica lacks (only checkpoints named them: not recorded), and, without an RS-WRL (resync data
 * is applied as it comes), the devices of `ship`'s WRL that it leaves in an unbuffered resync
 * (nothing for a shipment without resync records). Warns once per resync of a WRL (`warned`
 * remembers which).
 */
export function unbufferedChange(state: ReplicaState, ship: ShipMessage, plan: ShipmentPlan, warned: Set<string>): { resyncUnbuffered?: string[]; absent?: ReadonlySet<string> } {
  const absent = plan.absent;
  if ((plan.flags & (recordFlags.resync | recordFlags.resyncEnd)) === 0) return absent.size > 0 ? { absent } : {};
  const after = unbufferedAfter(state.wrls.find((wrl) => wrl.uuid === ship.wrlUuid)?.resyncUnbuffered, plan.writes);
  if (after.length === 0) {
    warned.delete(ship.wrlUuid);
  } else if (!warned.has(ship.wrlUuid)) {
    warned.add(ship.wrlUuid);
    logger("replica:apply").warn(`WRL ${ship.wrl}: resync data (devices ${after.join(", ")}) is applied as it comes, without a replica WRL: the replica is NOT at a consistent point until the resync completes (start it with --wrl PATH to keep resync sets atomic)`);
  }
  return absent.size > 0 ? { resyncUnbuffered: after, absent } : { resyncUnbuffered: after };
}
