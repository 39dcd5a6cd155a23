/**
 * The change map on disk: two header copies, then one bitmap per region.
 *
 *   [0, 16 KiB)        header copy 0        written when sequence is even
 *   [16 KiB, 32 KiB)   header copy 1        written when sequence is odd
 *   [32 KiB, ...)      region bitmaps, each starting on a 4 KiB boundary, padded to 4 KiB
 *
 * The header changes rarely (create, generation bumps), never on the write path. Each header
 * write goes to the copy its sequence selects and is flushed before the next, so at most one copy
 * is ever in flight: a torn header write leaves the other, older copy intact.
 *
 * Layout of one header copy (little-endian):
 *    off size field
 *      0   8  magic "DRUVACHM"
 *      8   4  format version (1)
 *     12   4  copy size in bytes
 *     16   8  sequence (bumped on every header write)
 *     24  16  change-map uuid
 *     40   8  generation (bumped by every region generation bump; starts at 1)
 *     48   4  block size in bytes (volume bytes one bit covers; a power of two)
 *     52   4  region count
 *     56   8  layout size in bytes (header area + every bitmap area: what the map occupies)
 *     64   4  header area size in bytes (where the first bitmap may start)
 *    128 256×n region entries:
 *             +0 name length u16, +2 name (UTF-8, up to 64 bytes), +72 volume size u64,
 *             +80 bitmap offset u64, +88 bitmap bytes u64, +96 volume uuid (16; zeros = none),
 *             +112 region generation u64, +120 device identity length u16, +122 identity (UTF-8)
 *   last   4  crc32c of everything before it
 *
 * Bitmap of a region: bit i (byte i / 8, bit i % 8, least significant first) covers volume
 * bytes [i × blockSize, (i + 1) × blockSize), clipped to the volume. Bitmap sectors carry no
 * checksum and need none: a write only changes bits whose new value may be lost (a mark not yet
 * acknowledged, a clear that may be forgotten), so any mix of old and new bytes that a torn
 * write leaves is a state the map may legitimately be in.
 */
import { assert } from "../assert.ts";
import {
  changeMapBitmapAlignmentBytes,
  changeMapBitmapBytesTotalMax,
  changeMapBlockSizeBytesMax,
  changeMapBlockSizeBytesMin,
  changeMapDeviceIdentityBytesMax,
  changeMapHeaderAreaBytes,
  changeMapHeaderCopyBytes,
  changeMapRegionNameBytesMax,
  changeMapRegionsMax,
  sectorSizeBytes,
} from "../constants.ts";
import { DruvaaError, exitCodes } from "../errors.ts";
import { changeMapBitmapBytes } from "../sizing.ts";
import { formatBytes } from "../units.ts";
import { crc32c } from "../wrl/crc32c.ts";
import { getU64, setU64 } from "../wrl/record-format.ts";
import { isUuid, uuidFromBytes, uuidToBytes } from "../wrl/superblock.ts";

export const changeMapFormatVersion = 1;
export const changeMapMagic = new TextEncoder().encode("DRUVACHM");
const regionEntriesAt = 128;
const regionEntryBytes = 256;
const zeroUuid = "00000000-0000-0000-0000-000000000000";

/** What a region is created with. */
export interface RegionSpec {
  /** The client device this region tracks, e.g. "vol0". */
  name: string;
  volumeSizeBytes: number;
  /** The volume's uuid, if it has one: opening the region for another volume is refused. */
  volumeUuid?: string;
  /** A stable description of the device (e.g. /dev/disk/by-id/...), recorded for people. */
  deviceIdentity?: string;
}

export interface RegionEntry {
  name: string;
  volumeSizeBytes: number;
  bitmapOffsetBytes: number;
  bitmapBytes: number;
  volumeUuid: string | undefined;
  deviceIdentity: string | undefined;
  generation: number;
}

