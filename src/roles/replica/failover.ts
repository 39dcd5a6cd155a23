/**
 * Failover at the replica (`druvaa failover`): the devices of a WRL (a consistency group) become
 * a writable primary at the DR site. In one turn of the apply lock, each phase saved before its
 * steps run (failover-state.ts), so a restart finishes an interrupted failover or failback:
 *
 *   refuse     WRL unknown or failed over already (served); a resync set open, an unbuffered
 *              resync or a failed apply (not at a consistent point: DEVICE_RESYNCING); a --device
 *              that shares its WRL (use --wrl: the group fails over whole); a device of the group
 *              this replica was not started with
 *   record     phase rollback; the WRL's shipments are refused FAILED_OVER from now on (its
 *              records wait in staging's WRL); every snapshot of the devices ends
 *   rollback   the ranges to roll back are saved in the record, then the devices go back to the
 *              point (journal before-images, newest first), those chunks are forgotten and
 *              appliedLsn = the point
 *   unprotect  header sectors swapped back (protected-device.ts): the devices are plain
 *   promoted   each device served read-write over NBD at --export (named after the device); every
 *              write is marked in the DR change map first. A failover whose export could not be
 *              served stays failed over: `druvaa failover` again (another --export) serves it
 *   failback   failback.ts: begin (the export stops taking the DR side's writes), complete
 *              (phase failing-back: export closed, header sectors swapped in, resume at an LSN)
 *
 * At start, the devices of a failed-over WRL are opened without the protection checks (their head
 * is plain, or being swapped): apply-command.ts asks plainDevices().
 * A drill (`--test`) is a writable fast snapshot instead (snapshot-exports.ts).
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

/** A failed-over WRL while it is served at the DR site. */
export interface Promoted {
  /** The record as last saved (replaced on every save). */
  record: FailoverRecord;
  map: ChangeMap;
  /** Handles of the promoted devices, their paths opened anew. */
  plain: Map<string, BlockDevice>;
  server: NbdServer;
  /** DR-side writes in flight: a failback's begin waits for them. */
  inflight: Set<Promise<unknown>>;
}

/** What a failover needs besides the core's host: ending the devices' snapshots. */
export type EndSnapshots = (devices: readonly string[]) => Promise<void>;

export class Failovers {
  /** WRL uuids failed over: ReplicaCore refuses their shipments (FAILED_OVER). */
  readonly failedOver = new Set<string>();
  /** Every failover record, by WRL uuid (served or not). */
  readonly records = new Map<string, FailoverRecord>();
  readonly promoted = new Map<string, Promoted>();
  #host: RecoveryHost | undefined;
  #endSnapshots: EndSnapshots = async () => undefined;

  private constructor(readonly stateDir: string) {}

  /** Loads the failover records: before the devices are opened and the core refuses their WRLs. */
  static async load(stateDir: string): Promise<Failovers> {
    const failovers = new Failovers(stateDir);
    for (const record of await loadFailoverRecords(stateDir)) {
      failovers.failedOver.add(record.wrlUuid);
      failovers.records.set(record.wrlUuid, record);
    }
    return failovers;
  }

  /** Devices to open without the protection checks (past rollback: plain head, or being swapped), with their reserve. */
  plainDevices(): Map<string, number> {
    const devices = new Map<string, number>();
    for (const record of this.records.values()) if (record.phase !== "rollback") for (const device of record.devices) devices.set(device.name, device.reserveBytes);
    return devices;
  }

  setEndSnapshots(end: EndSnapshots): void {
    this.#endSnapshots = end;
  }

  /** Once the core is open: finishes interrupted failovers and failbacks, serves the promoted devices. */
  async resume(host: RecoveryHost): Promise<void> {
    this.#host = host;
    for (const record of [...this.records.values()]) {
      try {
        const finished = await host.exclusive(() => this.finish(record));
        if (finished !== undefined) log.info(`WRL ${record.wrl} is failed over (generation ${record.generation}, at LSN ${record.atLsn}): served at ${record.export}`);
      } catch (error) {
        const next = record.phase === "failing-back" ? "run druvaa failback again (or restart the replica) to finish its failback" : `fail it over again (druvaa failover --wrl ${record.wrl} --export …) to serve it`;
        log.error(`WRL ${record.wrl} is failed over, but finishing or serving it failed: ${(error as Error).message}; ${next}`);
      }
    }
  }

