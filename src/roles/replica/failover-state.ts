/**
 * What a failover (failover.ts) keeps on disk, per failed-over WRL, in STATE_DIR/failover/:
 *
 *   UUID.json   the record: generation ids, the point, the phase reached, the devices, the ranges
 *               rolled back (records of the original primary after the point that had reached
 *               the replica), the NBD export address
 *   UUID.map    the DR-side change map: every range written through the promoted device's
 *               export is marked (durably) before it is written: the DR side's writes since
 *               the failover, for failback
 *
 * Phases, each saved before the next step starts, so a restart finishes an interrupted failover
 * or failback: rollback (the ranges to roll back are saved first, then the devices go back to the
 * point) → unprotect (header sectors being swapped back) → promoted (a plain, writable primary at
 * the DR site) → failing-back (the export closed, header sectors being swapped in again, the WRL
 * resuming at `failback.throughLsn`; the record goes once that is saved).
 *
 * While promoted, `failback` says a failback has begun: the export is read-only (the DR side's
 * writes are final); with keep primary, failback's copy comes through POST /failback/write,
 * recorded in the DR map like any write.
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { createChangeMapAtPath, openChangeMapAtPath, type ChangeMap } from "../../changemap/index.ts";
import { changeMapBlockSizeBytesDefault } from "../../constants.ts";
import { DruvaaError } from "../../errors.ts";
import { listDirectory } from "../../io/append-file.ts";
import { pathExists } from "../../io/open-device.ts";
import { readJsonState, writeJsonState } from "../../io/state-file.ts";
import type { JournalRange } from "./journal-format.ts";
import { mergeExtents, type Extent } from "../extents.ts";

export type FailoverPhase = "rollback" | "unprotect" | "promoted" | "failing-back";

export interface FailoverRecord {
  version: 1;
  wrl: string;
  wrlUuid: string;
  /** The DR side's new history. */
  generation: string;
  /** The history it forked from (the WRL's, or an earlier failover's generation). */
  parentGeneration: string;
  /** The consistent point the devices were rolled back to. */
  atLsn: number;
  /** The LSN the replica had applied when the failover began. */
  appliedLsnBefore: number;
  at: string;
  phase: FailoverPhase;
  devices: { name: string; path: string; sizeBytes: number; reserveBytes: number }[];
  /** Where the promoted devices are served over NBD (one export per device, named after it). */
  export?: string;
  /** Ranges the rollback restored: writes of the original primary after atLsn. */
  undone: JournalRange[];
  /** A failback began: the side that wins, and what it knew of the primary's side then; once the copy is done, where the WRL resumes. */
  failback?: FailbackState;
}

export interface FailbackState {
  keep: "dr" | "primary";
  /** The operator chose the side (--keep); else failback did, from what each side wrote. */
  explicit: boolean;
  /** Staging's head and the client change map's dirty bytes when it began: a re-run refuses if the primary wrote since. */
  stagingHeadLsn: number;
  changemapDirtyBytes?: number;
  throughLsn?: number;
  generation?: string;
  /** Devices whose head was copied into the reserve already (completing: reprotect is two steps). */
  copied?: string[];
}

export function failoverDirectory(stateDir: string): string {
  return join(stateDir, "failover");
}

export async function loadFailoverRecords(stateDir: string): Promise<FailoverRecord[]> {
  const directory = failoverDirectory(stateDir);
  const records: FailoverRecord[] = [];
  for (const name of await listDirectory(directory)) {
    if (!name.endsWith(".json")) continue;
    const path = join(directory, name);
    const record = await readJsonState<FailoverRecord>(path);
    if (record === undefined) continue;
    if (record.version !== 1 || typeof record.wrlUuid !== "string" || typeof record.generation !== "string" || !Array.isArray(record.devices) || !Array.isArray(record.undone)) {
      throw new DruvaaError("STATE_CORRUPT", `${path}: not a failover record`, "It is written atomically, so this means outside damage: restore it from backup");
    }
    records.push(record);
  }
  return records;
}

export function saveFailoverRecord(stateDir: string, record: FailoverRecord): Promise<void> {
  return writeJsonState(join(failoverDirectory(stateDir), `${record.wrlUuid}.json`), record);
}

/** The DR-side change map of a failed-over WRL (created at the failover, one region per device). */
export async function openDrMap(stateDir: string, record: FailoverRecord): Promise<ChangeMap> {
  const path = join(failoverDirectory(stateDir), `${record.wrlUuid}.map`);
  if (!(await pathExists(path))) {
    await mkdir(failoverDirectory(stateDir), { recursive: true });
    await createChangeMapAtPath({ path, regions: record.devices.map((device) => ({ name: device.name, volumeSizeBytes: device.sizeBytes })), blockSizeBytes: changeMapBlockSizeBytesDefault });
  }
  return openChangeMapAtPath(path);
}

/** Failback done: the record and the DR map go (the WRL is a replica again). */
export async function removeFailover(stateDir: string, wrlUuid: string): Promise<void> {
  await rm(join(failoverDirectory(stateDir), `${wrlUuid}.map`), { force: true });
  await rm(join(failoverDirectory(stateDir), `${wrlUuid}.json`), { force: true });
}

/**
 * The generation id of a WRL's history at this replica: `wrl:UUID` until a failback made another
 * one current (STATE_DIR/failover/generations.json). A failover forks a new generation from it.
 */
export async function currentGeneration(stateDir: string, wrlUuid: string): Promise<string> {
  const generations = (await readJsonState<Record<string, { generation: string }>>(join(failoverDirectory(stateDir), "generations.json"))) ?? {};
  return generations[wrlUuid]?.generation ?? `wrl:${wrlUuid}`;
}

export async function recordGeneration(stateDir: string, wrlUuid: string, generation: string): Promise<void> {
  const path = join(failoverDirectory(stateDir), "generations.json");
  const generations = (await readJsonState<Record<string, { generation: string; since: string }>>(path)) ?? {};
  await writeJsonState(path, { ...generations, [wrlUuid]: { generation, since: new Date().toISOString() } });
}

/** Sorted, merged ranges (touching ones joined). */
export function mergeRanges(ranges: readonly JournalRange[]): JournalRange[] {
  const perDevice = new Map<string, Extent[]>();
  for (const range of ranges) {
    let list = perDevice.get(range.device);
    if (list === undefined) perDevice.set(range.device, (list = []));
    list.push([range.offset, range.offset + range.length]);
  }
  const merged: JournalRange[] = [];
  for (const device of [...perDevice.keys()].sort()) {
    for (const [start, end] of mergeExtents(perDevice.get(device)!)) if (end > start) merged.push({ device, offset: start, length: end - start });
  }
  return merged;
}
