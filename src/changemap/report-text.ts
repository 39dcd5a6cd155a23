/** Human text for `druvaa changemap create | info`. */
import { formatBytes } from "../units.ts";
import type { ChangeMapInfo } from "./change-map.ts";
import type { DirtyRange, RegionInfo } from "./region.ts";

function percent(fraction: number): string {
  if (fraction === 0) return "0%";
  const value = fraction * 100;
  return value >= 0.01 ? `${value.toFixed(2)}%` : `${value.toPrecision(2)}%`;
}

function describeRange(range: DirtyRange): string {
  return `${range.offsetBytes}+${range.lengthBytes}`;
}

function describeRegion(region: RegionInfo): string[] {
  const identity = [region.volumeUuid && `volume uuid ${region.volumeUuid}`, region.deviceIdentity && `device ${region.deviceIdentity}`].filter(Boolean).join(", ");
  const lines = [
    `  region ${region.name}: volume ${formatBytes(region.volumeSizeBytes)} (${region.volumeSizeBytes} bytes), generation ${region.generation}${identity ? `, ${identity}` : ""}`,
    `    bitmap ${formatBytes(region.bitmapBytes)} at offset ${region.bitmapOffsetBytes}, ${region.blockCount} blocks`,
    `    dirty: ${region.dirtyBlocks} blocks, ${formatBytes(region.dirtyBytes)} (${percent(region.dirtyFraction)} of the volume)`,
  ];
  if (region.firstDirtyRanges.length > 0) {
    lines.push(`    dirty ranges (offset+length): ${region.firstDirtyRanges.map(describeRange).join(", ")}${region.moreDirtyRanges ? ", ..." : ""}`);
  }
  return lines;
}

export function describeChangeMap(info: ChangeMapInfo): string {
  const lines = [
    `change map ${info.uuid} on ${info.name}`,
    `  generation ${info.generation}, block size ${formatBytes(info.blockSizeBytes)} a bit, ${info.regions.length} region${info.regions.length === 1 ? "" : "s"}, uses ${formatBytes(info.layoutSizeBytes)} of ${formatBytes(info.deviceSizeBytes)}`,
  ];
  if (info.otherHeaderCopy === "invalid") lines.push(`  note: header copy ${1 - info.headerCopy} is damaged or torn; copy ${info.headerCopy} is in use (the next generation bump rewrites it)`);
  for (const region of info.regions) lines.push(...describeRegion(region));
  return lines.join("\n");
}
