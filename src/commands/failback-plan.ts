/**
 * What `druvaa failback` (failback.ts) sends, and the sending: the ranges each side wrote since
 * the failover, the checksum pass where neither side's changes are known, and the copy over the
 * promoted devices' NBD export.
 */
import { createHash } from "node:crypto";
import { openChangeMapAtPath, type ChangeMap } from "../changemap/index.ts";
import { DruvaaError, exitCodes } from "../errors.ts";
import type { BlockDevice } from "../io/block-device.ts";
import { openBlockDevice } from "../io/open-device.ts";
import { connectNbd } from "../nbd/client.ts";
import type { FailoverRecord } from "../roles/replica/failover-state.ts";
import { mergeRanges } from "../roles/replica/failover-state.ts";
import type { JournalRange } from "../roles/replica/journal-format.ts";
import { formatBytes } from "../units.ts";

/** GET /failover of the replica. */
export interface FailoverView extends FailoverRecord {
  drWritten: JournalRange[];
  uris: Record<string, string>;
}

export interface FailbackPlan {
  primaryRanges: JournalRange[];
  drRanges: JournalRange[];
  /** Blocks nobody tracked that differ (the checksum pass). */
  checksumDiffer: JournalRange[];
  union: JournalRange[];
  primaryChanged: boolean;
  drChanged: boolean;
  splitBrain: boolean;
  sentBytes: number;
  volumeBytes: number;
  checksummedBytes: number;
  /** Dirty bytes of the client's change map for these devices (undefined without --changemap). */
  mappedBytes: number | undefined;
  /** Clears the client's change map (the failback made its writes moot), durably. */
  clearChangemap(): Promise<void>;
  /** Closes the change map (idempotent). */
  close(): Promise<void>;
}

/** Copies and checksums move whole 4 KiB pages, at most this much at a time. */
const pageBytes = 4096;
const pieceBytes = 4 * 1024 * 1024;
const checksumBlockBytes = 1024 * 1024;
const digestRequestBytes = 64 * 1024 * 1024;

const total = (ranges: readonly JournalRange[]) => ranges.reduce((sum, range) => sum + range.length, 0);

/** Ranges rounded out to whole pages and clipped to each device's size, merged. */
function pages(ranges: readonly JournalRange[], sizes: ReadonlyMap<string, number>): JournalRange[] {
  return mergeRanges(ranges.map((range) => {
    const start = Math.floor(range.offset / pageBytes) * pageBytes;
    const end = Math.min(Math.ceil((range.offset + range.length) / pageBytes) * pageBytes, sizes.get(range.device) ?? 0);
    return { device: range.device, offset: start, length: Math.max(0, end - start) };
  }));
}

export async function planFailback(options: {
  view: FailoverView;
  primaries: ReadonlyMap<string, string>;
  pending: readonly JournalRange[];
  changemap: string | undefined;
  digestsOf: (body: { device: string; offset: number; length: number; blockBytes: number }) => Promise<{ digests: string[] }>;
}): Promise<FailbackPlan> {
  const { view } = options;
  const sizes = new Map(view.devices.map((device) => [device.name, device.sizeBytes]));
  let map: ChangeMap | undefined;
  const mapped: JournalRange[] = [];
  if (options.changemap !== undefined) {
    map = await openChangeMapAtPath(options.changemap);
    for (const device of view.devices) {
      for (const range of map.region(device.name, { volumeSizeBytes: device.sizeBytes }).dirtyRanges()) mapped.push({ device: device.name, offset: range.offsetBytes, length: range.lengthBytes });
    }
  }
  const primaryRanges = pages([...view.undone, ...options.pending.filter((range) => sizes.has(range.device)), ...mapped], sizes);
  const drRanges = pages(view.drWritten, sizes);
  let checksumDiffer: JournalRange[] = [];
  let checksummedBytes = 0;
  if (map === undefined) {
    const known = mergeRanges([...primaryRanges, ...drRanges]);
    for (const device of view.devices) {
      const result = await checksumPass(device.name, device.sizeBytes, options.primaries.get(device.name)!, known.filter((range) => range.device === device.name).sort((a, b) => a.offset - b.offset), options.digestsOf);
      checksumDiffer = [...checksumDiffer, ...result.differ];
      checksummedBytes += result.comparedBytes;
    }
  }
  const primaryChanged = primaryRanges.length > 0 || checksumDiffer.length > 0;
  const drChanged = drRanges.length > 0;
  const union = mergeRanges([...primaryRanges, ...drRanges, ...checksumDiffer]);
  return {
    primaryRanges,
    drRanges,
    checksumDiffer,
    union,
    primaryChanged,
    drChanged,
    splitBrain: primaryChanged && drChanged,
    sentBytes: total(union),
    volumeBytes: view.devices.reduce((sum, device) => sum + device.sizeBytes, 0),
    checksummedBytes,
    mappedBytes: options.changemap === undefined ? undefined : total(mapped),
    clearChangemap: async () => {
      if (map === undefined) return;
      for (const device of view.devices) map.region(device.name, { volumeSizeBytes: device.sizeBytes }).clearClean(0, device.sizeBytes);
      await map.sync();
    },
    close: async () => {
      const open = map;
      map = undefined;
      await open?.close();
    },
  };
}

