/**
 * A simulated, crash-prone disk for tests and the deterministic simulator (after FoundationDB's
 * AsyncFileNonDurable). It keeps two layers:
 *   - the durable image: what survives power loss;
 *   - the dirty sectors: 512-byte sectors written (or discarded) since the last flush().
 * Reads see dirty sectors over the durable image (read-your-writes). flush() folds every dirty
 * sector into the durable image. crash() models power loss: each dirty sector is, independently
 * and under the seeded PRNG, dropped (old durable bytes stay), kept (new bytes land), or torn
 * (new bytes up to a random cut inside the sector and old after it, or the reverse) — the
 * failure modes a real drive without power-loss protection shows at sector granularity.
 *
 * What it does NOT model: reordering between sectors of one write beyond the per-sector choice
 * (every subset is possible, which already covers any reordering), latency, or misdirected
 * writes. Everything is deterministic for a given seed and sequence of calls.
 *
 * Memory: the durable image plus one 512-byte view per dirty sector, so devices of tens of MiB
 * are fine.
 */
import type { BlockDevice } from "./block-device.ts";
import { checkRange, closedError } from "./checks.ts";
import { Random } from "./random.ts";
import { DruvaaError } from "../errors.ts";
import { assert } from "../assert.ts";
import { sectorSizeBytes } from "../constants.ts";

export interface SimDiskOptions {
  sizeBytes: number;
  /** Seeds the PRNG that decides what each unsynced sector becomes on crash(). */
  seed: number;
  name?: string;
  /** Alignment the device demands of callers (512 or 4096). Crash granularity stays 512. */
  logicalBlockSizeBytes?: number;
}

/** What crash() did to the unsynced sectors, for test diagnostics. */
export interface CrashReport {
  droppedSectorCount: number;
  keptSectorCount: number;
  tornSectorCount: number;
}

/** Shared, never mutated: dirty entries are replaced, not written into. */
const zeroSector = new Uint8Array(sectorSizeBytes);

