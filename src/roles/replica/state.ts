/**
 * What the replica persists: per WRL (keyed by the WRL's uuid, the name remembered for messages
 * and for spotting a re-created WRL) the last LSN applied and made durable, and per device the
 * size its client declared and the WRL that last wrote it. One small JSON file,
 * STATE_DIR/replica-state.json, replaced whole and durably (src/io/state-file.ts) after a
 * shipment's writes are flushed and before it is acked — so after a crash it never claims more
 * than the device holds.
 *
 * The store is an interface so the deterministic simulation can keep the state in memory and
 * "crash" it along with a SimDisk.
 */
import { join } from "node:path";
import { DruvaaError } from "../../errors.ts";
import { readJsonState, writeJsonState } from "../../io/state-file.ts";

export const replicaStateFileName = "replica-state.json";
const stateVersion = 1;

export interface WrlState {
  name: string;
  uuid: string;
  /** Last LSN applied, flushed and persisted (0: nothing yet). */
  appliedLsn: number;
  /** ISO time of the last shipment applied, null before the first. */
  lastAppliedAt: string | null;
  /**
   * A resync set is open (resync-sets.ts): the WRL's records from `firstLsn` on wait in the
   * replica WRL whose uuid is `rsWrlUuid`; `applyingLastLsn` once the complete set (through that
   * LSN) is being applied. Saved before the set's first record is logged, so a restart knows
   * which RS-WRL it needs.
   */
  resyncSet?: ResyncSetState;
  /**
   * Without an RS-WRL: devices of this WRL that got resync data, applied as it came, and no
   * resyncEnd yet. They are not at a consistent point until it comes.
   */
  resyncUnbuffered?: string[];
}

export interface ResyncSetState {
  rsWrlUuid: string;
  firstLsn: number;
  applyingLastLsn?: number;
}

export interface DeviceState {
  name: string;
  /** The size the client declared for this device in a shipment (what a restore exports). */
  declaredSizeBytes?: number;
  /** The WRL whose records last reached this device (a restore reports its appliedLsn). */
  wrlUuid?: string;
}

export interface ReplicaState {
  version: typeof stateVersion;
  wrls: WrlState[];
  devices: DeviceState[];
}

export function emptyReplicaState(): ReplicaState {
  return { version: stateVersion, wrls: [], devices: [] };
}

/** The last LSN applied and persisted for the WRL with this uuid (0: none). */
export function appliedLsnOf(state: ReplicaState, wrlUuid: string): number {
  return state.wrls.find((wrl) => wrl.uuid === wrlUuid)?.appliedLsn ?? 0;
}

/** Where the replica's state lives. load() returns undefined when nothing was ever saved. */
export interface ReplicaStateStore {
  /** What to call the store in messages (the file's path). */
  readonly where: string;
  load(): Promise<ReplicaState | undefined>;
  /** Durable when it resolves (temp file, fsync, rename, directory fsync). */
  save(state: ReplicaState): Promise<void>;
}

/** The state file in `stateDir`. */
export function fileStateStore(stateDir: string): ReplicaStateStore {
  const path = join(stateDir, replicaStateFileName);
  return {
    where: path,
    async load() {
      const raw = await readJsonState<unknown>(path);
      return raw === undefined ? undefined : checkReplicaState(raw, path);
    },
    save: (state) => writeJsonState(path, state),
  };
}

/** In memory, for tests and the simulator: saves are copies, so later mutation cannot leak in. */
export class MemoryStateStore implements ReplicaStateStore {
  readonly where = "memory";
  saved: ReplicaState | undefined;
  saveCount = 0;
  async load(): Promise<ReplicaState | undefined> {
    return this.saved === undefined ? undefined : structuredClone(this.saved);
  }
  async save(state: ReplicaState): Promise<void> {
    this.saved = structuredClone(state);
    this.saveCount += 1;
  }
}

/** Validates a loaded state file: anything unexpected is STATE_CORRUPT, never a crash later. */
export function checkReplicaState(raw: unknown, where: string): ReplicaState {
  const corrupt = (why: string) =>
    new DruvaaError("STATE_CORRUPT", `${where}: ${why}`, "It is written atomically, so this means outside damage: restore it from backup, or remove it (the replica then needs an initial sync)");
  if (typeof raw !== "object" || raw === null) throw corrupt("not a JSON object");
  const state = raw as Record<string, unknown>;
  if (state.version !== stateVersion) throw corrupt(`unknown version ${JSON.stringify(state.version)} (this druvaa writes ${stateVersion})`);
  if (!Array.isArray(state.wrls) || !Array.isArray(state.devices)) throw corrupt("wrls and devices must be lists");
  const isLsn = (value: unknown) => Number.isSafeInteger(value) && (value as number) >= 0;
  const uuids = new Set<string>();
  const wrls = state.wrls.map((value: unknown, index): WrlState => {
    const wrl = value as Record<string, unknown> | null;
    if (typeof wrl !== "object" || wrl === null || typeof wrl.name !== "string" || typeof wrl.uuid !== "string" || !isLsn(wrl.appliedLsn) || !(wrl.lastAppliedAt === null || typeof wrl.lastAppliedAt === "string")) {
      throw corrupt(`wrls[${index}] is not {name, uuid, appliedLsn, lastAppliedAt}`);
    }
    if (uuids.has(wrl.uuid)) throw corrupt(`WRL uuid ${wrl.uuid} is listed twice`);
    uuids.add(wrl.uuid);
    const result: WrlState = { name: wrl.name, uuid: wrl.uuid, appliedLsn: wrl.appliedLsn as number, lastAppliedAt: wrl.lastAppliedAt as string | null };
    if (wrl.resyncSet !== undefined) {
      const set = wrl.resyncSet as Record<string, unknown> | null;
      if (typeof set !== "object" || set === null || typeof set.rsWrlUuid !== "string" || !isLsn(set.firstLsn) || !(set.applyingLastLsn === undefined || isLsn(set.applyingLastLsn))) {
        throw corrupt(`wrls[${index}].resyncSet is not {rsWrlUuid, firstLsn, applyingLastLsn?}`);
      }
      result.resyncSet = { rsWrlUuid: set.rsWrlUuid, firstLsn: set.firstLsn as number };
      if (set.applyingLastLsn !== undefined) result.resyncSet.applyingLastLsn = set.applyingLastLsn as number;
    }
    if (wrl.resyncUnbuffered !== undefined) {
      if (!Array.isArray(wrl.resyncUnbuffered) || !wrl.resyncUnbuffered.every((name) => typeof name === "string")) throw corrupt(`wrls[${index}].resyncUnbuffered is not a list of device names`);
      result.resyncUnbuffered = [...(wrl.resyncUnbuffered as string[])];
    }
    return result;
  });
  const devices = state.devices.map((value: unknown, index): DeviceState => {
    const device = value as Record<string, unknown> | null;
    if (typeof device !== "object" || device === null || typeof device.name !== "string") throw corrupt(`devices[${index}] has no name`);
    const result: DeviceState = { name: device.name };
    if (device.declaredSizeBytes !== undefined) {
      if (!isLsn(device.declaredSizeBytes)) throw corrupt(`devices[${index}].declaredSizeBytes is not a size`);
      result.declaredSizeBytes = device.declaredSizeBytes as number;
    }
    if (device.wrlUuid !== undefined) {
      if (typeof device.wrlUuid !== "string") throw corrupt(`devices[${index}].wrlUuid is not a uuid`);
      result.wrlUuid = device.wrlUuid;
    }
    return result;
  });
  return { version: stateVersion, wrls, devices };
}
