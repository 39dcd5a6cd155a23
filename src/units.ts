/**
 * Human units at the CLI edge: sizes ("4KiB", "1.5G", "1400MB"), rates ("10MB/h", "20Mbit"),
 * durations ("30s", "24h"). Decimal prefixes (kB, MB, GB, TB) are powers of 1000 and binary ones
 * (KiB, MiB, GiB, TiB) powers of 1024; a bare K/M/G/T is binary, as in dd, truncate and qemu-img.
 */
import { usageError } from "./errors.ts";

const sizeUnits: Record<string, number> = {
  "": 1, b: 1,
  k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5,
  kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4, pib: 1024 ** 5,
  kb: 1000, mb: 1000 ** 2, gb: 1000 ** 3, tb: 1000 ** 4, pb: 1000 ** 5,
};

const sizePattern = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i;

/** Parses a size; throws a usage error naming `flag` on anything else. */
export function parseSizeBytes(text: string, flag: string): number {
  const match = sizePattern.exec(text);
  const unit = match?.[2]?.toLowerCase();
  const scale = unit === undefined ? undefined : sizeUnits[unit];
  if (!match || scale === undefined) {
    throw usageError(`${flag}: cannot read "${text}" as a size`, `Use a number with an optional unit, e.g. ${flag} 4KiB, ${flag} 10G, ${flag} 1400MB`);
  }
  const value = Number(match[1]) * scale;
  if (!Number.isSafeInteger(Math.round(value))) throw usageError(`${flag}: "${text}" is too large`);
  return Math.round(value);
}

const hourUnits: Record<string, number> = { s: 3600, sec: 3600, m: 60, min: 60, h: 1, hr: 1, hour: 1, d: 1 / 24, day: 1 / 24 };

/** Parses a data rate per hour such as "10MB/h" or "500KiB/s"; returns bytes per hour. */
export function parseRateBytesPerHour(text: string, flag: string): number {
  const [sizePart, perPart = "h"] = text.split("/");
  const perHour = hourUnits[perPart.trim().toLowerCase()];
  if (sizePart === undefined || perHour === undefined) {
    throw usageError(`${flag}: cannot read "${text}" as a rate`, `Use a size per time unit, e.g. ${flag} 10MB/h, ${flag} 2MiB/s`);
  }
  return parseSizeBytes(sizePart, flag) * perHour;
}

const bitPrefixes: Record<string, number> = { "": 1, k: 1e3, m: 1e6, g: 1e9 };

/**
 * Parses a bandwidth: bits ("20Mbit", "100Mbps", "1Gbit/s": decimal prefixes) or a size per time
 * ("20MiB/s", "500MB/min"; a bare size is per second). Returns bytes per second (> 0).
 */
export function parseRateBytesPerSecond(text: string, flag: string): number {
  const bits = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:bit|bps|b\/s|bit\/s)\s*$/i.exec(text);
  const bytesPerSecond = bits !== null
    ? (Number(bits[1]) * bitPrefixes[bits[2]!.toLowerCase()]!) / 8
    : parseRateBytesPerHour(text.includes("/") ? text : `${text}/s`, flag) / 3600;
  if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond)) throw usageError(`${flag}: "${text}" is not a positive rate`, `e.g. ${flag} 20Mbit or ${flag} 50MiB/s`);
  return bytesPerSecond;
}

const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses a duration such as "30s", "24h", "1500ms"; a bare number is seconds. */
export function parseDurationMs(text: string, flag: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = (match?.[2] ?? "").toLowerCase() || "s";
  const scale = durationUnits[unit];
  if (!match || scale === undefined) {
    throw usageError(`${flag}: cannot read "${text}" as a duration`, `Use a number with a unit, e.g. ${flag} 30s, ${flag} 5m, ${flag} 24h`);
  }
  return Math.round(Number(match[1]) * scale);
}

/** Formats bytes for people: binary units, three significant digits. */
export function formatBytes(sizeBytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = sizeBytes;
  let index = 0;
  while (Math.abs(value) >= 1024 && index < units.length - 1) {
    value /= 1024;
    index += 1;
  }
  return index === 0 ? `${value} B` : `${value.toPrecision(3)} ${units[index]}`;
}