/**
 * Compares, by sha256, what no side's tracking covers: each 1 MiB block outside `known` (sorted,
 * merged ranges of the device) whole, and a block `known` covers in part page by page (4 KiB
 * digests of that block, only its uncovered pages compared), so a write the DR side recorded is
 * never mistaken for the primary's.
 */
async function checksumPass(device: string, sizeBytes: number, primaryPath: string, known: readonly JournalRange[], digestsOf: (body: { device: string; offset: number; length: number; blockBytes: number }) => Promise<{ digests: string[] }>): Promise<{ differ: JournalRange[]; comparedBytes: number }> {
  const primary = await openBlockDevice(primaryPath, { readOnly: true });
  const differ: JournalRange[] = [];
  let comparedBytes = 0;
  let cursor = 0; // the first range of `known` that may overlap the block looked at
  const sha = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");
  try {
    for (let offset = 0; offset < sizeBytes; offset += digestRequestBytes) {
      const length = Math.min(digestRequestBytes, sizeBytes - offset);
      const { digests } = await digestsOf({ device, offset, length, blockBytes: checksumBlockBytes });
      for (const [index, remote] of digests.entries()) {
        const start = offset + index * checksumBlockBytes;
        const end = Math.min(start + checksumBlockBytes, sizeBytes);
        while (cursor < known.length && known[cursor]!.offset + known[cursor]!.length <= start) cursor += 1;
        const overlapping: JournalRange[] = [];
        for (let at = cursor; at < known.length && known[at]!.offset < end; at += 1) overlapping.push(known[at]!);
        const coveredBytes = overlapping.reduce((sum, range) => sum + Math.min(end, range.offset + range.length) - Math.max(start, range.offset), 0);
        if (coveredBytes >= end - start) continue;
        if (coveredBytes === 0) {
          comparedBytes += end - start;
          if (sha(await primary.read(start, end - start)) !== remote) differ.push({ device, offset: start, length: end - start });
          continue;
        }
        const pagesRemote = (await digestsOf({ device, offset: start, length: end - start, blockBytes: pageBytes })).digests;
        const local = await primary.read(start, end - start);
        for (const [page, digest] of pagesRemote.entries()) {
          const pageStart = start + page * pageBytes;
          const pageEnd = Math.min(pageStart + pageBytes, end);
          if (overlapping.some((range) => range.offset < pageEnd && range.offset + range.length > pageStart)) continue;
          comparedBytes += pageEnd - pageStart;
          if (sha(local.subarray(pageStart - start, pageEnd - start)) !== digest) differ.push({ device, offset: pageStart, length: pageEnd - pageStart });
        }
      }
    }
  } finally {
    await primary.close();
  }
  return { differ: mergeRanges(differ), comparedBytes };
}

/** One line on what each side wrote since the failover. */
export function describeSides(plan: FailbackPlan, view: FailoverView): string {
  const first = (ranges: readonly JournalRange[]) => (ranges[0] === undefined ? "" : `, first ${ranges[0].device} at ${ranges[0].offset}+${ranges[0].length}`);
  const primaryBytes = total(plan.primaryRanges) + total(plan.checksumDiffer);
  return [
    `the DR side wrote ${formatBytes(total(plan.drRanges))} in ${plan.drRanges.length} range(s)${first(plan.drRanges)}`,
    `the original primary wrote ${formatBytes(primaryBytes)} in ${plan.primaryRanges.length + plan.checksumDiffer.length} range(s) after LSN ${view.atLsn}${first([...plan.primaryRanges, ...plan.checksumDiffer])}${plan.checksumDiffer.length > 0 ? " (some found only by checksum)" : ""}`,
  ].join("; ");
}

/**
 * Copies the plan's ranges: keep dr, read from the promoted devices' NBD export (read-only once
 * the failback began) into the primaries; keep primary, from the primaries through `writeDr`
 * (POST /failback/write). Then flushes.
 */
export async function copyRanges(plan: FailbackPlan, view: FailoverView, primaries: ReadonlyMap<string, string>, keep: "dr" | "primary", writeDr: (device: string, offset: number, data: Uint8Array) => Promise<void>): Promise<void> {
  if (view.export === undefined) throw new DruvaaError("NO_EXPORT", `WRL ${view.wrl} was failed over without --export: failback has no way to the DR devices`, "Fail over again with --export, or copy with druvaa restore", exitCodes.refused);
  for (const device of view.devices) {
    const path = primaries.get(device.name)!;
    const primary: BlockDevice = await openBlockDevice(path);
    const dr = await connectNbd(view.export, device.name).catch(async (error: unknown) => {
      await primary.close();
      throw error;
    });
    try {
      for (const range of plan.union.filter((entry) => entry.device === device.name)) {
        for (let done = 0; done < range.length; done += pieceBytes) {
          const offset = range.offset + done;
          const length = Math.min(pieceBytes, range.length - done);
          if (keep === "dr") await primary.write(offset, await dr.read(offset, length));
          else await writeDr(device.name, offset, await primary.read(offset, length));
        }
      }
      await primary.flush();
    } finally {
      await dr.close();
      await primary.close();
    }
  }
}
