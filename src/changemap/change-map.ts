/**
 * The persistent change map: one bitmap per client volume (region), all in one file or block
 * device, so the client can keep accepting writes while staging is unreachable and later resync
 * only what changed. Format: format.ts. Durability of marks: persister.ts. Per-region API:
 * region.ts.
 *
 * Ownership: a ChangeMap owns the device it is given and closes it in close(). One process opens a
 * map read-write at a time (nothing here locks it; the client role does).
 */
import { assert } from "../assert.ts";
import type { BlockDevice } from "../io/block-device.ts";
import { alignedBuffer } from "../io/handle-device.ts";
import {
  changeMapBitmapAlignmentBytes,
  changeMapHeaderAreaBytes,
  changeMapHeaderCopyBytes,
  changeMapBlockSizeBytesDefault,
  changeMapInfoRangesMax,
  changeMapWriteBytesMax,
  directIoAlignmentBytes,
  sectorSizeBytes,
} from "../constants.ts";
import { DruvaaError, exitCodes } from "../errors.ts";
import { formatBytes } from "../units.ts";
import { Bitmap } from "./bitmap.ts";
import {
  blockCountFor,
  changeMapFormatVersion,
  changeMapMagic,
  chooseHeader,
  decodeHeader,
  encodeHeader,
  hasMagic,
  headerCopyOffset,
  notAChangeMap,
  planLayout,
  type ChangeMapHeader,
  type ChosenHeader,
  type RegionEntry,
  type RegionSpec,
} from "./format.ts";
import { SectorPersister, type PersisterStats } from "./persister.ts";
import { ChangeMapRegion, type RegionHost, type RegionInfo } from "./region.ts";

export interface ChangeMapCreateOptions {
  regions: RegionSpec[];
  /** Volume bytes one bit covers (power of two, default 4 KiB). */
  blockSizeBytes?: number;
  /** Overwrite a change map or write log already on the device (its contents are lost). */
  force?: boolean;
  /** The caller guarantees the bitmap area already reads zeros (a new sparse image): skip zeroing it. */
  bitmapAreaIsZero?: boolean;
  uuid?: string;
}

export interface ChangeMapOpenOptions {
  /** Writes nothing (info, inspection); marks, clears and bumps are refused with CHANGEMAP_READ_ONLY. */
  readOnly?: boolean;
}

/** What the volume opening a region must match (checked by region()). */
export interface RegionExpectation {
  volumeSizeBytes?: number;
  volumeUuid?: string;
}

export interface ChangeMapInfo {
  name: string;
  uuid: string;
  formatVersion: number;
  generation: number;
  headerSequence: number;
  /** Which header copy was used, and what the other held (see format.ts, rows H1–H3). */
  headerCopy: number;
  otherHeaderCopy: ChosenHeader["otherCopy"];
  blockSizeBytes: number;
  layoutSizeBytes: number;
  deviceSizeBytes: number;
  regions: RegionInfo[];
}

const wrlMagic = new TextEncoder().encode("DRUVAWRL");

/** Sector size the map writes bitmaps in on `device`; refuses devices it cannot address. */
function sectorBytesFor(device: BlockDevice): number {
  const logical = device.logicalBlockSizeBytes;
  if (logical < sectorSizeBytes || changeMapBitmapAlignmentBytes % logical !== 0) {
    throw new DruvaaError("CHANGEMAP_DEVICE_UNSUPPORTED", `${device.name}: logical block size ${logical} bytes does not divide the change map's ${changeMapBitmapAlignmentBytes}-byte alignment`, "Use a device with 512- or 4096-byte logical blocks, or an image file", exitCodes.refused);
  }
  return logical;
}

function checkDeviceSize(device: BlockDevice, layoutSizeBytes: number, opening: boolean): void {
  if (device.sizeBytes >= layoutSizeBytes) return;
  throw new DruvaaError(
    "CHANGEMAP_DEVICE_TOO_SMALL",
    opening
      ? `${device.name}: ${formatBytes(device.sizeBytes)} is smaller than the change map on it (${layoutSizeBytes} bytes): was it truncated or shrunk?`
      : `${device.name}: ${formatBytes(device.sizeBytes)} is too small for this change map, which needs ${layoutSizeBytes} bytes (${formatBytes(layoutSizeBytes)})`,
    opening ? "Restore the device to its size, or recreate the map with --force and resync in full" : `Use a larger device, a larger --block-size, or a new image path (created at the exact size), or grow it: truncate -s ${layoutSizeBytes} ${device.name}`,
    exitCodes.refused,
  );
}

