/**
 * The point-in-time journal of a replica (`druvaa replica apply --retention 24h --retention-size
 * 50GiB`): before apply overwrites anything, the content it overwrites (the before-image) is
 * appended here and fsynced. Each apply step of a WRL is one chunk: undoing the chunks after a
 * point, newest first, takes every device of the WRL back to that point together (a consistency
 * group). The points are the chunks' ends: consistent, since a chunk always ends at a shipment's
 * end or at a checkpoint record (a prefix of the WRL's order).
 *
 *   event                                  journal
 *   apply step (records fromLsn..toLsn)    before-images appended and fsynced, then apply writes
 *   group saved (appliedLsn persisted)     its chunks are committed (points from then on)
 *   group failed / crash before the save   its chunks are undone on the device and cut off (or,
 *                                            not at the tail, forgotten: never points again)
 *   over --retention-size / older than     oldest whole segments dropped, logged and counted in
 *     --retention                            status; it stops at a segment a snapshot pins
 *   failover, failback                     the WRL's chunks through an LSN forgotten (forget())
 *
 * Files: DIR/NNNNNNNN.jnl segments of journalSegmentBytes (an entry bigger than that gets a
 * segment of its own), entries in journal-format.ts; DIR/forgotten.json. Retention errors are
 * logged, never fail an apply (the state was saved already).
 */
import { DruvaaError, exitCodes } from "../../errors.ts";
import { AppendFile, listDirectory, removeFile } from "../../io/append-file.ts";
import { readJsonState, writeJsonState } from "../../io/state-file.ts";
import { logger } from "../../log.ts";
import { crc32c } from "../../wrl/crc32c.ts";
import type { PlannedWrite, ReplicaDevice } from "./apply.ts";
import { chainPoints, mergedRanges } from "./journal-ranges.ts";
import { decodeBody, decodeHeader, entryBytes, entryHead, journalHeaderBytes, positionsOf, sealHeader, type JournalChunkMeta } from "./journal-format.ts";
import { journalPieceBytes, journalSegmentBytes } from "./journal-constants.ts";
import { appliedLsnOf, type ReplicaState } from "./state.ts";

const log = logger("replica:journal");

export interface JournalOptions {
  directory: string;
  /** Points older than this are dropped (ms). */
  retentionMs: number;
  /** The journal's files are kept below this (bytes). */
  retentionBytes: number;
  /** Segment file size (default journalSegmentBytes; tests make it small). */
  segmentBytes?: number;
  /**
   * fsync each chunk before the writes it protects (default true). The snapshots' copy-on-write
   * journal is not (it does not outlive the process, and a crash re-applies from the state).
   */
  durable?: boolean;
  now?: () => number;
}

interface Segment {
  seq: number;
  name: string;
  file: AppendFile;
  chunks: Chunk[];
  pins: number;
  /** A failed entry could not be cut off: nothing more is appended here. */
  sealed?: boolean;
}

export interface Chunk {
  readonly meta: JournalChunkMeta;
  readonly segment: Segment;
  /** Position of each range's before-image in the segment file. */
  readonly dataPositions: number[];
  /** Where the entry starts and ends in the segment file (the next one starts at its end). */
  readonly entryStart: number;
  readonly entryEnd: number;
  committed: boolean;
  /** Undone but left in place (not at the journal's tail): never a point, never undone again. */
  dead?: boolean;
}

/** A consistent point of a WRL the replica can go back to. */
export interface Point {
  wrl: string;
  wrlUuid: string;
  lsn: number;
  /** ISO time the replica reached it. */
  time: string;
  label?: string;
  /** The point the devices are at now. */
  current: boolean;
}

export interface JournalStatus {
  directory: string;
  bytes: number;
  segments: number;
  chunks: number;
  retentionSeconds: number;
  retentionBytes: number;
  droppedChunks: number;
  droppedBytes: number;
}

