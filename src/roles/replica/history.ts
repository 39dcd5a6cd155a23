/**
 * A replica's history: the point-in-time journal (with --retention, journal.ts) and the fast
 * snapshots (snapshot.ts), behind the few calls the apply paths and restores make.
 *
 *   apply step            preserve the before-images (journal, or the snapshots' copy-on-write
 *                         journal when only snapshots need them), add them to the live snapshots
 *                         of those devices, then write
 *   state saved           committed(): the steps are points; retention runs
 *   apply failed          abort(): the steps not saved are undone, snapshots forget them
 *   restore / snapshot    snapshot(): a view at a point (the current one, or --at TIME|LSN|LABEL)
 *
 * Without --retention and with no snapshot live, apply writes directly: nothing is preserved.
 * The copy-on-write journal lives in STATE_DIR/snapshot-cow/ and is emptied when the replica
 * starts and whenever the last snapshot is released.
 */
import { DruvaaError, exitCodes } from "../../errors.ts";
import { removeDirectory } from "../../io/append-file.ts";
import { logger } from "../../log.ts";
import { applyWrites, type PlannedWrite, type ReplicaDevice } from "./apply.ts";
import { PointJournal, type Chunk, type JournalStatus, type Point } from "./journal.ts";
import type { JournalRange } from "./journal-format.ts";
import { resolvePoint } from "./points.ts";
import { Snapshot, type SnapshotInfo } from "./snapshot.ts";
import type { ReplicaState } from "./state.ts";

const log = logger("replica:history");

/** One apply step of a WRL: writes taking it from the point fromLsn to toLsn. */
export interface ApplyStep {
  wrlUuid: string;
  wrlName: string;
  fromLsn: number;
  toLsn: number;
  writes: readonly PlannedWrite[];
  /** One step whatever it holds (a resync set: a checkpoint inside it is no point of its own). */
  atomic?: boolean;
  /** The piece of an atomic step given in pieces (0, 1, …): the step counts only with all of them. */
  piece?: number;
  /** Its end falls inside a resync applied as it came (no replica WRL): no consistent point. */
  unsettled?: boolean;
}

export class ReplicaHistory {
  readonly #journal: PointJournal | undefined;
  readonly #cowDirectory: string;
  #cow: PointJournal | undefined;
  readonly #snapshots = new Set<Snapshot>();
  #nextSnapshotId = 1;
  /** Per WRL: whether the last step's end was inside an unbuffered resync (the next step's start then is no point). */
  readonly #unsettled = new Map<string, boolean>();
  #cowSession = 0;
  readonly #now: () => number;

  private constructor(journal: PointJournal | undefined, cowDirectory: string, now: () => number) {
    this.#journal = journal;
    this.#cowDirectory = cowDirectory;
    this.#now = now;
  }

  /** Opens the journal (when retention is given) and empties the copy-on-write directory. */
  static async open(options: { stateDir: string; retention?: { ms: number; bytes: number; segmentBytes?: number }; now?: () => number }): Promise<ReplicaHistory> {
    const now = options.now ?? Date.now;
    const retention = options.retention;
    const journal = retention === undefined ? undefined : await PointJournal.open({ directory: `${options.stateDir}/journal`, retentionMs: retention.ms, retentionBytes: retention.bytes, now, ...(retention.segmentBytes === undefined ? {} : { segmentBytes: retention.segmentBytes }) });
    const cowDirectory = `${options.stateDir}/snapshot-cow`;
    await removeDirectory(cowDirectory);
    return new ReplicaHistory(journal, cowDirectory, now);
  }

  get journaled(): boolean {
    return this.#journal !== undefined;
  }

  /** After a crash: undoes what the saved state does not cover (journal.ts undoUncommitted). */
  async recover(state: ReplicaState, devices: ReadonlyMap<string, ReplicaDevice>): Promise<void> {
    await this.#journal?.undoUncommitted(state, devices);
  }