async function writeZeros(device: BlockDevice, offsetBytes: number, lengthBytes: number): Promise<void> {
  const chunk = new Uint8Array(Math.min(lengthBytes, changeMapWriteBytesMax));
  for (let at = offsetBytes; at < offsetBytes + lengthBytes; at += chunk.length) {
    await device.write(at, chunk.subarray(0, Math.min(chunk.length, offsetBytes + lengthBytes - at)));
  }
}

/** Writes `header` to the copy its sequence selects and flushes: durable when this resolves. */
async function writeHeaderCopy(device: BlockDevice, header: ChangeMapHeader): Promise<void> {
  const buffer = alignedBuffer(changeMapHeaderCopyBytes, directIoAlignmentBytes);
  encodeHeader(header, buffer);
  await device.write(headerCopyOffset(header.sequence % 2), buffer);
  await device.flush();
}

export class ChangeMap implements RegionHost {
  private header: ChangeMapHeader;
  private readonly regionsByName = new Map<string, ChangeMapRegion>();
  private readonly persister: SectorPersister;
  private headerWrites: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Which header copy open() used, and what the other held. */
  private readonly chosenCopy: number;
  private readonly otherCopy: ChosenHeader["otherCopy"];

  private constructor(
    private readonly device: BlockDevice,
    chosen: ChosenHeader,
    image: Uint8Array,
    readonly readOnly: boolean,
  ) {
    this.header = chosen.header;
    this.chosenCopy = chosen.copy;
    this.otherCopy = chosen.otherCopy;
    this.persister = new SectorPersister(device, image, changeMapHeaderAreaBytes, sectorBytesFor(device));
    chosen.header.regions.forEach((entry, index) => {
      const start = entry.bitmapOffsetBytes - changeMapHeaderAreaBytes;
      const areaBytes = Math.ceil(entry.bitmapBytes / changeMapBitmapAlignmentBytes) * changeMapBitmapAlignmentBytes;
      const bitmap = new Bitmap(image.subarray(start, start + areaBytes), blockCountFor(entry.volumeSizeBytes, chosen.header.blockSizeBytes));
      // Bits past the volume mean nothing; clearing them in memory keeps the counts exact.
      bitmap.clearPadding();
      this.regionsByName.set(entry.name, new ChangeMapRegion(this, index, bitmap, this.persister));
    });
  }

