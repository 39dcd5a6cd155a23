import { command, jsonFlag, output } from "../cli-support.ts";
import { usageError } from "../errors.ts";
import { checkReserve } from "../roles/replica/protected-device.ts";
import { changeMapBitmapBytes, replicaDeviceSizeBytes, replicaWrlSizeBytes, stagingWrlSizeBytes } from "../sizing.ts";
import { formatBytes, parseRateBytesPerHour, parseSizeBytes } from "../units.ts";

function parseHours(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text.replace(/h$/i, ""));
  if (!Number.isFinite(value) || value < 0) throw usageError(`${flag}: "${text}" is not a number of hours`, `e.g. ${flag} 12`);
  return value;
}

const megabytes = (bytes: number) => Math.round(bytes / 1e6);

export default command({
  meta: { name: "sizing", description: "Size the staging WRL, replica WRL and change map (install guide formulas)" },
  args: {
    "avg-update-rate": { type: "string", valueHint: "RATE", description: "AUH: average data update rate, e.g. 10MB/h" },
    "max-update-rate": { type: "string", valueHint: "RATE", description: "MUH: maximum update rate during bursts, e.g. 100MB/h" },
    "burst-hours": { type: "string", valueHint: "HOURS", description: "BPH: duration of the burst period in hours" },
    "outage-hours": { type: "string", valueHint: "HOURS", description: "OH: longest expected staging→replica network outage in hours" },
    "disconnected-hours": { type: "string", valueHint: "HOURS", description: "DMH: longest disconnected-mode period (client cannot reach staging) in hours" },
    "safety-factor": { type: "string", valueHint: "SF", default: "10", description: "SF: safety factor against the unexpected" },
    "volume-size": { type: "string", valueHint: "SIZE", description: "client volume size, to size its change map, e.g. 100GB" },
    "change-map-block-size": { type: "string", valueHint: "SIZE", default: "512", description: "bytes covered by one change-map bit" },
    "primary-size": { type: "string", valueHint: "SIZE", description: "primary volume size, to size its replica device (primary rounded up to 4 KiB + header reserve), e.g. 100GB" },
    "protect-headers": { type: "string", valueHint: "BYTES", default: "1MiB", description: "the replica's header reserve (druvaa replica apply --protect-headers; 0: unprotected)" },
    json: jsonFlag,
  },
  examples: [
    "druvaa sizing --avg-update-rate 10MB/h --max-update-rate 100MB/h --burst-hours 1 --outage-hours 12",
    "druvaa sizing --max-update-rate 100MB/h --disconnected-hours 1          # replica WRL: 1000 MB",
    "druvaa sizing --volume-size 100GB                                       # change map: 25 MB",
    "druvaa sizing --primary-size 100GiB --json                              # replica device: 100 GiB + 1 MiB",
  ],
  run({ args }) {
    const safetyFactor = Number(args["safety-factor"]);
    if (!Number.isFinite(safetyFactor) || safetyFactor < 1) throw usageError(`--safety-factor: "${args["safety-factor"]}" must be a number ≥ 1`);
    const auh = args["avg-update-rate"] === undefined ? undefined : parseRateBytesPerHour(args["avg-update-rate"], "--avg-update-rate");
    const muh = args["max-update-rate"] === undefined ? undefined : parseRateBytesPerHour(args["max-update-rate"], "--max-update-rate");
    const bph = parseHours(args["burst-hours"], "--burst-hours");
    const oh = parseHours(args["outage-hours"], "--outage-hours");
    const dmh = parseHours(args["disconnected-hours"], "--disconnected-hours");

    const result: Record<string, unknown> = { safetyFactor };
    const lines: string[] = [];
    if (auh !== undefined || oh !== undefined || bph !== undefined) {
      if (auh === undefined || muh === undefined || bph === undefined || oh === undefined) {
        throw usageError("staging WRL sizing needs --avg-update-rate, --max-update-rate, --burst-hours and --outage-hours", "See: druvaa sizing --help");
      }
      const bytes = stagingWrlSizeBytes({ avgUpdateBytesPerHour: auh, maxUpdateBytesPerHour: muh, burstHours: bph, outageHours: oh, safetyFactor });
      result.stagingWrlSizeBytes = bytes;
      result.stagingWrlSizeMB = megabytes(bytes);
      lines.push(`staging WRL: ${megabytes(bytes)} MB (${formatBytes(bytes)})  = SF ${safetyFactor} × (AUH ${megabytes(auh)} MB/h × OH ${oh} h + MUH ${megabytes(muh)} MB/h × BPH ${bph} h)`);
    }
    if (dmh !== undefined) {
      if (muh === undefined) throw usageError("replica WRL sizing needs --max-update-rate and --disconnected-hours", "See: druvaa sizing --help");
      const bytes = replicaWrlSizeBytes({ maxUpdateBytesPerHour: muh, disconnectedHours: dmh, safetyFactor });
      result.replicaWrlSizeBytes = bytes;
      result.replicaWrlSizeMB = megabytes(bytes);
      lines.push(`replica WRL: ${megabytes(bytes)} MB (${formatBytes(bytes)})  = SF ${safetyFactor} × (MUH ${megabytes(muh)} MB/h × DMH ${dmh} h)`);
    }
    if (args["volume-size"] !== undefined) {
      const volume = parseSizeBytes(args["volume-size"], "--volume-size");
      const block = parseSizeBytes(args["change-map-block-size"], "--change-map-block-size");
      if (block < 512 || (block & (block - 1)) !== 0) throw usageError("--change-map-block-size must be a power of two ≥ 512");
      const bytes = changeMapBitmapBytes(volume, block);
      result.changeMapSizeBytes = bytes;
      result.changeMapSizeMB = megabytes(bytes);
      lines.push(`change map:  ${megabytes(bytes)} MB (${formatBytes(bytes)})  = volume ${formatBytes(volume)} / (8 × ${block} B a bit)`);
    }
    if (args["primary-size"] !== undefined) {
      const primary = parseSizeBytes(args["primary-size"], "--primary-size");
      const reserve = parseSizeBytes(args["protect-headers"], "--protect-headers");
      if (reserve > 0) checkReserve(reserve); // the rule of druvaa replica apply --protect-headers
      const bytes = replicaDeviceSizeBytes(primary, reserve);
      result.primarySizeBytes = primary;
      result.protectedHeaderBytes = reserve;
      result.replicaDeviceSizeBytes = bytes;
      const rounded = reserve > 0 && bytes - reserve !== primary ? ` rounded up to ${formatBytes(bytes - reserve)} (whole 4 KiB, at least the reserve)` : "";
      const sum = reserve > 0 ? `primary ${formatBytes(primary)}${rounded} + header reserve ${formatBytes(reserve)} (--protect-headers)` : `primary ${formatBytes(primary)} (unprotected: --protect-headers 0)`;
      lines.push(`replica device: ≥ ${bytes} bytes (${formatBytes(bytes)})  = ${sum}; an image: truncate -s ${bytes} PATH`);
    }
    if (lines.length === 0) {
      throw usageError("nothing to size", "Give the staging flags (--avg-update-rate --max-update-rate --burst-hours --outage-hours), --disconnected-hours with --max-update-rate, --volume-size, or --primary-size");
    }
    output(args.json, result, () => lines.join("\n"));
  },
});
