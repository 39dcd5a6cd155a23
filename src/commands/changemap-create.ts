import { command, jsonFlag, output, repeatedFlag } from "../cli-support.ts";
import { createChangeMapAtPath } from "../changemap/paths.ts";
import type { RegionSpec } from "../changemap/format.ts";
import { describeChangeMap } from "../changemap/report-text.ts";
import { changeMapBlockSizeBytesDefault } from "../constants.ts";
import { usageError } from "../errors.ts";
import { formatBytes, parseSizeBytes } from "../units.ts";

/** `--region NAME[=SIZE]` values (SIZE defaults to --volume-size); one "default" region when none. */
function parseRegions(values: string[], volumeSizeBytes: number | undefined): RegionSpec[] {
  const needVolumeSize = (what: string) =>
    usageError(`${what} needs a volume size`, "Give --volume-size SIZE (e.g. --volume-size 100GiB), or a size per region: --region NAME=SIZE");
  if (values.length === 0) {
    if (volumeSizeBytes === undefined) throw needVolumeSize("the change map");
    return [{ name: "default", volumeSizeBytes }];
  }
  return values.map((value) => {
    const at = value.indexOf("=");
    const name = at < 0 ? value : value.slice(0, at);
    if (at < 0) {
      if (volumeSizeBytes === undefined) throw needVolumeSize(`region '${name}'`);
      return { name, volumeSizeBytes };
    }
    return { name, volumeSizeBytes: parseSizeBytes(value.slice(at + 1), `--region ${name}=`) };
  });
}

export default command({
  meta: { name: "create", description: "Make a new, all-clean change map on an image file or block device (one region per client device)" },
  args: {
    path: { type: "positional", required: true, description: "Image file or block device to hold the change map (a missing file is created at the size the map needs)" },
    "volume-size": { type: "string", valueHint: "SIZE", description: "Size of the client volume to track, e.g. 100GiB (the size of every --region given without one)" },
    "block-size": { type: "string", valueHint: "SIZE", default: "4KiB", description: "Volume bytes one bit covers: a power of two from 512 B (smaller map: larger block, more resent per write)" },
    region: { type: "string", valueHint: "NAME[=SIZE]", description: "A region for one client device; repeat for several devices sharing this map (default: one region named 'default')" },
    size: { type: "string", valueHint: "SIZE", description: "Size of a new image file (default: exactly what the map needs)" },
    force: { type: "boolean", description: "Overwrite a change map or write log already there (its dirty bits are lost: resync those devices in full)" },
    json: jsonFlag,
  },
  examples: [
    "druvaa changemap create /var/lib/druvaa/vol0.chm --volume-size 100GiB",
    "druvaa changemap create /dev/sdc --region vol0=100GiB --region vol1=20GiB --block-size 64KiB",
    "druvaa changemap create /dev/sdc --volume-size 1TiB --force --json      # replace an existing map",
  ],
  async run({ args, rawArgs }) {
    const volumeSizeBytes = args["volume-size"] === undefined ? undefined : parseSizeBytes(args["volume-size"], "--volume-size");
    const blockSizeBytes = args["block-size"] === undefined ? changeMapBlockSizeBytesDefault : parseSizeBytes(args["block-size"], "--block-size");
    const sizeBytes = args.size === undefined ? undefined : parseSizeBytes(args.size, "--size");
    const regions = parseRegions(repeatedFlag(rawArgs, "region"), volumeSizeBytes);
    const report = await createChangeMapAtPath({ path: args.path, regions, blockSizeBytes, force: args.force === true, ...(sizeBytes === undefined ? {} : { sizeBytes }) });
    output(args.json, { ok: true, ...report }, () => `created ${describeChangeMap(report)}${report.createdImage ? `\n  (new image file of ${formatBytes(report.deviceSizeBytes)})` : ""}`);
  },
});