  /**
   * Lays a new, all-clean change map over `device`. Refuses, before writing anything: bad region
   * specs (CHANGEMAP_BAD_REGION, CHANGEMAP_BAD_BLOCK_SIZE, CHANGEMAP_TOO_LARGE), a device that
   * already holds a change map (CHANGEMAP_EXISTS) or a write log (CHANGEMAP_DEVICE_IN_USE) unless
   * `force`, and a device too small (CHANGEMAP_DEVICE_TOO_SMALL). Order of writes: zero both
   * header copies, zero the bitmaps, flush, then write the two header copies one flush apart, so a
   * crash leaves either no change map, a damaged one (refused), or the complete new one.
   */
  static async create(device: BlockDevice, opts: ChangeMapCreateOptions): Promise<ChangeMap> {
    const blockSizeBytes = opts.blockSizeBytes ?? changeMapBlockSizeBytesDefault;
    const layout = planLayout(opts.regions, blockSizeBytes);
    sectorBytesFor(device);
    if (!opts.force && device.sizeBytes >= sectorSizeBytes) {
      // Sizes are whole logical blocks and the header area is whole 4 KiB sectors: aligned.
      const headBytes = await device.read(0, Math.min(device.sizeBytes, changeMapHeaderAreaBytes));
      const second = headBytes.subarray(changeMapHeaderCopyBytes);
      if (hasMagic(headBytes, changeMapMagic) || (second.length >= changeMapMagic.length && hasMagic(second, changeMapMagic))) {
        throw new DruvaaError("CHANGEMAP_EXISTS", `${device.name}: already holds a change map`, `Inspect it with: druvaa changemap info ${device.name}; to overwrite it, add --force (its dirty bits are lost: resync those devices in full)`, exitCodes.refused);
      }
      if (hasMagic(headBytes, wrlMagic)) {
        throw new DruvaaError("CHANGEMAP_DEVICE_IN_USE", `${device.name}: holds a druvaa write log`, `Check the path (druvaa wrl info ${device.name}); to overwrite it, add --force (its records are lost)`, exitCodes.refused);
      }
    }
    checkDeviceSize(device, layout.layoutSizeBytes, false);
    const header: ChangeMapHeader = { sequence: 1, uuid: (opts.uuid ?? crypto.randomUUID()).toLowerCase(), generation: 1, blockSizeBytes, layoutSizeBytes: layout.layoutSizeBytes, regions: layout.regions };
    await writeZeros(device, 0, changeMapHeaderAreaBytes);
    if (!opts.bitmapAreaIsZero) await writeZeros(device, changeMapHeaderAreaBytes, layout.layoutSizeBytes - changeMapHeaderAreaBytes);
    await device.flush();
    await writeHeaderCopy(device, header);
    const final = { ...header, sequence: 2 };
    await writeHeaderCopy(device, final);
    const image = new Uint8Array(layout.layoutSizeBytes - changeMapHeaderAreaBytes);
    return new ChangeMap(device, { header: final, copy: 0, otherCopy: "valid-older" }, image, false);
  }

  /**
   * Opens the change map on `device`: picks the header (format.ts decision table), checks the
   * device still holds the whole map, and loads every bitmap into memory. Refuses
   * CHANGEMAP_NOT_FOUND, CHANGEMAP_CORRUPT, CHANGEMAP_VERSION_UNSUPPORTED,
   * CHANGEMAP_DEVICE_TOO_SMALL. Writes nothing.
   */
  static async open(device: BlockDevice, opts: ChangeMapOpenOptions = {}): Promise<ChangeMap> {
    if (device.sizeBytes < changeMapHeaderAreaBytes) throw notAChangeMap(device.name, await device.read(0, Math.min(device.sizeBytes, device.logicalBlockSizeBytes)));
    sectorBytesFor(device);
    const headerArea = await device.read(0, changeMapHeaderAreaBytes);
    const copies = [headerArea.subarray(0, changeMapHeaderCopyBytes), headerArea.subarray(changeMapHeaderCopyBytes)] as const;
    const chosen = chooseHeader(device.name, [decodeHeader(copies[0]), decodeHeader(copies[1])], headerArea);
    checkDeviceSize(device, chosen.header.layoutSizeBytes, true);
    const image = new Uint8Array(chosen.header.layoutSizeBytes - changeMapHeaderAreaBytes);
    for (let at = 0; at < image.length; at += changeMapWriteBytesMax) {
      const lengthBytes = Math.min(changeMapWriteBytesMax, image.length - at);
      image.set(await device.read(changeMapHeaderAreaBytes + at, lengthBytes), at);
    }
    return new ChangeMap(device, chosen, image, opts.readOnly ?? false);
  }

  get name(): string {
    return this.device.name;
  }

  get uuid(): string {
    return this.header.uuid;
  }

  /** The map's generation: bumped (durably) by every region's bumpGeneration(). */
  get generation(): number {
    return this.header.generation;
  }

  get blockSizeBytes(): number {
    return this.header.blockSizeBytes;
  }

  get regionNames(): string[] {
    return this.header.regions.map((r) => r.name);
  }

  /** Group-commit counters since open (for benchmarks and status). */
  get stats(): Readonly<PersisterStats> {
    return this.persister.stats;
  }