export interface ChangeMapHeader {
  sequence: number;
  uuid: string;
  generation: number;
  blockSizeBytes: number;
  layoutSizeBytes: number;
  regions: RegionEntry[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

const alignUp = (value: number, alignment: number) => Math.ceil(value / alignment) * alignment;

/** Offset of header copy 0 or 1. */
export function headerCopyOffset(copy: number): number {
  assert(copy === 0 || copy === 1, "two header copies");
  return copy * changeMapHeaderCopyBytes;
}

/** Blocks (bits) a volume needs: the last block may be partial. */
export function blockCountFor(volumeSizeBytes: number, blockSizeBytes: number): number {
  return Math.ceil(volumeSizeBytes / blockSizeBytes);
}

export function isValidBlockSize(blockSizeBytes: number): boolean {
  return Number.isSafeInteger(blockSizeBytes) && blockSizeBytes >= changeMapBlockSizeBytesMin && blockSizeBytes <= changeMapBlockSizeBytesMax && (blockSizeBytes & (blockSizeBytes - 1)) === 0;
}

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._:@+\/-]*$/;

function badRegion(message: string, hint: string): DruvaaError {
  return new DruvaaError("CHANGEMAP_BAD_REGION", message, hint, exitCodes.usage);
}

/**
 * Checks what `create` was given and lays the regions out in order. Refuses (typed errors, exit
 * code 2) bad block sizes, names, duplicate names, volume sizes that are not whole sectors, too
 * many regions, and bitmaps past the in-memory bound.
 */
export function planLayout(specs: readonly RegionSpec[], blockSizeBytes: number): { regions: RegionEntry[]; layoutSizeBytes: number } {
  if (!isValidBlockSize(blockSizeBytes)) {
    throw new DruvaaError("CHANGEMAP_BAD_BLOCK_SIZE", `block size ${blockSizeBytes} is not a power of two between ${formatBytes(changeMapBlockSizeBytesMin)} and ${formatBytes(changeMapBlockSizeBytesMax)}`, "Use e.g. --block-size 4KiB (the default) or --block-size 64KiB", exitCodes.usage);
  }
  if (specs.length === 0 || specs.length > changeMapRegionsMax) {
    throw badRegion(`a change map holds 1 to ${changeMapRegionsMax} regions, got ${specs.length}`, "Give one --region NAME[=SIZE] per client device, or none for a single region named 'default'");
  }
  const seen = new Set<string>();
  const regions: RegionEntry[] = [];
  let offset = changeMapHeaderAreaBytes;
  for (const spec of specs) {
    if (!namePattern.test(spec.name) || encoder.encode(spec.name).length > changeMapRegionNameBytesMax) {
      throw badRegion(`region name '${spec.name}' is not allowed`, `Use 1-${changeMapRegionNameBytesMax} letters, digits and . _ : @ + / -, starting with a letter or digit`);
    }
    if (seen.has(spec.name)) throw badRegion(`region '${spec.name}' is given twice`, "Give each region (client device) once");
    seen.add(spec.name);
    const size = spec.volumeSizeBytes;
    if (!Number.isSafeInteger(size) || size <= 0 || size % sectorSizeBytes !== 0) {
      throw badRegion(`region '${spec.name}': volume size ${size} bytes is not a positive whole number of ${sectorSizeBytes}-byte sectors`, `Give the client volume's exact size, e.g. --region ${spec.name}=100GiB (blockdev --getsize64 DEVICE prints it)`);
    }
    if (spec.volumeUuid !== undefined && !isUuid(spec.volumeUuid)) throw badRegion(`region '${spec.name}': '${spec.volumeUuid}' is not a uuid`, "Give a uuid like 0f8fad5b-d9cb-469f-a165-70867728950e");
    if (spec.deviceIdentity !== undefined && encoder.encode(spec.deviceIdentity).length > changeMapDeviceIdentityBytesMax) {
      throw badRegion(`region '${spec.name}': device identity is longer than ${changeMapDeviceIdentityBytesMax} bytes`, "Record a shorter identity (e.g. the /dev/disk/by-id name without the directory)");
    }
    const bitmapBytes = changeMapBitmapBytes(size, blockSizeBytes);
    regions.push({ name: spec.name, volumeSizeBytes: size, bitmapOffsetBytes: offset, bitmapBytes, volumeUuid: spec.volumeUuid?.toLowerCase(), deviceIdentity: spec.deviceIdentity, generation: 1 });
    offset += alignUp(bitmapBytes, changeMapBitmapAlignmentBytes);
    if (offset - changeMapHeaderAreaBytes > changeMapBitmapBytesTotalMax) {
      throw new DruvaaError("CHANGEMAP_TOO_LARGE", `the bitmaps would need more than ${formatBytes(changeMapBitmapBytesTotalMax)} (held in memory while the map is open)`, "Use a larger --block-size (each doubling halves the bitmap), or split the regions over several change maps", exitCodes.usage);
    }
  }
  return { regions, layoutSizeBytes: offset };
}

/** Bytes of its device a change map with these regions occupies (what `create` makes a new image). */
export function changeMapLayoutBytes(specs: readonly RegionSpec[], blockSizeBytes: number): number {
  return planLayout(specs, blockSizeBytes).layoutSizeBytes;
}

export function encodeHeader(header: ChangeMapHeader, target: Uint8Array): void {
  assert(target.length === changeMapHeaderCopyBytes, "header copy buffer");
  assert(header.regions.length >= 1 && header.regions.length <= changeMapRegionsMax, "region count");
  target.fill(0);
  const view = new DataView(target.buffer, target.byteOffset, target.length);
  target.set(changeMapMagic, 0);
  view.setUint32(8, changeMapFormatVersion, true);
  view.setUint32(12, changeMapHeaderCopyBytes, true);
  setU64(view, 16, header.sequence);
  target.set(uuidToBytes(header.uuid), 24);
  setU64(view, 40, header.generation);
  view.setUint32(48, header.blockSizeBytes, true);
  view.setUint32(52, header.regions.length, true);
  setU64(view, 56, header.layoutSizeBytes);
  view.setUint32(64, changeMapHeaderAreaBytes, true);
  header.regions.forEach((region, i) => {
    const at = regionEntriesAt + i * regionEntryBytes;
    const name = encoder.encode(region.name);
    assert(name.length <= changeMapRegionNameBytesMax, "region name fits");
    view.setUint16(at, name.length, true);
    target.set(name, at + 2);
    setU64(view, at + 72, region.volumeSizeBytes);
    setU64(view, at + 80, region.bitmapOffsetBytes);
    setU64(view, at + 88, region.bitmapBytes);
    target.set(uuidToBytes(region.volumeUuid ?? zeroUuid), at + 96);
    setU64(view, at + 112, region.generation);
    const identity = encoder.encode(region.deviceIdentity ?? "");
    assert(identity.length <= changeMapDeviceIdentityBytesMax, "device identity fits");
    view.setUint16(at + 120, identity.length, true);
    target.set(identity, at + 122);
  });
  view.setUint32(target.length - 4, crc32c(target.subarray(0, target.length - 4)), true);
}

export type HeaderProbe =
  | { kind: "valid"; header: ChangeMapHeader }
  | { kind: "zeroed" }
  | { kind: "no-magic" }
  /** Magic present, checksum or fields wrong: a torn write or damage. */
  | { kind: "corrupt"; detail: string }
  | { kind: "unsupported-version"; version: number };

export function hasMagic(bytes: Uint8Array, magic: Uint8Array): boolean {
  for (let i = 0; i < magic.length; i += 1) if (bytes[i] !== magic[i]) return false;
  return true;
}

export function decodeHeader(bytes: Uint8Array): HeaderProbe {
  assert(bytes.length === changeMapHeaderCopyBytes, "header copy buffer");
  if (!hasMagic(bytes, changeMapMagic)) return bytes.every((b) => b === 0) ? { kind: "zeroed" } : { kind: "no-magic" };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (crc32c(bytes.subarray(0, bytes.length - 4)) !== view.getUint32(bytes.length - 4, true)) return { kind: "corrupt", detail: "checksum mismatch" };
  const version = view.getUint32(8, true);
  if (version !== changeMapFormatVersion) return { kind: "unsupported-version", version };
  const regionCount = view.getUint32(52, true);
  if (view.getUint32(12, true) !== changeMapHeaderCopyBytes || view.getUint32(64, true) !== changeMapHeaderAreaBytes || regionCount < 1 || regionCount > changeMapRegionsMax) {
    return { kind: "corrupt", detail: "copy size, header area or region count out of range" };
  }
  const regions: RegionEntry[] = [];
  for (let i = 0; i < regionCount; i += 1) {
    const at = regionEntriesAt + i * regionEntryBytes;
    const nameLength = view.getUint16(at, true);
    const identityLength = view.getUint16(at + 120, true);
    if (nameLength === 0 || nameLength > changeMapRegionNameBytesMax || identityLength > changeMapDeviceIdentityBytesMax) return { kind: "corrupt", detail: `region ${i}: name or identity length` };
    let name: string;
    let identity: string;
    try {
      name = decoder.decode(bytes.subarray(at + 2, at + 2 + nameLength));
      identity = decoder.decode(bytes.subarray(at + 122, at + 122 + identityLength));
    } catch {
      return { kind: "corrupt", detail: `region ${i}: name or identity is not UTF-8` };
    }
    const volumeUuid = uuidFromBytes(bytes.subarray(at + 96, at + 112));
    regions.push({
      name,
      volumeSizeBytes: getU64(view, at + 72),
      bitmapOffsetBytes: getU64(view, at + 80),
      bitmapBytes: getU64(view, at + 88),
      volumeUuid: volumeUuid === zeroUuid ? undefined : volumeUuid,
      deviceIdentity: identityLength === 0 ? undefined : identity,
      generation: getU64(view, at + 112),
    });
  }
  const header: ChangeMapHeader = {
    sequence: getU64(view, 16),
    uuid: uuidFromBytes(bytes.subarray(24, 40)),
    generation: getU64(view, 40),
    blockSizeBytes: view.getUint32(48, true),
    layoutSizeBytes: getU64(view, 56),
    regions,
  };
  const problem = headerProblem(header);
  return problem === undefined ? { kind: "valid", header } : { kind: "corrupt", detail: problem };
}

/** Cross-checks a checksummed header against the layout rules; a message if a bug wrote it wrong. */
function headerProblem(header: ChangeMapHeader): string | undefined {
  if ([header.sequence, header.generation, header.layoutSizeBytes].some(Number.isNaN)) return "field out of range";
  if (header.generation < 1) return "generation 0";
  let planned;
  try {
    planned = planLayout(header.regions, header.blockSizeBytes);
  } catch (error) {
    return error instanceof DruvaaError ? error.message : String(error);
  }
  for (const [i, region] of header.regions.entries()) {
    const expected = planned.regions[i]!;
    if (region.bitmapOffsetBytes !== expected.bitmapOffsetBytes || region.bitmapBytes !== expected.bitmapBytes) return `region '${region.name}': bitmap at ${region.bitmapOffsetBytes}+${region.bitmapBytes}, layout says ${expected.bitmapOffsetBytes}+${expected.bitmapBytes}`;
    if (Number.isNaN(region.generation) || region.generation > header.generation) return `region '${region.name}': generation ${region.generation} is past the map's ${header.generation}`;
  }
  if (planned.layoutSizeBytes !== header.layoutSizeBytes) return `layout size ${header.layoutSizeBytes}, regions add up to ${planned.layoutSizeBytes}`;
  return undefined;
}

export interface ChosenHeader {
  header: ChangeMapHeader;
  copy: number;
  /** What the other copy held: an older valid one (normal), a torn/damaged one, or zeros. */
  otherCopy: "valid-older" | "invalid" | "zeroed";
}

/**
 * Picks the header from both copies. Decision table (each row has a test in
 * tests/changemap/format.test.ts):
 *   H1  both valid, same uuid              -> the higher sequence
 *   H2  one valid, other torn or damaged   -> the valid one (the other was the write in flight)
 *   H3  one valid, other zeroed / no magic -> the valid one (a create interrupted after one copy)
 *   H4  either of an unknown version       -> refuse CHANGEMAP_VERSION_UNSUPPORTED (never fall
 *                                             back past a copy a newer druvaa wrote)
 *   H5  neither valid, a magic present     -> refuse CHANGEMAP_CORRUPT
 *   H6  neither has the magic              -> refuse CHANGEMAP_NOT_FOUND (not a change map)
 *   H7  both valid, different uuids        -> refuse CHANGEMAP_CORRUPT (create zeroes the header
 *                                             area first, so this is damage or a foreign copy)
 */
export function chooseHeader(name: string, probes: readonly [HeaderProbe, HeaderProbe], firstBytes: Uint8Array): ChosenHeader {
  const unsupported = probes.find((p) => p.kind === "unsupported-version");
  if (unsupported?.kind === "unsupported-version") {
    throw new DruvaaError("CHANGEMAP_VERSION_UNSUPPORTED", `${name}: change map format version ${unsupported.version} is newer than this druvaa understands`, "Upgrade druvaa on this host", exitCodes.refused);
  }
  const [a, b] = probes;
  if (a.kind === "valid" && b.kind === "valid") {
    if (a.header.uuid !== b.header.uuid) throw corrupt(name, `the header copies name different change maps (${a.header.uuid}, ${b.header.uuid})`);
    const copy = b.header.sequence > a.header.sequence ? 1 : 0;
    return { header: (copy === 0 ? a : b).header, copy, otherCopy: "valid-older" };
  }
  if (a.kind === "valid" || b.kind === "valid") {
    const copy = a.kind === "valid" ? 0 : 1;
    const chosen = (copy === 0 ? a : b) as { kind: "valid"; header: ChangeMapHeader };
    const other = copy === 0 ? b : a;
    return { header: chosen.header, copy, otherCopy: other.kind === "zeroed" ? "zeroed" : "invalid" };
  }
  const damaged = probes.find((p) => p.kind === "corrupt");
  if (damaged?.kind === "corrupt") throw corrupt(name, `both header copies are damaged (${damaged.detail})`);
  throw notAChangeMap(name, firstBytes);
}

function corrupt(name: string, detail: string): DruvaaError {
  return new DruvaaError("CHANGEMAP_CORRUPT", `${name}: ${detail}`, `The dirty bits cannot be trusted: recreate it (druvaa changemap create --force ${name} ...) and resync the devices it tracked in full`, exitCodes.refused);
}

const wrlMagic = encoder.encode("DRUVAWRL");

/** CHANGEMAP_NOT_FOUND, saying what the device holds instead when we can tell. */
export function notAChangeMap(name: string, firstBytes: Uint8Array): DruvaaError {
  const what = hasMagic(firstBytes, wrlMagic) ? "it holds a druvaa write log" : "no change-map header";
  return new DruvaaError("CHANGEMAP_NOT_FOUND", `${name}: not a druvaa change map (${what})`, `Check the path; create one with: druvaa changemap create ${name} --volume-size SIZE`, exitCodes.notFound);
}