export class PointJournal {
  readonly #segments: Segment[] = [];
  readonly #options: Required<JournalOptions>;
  #droppedChunks = 0;
  #droppedBytes = 0;
  /** Per WRL: the point its last chunk ends at, and when it was reached. */
  readonly #last = new Map<string, { lsn: number; timeMs: number }>();
  /** Chunks appended and not committed yet (the state has not been saved past them). */
  #uncommitted: Chunk[] = [];
  /** Per WRL: chunks up to this LSN are history no longer reachable (forget()). */
  #forgotten: Record<string, number> = {};

  private constructor(options: JournalOptions) {
    this.#options = { now: Date.now, segmentBytes: journalSegmentBytes, durable: true, ...options };
  }

  /** Opens the journal's directory, reads every chunk back, cuts a torn tail. */
  static async open(options: JournalOptions): Promise<PointJournal> {
    const journal = new PointJournal(options);
    const names = (await listDirectory(options.directory)).filter((name) => /^\d{8}\.jnl$/.test(name));
    for (const [index, name] of names.entries()) {
      const file = await AppendFile.open(`${options.directory}/${name}`);
      const segment: Segment = { seq: Number(name.slice(0, 8)), name, file, chunks: [], pins: 0 };
      journal.#segments.push(segment);
      await journal.#scan(segment, index === names.length - 1);
    }
    journal.#forgotten = (await readJsonState<Record<string, number>>(`${options.directory}/forgotten.json`)) ?? {};
    journal.#rebuildLast();
    return journal;
  }

  async #scan(segment: Segment, last: boolean): Promise<void> {
    let position = 0;
    while (position < segment.file.sizeBytes) {
      const header = decodeHeader(await segment.file.read(position, journalHeaderBytes));
      let meta: JournalChunkMeta | string = typeof header === "string" ? header : "";
      if (typeof header !== "string") {
        const metaBody = await segment.file.read(position + journalHeaderBytes, header.metaBytes);
        meta = metaBody.length < header.metaBytes ? "ends early" : decodeBody(metaBody, header.metaBytes, undefined);
        // The last segment may end in a torn entry: its data is checked too, in pieces.
        if (last && typeof meta !== "string") meta = (await this.#dataIntact(segment.file, position + journalHeaderBytes, metaBody, header.dataBytes, header.crc)) ? meta : "data torn";
      }
      if (typeof meta === "string" || typeof header === "string") {
        log.warn(`${segment.file.path}: entry at ${position}: ${meta || header}; cutting the journal there (a crash while it was being written)`);
        await segment.file.truncate(position);
        return;
      }
      const dataStart = position + journalHeaderBytes + header.metaBytes;
      const entryEnd = position + entryBytes(header.metaBytes, header.dataBytes);
      segment.chunks.push({ meta, segment, dataPositions: positionsOf(meta.ranges, dataStart), entryStart: position, entryEnd, committed: true });
      position = entryEnd;
    }
  }

