/**
 * Restores, fast snapshots and points of a ReplicaCore (core.ts holds the apply lock and the
 * state; this is what recovery does with them). A restore or snapshot waits for its turn of the
 * apply lock — the devices are then at a consistent point, between two apply groups — and:
 *   - with a history (history.ts, always in `druvaa replica apply`): takes a fast snapshot in that
 *     turn and streams it afterwards, while apply goes on;
 *   - without one (an in-process core): streams the device holding the lock, apply waits.
 */
import { DruvaaError, exitCodes } from "../../errors.ts";
import { logger } from "../../log.ts";
import type { ReplicaDevice } from "./apply.ts";
import type { InconsistentDevices } from "./apply-group.ts";
import type { ReplicaHistory } from "./history.ts";
import type { Point } from "./journal.ts";
import { assertSeeded } from "./media-seed.ts";
import { restorePoint, shuttingDown, streamRestore, wrlOfDevice, type RestoreResult, type RestoreSend } from "./restore-stream.ts";
import type { Snapshot } from "./snapshot.ts";
import type { ReplicaState } from "./state.ts";

export type { Point, RestoreResult, RestoreSend, Snapshot };

const log = logger("replica:apply");

export interface RestoreCounts {
  /** Restores running (status). */
  restores: number;
  /** Restores and snapshots waiting for their turn of the lock: an apply group ends for them. */
  waitingForLock: number;
  /** Of those, the ones waiting for a resync set being applied (status). */
  waitingForSet: number;
}

export interface RecoveryHost {
  readonly devices: ReadonlyMap<string, ReplicaDevice>;
  state(): ReplicaState;
  readonly inconsistent: InconsistentDevices;
  readonly history: ReplicaHistory | undefined;
  stopping(): boolean;
  exclusive<T>(task: () => Promise<T>): Promise<T>;
  now(): number;
  /** The resync set being applied, if one is. */
  setApplying(): { wrl: string; firstLsn: number; lastLsn: number } | undefined;
  readonly counts: RestoreCounts;
  /** Saves the state durably and makes it the committed one (history commits with it). */
  save(state: ReplicaState): Promise<void>;
  /** A resync set of the WRL is open (its devices are not at a consistent point to fail over). */
  resyncOpen(wrlUuid: string): boolean;
  /** WRLs failed over: their devices are primaries now, not replicas to restore. */
  readonly failedOver: ReadonlySet<string>;
}

/** The device named, or DEVICE_UNKNOWN; SHUTTING_DOWN once the replica stops. */
export function targetOf(host: RecoveryHost, deviceName: string): ReplicaDevice {
  const target = host.devices.get(deviceName);
  if (target === undefined) {
    throw new DruvaaError("DEVICE_UNKNOWN", `the replica has no device ${deviceName}`, `Devices on this replica: ${[...host.devices.keys()].join(", ") || "none"}`, exitCodes.notFound);
  }
  assertReplica(host, target);
  return target;
}

/** SHUTTING_DOWN, or FAILED_OVER for a device that is a primary at the DR site now; checked again inside the turn. */
function assertReplica(host: RecoveryHost, target: ReplicaDevice): void {
  if (host.stopping()) throw shuttingDown();
  const { wrl } = wrlOfDevice(target, host.state());
  if (wrl !== undefined && host.failedOver.has(wrl.uuid)) {
    throw new DruvaaError("FAILED_OVER", `device ${target.name} was failed over (WRL ${wrl.name}): it is a primary at the DR site now, not a replica`, "Read it through its failover export (druvaa status --connect REPLICA:6004 shows it), or fail back first: druvaa failback", exitCodes.refused);
  }
}

/**
 * Streams a device to `send` at a consistent point (`at`: TIME|LSN|LABEL, points.ts; default the
 * current one). The image is the size the client declared for the device, if a shipment ever
 * said, else the replica device's size. Throws DEVICE_UNKNOWN, REPLICA_INCONSISTENT (a failed
 * apply left the device half-written), SHUTTING_DOWN, the refusals of resolvePoint, and whatever
 * `send` throws (the restorer is gone).
 */
