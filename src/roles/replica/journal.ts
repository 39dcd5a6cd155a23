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
 *   group failed / crash before the save   its chunks are undone on the device and cut off
 *   over --retention-size / older than     oldest whole segments dropped (never blocks apply),
 *     --retention                            logged and counted in status
 *
 * Files: DIR/NNNNNNNN.jnl segments of journalSegmentBytes (an entry bigger than that gets a
 * segment of its own), entries in journal-format.ts. A snapshot pins the segments it reads from,
 * so retention skips them until it is released.
 */
import { assert } from "../../assert.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import { AppendFile, listDirectory, removeFile } from "../../io/append-file.ts";
import { readJsonState, writeJsonState } from "../../io/state-file.ts";
import { logger } from "../../log.ts";
import { crc32c } from "../../wrl/crc32c.ts";
import type { PlannedWrite, ReplicaDevice } from "./apply.ts";
import { mergedRanges } from "./journal-ranges.ts";
import { decodeBody, decodeHeader, entryBytes, entryHead, journalHeaderBytes, sealHeader, type JournalChunkMeta, type JournalRange } from "./journal-format.ts";
import { journalPieceBytes, journalSegmentBytes } from "./journal-constants.ts";
import type { ReplicaState } from "./state.ts";

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
    for (const chunk of journal.chunks()) journal.#last.set(chunk.meta.wrlUuid, { lsn: chunk.meta.toLsn, timeMs: chunk.meta.timeMs });
    journal.#forgotten = (await readJsonState<Record<string, number>>(`${options.directory}/forgotten.json`)) ?? {};
    return journal;
  }

  async #scan(segment: Segment, last: boolean): Promise<void> {
    let position = 0;
    while (position < segment.file.sizeBytes) {
      const header = decodeHeader(await segment.file.read(position, journalHeaderBytes));
      let meta: JournalChunkMeta | string = typeof header === "string" ? header : "";
      if (typeof header !== "string") {
        const body = await segment.file.read(position + journalHeaderBytes, last ? header.metaBytes + header.dataBytes : header.metaBytes);
        meta = body.length < header.metaBytes + (last ? header.dataBytes : 0) ? "ends early" : decodeBody(body, header.metaBytes, last ? header.crc : undefined);
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

  *chunks(): Generator<Chunk> {
    for (const segment of this.#segments) yield* segment.chunks;
  }

  /**
   * Keeps, durably, what `writes` (an apply step of a WRL, taking it from `fromLsn` to `toLsn`)
   * are about to overwrite. Call before writing any of them; commit() once the step is saved.
   */
  async preserve(step: { wrlUuid: string; wrlName: string; fromLsn: number; toLsn: number; label?: string; writes: readonly PlannedWrite[] }): Promise<Chunk> {
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
      // No torn entry left behind: the next chunk goes where this one started.
      await segment.file.truncate(entryStart).catch(() => undefined);
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
    if (current !== undefined && current.file.sizeBytes + dataBytes <= this.#options.segmentBytes) return current;
    if (current !== undefined && current.file.sizeBytes === 0) return current;
    const seq = (current?.seq ?? 0) + 1;
    const name = `${String(seq).padStart(8, "0")}.jnl`;
    const segment: Segment = { seq, name, file: await AppendFile.open(`${this.#options.directory}/${name}`), chunks: [], pins: 0 };
    this.#segments.push(segment);
    return segment;
  }

  /** The state is saved: chunks it covers are points now; then retention runs. */
  async commit(state: ReplicaState): Promise<void> {
    for (const chunk of this.#uncommitted) if (chunk.meta.toLsn <= appliedOf(state, chunk.meta.wrlUuid)) chunk.committed = true;
    this.#uncommitted = this.#uncommitted.filter((chunk) => !chunk.committed);
    await this.enforceRetention();
  }

  /**
   * Undoes, newest first, every chunk the saved state does not cover (a crash or a failed group
   * left the devices past their applied point), flushes, and cuts those chunks off. Returns the
   * chunks undone. Throws if a device cannot be written: the caller keeps them marked
   * inconsistent.
   */
  async undoUncommitted(state: ReplicaState, devices: ReadonlyMap<string, ReplicaDevice>): Promise<Chunk[]> {
    const pending = [...this.chunks()].filter((chunk) => chunk.meta.toLsn > appliedOf(state, chunk.meta.wrlUuid));
    if (pending.length === 0) return [];
    await this.undo(pending, devices);
    for (const segment of [...this.#segments].reverse()) {
      const keep = segment.chunks.filter((chunk) => !pending.includes(chunk));
      if (keep.length === segment.chunks.length) continue;
      const dropped = segment.chunks.length - keep.length;
      assert(segment.chunks.slice(keep.length).every((chunk) => pending.includes(chunk)), "uncommitted chunks are the journal's tail");
      const end = keep.length === 0 ? 0 : keep.at(-1)!.entryEnd;
      await segment.file.truncate(end);
      segment.chunks.splice(keep.length, dropped);
    }
    this.#uncommitted = this.#uncommitted.filter((chunk) => !pending.includes(chunk));
    this.#last.clear();
    for (const chunk of this.chunks()) this.#last.set(chunk.meta.wrlUuid, { lsn: chunk.meta.toLsn, timeMs: chunk.meta.timeMs });
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
  }

  /**
   * Cuts `chunks` (the newest chunks of a WRL, just undone by a failover's rollback) out of the
   * journal: everything from the oldest of them on goes (another WRL's chunks after it too, said
   * in the log). Durable when it resolves.
   */
  async cutFrom(chunks: readonly Chunk[]): Promise<void> {
    const first = chunks[0];
    if (first === undefined) return;
    const segmentIndex = this.#segments.indexOf(first.segment);
    assert(segmentIndex >= 0, "a chunk of this journal");
    const others = [...this.chunks()].filter((chunk) => !chunks.includes(chunk) && (this.#segments.indexOf(chunk.segment) > segmentIndex || (chunk.segment === first.segment && chunk.entryStart >= first.entryStart)));
    if (others.length > 0) log.warn(`cutting the journal at the rolled-back chunks also drops ${others.length} later point(s) of other WRLs`);
    for (const segment of this.#segments.splice(segmentIndex + 1)) {
      await segment.file.close();
      await removeFile(this.#options.directory, segment.name);
    }
    first.segment.chunks.splice(first.segment.chunks.indexOf(first));
    await first.segment.file.truncate(first.entryStart);
    this.#last.clear();
    for (const chunk of this.chunks()) this.#last.set(chunk.meta.wrlUuid, { lsn: chunk.meta.toLsn, timeMs: chunk.meta.timeMs });
  }

  /** The consistent points of a WRL, oldest first, ending with the current one. */
  points(wrlUuid: string, wrlName: string, state: ReplicaState): Point[] {
    const applied = appliedOf(state, wrlUuid);
    const chunks = [...this.chunks()].filter((chunk) => chunk.committed && chunk.meta.wrlUuid === wrlUuid && !this.#isForgotten(chunk));
    const points: Point[] = [];
    // Reachable only through an unbroken chain of steps back from the current point; a step is
    // one chunk, or several with the same from and to (a resync set applied in pieces).
    let expectTo = applied;
    let step: JournalChunkMeta | undefined;
    const reachable: Chunk[] = [];
    for (const chunk of [...chunks].reverse()) {
      if (step !== undefined && chunk.meta.fromLsn === step.fromLsn && chunk.meta.toLsn === step.toLsn) {
        reachable.unshift(chunk);
        continue;
      }
      if (step !== undefined) expectTo = step.fromLsn;
      step = undefined;
      if (chunk.meta.toLsn > expectTo) continue;
      if (chunk.meta.toLsn < expectTo) break;
      reachable.unshift(chunk);
      step = chunk.meta;
    }
    const first = reachable[0];
    if (first !== undefined) points.push({ wrl: wrlName, wrlUuid, lsn: first.meta.fromLsn, time: new Date(first.meta.fromTimeMs).toISOString(), current: false });
    for (const [index, chunk] of reachable.entries()) {
      const next = reachable[index + 1];
      if (next !== undefined && next.meta.fromLsn === chunk.meta.fromLsn && next.meta.toLsn === chunk.meta.toLsn) continue;
      points.push({ wrl: wrlName, wrlUuid, lsn: chunk.meta.toLsn, time: new Date(chunk.meta.timeMs).toISOString(), ...(chunk.meta.label === undefined ? {} : { label: chunk.meta.label }), current: false });
    }
    const last = points.at(-1);
    if (last !== undefined && last.lsn === applied) last.current = true;
    else points.push({ wrl: wrlName, wrlUuid, lsn: applied, time: state.wrls.find((wrl) => wrl.uuid === wrlUuid)?.lastAppliedAt ?? new Date(this.#options.now()).toISOString(), current: true });
    return points;
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
      if (oldest.pins > 0 || oldest.chunks.some((chunk) => !chunk.committed)) return;
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
    const segment = this.#segments.slice(0, -1).find((candidate) => candidate.pins === 0 && candidate.chunks.every((chunk) => chunk.committed));
    if (segment === undefined) return 0;
    this.#segments.splice(this.#segments.indexOf(segment), 1);
    this.#droppedChunks += segment.chunks.length;
    this.#droppedBytes += segment.file.sizeBytes;
    await segment.file.close();
    await removeFile(this.#options.directory, segment.name);
    return Math.max(segment.file.sizeBytes, 1);
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

function appliedOf(state: ReplicaState, wrlUuid: string): number {
  return state.wrls.find((wrl) => wrl.uuid === wrlUuid)?.appliedLsn ?? 0;
}

function positionsOf(ranges: readonly JournalRange[], dataStart: number): number[] {
  const positions: number[] = [];
  let at = dataStart;
  for (const range of ranges) {
    positions.push(at);
    at += range.length;
  }
  return positions;
}
