/**
 * Failover at the replica (`druvaa failover`): the devices of a WRL (a consistency group) become
 * a writable primary at the DR site. In one turn of the apply lock, each step saved before the
 * next (failover-state.ts), so a restart finishes an interrupted failover:
 *
 *   refuse     WRL unknown or failed over already; a resync set open, an unbuffered resync or a
 *              failed apply (the devices are not at a consistent point: DEVICE_RESYNCING); a
 *              --device that shares its WRL with others (use --wrl: the group fails over whole)
 *   record     phase rollback; from now on the WRL's shipments are refused FAILED_OVER (its
 *              records wait in staging's WRL); live snapshots of the devices are released
 *   rollback   the devices go back to the chosen point (journal before-images, newest first);
 *              appliedLsn = the point; the undone ranges are kept for failback
 *   unprotect  header sectors swapped back (protected-device.ts): the devices are plain
 *   promoted   each device served read-write over NBD at --export (export named after the
 *              device); every write is marked in the DR change map first
 *
 * A drill (`--test`) is a writable fast snapshot instead (snapshot-exports.ts): replication goes on.
 * Failback ends it (failback.ts).
 */
import { randomUUID } from "node:crypto";
import type { ChangeMap } from "../../changemap/index.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { openBlockDevice } from "../../io/open-device.ts";
import { logger } from "../../log.ts";
import type { NbdExport } from "../../nbd/backend.ts";
import { startNbdServer, type NbdServer } from "../../nbd/server.ts";
import type { ReplicaDevice } from "./apply.ts";
import type { RecoveryHost } from "./core-recovery.ts";
import { currentGeneration, loadFailoverRecords, mergeRanges, openDrMap, saveFailoverRecord, type FailoverRecord } from "./failover-state.ts";
import { resolvePoint } from "./points.ts";
import { ProtectedDevice, unprotect } from "./protected-device.ts";
import type { ReplicaState } from "./state.ts";

const log = logger("replica:failover");

export interface FailoverRequest {
  device?: string;
  wrl?: string;
  at?: string;
  export?: string;
}

/** A promoted WRL while it runs at the DR site. */
export interface Promoted {
  record: FailoverRecord;
  map: ChangeMap;
  /** Plain handles of the promoted devices (their paths opened anew, buffered). */
  plain: Map<string, BlockDevice>;
  server: NbdServer | undefined;
}

export class Failovers {
  /** WRL uuids failed over: ReplicaCore refuses their shipments (FAILED_OVER). */
  readonly failedOver = new Set<string>();
  readonly promoted = new Map<string, Promoted>();
  #host: RecoveryHost | undefined;

  #releaseSnapshots: (devices: readonly string[]) => Promise<void>;

  private constructor(
    readonly stateDir: string,
    releaseSnapshots: (devices: readonly string[]) => Promise<void>,
  ) {
    this.#releaseSnapshots = releaseSnapshots;
  }

  /** Loads the failover records (before the core opens: it must refuse their WRLs from the start). */
  static async load(stateDir: string, releaseSnapshots: (devices: readonly string[]) => Promise<void> = async () => undefined): Promise<{ failovers: Failovers; records: FailoverRecord[] }> {
    const failovers = new Failovers(stateDir, releaseSnapshots);
    const records = await loadFailoverRecords(stateDir);
    for (const record of records) failovers.failedOver.add(record.wrlUuid);
    return { failovers, records };
  }

  setReleaseSnapshots(release: (devices: readonly string[]) => Promise<void>): void {
    this.#releaseSnapshots = release;
  }