export async function restoreDevice(host: RecoveryHost, deviceName: string, send: RestoreSend, at?: string): Promise<RestoreResult> {
  const target = targetOf(host, deviceName);
  assertSeeded(target);
  host.counts.restores += 1;
  try {
    const taken = await inTurn(host, `restore of ${deviceName}`, async () => {
      if (host.history === undefined && at === undefined) {
        assertReplica(host, target);
        const { sizeBytes, appliedLsn } = restorePoint(target, host.state(), host.inconsistent);
        return streamRestore(target, sizeBytes, appliedLsn, send, host.stopping);
      }
      return snapshotNow(host, target, at);
    });
    if (!("read" in taken)) return taken;
    try {
      return await streamRestore(target, taken.sizeBytes, taken.lsn, send, host.stopping, (offset, length) => taken.read(offset, length));
    } finally {
      taken.release();
    }
  } finally {
    host.counts.restores -= 1;
  }
}

/** A fast snapshot of a device at a point, taken in a turn of the apply lock; the caller releases it. */
export function snapshotDevice(host: RecoveryHost, deviceName: string, at?: string): Promise<Snapshot> {
  const target = targetOf(host, deviceName);
  assertSeeded(target);
  return inTurn(host, `snapshot of ${deviceName}`, () => snapshotNow(host, target, at));
}

/** The consistent points of the device's WRL, oldest first (none before its first shipment). */
export function pointsOf(host: RecoveryHost, deviceName: string): Point[] {
  const state = host.state();
  const { wrl } = wrlOfDevice(targetOf(host, deviceName), state);
  if (wrl === undefined) return [];
  return host.history?.points(wrl.uuid, wrl.name, state) ?? [{ wrl: wrl.name, wrlUuid: wrl.uuid, lsn: wrl.appliedLsn, time: wrl.lastAppliedAt ?? new Date(host.now()).toISOString(), current: true }];
}

/** Runs `task` in a turn of the apply lock, saying so when it first waits for a resync set. */
async function inTurn<T>(host: RecoveryHost, what: string, task: () => Promise<T>): Promise<T> {
  const setApply = host.setApplying();
  const askedMs = host.now();
  if (setApply !== undefined) {
    host.counts.waitingForSet += 1;
    log.info(`${what} waits for the resync set of WRL ${setApply.wrl} (LSN ${setApply.firstLsn}..${setApply.lastLsn}) being applied; it then gets the device at LSN ${setApply.lastLsn}`);
  }
  host.counts.waitingForLock += 1;
  let turned = false;
  try {
    return await host.exclusive(() => {
      turned = true;
      host.counts.waitingForLock -= 1;
      if (setApply !== undefined) {
        host.counts.waitingForSet -= 1;
        log.info(`${what}: waited ${host.now() - askedMs} ms for the resync set of WRL ${setApply.wrl} to be applied`);
      }
      return task();
    });
  } finally {
    if (!turned) {
      host.counts.waitingForLock -= 1;
      if (setApply !== undefined) host.counts.waitingForSet -= 1;
    }
  }
}

async function snapshotNow(host: RecoveryHost, target: ReplicaDevice, at: string | undefined): Promise<Snapshot> {
  assertReplica(host, target);
  const state = host.state();
  const { sizeBytes } = restorePoint(target, state, host.inconsistent);
  const { wrl } = wrlOfDevice(target, state);
  if (host.history === undefined) throw new DruvaaError("NO_HISTORY", "this replica keeps no history: points and snapshots need one", "Start the replica with druvaa replica apply (add --retention 24h to keep earlier points)", exitCodes.refused);
  return host.history.snapshot(target, wrl, at, state, sizeBytes);
}
