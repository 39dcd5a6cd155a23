import { command, jsonFlag, output } from "../cli-support.ts";
import { inspectChangeMapAtPath } from "../changemap/paths.ts";
import { describeChangeMap } from "../changemap/report-text.ts";

export default command({
  meta: { name: "info", description: "Show a change map's uuid, generation, block size and, per region, how much is dirty (reads only)" },
  args: {
    path: { type: "positional", required: true, description: "The change map's image file or block device" },
    json: jsonFlag,
  },
  examples: ["druvaa changemap info /var/lib/druvaa/vol0.chm", "druvaa changemap info /dev/sdc --json"],
  async run({ args }) {
    const info = await inspectChangeMapAtPath(args.path);
    output(args.json, { ok: true, ...info }, () => describeChangeMap(info));
  },
});
