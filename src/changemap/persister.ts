/**
 * Group commit of bitmap sectors: what makes a mark durable before the write it covers is
 * acknowledged, with one flush for many marks.
 *
 * The in-memory image of every bitmap is the truth; a sector of it is either known durable (its
 * set bits are on disk) or "unsynced", mapped to the batch that will write it. Marks that set new
 * bits put their sector in the open batch and wait for it; a mark whose bits are already set
 * waits only if its sector is still unsynced (the bits may be in memory only), otherwise it
 * returns at once with no I/O. One batch runs at a time: it writes its sectors (adjacent ones
 * together), flushes once, and resolves everyone waiting on it. Marks arriving meanwhile gather
 * in the next batch, which starts as soon as the running one ends: the "group" of group commit.
 * A batch starts on a microtask, so marks issued in the same turn share it.
 *
 * Clears never wait: a sector whose bits were only cleared is remembered as lazy and written by
 * the next sync() (or along with a later mark of the same sector). Losing a clear costs a block
 * sent again, never data.
 *
 * A sector is snapshotted when its write is issued, not when the batch starts, so a write may
 * carry bits set or cleared after the batch began. That is safe: a later mark still waits for the
 * next batch, and a later clear was the caller's to make. Writes of one batch all settle before
 * the batch ends (success or failure), so an old snapshot never lands after a newer one.
 *
 * On an I/O error the batch's waiters are rejected and its sectors go back to unsynced in the
 * next batch: they are rewritten (re-dirtying the page cache after a failed fdatasync) by the
 * next batch someone waits on. Nothing retries on its own, so a dead device costs no busy loop.
 */
import { assert } from "../assert.ts";
import type { BlockDevice } from "../io/block-device.ts";
import { changeMapWriteBytesMax, changeMapWritesInflightMax } from "../constants.ts";

export class Batch {
  readonly sectors = new Set<number>();
  /** Someone waits for it: it must run (a batch nobody waits for holds requeued sectors only). */
  requested = false;
  readonly done: Promise<void>;
  resolve!: () => void;
  reject!: (error: unknown) => void;

  constructor() {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // Waiters see the rejection through their own await; this keeps an unawaited batch quiet.
    this.done.catch(() => undefined);
  }
}

export interface PersisterStats {
  batchCount: number;
  flushCount: number;
  writeCount: number;
  writtenBytes: number;
}

export class SectorPersister {
  private next = new Batch();
  private running: Batch | undefined;
  private startQueued = false;
  /** Sectors whose in-memory bytes may hold set bits that are not durable -> the batch that writes them. */
  private readonly unsynced = new Map<number, Batch>();
  /** Sectors with clears not yet written. */
  private readonly lazy = new Set<number>();
  readonly stats: PersisterStats = { batchCount: 0, flushCount: 0, writeCount: 0, writtenBytes: 0 };

  /**
   * `image` holds the device bytes from `imageOffsetBytes` on; sector n of the device is
   * [n × sectorBytes, (n + 1) × sectorBytes).
   */
  constructor(
    private readonly device: BlockDevice,
    private readonly image: Uint8Array,
    private readonly imageOffsetBytes: number,
    readonly sectorBytes: number,
  ) {
    assert(imageOffsetBytes % sectorBytes === 0 && image.length % sectorBytes === 0, "the image is whole sectors");
  }

  /** New bits were set in `sector`: it joins the open batch, which the caller must wait for. */
  setIn(sector: number): Batch {
    this.lazy.delete(sector);
    this.next.sectors.add(sector);
    this.unsynced.set(sector, this.next);
    return this.next;
  }

  /** The batch an already-set bit of `sector` must wait for, or undefined if the sector is durable. */
  pendingFor(sector: number): Batch | undefined {
    return this.unsynced.get(sector);
  }

  /** Bits were cleared in `sector`: persisted lazily, unless the open batch will write it anyway. */
  clearedIn(sector: number): void {
    if (this.unsynced.get(sector) !== this.next) this.lazy.add(sector);
  }

  /** Sectors not yet durable, or holding clears not yet written. */
  get pendingSectorCount(): number {
    return this.unsynced.size + this.lazy.size;
  }

  /** Resolves when every batch in `batches` is durable (starting the open one if needed). */
  wait(batches: readonly Batch[]): Promise<void> {
    for (const batch of batches) {
      if (batch === this.next) {
        batch.requested = true;
        this.kick();
      }
    }
    if (batches.length === 1) return batches[0]!.done;
    return Promise.all(batches.map((b) => b.done)).then(() => undefined);
  }

  /** Makes everything durable: unsynced sectors and lazy clears. */
  sync(): Promise<void> {
    for (const sector of [...this.lazy]) this.setIn(sector);
    return this.wait([...new Set(this.unsynced.values())]);
  }

  /** Resolves once no batch is running (used by close; does not start anything). */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running.done.catch(() => undefined);
  }

  private kick(): void {
    if (this.running !== undefined || this.startQueued || !this.next.requested) return;
    this.startQueued = true;
    queueMicrotask(() => {
      this.startQueued = false;
      void this.run();
    });
  }

  private async run(): Promise<void> {
    if (this.running !== undefined || !this.next.requested) return;
    const batch = this.next;
    this.next = new Batch();
    this.running = batch;
    this.stats.batchCount += 1;
    try {
      await this.writeSectors([...batch.sectors].sort((a, b) => a - b));
      await this.device.flush();
      this.stats.flushCount += 1;
      for (const sector of batch.sectors) if (this.unsynced.get(sector) === batch) this.unsynced.delete(sector);
      batch.resolve();
    } catch (error) {
      for (const sector of batch.sectors) {
        if (this.unsynced.get(sector) !== batch) continue;
        this.unsynced.set(sector, this.next);
        this.next.sectors.add(sector);
      }
      batch.reject(error);
    } finally {
      this.running = undefined;
      this.kick();
    }
  }

  /** Writes runs of adjacent sectors, a few at a time; every write settles before this returns. */
  private async writeSectors(sectors: number[]): Promise<void> {
    const runs: Array<{ first: number; count: number }> = [];
    const sectorsPerWriteMax = Math.max(1, Math.floor(changeMapWriteBytesMax / this.sectorBytes));
    for (const sector of sectors) {
      const last = runs[runs.length - 1];
      if (last !== undefined && last.first + last.count === sector && last.count < sectorsPerWriteMax) last.count += 1;
      else runs.push({ first: sector, count: 1 });
    }
    let nextRun = 0;
    let failure: { error: unknown } | undefined;
    const worker = async () => {
      while (nextRun < runs.length && failure === undefined) {
        const run = runs[nextRun]!;
        nextRun += 1;
        const offsetBytes = run.first * this.sectorBytes;
        const lengthBytes = run.count * this.sectorBytes;
        const at = offsetBytes - this.imageOffsetBytes;
        assert(at >= 0 && at + lengthBytes <= this.image.length, "bitmap sectors lie inside the image");
        try {
          await this.device.write(offsetBytes, this.image.slice(at, at + lengthBytes));
          this.stats.writeCount += 1;
          this.stats.writtenBytes += lengthBytes;
        } catch (error) {
          failure ??= { error };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(changeMapWritesInflightMax, runs.length) }, worker));
    if (failure !== undefined) throw failure.error;
  }
}