  /** Once the core is open: finishes interrupted failovers and serves the promoted devices again. */
  async resume(host: RecoveryHost, records: readonly FailoverRecord[]): Promise<void> {
    this.#host = host;
    for (const record of records) {
      await host.exclusive(() => this.#finish(host, record));
      log.info(`WRL ${record.wrl} is failed over (generation ${record.generation}, at LSN ${record.atLsn})${record.export === undefined ? "" : `: served at ${record.export}`}`);
    }
  }

  get host(): RecoveryHost {
    if (this.#host === undefined) throw new Error("Failovers.resume() was not called");
    return this.#host;
  }

  /** Fails a WRL over (see the file comment); resolves with the record once promoted. */
  failover(request: FailoverRequest): Promise<FailoverRecord & { uris: Record<string, string> }> {
    const host = this.host;
    return host.exclusive(async () => {
      const state = host.state();
      const wrl = this.#wrlOf(request, state);
      const names = state.devices.filter((device) => device.wrlUuid === wrl.uuid).map((device) => device.name);
      if (this.failedOver.has(wrl.uuid)) throw new DruvaaError("FAILED_OVER", `WRL ${wrl.name} is failed over already`, "Fail back first: druvaa failback", exitCodes.refused);
      const unsettled = wrl.resyncSet !== undefined || (wrl.resyncUnbuffered?.length ?? 0) > 0 || host.resyncOpen(wrl.uuid) || names.some((name) => host.inconsistent.has(name));
      if (unsettled) {
        throw new DruvaaError("DEVICE_RESYNCING", `the devices of WRL ${wrl.name} (${names.join(", ")}) are in the middle of a resync or a failed apply: they are not at a consistent point to fail over to`, "Wait until the resync has ended (druvaa status --connect REPLICA:6004), or fail over --test (a drill on a fast snapshot)", exitCodes.refused);
      }
      const points = host.history?.points(wrl.uuid, wrl.name, state) ?? [];
      const point = request.at === undefined ? undefined : resolvePoint(points, request.at, host.history?.journaled === true);
      const atLsn = point?.lsn ?? wrl.appliedLsn;
      const devices = names.map((name) => host.devices.get(name)!);
      const record: FailoverRecord = {
        version: 1,
        wrl: wrl.name,
        wrlUuid: wrl.uuid,
        generation: randomUUID(),
        parentGeneration: await currentGeneration(this.stateDir, wrl.uuid),
        atLsn,
        appliedLsnBefore: wrl.appliedLsn,
        at: new Date(host.now()).toISOString(),
        phase: "rollback",
        devices: devices.map((entry) => ({ name: entry.name, path: entry.path ?? entry.device.name, sizeBytes: declaredSize(state, entry), reserveBytes: entry.device instanceof ProtectedDevice ? entry.device.reserveBytes : 0 })),
        ...(request.export === undefined ? {} : { export: request.export }),
        undone: [],
      };
      await saveFailoverRecord(this.stateDir, record);
      this.failedOver.add(wrl.uuid);
      await this.#releaseSnapshots(names);
      log.warn(`failing over WRL ${wrl.name} (${names.join(", ")}) at LSN ${atLsn}${point?.label === undefined ? "" : ` (${point.label})`}: its shipments are refused from now on`);
      return { ...(await this.#finish(host, record)), uris: this.uris(wrl.uuid) };
    });
  }

  /** The NBD URIs of a promoted WRL's devices. */
  uris(wrlUuid: string): Record<string, string> {
    const promoted = this.promoted.get(wrlUuid);
    const server = promoted?.server;
    return Object.fromEntries(server === undefined ? [] : promoted!.record.devices.map((device) => [device.name, server.uri(device.name)]));
  }

  /** Runs the steps of `record` from its phase on (idempotent); holds the apply lock. */
  async #finish(host: RecoveryHost, record: FailoverRecord): Promise<FailoverRecord> {
    const devices = new Map(record.devices.map((device) => [device.name, host.devices.get(device.name)]).filter((entry): entry is [string, ReplicaDevice] => entry[1] !== undefined));
    if (devices.size !== record.devices.length) {
      throw new DruvaaError("DEVICE_UNKNOWN", `WRL ${record.wrl} was failed over with devices ${record.devices.map((device) => device.name).join(", ")}, and this replica lacks some`, "Start the replica with the same --device flags as at the failover", exitCodes.refused);
    }
    if (record.phase === "rollback") {
      const undone = (await host.history?.rollback(record.wrlUuid, record.atLsn, devices)) ?? [];
      const state = host.state();
      await host.save({ ...state, wrls: state.wrls.map((wrl) => (wrl.uuid === record.wrlUuid ? { ...wrl, appliedLsn: Math.min(wrl.appliedLsn, record.atLsn) } : wrl)) });
      await host.history?.forget(record.wrlUuid, record.appliedLsnBefore);
      record = { ...record, phase: "unprotect", undone: mergeRanges([...record.undone, ...undone]) };
      await saveFailoverRecord(this.stateDir, record);
    }
    if (record.phase === "unprotect") {
      for (const entry of devices.values()) if (entry.device instanceof ProtectedDevice) await unprotect(entry.device.physical, { reserveBytes: entry.device.reserveBytes });
      record = { ...record, phase: "promoted" };
      await saveFailoverRecord(this.stateDir, record);
    }
    await this.#serve(record);
    return record;
  }

  /** Opens the plain devices and the DR map, and serves them at the record's export address. */
  async #serve(record: FailoverRecord): Promise<void> {
    const map = await openDrMap(this.stateDir, record);
    const plain = new Map<string, BlockDevice>();
    let server: NbdServer | undefined;
    try {
      for (const device of record.devices) plain.set(device.name, await openBlockDevice(device.path));
      if (record.export !== undefined) {
        const exports = record.devices.map((device) => promotedExport(device.name, device.sizeBytes, plain.get(device.name)!, map, record));
        server = await startNbdServer({ listen: record.export, exports, log });
      }
    } catch (error) {
      await Promise.allSettled([...plain.values()].map((device) => device.close()));
      await map.close();
      throw error;
    }
    this.promoted.set(record.wrlUuid, { record, map, plain, server });
  }

  /** The WRL a request names (by --wrl, or its --device's WRL, refusing a shared one). */
  #wrlOf(request: FailoverRequest, state: ReplicaState) {
    if (request.wrl !== undefined) {
      const wrl = state.wrls.find((entry) => entry.name === request.wrl);
      if (wrl === undefined) throw new DruvaaError("WRL_UNKNOWN", `this replica never applied WRL ${request.wrl}`, `WRLs here: ${state.wrls.map((entry) => entry.name).join(", ") || "none yet"}`, exitCodes.notFound);
      return wrl;
    }
    const name = request.device ?? "";
    if (!this.host.devices.has(name)) throw new DruvaaError("DEVICE_UNKNOWN", `the replica has no device ${name}`, `Devices on this replica: ${[...this.host.devices.keys()].join(", ")}`, exitCodes.notFound);
    const uuid = state.devices.find((device) => device.name === name)?.wrlUuid;
    const wrl = state.wrls.find((entry) => entry.uuid === uuid);
    if (wrl === undefined) throw new DruvaaError("FAILOVER_REFUSED", `device ${name} has not been replicated yet: there is nothing to fail over to`, "Wait for the first shipment (druvaa status --connect REPLICA:6004)", exitCodes.refused);
    const group = state.devices.filter((device) => device.wrlUuid === wrl.uuid).map((device) => device.name);
    if (group.length > 1) throw new DruvaaError("FAILOVER_REFUSED", `device ${name} shares WRL ${wrl.name} with ${group.filter((other) => other !== name).join(", ")}: a consistency group fails over whole`, `Fail the group over: druvaa failover --wrl ${wrl.name}`, exitCodes.refused);
    return wrl;
  }

  status(): unknown[] {
    return [...this.promoted.values()].map(({ record, map }) => ({
      wrl: record.wrl,
      generation: record.generation,
      atLsn: record.atLsn,
      at: record.at,
      devices: record.devices.map((device) => ({ name: device.name, drWrittenBytes: map.region(device.name).dirtyBytes })),
      uris: this.uris(record.wrlUuid),
    }));
  }

  async close(): Promise<void> {
    for (const promoted of this.promoted.values()) {
      await promoted.server?.close();
      await Promise.allSettled([...promoted.plain.values()].map((device) => device.close()));
      await promoted.map.close();
    }
    this.promoted.clear();
  }
}

function declaredSize(state: ReplicaState, entry: ReplicaDevice): number {
  return state.devices.find((device) => device.name === entry.name)?.declaredSizeBytes ?? entry.device.sizeBytes;
}

/** A promoted device as a read-write NBD export: writes are marked in the DR map before they land. */
function promotedExport(name: string, sizeBytes: number, device: BlockDevice, map: ChangeMap, record: FailoverRecord): NbdExport {
  const region = map.region(name);
  const block = device.logicalBlockSizeBytes;
  return {
    name,
    description: `druvaa: ${name} failed over (WRL ${record.wrl}, generation ${record.generation}, from LSN ${record.atLsn})`,
    sizeBytes: sizeBytes - (sizeBytes % block),
    logicalBlockSizeBytes: block,
    readOnly: false,
    canMultiConn: true,
    read: (offset, length) => device.read(offset, length),
    write: async (offset, data, fua) => {
      await region.markDirty(offset, data.length);
      await device.write(offset, data);
      if (fua) await device.flush();
    },
    flush: () => device.flush(),
    trim: async () => undefined,
    writeZeroes: async (offset, length, fua) => {
      await region.markDirty(offset, length);
      await device.write(offset, new Uint8Array(length));
      if (fua) await device.flush();
    },
  };
}