  get host(): RecoveryHost {
    if (this.#host === undefined) throw new Error("Failovers.resume() was not called");
    return this.#host;
  }

  /** Fails a WRL over (see the file comment); resolves with the record once served. */
  failover(request: FailoverRequest): Promise<FailoverRecord & { uris: Record<string, string> }> {
    const host = this.host;
    return host.exclusive(async () => {
      const state = host.state();
      const wrl = this.#wrlOf(request, state);
      const earlier = this.records.get(wrl.uuid);
      if (earlier !== undefined) {
        if (this.promoted.has(wrl.uuid) || earlier.phase === "failing-back") {
          throw new DruvaaError("FAILED_OVER", `WRL ${wrl.name} is failed over already (${earlier.phase === "failing-back" ? "its failback is completing" : `served at ${earlier.export}`})`, earlier.phase === "failing-back" ? "Run druvaa failback again to finish it" : "Fail back first: druvaa failback", exitCodes.refused);
        }
        // Failed over, not served (its export could not be bound): serve it where asked now.
        const again = { ...earlier, ...(request.export === undefined ? {} : { export: request.export }) };
        await this.#save(again);
        return { ...(await this.finish(again))!, uris: this.uris(wrl.uuid) };
      }
      const names = state.devices.filter((device) => device.wrlUuid === wrl.uuid).map((device) => device.name);
      const missing = names.filter((name) => !host.devices.has(name));
      if (missing.length > 0) throw new DruvaaError("DEVICE_UNKNOWN", `WRL ${wrl.name} also has devices ${missing.join(", ")}, which this replica was not started with`, `Start the replica with --device NAME=PATH for ${missing.join(", ")} too`, exitCodes.refused);
      const unsettled = wrl.resyncSet !== undefined || (wrl.resyncUnbuffered?.length ?? 0) > 0 || host.resyncOpen(wrl.uuid) || names.some((name) => host.inconsistent.has(name));
      if (unsettled) {
        throw new DruvaaError("DEVICE_RESYNCING", `the devices of WRL ${wrl.name} (${names.join(", ")}) are in the middle of a resync or a failed apply: they are not at a consistent point to fail over to`, "Wait until the resync has ended (druvaa status --connect REPLICA:6004), or fail over --test (a drill on a fast snapshot)", exitCodes.refused);
      }
      const points = host.history?.points(wrl.uuid, wrl.name, state) ?? [];
      const point = request.at === undefined ? undefined : resolvePoint(points, request.at, host.history?.journaled === true);
      const devices = names.map((name) => host.devices.get(name)!);
      const record: FailoverRecord = {
        version: 1,
        wrl: wrl.name,
        wrlUuid: wrl.uuid,
        generation: randomUUID(),
        parentGeneration: await currentGeneration(this.stateDir, wrl.uuid),
        atLsn: point?.lsn ?? wrl.appliedLsn,
        appliedLsnBefore: wrl.appliedLsn,
        at: new Date(host.now()).toISOString(),
        phase: "rollback",
        devices: devices.map((entry) => ({ name: entry.name, path: entry.path ?? entry.device.name, sizeBytes: declaredSize(state, entry), reserveBytes: entry.device instanceof ProtectedDevice ? entry.device.reserveBytes : 0 })),
        ...(request.export === undefined ? {} : { export: request.export }),
        undone: [],
      };
      await this.#endSnapshots(names);
      await this.#save(record);
      this.failedOver.add(wrl.uuid);
      log.warn(`failing over WRL ${wrl.name} (${names.join(", ")}) at LSN ${record.atLsn}${point?.label === undefined ? "" : ` (${point.label})`}: its shipments are refused from now on`);
      return { ...(await this.finish(record))!, uris: this.uris(wrl.uuid) };
    });
  }

  /** The NBD URIs of a promoted WRL's devices. */
  uris(wrlUuid: string): Record<string, string> {
    const promoted = this.promoted.get(wrlUuid);
    return Object.fromEntries(promoted === undefined ? [] : promoted.record.devices.map((device) => [device.name, promoted.server.uri(device.name)]));
  }

  /**
   * Runs the steps of `record` from its phase on (idempotent); holds the apply lock. Resolves
   * with the record once served, or undefined once a failback it was in has completed.
   */
  async finish(record: FailoverRecord): Promise<FailoverRecord | undefined> {
    const host = this.host;
    const devices = this.#devicesOf(record);
    if (record.phase === "rollback") {
      // The ranges first: once the chunks are forgotten, nothing could tell them again.
      record = { ...record, undone: mergeRanges([...record.undone, ...(host.history?.rollbackRanges(record.wrlUuid, record.atLsn) ?? [])]) };
      await this.#save(record);
      await host.history?.rollback(record.wrlUuid, record.atLsn, devices);
      await host.history?.forget(record.wrlUuid, record.appliedLsnBefore);
      const state = host.state();
      await host.save({ ...state, wrls: state.wrls.map((wrl) => (wrl.uuid === record.wrlUuid ? { ...wrl, appliedLsn: Math.min(wrl.appliedLsn, record.atLsn) } : wrl)) });
      record = { ...record, phase: "unprotect" };
      await this.#save(record);
    }
    if (record.phase === "unprotect") {
      for (const entry of devices.values()) if (entry.device instanceof ProtectedDevice) await unprotect(entry.device.physical, { reserveBytes: entry.device.reserveBytes });
      record = { ...record, phase: "promoted" };
      await this.#save(record);
    }
    if (record.phase === "failing-back") {
      const { completeFailback } = await import("./failback.ts");
      await completeFailback(this, record, devices);
      return undefined;
    }
    if (record.export === undefined) throw new DruvaaError("NO_EXPORT", `WRL ${record.wrl} is failed over but has no export address`, `Fail it over again with --export: druvaa failover --wrl ${record.wrl} --export HOST:PORT`, exitCodes.usage);
    await this.#serve(record);
    return record;
  }

  /** Saves `record` durably and makes it the current one (in records and, if served, promoted). */
  async #save(record: FailoverRecord): Promise<void> {
    await saveFailoverRecord(this.stateDir, record);
    this.records.set(record.wrlUuid, record);
    const promoted = this.promoted.get(record.wrlUuid);
    if (promoted !== undefined) promoted.record = record;
  }

