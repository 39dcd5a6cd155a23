/**
 * Fast snapshots: a read view of a replica device at a consistent point, made in an instant
 * while apply goes on. The view reads the device through an overlay (overlay.ts): every block
 * apply overwrites after the snapshot was taken is preserved first (its before-image is a journal
 * chunk, journal.ts, appended before the write is issued), and a snapshot of an earlier point
 * starts with the before-images of every chunk after that point. Reads of a block apply is
 * overwriting right then are safe: readThrough looks the overlay up again after the device read.
 *
 * Not persistent: a replica restart ends every snapshot (as in the original product).
 */
import { DruvaaError, exitCodes } from "../../errors.ts";
import type { ReplicaDevice } from "./apply.ts";
import type { Chunk } from "./journal.ts";
import { Overlay, readThrough, type OverlaySource } from "./overlay.ts";

/** The read source of one chunk's before-images (its segment file), made once per chunk. */
const chunkSources = new WeakMap<Chunk, OverlaySource>();
export function sourceOf(chunk: Chunk): OverlaySource {
  let source = chunkSources.get(chunk);
  if (source === undefined) {
    const file = chunk.segment.file;
    source = { read: (position, length) => file.read(position, length) };
    chunkSources.set(chunk, source);
  }
  return source;
}

export interface SnapshotInfo {
  id: number;
  device: string;
  wrl: string;
  lsn: number;
  label?: string;
  sizeBytes: number;
  createdAt: string;
  preservedBytes: number;
  export?: string;
}

export class Snapshot {
  readonly overlay = new Overlay();
  #released = false;
  #lost: DruvaaError | undefined;
  readonly #unpins = new Map<object, () => void>();
  export: string | undefined;

  constructor(
    readonly id: number,
    readonly target: ReplicaDevice,
    readonly wrl: string,
    readonly wrlUuid: string,
    readonly lsn: number,
    readonly label: string | undefined,
    readonly sizeBytes: number,
    readonly createdAt: string,
    private readonly onRelease: (snapshot: Snapshot) => void,
  ) {}

  get released(): boolean {
    return this.#released;
  }

  /** Takes in the before-images of `chunk` where the view has nothing yet; its segment is kept until release. */
  addChunk(chunk: Chunk, journal: { pin(chunks: readonly Chunk[]): () => void }): void {
    if (this.#lost !== undefined) return;
    if (!this.#unpins.has(chunk.segment)) this.#unpins.set(chunk.segment, journal.pin([chunk]));
    for (const [index, range] of chunk.meta.ranges.entries()) {
      if (range.device !== this.target.name) continue;
      this.overlay.fillGaps(range.offset, range.offset + range.length, sourceOf(chunk), chunk.dataPositions[index]!);
    }
  }

  /** A chunk undone (its apply failed): the device holds its before-images again, read them there. */
  forgetChunk(chunk: Chunk): void {
    const source = chunkSources.get(chunk);
    if (source !== undefined) this.overlay.removeSource(source);
  }

  /** The snapshot can no longer be kept (its before-images had no room): every read fails with `reason`. */
  lose(reason: DruvaaError): void {
    this.#lost = reason;
    for (const unpin of this.#unpins.values()) unpin();
    this.#unpins.clear();
  }

  /** `length` bytes at `offset` as they were at the snapshot's point. */
  read(offset: number, length: number): Promise<Uint8Array> {
    if (this.#lost !== undefined) return Promise.reject(this.#lost);
    if (this.#released) return Promise.reject(new DruvaaError("SNAPSHOT_RELEASED", `snapshot ${this.id} of ${this.target.name} was released`, "Take a new one: druvaa restore --snapshot", exitCodes.refused));
    return readThrough(this.overlay, (at, bytes) => this.target.device.read(at, bytes), offset, length);
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    for (const unpin of this.#unpins.values()) unpin();
    this.#unpins.clear();
    this.onRelease(this);
  }

  info(): SnapshotInfo {
    return {
      id: this.id,
      device: this.target.name,
      wrl: this.wrl,
      lsn: this.lsn,
      ...(this.label === undefined ? {} : { label: this.label }),
      sizeBytes: this.sizeBytes,
      createdAt: this.createdAt,
      preservedBytes: this.overlay.coveredBytes,
      ...(this.export === undefined ? {} : { export: this.export }),
    };
  }
}