export class SimDisk implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly logicalBlockSizeBytes: number;
  private readonly random: Random;
  private readonly durable: Uint8Array;
  /** sector index -> the sector's bytes as last written (not yet flushed). Never mutated in place. */
  private dirty = new Map<number, Uint8Array>();
  private closed = false;
  private flushes = 0;
  private crashes = 0;
  private writeFailuresPending = 0;
  private writeFailureCode = "IO_ERROR";
  private flushFailuresPending = 0;
  private flushFailureCode = "IO_ERROR";

  constructor(opts: SimDiskOptions) {
    const logicalBlockSizeBytes = opts.logicalBlockSizeBytes ?? sectorSizeBytes;
    if (logicalBlockSizeBytes <= 0 || logicalBlockSizeBytes % sectorSizeBytes !== 0) {
      throw new RangeError(`logicalBlockSizeBytes must be a positive multiple of ${sectorSizeBytes}, got ${logicalBlockSizeBytes}`);
    }
    if (!Number.isSafeInteger(opts.sizeBytes) || opts.sizeBytes <= 0 || opts.sizeBytes % logicalBlockSizeBytes !== 0) {
      throw new RangeError(`sizeBytes must be a positive multiple of ${logicalBlockSizeBytes}, got ${opts.sizeBytes}`);
    }
    this.name = opts.name ?? `sim-disk(seed=${opts.seed})`;
    this.sizeBytes = opts.sizeBytes;
    this.logicalBlockSizeBytes = logicalBlockSizeBytes;
    this.random = new Random(opts.seed);
    this.durable = new Uint8Array(opts.sizeBytes);
  }

  /** How many flush() calls have succeeded (across crashes). */
  get flushCount(): number {
    return this.flushes;
  }

  /** How many times crash() has been called. */
  get crashCount(): number {
    return this.crashes;
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    this.checkOpen();
    checkRange(this, offsetBytes, lengthBytes);
    const out = this.durable.slice(offsetBytes, offsetBytes + lengthBytes);
    if (this.dirty.size > 0) this.overlayDirty(out, offsetBytes);
    return out;
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    this.checkOpen();
    checkRange(this, offsetBytes, data.length);
    if (this.writeFailuresPending > 0) {
      this.writeFailuresPending -= 1;
      throw new DruvaaError(this.writeFailureCode, `${this.name}: injected write failure at ${offsetBytes}+${data.length}`);
    }
    // One copy for the whole write (the caller may reuse `data` once we resolve); each dirty
    // entry is a view into it.
    const copy = data.slice();
    const firstSector = offsetBytes / sectorSizeBytes;
    for (let index = 0; index * sectorSizeBytes < copy.length; index += 1) {
      this.dirty.set(firstSector + index, copy.subarray(index * sectorSizeBytes, (index + 1) * sectorSizeBytes));
    }
  }

  async flush(): Promise<void> {
    this.checkOpen();
    if (this.flushFailuresPending > 0) {
      this.flushFailuresPending -= 1;
      // A failed fdatasync leaves it unknown what reached the platter: keep everything dirty,
      // so a later crash decides sector by sector.
      throw new DruvaaError(this.flushFailureCode, `${this.name}: injected flush failure`);
    }
    for (const [sector, bytes] of this.dirty) this.durable.set(bytes, sector * sectorSizeBytes);
    this.dirty.clear();
    this.flushes += 1;
  }

  /** Discard is a write of zeros as far as durability goes: unflushed, a crash may undo or tear it. */
  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.checkOpen();
    checkRange(this, offsetBytes, lengthBytes);
    const firstSector = offsetBytes / sectorSizeBytes;
    const sectorCount = lengthBytes / sectorSizeBytes;
    for (let index = 0; index < sectorCount; index += 1) this.dirty.set(firstSector + index, zeroSector);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /**
   * Power loss. Every unsynced sector is dropped, kept or torn (see the file comment); then the
   * disk behaves like a freshly reopened device: it is open again (even if close() was called),
   * reads return the post-crash durable state, and nothing is unsynced. Pending injected faults
   * are cleared.
   */
  crash(): CrashReport {
    const report: CrashReport = { droppedSectorCount: 0, keptSectorCount: 0, tornSectorCount: 0 };
    // Sorted so the outcome depends only on the seed and the set of dirty sectors, not on the
    // order they were first written.
    const sectors = [...this.dirty.keys()].sort((a, b) => a - b);
    for (const sector of sectors) {
      const fresh = this.dirty.get(sector);
      assert(fresh !== undefined && fresh.length === sectorSizeBytes, "dirty sector holds one sector");
      const start = sector * sectorSizeBytes;
      const choice = this.random.nextInt(3);
      if (choice === 0) {
        report.droppedSectorCount += 1;
      } else if (choice === 1) {
        this.durable.set(fresh, start);
        report.keptSectorCount += 1;
      } else {
        // Cut strictly inside the sector so a torn sector is really a mix (1..511 new bytes).
        const cutBytes = this.random.nextIntBetween(1, sectorSizeBytes - 1);
        if (this.random.nextInt(2) === 0) {
          this.durable.set(fresh.subarray(0, cutBytes), start); // new head, old tail
        } else {
          this.durable.set(fresh.subarray(cutBytes), start + cutBytes); // old head, new tail
        }
        report.tornSectorCount += 1;
      }
    }
    this.dirty.clear();
    this.closed = false;
    this.crashes += 1;
    this.writeFailuresPending = 0;
    this.flushFailuresPending = 0;
    return report;
  }

  /**
   * A clean process restart without power loss: the device is open again and unsynced writes are
   * still there (the OS page cache kept them), so they are neither lost nor made durable.
   */
  reopen(): void {
    this.closed = false;
  }

  /** Sectors written or discarded since the last flush (what a crash could lose or tear). */
  unsyncedSectorCount(): number {
    return this.dirty.size;
  }

  /** A copy of the durable image: what a crash that drops every unsynced sector would leave. */
  durableSnapshot(): Uint8Array {
    return this.durable.slice();
  }

  /** A copy of what reads currently return. Works even while closed (test assertions). */
  snapshot(): Uint8Array {
    const out = this.durable.slice();
    this.overlayDirty(out, 0);
    return out;
  }

  /** The next `count` write() calls reject with DruvaaError(code) and change nothing. */
  failNextWrites(count: number, code = "IO_ERROR"): void {
    assert(Number.isSafeInteger(count) && count >= 0, "failure count must be a non-negative integer");
    this.writeFailuresPending = count;
    this.writeFailureCode = code;
  }

  /** The next `count` flush() calls reject with DruvaaError(code); nothing becomes durable. */
  failNextFlushes(count: number, code = "IO_ERROR"): void {
    assert(Number.isSafeInteger(count) && count >= 0, "failure count must be a non-negative integer");
    this.flushFailuresPending = count;
    this.flushFailureCode = code;
  }

  private checkOpen(): void {
    if (this.closed) throw closedError(this.name);
  }

  /** Copies dirty sectors that fall inside [offsetBytes, offsetBytes + out.length) into `out`. */
  private overlayDirty(out: Uint8Array, offsetBytes: number): void {
    const firstSector = offsetBytes / sectorSizeBytes;
    const sectorCount = out.length / sectorSizeBytes;
    // Walk whichever is smaller: the requested range or the dirty map.
    if (sectorCount <= this.dirty.size) {
      for (let index = 0; index < sectorCount; index += 1) {
        const bytes = this.dirty.get(firstSector + index);
        if (bytes !== undefined) out.set(bytes, index * sectorSizeBytes);
      }
    } else {
      for (const [sector, bytes] of this.dirty) {
        if (sector >= firstSector && sector < firstSector + sectorCount) out.set(bytes, (sector - firstSector) * sectorSizeBytes);
      }
    }
  }
}