  save = (record: FailoverRecord): Promise<void> => this.#save(record);

  #devicesOf(record: FailoverRecord): Map<string, ReplicaDevice> {
    const devices = new Map<string, ReplicaDevice>();
    for (const device of record.devices) {
      const entry = this.host.devices.get(device.name);
      if (entry === undefined) throw new DruvaaError("DEVICE_UNKNOWN", `WRL ${record.wrl} was failed over with devices ${record.devices.map((each) => each.name).join(", ")}, and this replica lacks ${device.name}`, "Start the replica with the same --device flags as at the failover", exitCodes.refused);
      devices.set(device.name, entry);
    }
    return devices;
  }

  /** Opens the plain devices and the DR map, and serves them at the record's export address. */
  async #serve(record: FailoverRecord): Promise<void> {
    const map = await openDrMap(this.stateDir, record);
    const plain = new Map<string, BlockDevice>();
    try {
      for (const device of record.devices) plain.set(device.name, await openBlockDevice(device.path));
      const promoted = { record, map, plain, inflight: new Set() } as unknown as Promoted;
      const exports = record.devices.map((device) => promotedExport(device.name, device.sizeBytes, plain.get(device.name)!, map, promoted));
      promoted.server = await startNbdServer({ listen: record.export!, exports, log });
      this.promoted.set(record.wrlUuid, promoted);
    } catch (error) {
      await Promise.allSettled([...plain.values()].map((device) => device.close()));
      await map.close();
      throw error;
    }
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
    return [...this.records.values()].map((record) => {
      const promoted = this.promoted.get(record.wrlUuid);
      return {
        wrl: record.wrl,
        phase: record.phase,
        served: promoted !== undefined,
        generation: record.generation,
        parentGeneration: record.parentGeneration,
        atLsn: record.atLsn,
        at: record.at,
        failback: record.failback ?? null,
        devices: record.devices.map((device) => ({ name: device.name, drWrittenBytes: promoted?.map.region(device.name).dirtyBytes ?? null })),
        uris: this.uris(record.wrlUuid),
      };
    });
  }

  /** Stops serving (closes every export, handle and map, whatever fails). */
  async close(): Promise<void> {
    for (const promoted of this.promoted.values()) await closePromoted(promoted);
    this.promoted.clear();
  }
}

/** Closes a promoted WRL's export, handles (flushed) and map; every step is tried; the first error is thrown. */
export async function closePromoted(promoted: Promoted): Promise<void> {
  const results = await Promise.allSettled([promoted.server.close()]);
  results.push(...(await Promise.allSettled([...promoted.plain.values()].map(async (device) => {
    await device.flush();
    await device.close();
  }))));
  results.push(...(await Promise.allSettled([promoted.map.close()])));
  const failed = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
  if (failed !== undefined) throw failed.reason;
}

function declaredSize(state: ReplicaState, entry: ReplicaDevice): number {
  return state.devices.find((device) => device.name === entry.name)?.declaredSizeBytes ?? entry.device.sizeBytes;
}

/**
 * A promoted device as a read-write NBD export: writes are marked in the DR map before they land,
 * and tracked while in flight. Once a failback began (record.failback) it is read-only: the DR
 * side's writes are final (failback's own copy to the DR side goes through POST /failback/write).
 */
function promotedExport(name: string, sizeBytes: number, device: BlockDevice, map: ChangeMap, promoted: Promoted): NbdExport {
  const region = map.region(name);
  const block = device.logicalBlockSizeBytes;
  const write = (offset: number, data: Uint8Array, fua: boolean): Promise<void> => {
    if (promoted.record.failback !== undefined) {
      return Promise.reject(new DruvaaError("IO_READ_ONLY", `${name}: a failback is under way; the DR side takes no writes`, "Abort the failback (druvaa failback --abort) to write at the DR site again", exitCodes.refused));
    }
    const done = (async () => {
      await region.markDirty(offset, data.length);
      await device.write(offset, data);
      if (fua) await device.flush();
    })();
    promoted.inflight.add(done);
    void done.then(() => promoted.inflight.delete(done), () => promoted.inflight.delete(done));
    return done;
  };
  return {
    name,
    description: `druvaa: ${name} failed over (WRL ${promoted.record.wrl}, generation ${promoted.record.generation}, from LSN ${promoted.record.atLsn})`,
    sizeBytes: sizeBytes - (sizeBytes % block),
    logicalBlockSizeBytes: block,
    readOnly: false,
    canMultiConn: true,
    read: (offset, length) => device.read(offset, length),
    write,
    flush: () => device.flush(),
    trim: async () => undefined,
    writeZeroes: (offset, length, fua) => write(offset, new Uint8Array(length), fua),
  };
}