  /** The body CRC of an entry (its meta, then `dataBytes` read in pieces) equals `crc`. */
  async #dataIntact(file: AppendFile, metaAt: number, metaBody: Uint8Array, dataBytes: number, crc: number): Promise<boolean> {
    let bodyCrc = crc32c(metaBody);
    const dataAt = metaAt + metaBody.length;
    for (let done = 0; done < dataBytes; done += journalPieceBytes) {
      const piece = await file.read(dataAt + done, Math.min(journalPieceBytes, dataBytes - done));
      if (piece.length < Math.min(journalPieceBytes, dataBytes - done)) return false;
      bodyCrc = crc32c(piece, bodyCrc);
    }
    return bodyCrc >>> 0 === crc;
  }

  #rebuildLast(): void {
    this.#last.clear();
    for (const chunk of this.chunks()) if (!this.#isForgotten(chunk)) this.#last.set(chunk.meta.wrlUuid, { lsn: chunk.meta.toLsn, timeMs: chunk.meta.timeMs });
  }

  *chunks(): Generator<Chunk> {
    for (const segment of this.#segments) yield* segment.chunks;
  }

  /**
   * Keeps, durably, what `writes` (an apply step of a WRL, taking it from `fromLsn` to `toLsn`)
   * are about to overwrite. Call before writing any of them; commit() once the step is saved.
   */
  async preserve(step: { wrlUuid: string; wrlName: string; fromLsn: number; toLsn: number; label?: string; unsettled?: boolean; fromUnsettled?: boolean; piece?: number; writes: readonly PlannedWrite[] }): Promise<Chunk> {
    const byName = new Map<string, ReplicaDevice>();
    const ranges = mergedRanges(step.writes, byName);
    const nowMs = this.#options.now();
    const previous = this.#last.get(step.wrlUuid);
    const meta: JournalChunkMeta = {
      wrlUuid: step.wrlUuid,
      wrlName: step.wrlName,
      fromLsn: step.fromLsn,
      toLsn: step.toLsn,
      timeMs: nowMs,
      fromTimeMs: previous !== undefined && previous.lsn === step.fromLsn ? previous.timeMs : nowMs,
      ...(step.label === undefined ? {} : { label: step.label }),
      ...(step.unsettled === true ? { unsettled: true } : {}),
      ...(step.fromUnsettled === true ? { fromUnsettled: true } : {}),
      ...(step.piece === undefined ? {} : { piece: step.piece }),
      ranges,
    };
    const dataBytes = ranges.reduce((sum, range) => sum + range.length, 0);
    const segment = await this.#segmentFor(dataBytes);
    const { head, paddingBytes } = entryHead(meta, dataBytes);
    let bodyCrc = crc32c(head.subarray(journalHeaderBytes));
    const entryStart = segment.file.sizeBytes;
    const dataPositions = positionsOf(ranges, entryStart + head.length);
    try {
      await segment.file.append(head);
      for (const range of ranges) {
        const device = byName.get(range.device)!.device;
        for (let done = 0; done < range.length; done += journalPieceBytes) {
          const piece = await device.read(range.offset + done, Math.min(journalPieceBytes, range.length - done));
          bodyCrc = crc32c(piece, bodyCrc);
          await segment.file.append(piece);
        }
      }
      if (paddingBytes > 0) await segment.file.append(new Uint8Array(paddingBytes));
      await segment.file.writeAt(entryStart, sealHeader(head, bodyCrc));
      if (this.#options.durable) await segment.file.sync();
    } catch (error) {
      // No torn entry left behind: the next chunk goes where this one started; if even the cut
      // fails, the segment takes no more entries (a scan cuts a torn tail of any segment).
      await segment.file.truncate(entryStart).catch((cutError: unknown) => {
        segment.sealed = true;
        log.error(`${segment.file.path}: could not cut a failed entry (${(cutError as Error).message}); the next chunks go to a new segment`);
      });
      throw error;
    }
    const chunk: Chunk = { meta, segment, dataPositions, entryStart, entryEnd: segment.file.sizeBytes, committed: false };
    segment.chunks.push(chunk);
    this.#uncommitted.push(chunk);
    this.#last.set(step.wrlUuid, { lsn: step.toLsn, timeMs: nowMs });
    return chunk;
  }

  async #segmentFor(dataBytes: number): Promise<Segment> {
    const current = this.#segments.at(-1);
    if (current !== undefined && current.sealed !== true && current.file.sizeBytes + dataBytes <= this.#options.segmentBytes) return current;
    if (current !== undefined && current.sealed !== true && current.file.sizeBytes === 0) return current;
    const seq = (current?.seq ?? 0) + 1;
    const name = `${String(seq).padStart(8, "0")}.jnl`;
    const segment: Segment = { seq, name, file: await AppendFile.open(`${this.#options.directory}/${name}`), chunks: [], pins: 0 };
    this.#segments.push(segment);
    return segment;
  }

  /** Some chunk waits for its state save (or its undo). */
  get hasUncommitted(): boolean {
    return this.#uncommitted.length > 0;
  }

  /** The state is saved: chunks it covers are points now; then retention runs. */
  async commit(state: ReplicaState): Promise<void> {
    for (const chunk of this.#uncommitted) if (chunk.meta.toLsn <= appliedLsnOf(state, chunk.meta.wrlUuid)) chunk.committed = true;
    this.#uncommitted = this.#uncommitted.filter((chunk) => !chunk.committed);
    // The state is saved already: retention is best effort, it never fails the group.
    await this.enforceRetention().catch((error: unknown) => log.error(`retention of ${this.#options.directory} failed (${(error as Error).message}); it is tried again after the next apply`));
  }

  /**
   * Undoes, newest first, every chunk the saved state does not cover (a crash or a failed group
   * left the devices past their applied point), flushes, and cuts those chunks off. Returns the
   * chunks undone. Throws if a device cannot be written: the chunks stay pending, undone again at
   * the next try (the caller retries before any other apply: retryUndo) or the next start
   * (writing the same before-images again is harmless until apply writes over them).
   */
  async undoUncommitted(state: ReplicaState, devices: ReadonlyMap<string, ReplicaDevice>, undone?: (chunks: readonly Chunk[]) => void): Promise<Chunk[]> {
    const pending = [...this.chunks()].filter((chunk) => chunk.meta.toLsn > appliedLsnOf(state, chunk.meta.wrlUuid) && !this.#isForgotten(chunk));
    if (pending.length === 0) return [];
    const pendingSet = new Set(pending);
    for (const chunk of pending) if (!this.#uncommitted.includes(chunk)) this.#uncommitted.push(chunk);
    await this.undo(pending, devices);
    // Whoever reads these before-images (snapshots) reads the devices again from now on.
    undone?.(pending);
    for (const segment of [...this.#segments].reverse()) {
      const keep = segment.chunks.filter((chunk) => !pendingSet.has(chunk));
      if (keep.length === segment.chunks.length) continue;
      if (!segment.chunks.slice(keep.length).every((chunk) => pendingSet.has(chunk))) {
        // Not the tail (cannot happen while a failed undo holds every apply back; defensive):
        // undone already, so never points again, and no hold on retention.
        for (const chunk of pending) if (chunk.segment === segment) chunk.dead = true;
        continue;
      }
      await segment.file.truncate(keep.length === 0 ? 0 : keep.at(-1)!.entryEnd);
      segment.chunks.splice(keep.length);
    }
    this.#uncommitted = this.#uncommitted.filter((chunk) => !pendingSet.has(chunk));
    this.#rebuildLast();
    log.info(`undid ${pending.length} journal chunk(s) not covered by the saved state: the devices are back at their applied point`);
    return pending;
  }

  /** Writes the before-images of `chunks` back, newest first, and flushes the devices written. */
  async undo(chunks: readonly Chunk[], devices: ReadonlyMap<string, ReplicaDevice>): Promise<void> {
    const touched = new Set<ReplicaDevice>();
    for (const chunk of [...chunks].reverse()) {
      for (const [index, range] of chunk.meta.ranges.entries()) {
        const target = devices.get(range.device);
        if (target === undefined) throw new DruvaaError("DEVICE_UNKNOWN", `the journal has before-images of device ${range.device}, which this replica no longer has`, `Start the replica with --device ${range.device}=PATH again`, exitCodes.refused);
        for (let done = 0; done < range.length; done += journalPieceBytes) {
          const length = Math.min(journalPieceBytes, range.length - done);
          await target.device.write(range.offset + done, await chunk.segment.file.read(chunk.dataPositions[index]! + done, length));
        }
        touched.add(target);
      }
    }
    await Promise.all([...touched].map((target) => target.device.flush()));
  }

  /** The committed chunks of a WRL after the point `lsn`, oldest first (what undoes back to it). */
  chunksAfter(wrlUuid: string, lsn: number): Chunk[] {
    return [...this.chunks()].filter((chunk) => chunk.committed && chunk.meta.wrlUuid === wrlUuid && chunk.meta.toLsn > lsn && !this.#isForgotten(chunk));
  }

  #isForgotten(chunk: Chunk): boolean {
    if (chunk.dead === true) return true;
    const through = this.#forgotten[chunk.meta.wrlUuid];
    return through !== undefined && chunk.meta.toLsn <= through;
  }

  /**
   * The WRL's devices changed outside apply (a failover's primary, a failback): its chunks up to
   * `throughLsn` are no longer a way back to any point. Durable; retention drops them in time.
   */
  async forget(wrlUuid: string, throughLsn: number): Promise<void> {
    this.#forgotten = { ...this.#forgotten, [wrlUuid]: Math.max(throughLsn, this.#forgotten[wrlUuid] ?? 0) };
    await writeJsonState(`${this.#options.directory}/forgotten.json`, this.#forgotten);
    this.#rebuildLast();
  }

  /** The consistent points of a WRL, oldest first, ending with the current one. */
  points(wrlUuid: string, wrlName: string, state: ReplicaState): Point[] {
    const applied = appliedLsnOf(state, wrlUuid);
    const chunks = [...this.chunks()].filter((chunk) => chunk.committed && chunk.meta.wrlUuid === wrlUuid && !this.#isForgotten(chunk));
    const lastAppliedAt = state.wrls.find((wrl) => wrl.uuid === wrlUuid)?.lastAppliedAt ?? new Date(this.#options.now()).toISOString();
    return chainPoints(chunks, { wrl: wrlName, wrlUuid, applied, lastAppliedAt });
  }

  pin(chunks: readonly Chunk[]): () => void {
    const segments = new Set(chunks.map((chunk) => chunk.segment));
    for (const segment of segments) segment.pins += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const segment of segments) segment.pins -= 1;
    };
  }

  /** Drops the oldest whole segments past the retention size or age (never the one being written). */
  async enforceRetention(): Promise<void> {
    const nowMs = this.#options.now();
    for (;;) {
      const oldest = this.#segments[0];
      if (oldest === undefined || this.#segments.length === 1) return;
      const total = this.#segments.reduce((sum, segment) => sum + segment.file.sizeBytes, 0);
      const newestMs = Math.max(0, ...oldest.chunks.map((chunk) => chunk.meta.timeMs));
      const tooBig = total > this.#options.retentionBytes;
      const tooOld = newestMs < nowMs - this.#options.retentionMs;
      if (!tooBig && !tooOld) return;
      if (oldest.pins > 0 || oldest.chunks.some((chunk) => !chunk.committed && chunk.dead !== true)) return;
      this.#segments.shift();
      this.#droppedChunks += oldest.chunks.length;
      this.#droppedBytes += oldest.file.sizeBytes;
      const lastLsn = oldest.chunks.at(-1)?.meta.toLsn;
      log.warn(`point-in-time history dropped: ${oldest.chunks.length} point(s) up to LSN ${lastLsn ?? "?"} (${tooBig ? `journal over --retention-size ${this.#options.retentionBytes} bytes` : "older than --retention"}); the oldest point is later now`);
      await oldest.file.close();
      await removeFile(this.#options.directory, oldest.name);
    }
  }

  /**
   * Out of space: drops the oldest segment no snapshot holds (never the one being written),
   * counted like retention. Returns the bytes freed (0: nothing to drop).
   */
  async dropOldestUnpinned(): Promise<number> {
    const segment = this.#segments.slice(0, -1).find((candidate) => candidate.pins === 0 && candidate.chunks.every((chunk) => chunk.committed || chunk.dead === true));
    if (segment === undefined) return 0;
    this.#segments.splice(this.#segments.indexOf(segment), 1);
    this.#droppedChunks += segment.chunks.length;
    this.#droppedBytes += segment.file.sizeBytes;
    await segment.file.close();
    await removeFile(this.#options.directory, segment.name);
    return segment.file.sizeBytes;
  }

  status(): JournalStatus {
    return {
      directory: this.#options.directory,
      bytes: this.#segments.reduce((sum, segment) => sum + segment.file.sizeBytes, 0),
      segments: this.#segments.length,
      chunks: this.#segments.reduce((sum, segment) => sum + segment.chunks.length, 0),
      retentionSeconds: this.#options.retentionMs / 1000,
      retentionBytes: this.#options.retentionBytes,
      droppedChunks: this.#droppedChunks,
      droppedBytes: this.#droppedBytes,
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.#segments.map((segment) => segment.file.close()));
  }
}