  /**
   * Applies `steps` in order; each is cut after a checkpoint record (a labelled point). With a
   * journal or a live snapshot, the before-images of each piece are kept first. Returns the
   * devices written, for the caller to flush.
   */
  async apply(steps: readonly ApplyStep[]): Promise<Set<ReplicaDevice>> {
    await this.#dropIdleCow();
    const keeper = this.#journal ?? (this.#snapshots.size > 0 ? await this.#cowJournal() : undefined);
    if (keeper === undefined) return applyWrites(steps.flatMap((step) => step.writes));
    // Without a journal only the devices of live snapshots need their before-images kept.
    const kept = this.#journal !== undefined ? undefined : new Set([...this.#snapshots].map((snapshot) => snapshot.target.name));
    const touched = new Set<ReplicaDevice>();
    for (const step of mergeSteps(steps)) {
      let fromLsn = step.fromLsn;
      let piece: PlannedWrite[] = [];
      const flush = async (toLsn: number, label: string | undefined) => {
        if (piece.length === 0 && label === undefined && toLsn === fromLsn) return;
        const preserved = kept === undefined ? piece : piece.filter((write) => kept.has(write.target.name));
        const fromUnsettled = this.#unsettled.get(step.wrlUuid) === true;
        const chunk = await this.#preserve(keeper, { wrlUuid: step.wrlUuid, wrlName: step.wrlName, fromLsn, toLsn, ...(label === undefined ? {} : { label }), ...(step.unsettled === true ? { unsettled: true } : {}), ...(fromUnsettled ? { fromUnsettled: true } : {}), ...(step.piece === undefined ? {} : { piece: step.piece }), writes: preserved });
        this.#unsettled.set(step.wrlUuid, step.unsettled === true);
        if (chunk !== undefined) for (const snapshot of this.#snapshots) snapshot.addChunk(chunk, keeper);
        if (piece.length > 0) for (const device of await applyWrites(piece)) touched.add(device);
        fromLsn = toLsn;
        piece = [];
      };
      for (const write of step.writes) {
        piece.push(write);
        const checkpoint = write.checkpoint;
        if (checkpoint !== undefined && step.atomic === true) continue;
        if (checkpoint !== undefined && checkpoint.lsn < step.toLsn) await flush(checkpoint.lsn, checkpoint.label);
        else if (checkpoint !== undefined) step.label = checkpoint.label;
      }
      await flush(step.toLsn, step.label);
    }
    return touched;
  }

  /**
   * keeper.preserve(), and when its file system is full: the oldest segment no snapshot holds is
   * dropped and it is tried again, one segment at a time; none left, the live snapshots of the
   * step's devices end (SNAPSHOT_LOST: their reads fail, their history is let go) and it goes on;
   * still full with nothing to drop, the step goes unprotected (undefined) so apply is never
   * held, and the points before it are gone (no chunk links them to the present).
   */
  async #preserve(keeper: PointJournal, step: Parameters<PointJournal["preserve"]>[0]): Promise<Chunk | undefined> {
    const devices = new Set(step.writes.map((write) => write.target.name));
    let snapshotsEnded = false;
    for (;;) {
      try {
        return await keeper.preserve(step);
      } catch (error) {
        if (!(error instanceof DruvaaError && error.code === "NO_SPACE")) throw error;
        const freed = await keeper.dropOldestUnpinned();
        if (freed > 0) {
          log.warn(`the point-in-time journal in ${keeper.status().directory} is out of space: dropped its oldest segment (${freed} bytes) so apply goes on`);
          continue;
        }
        if (!snapshotsEnded) {
          snapshotsEnded = true;
          const ending = [...this.#snapshots].filter((snapshot) => devices.has(snapshot.target.name));
          for (const snapshot of ending) snapshot.lose(new DruvaaError("SNAPSHOT_LOST", `snapshot ${snapshot.id} of ${snapshot.target.name} ended: the journal had no space to keep what apply overwrote`, "Free space in the replica's state directory and take a new snapshot", exitCodes.failure));
          if (ending.length > 0) {
            log.error(`the point-in-time journal in ${keeper.status().directory} is out of space and every segment is held by snapshots: snapshots ${ending.map((snapshot) => snapshot.id).join(", ")} ended`);
            continue;
          }
        }
        log.error(`the point-in-time journal in ${keeper.status().directory} is out of space with nothing left to drop (${(error as Error).message}): WRL ${step.wrlName} LSN ${step.fromLsn}..${step.toLsn} is applied without before-images; its earlier points are gone`);
        // No chunk links the points before this step to what follows; should the group fail
        // or the process crash before the state is saved, its writes cannot be undone either, so
        // no earlier chunk of this WRL may ever count again (best effort on a full file system).
        await keeper.forget(step.wrlUuid, step.toLsn).catch((forgetError: unknown) => log.error(`recording that in ${keeper.status().directory} failed too: ${(forgetError as Error).message}`));
        return undefined;
      }
    }
  }

  /** The state is saved: its steps are points now. */
  async committed(state: ReplicaState): Promise<void> {
    await this.#journal?.commit(state);
    await this.#cow?.commit(state);
    await this.#dropIdleCow();
  }

  /**
   * Before any apply: a failed undo (abort) is tried again first; while it fails, nothing is
   * applied (throws), so no before-image is taken of a half-undone device.
   */
  async retryUndo(state: ReplicaState, devices: ReadonlyMap<string, ReplicaDevice>): Promise<void> {
    for (const keeper of [this.#journal, this.#cow]) {
      if (keeper?.hasUncommitted !== true) continue;
      await keeper.undoUncommitted(state, devices, (undone) => {
        for (const snapshot of this.#snapshots) for (const chunk of undone) snapshot.forgetChunk(chunk);
      });
    }
  }

  /** An apply failed: undo the steps not saved (best effort; the devices stay marked inconsistent if it fails). */
  async abort(state: ReplicaState, devices: ReadonlyMap<string, ReplicaDevice>): Promise<void> {
    for (const keeper of [this.#journal, this.#cow]) {
      if (keeper === undefined) continue;
      try {
        // Snapshots read the devices again for these ranges before the entries are cut off.
        await keeper.undoUncommitted(state, devices, (undone) => {
          for (const snapshot of this.#snapshots) for (const chunk of undone) snapshot.forgetChunk(chunk);
        });
      } catch (error) {
        log.error(`undoing the failed apply from ${keeper.status().directory} failed: ${(error as Error).message}; the devices stay marked inconsistent until staging re-delivers`);
      }
    }
  }

  /** Failover: the ranges going back to the point `lsn` restores (save them before rollback()). */
  rollbackRanges(wrlUuid: string, lsn: number): JournalRange[] {
    return (this.#journal?.chunksAfter(wrlUuid, lsn) ?? []).flatMap((chunk) => chunk.meta.ranges);
  }

  /**
   * Failover: takes the WRL's devices back to the point `lsn` on the devices themselves (its
   * chunks after it undone, newest first, flushed). The caller then forgets them (forget()), so
   * they are never undone again; doing it twice is harmless (the same before-images).
   */
  async rollback(wrlUuid: string, lsn: number, devices: ReadonlyMap<string, ReplicaDevice>): Promise<void> {
    if (this.#journal !== undefined) await this.#journal.undo(this.#journal.chunksAfter(wrlUuid, lsn), devices);
  }

  /** A failover takes these devices (or a managed config drops them): their snapshots end (reads fail) rather than show a primary's writes. */
  endSnapshotsOf(names: readonly string[], why: { reason: string; hint: string } = { reason: "the device was failed over", hint: "Take snapshots of it again after failback" }): void {
    for (const snapshot of this.#snapshots) {
      if (names.includes(snapshot.target.name)) snapshot.lose(new DruvaaError("SNAPSHOT_LOST", `snapshot ${snapshot.id} of ${snapshot.target.name} ended: ${why.reason}`, why.hint, exitCodes.refused));
    }
  }

  /** The devices of a WRL changed outside apply (failover, failback): its older points are gone. */
  async forget(wrlUuid: string, throughLsn: number): Promise<void> {
    await this.#journal?.forget(wrlUuid, throughLsn);
  }

  /** The points of a WRL a restore, snapshot or failover can go to, oldest first. */
  points(wrlUuid: string, wrlName: string, state: ReplicaState): Point[] {
    if (this.#journal === undefined) {
      const wrl = state.wrls.find((entry) => entry.uuid === wrlUuid);
      return [{ wrl: wrlName, wrlUuid, lsn: wrl?.appliedLsn ?? 0, time: wrl?.lastAppliedAt ?? new Date(this.#now()).toISOString(), current: true }];
    }
    return this.#journal.points(wrlUuid, wrlName, state);
  }

  /**
   * A fast snapshot of `target` at the point `at` names (undefined: the current point). Call it
   * between apply groups (under the apply lock): from then on apply preserves what it overwrites.
   */
  async snapshot(target: ReplicaDevice, wrl: { uuid: string; name: string } | undefined, at: string | undefined, state: ReplicaState, sizeBytes: number): Promise<Snapshot> {
    const points = wrl === undefined ? [] : this.points(wrl.uuid, wrl.name, state);
    const point = at === undefined ? points.at(-1) : resolvePoint(points, at, this.#journal !== undefined);
    const lsn = point?.lsn ?? 0;
    const snapshot = new Snapshot(this.#nextSnapshotId++, target, wrl?.name ?? "", wrl?.uuid ?? "", lsn, point?.label, sizeBytes, new Date(this.#now()).toISOString(), (released) => this.#released(released));
    if (wrl !== undefined && point !== undefined && !point.current) {
      for (const chunk of this.#journal!.chunksAfter(wrl.uuid, lsn)) snapshot.addChunk(chunk, this.#journal!);
    }
    if (this.#journal === undefined) await this.#cowJournal();
    this.#snapshots.add(snapshot);
    return snapshot;
  }

  get snapshots(): SnapshotInfo[] {
    return [...this.#snapshots].map((snapshot) => snapshot.info());
  }

  /** A live snapshot by id (SNAPSHOT_UNKNOWN otherwise). */
  snapshotById(id: number): Snapshot {
    const found = [...this.#snapshots].find((snapshot) => snapshot.id === id);
    if (found === undefined) throw new DruvaaError("SNAPSHOT_UNKNOWN", `no live snapshot ${id} on this replica`, "List them with druvaa status --connect REPLICA:6004 (snapshots); they end when the replica restarts", exitCodes.notFound);
    return found;
  }

  status(): { journal: JournalStatus | null; snapshots: SnapshotInfo[] } {
    return { journal: this.#journal?.status() ?? null, snapshots: this.snapshots };
  }

  async close(): Promise<void> {
    for (const snapshot of [...this.#snapshots]) snapshot.release();
    await this.#journal?.close();
    await this.#cow?.close();
  }

  async #cowJournal(): Promise<PointJournal> {
    if (this.#cow !== undefined) return this.#cow;
    this.#cowSession += 1;
    this.#cow = await PointJournal.open({ directory: `${this.#cowDirectory}/${this.#cowSession}`, retentionMs: Number.MAX_SAFE_INTEGER, retentionBytes: Number.MAX_SAFE_INTEGER, now: this.#now, durable: false });
    return this.#cow;
  }

  #released(snapshot: Snapshot): void {
    this.#snapshots.delete(snapshot);
  }

  /**
   * The copy-on-write journal goes once no snapshot needs it, at a moment apply does not use it
   * (apply() and committed() run under the apply lock).
   */
  async #dropIdleCow(): Promise<void> {
    if (this.#snapshots.size > 0 || this.#cow === undefined || this.#cow.hasUncommitted) return;
    const cow = this.#cow;
    this.#cow = undefined;
    const directory = cow.status().directory;
    await cow.close().catch(() => undefined);
    await removeDirectory(directory).catch((error: unknown) => log.warn(`emptying ${directory}: ${(error as Error).message}`));
  }
}

/** Consecutive steps of one WRL joined (one preserve and fsync for them), labels cut them again. */
function mergeSteps(steps: readonly ApplyStep[]): (ApplyStep & { label?: string })[] {
  const merged: (ApplyStep & { label?: string; writes: PlannedWrite[] })[] = [];
  for (const step of steps) {
    const last = merged.at(-1);
    if (last !== undefined && last.wrlUuid === step.wrlUuid && last.toLsn === step.fromLsn && last.unsettled === step.unsettled && last.atomic !== true && step.atomic !== true) {
      last.writes.push(...step.writes);
      last.toLsn = step.toLsn;
      last.unsettled = step.unsettled;
    } else {
      merged.push({ ...step, writes: [...step.writes] });
    }
  }
  return merged;
}