  /**
   * The region named `name`. Refuses CHANGEMAP_REGION_UNKNOWN, and when `expected` is given,
   * CHANGEMAP_SIZE_MISMATCH (the volume's size differs from the one the region was made for)
   * and CHANGEMAP_VOLUME_MISMATCH (the region recorded another volume uuid).
   */
  region(name: string, expected: RegionExpectation = {}): ChangeMapRegion {
    this.checkUsable(false);
    const region = this.regionsByName.get(name);
    if (region === undefined) {
      throw new DruvaaError("CHANGEMAP_REGION_UNKNOWN", `${this.name}: change map has no region '${name}' (it has: ${this.regionNames.join(", ")})`, `Use one of its regions, or create a map with --region ${name}=SIZE; see: druvaa changemap info ${this.name}`, exitCodes.notFound);
    }
    if (expected.volumeSizeBytes !== undefined && expected.volumeSizeBytes !== region.volumeSizeBytes) {
      throw new DruvaaError(
        "CHANGEMAP_SIZE_MISMATCH",
        `${this.name}: region '${name}' tracks a volume of ${region.volumeSizeBytes} bytes (${formatBytes(region.volumeSizeBytes)}), but this volume is ${expected.volumeSizeBytes} bytes (${formatBytes(expected.volumeSizeBytes)})`,
        "Is this the right change map and region for the device? If the volume was resized, recreate the map (druvaa changemap create --force ...) and resync the device in full",
        exitCodes.refused,
      );
    }
    const recorded = region.volumeUuid;
    if (expected.volumeUuid !== undefined && recorded !== undefined && expected.volumeUuid.toLowerCase() !== recorded) {
      throw new DruvaaError("CHANGEMAP_VOLUME_MISMATCH", `${this.name}: region '${name}' belongs to volume ${recorded}, not ${expected.volumeUuid}`, "Give the change map and region of this device; see: druvaa changemap info PATH", exitCodes.refused);
    }
    return region;
  }

  /** Makes every mark and every clear so far durable. */
  sync(): Promise<void> {
    try {
      this.checkUsable(false);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.readOnly ? Promise.resolve() : this.persister.sync();
  }

  info(rangesMax = changeMapInfoRangesMax): ChangeMapInfo {
    this.checkUsable(false);
    return {
      name: this.name,
      uuid: this.header.uuid,
      formatVersion: changeMapFormatVersion,
      generation: this.header.generation,
      headerSequence: this.header.sequence,
      headerCopy: this.chosenCopy,
      otherHeaderCopy: this.otherCopy,
      blockSizeBytes: this.header.blockSizeBytes,
      layoutSizeBytes: this.header.layoutSizeBytes,
      deviceSizeBytes: this.device.sizeBytes,
      regions: this.header.regions.map((entry) => this.regionsByName.get(entry.name)!.info(rangesMax)),
    };
  }

  /**
   * Persists pending clears (read-write), waits for I/O in flight, and closes the device, which
   * is closed even if the last sync fails (the error is rethrown). Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    let failure: unknown;
    if (!this.readOnly) await this.persister.sync().catch((error: unknown) => (failure = error));
    this.closed = true;
    await this.persister.idle();
    await this.device.close();
    if (failure !== undefined) throw failure;
  }

  // ---- RegionHost -------------------------------------------------------------------------------

  entry(index: number): RegionEntry {
    const entry = this.header.regions[index];
    assert(entry !== undefined, "region index");
    return entry;
  }

  checkUsable(forWriting: boolean): void {
    if (this.closed) throw new DruvaaError("CHANGEMAP_CLOSED", `${this.name}: change map is closed`);
    if (forWriting && this.readOnly) throw new DruvaaError("CHANGEMAP_READ_ONLY", `${this.name}: change map is open read-only`, "Open it read-write to mark or clear blocks");
  }

  /**
   * One header write at a time; the in-memory header changes only once the new copy is durable,
   * so a failed write is retried into the same copy with the same sequence (never over the last
   * good copy).
   */
  bumpGeneration(index: number): Promise<number> {
    const run = async (): Promise<number> => {
      this.checkUsable(true);
      const generation = this.header.generation + 1;
      const next: ChangeMapHeader = {
        ...this.header,
        sequence: this.header.sequence + 1,
        generation,
        regions: this.header.regions.map((r, i) => (i === index ? { ...r, generation } : r)),
      };
      await writeHeaderCopy(this.device, next);
      this.header = next;
      return generation;
    };
    const result = this.headerWrites.then(run, run);
    this.headerWrites = result.catch(() => undefined);
    return result;
  }
}
