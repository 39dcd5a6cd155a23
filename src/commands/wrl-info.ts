import { command, jsonFlag, output } from "../cli-support.ts";
import { inspectWrlAtPath } from "../wrl/paths.ts";
import { describeWrl } from "../wrl/report-text.ts";

export default command({
  meta: { name: "info", description: "Show a write log's size, use, LSNs and devices (runs recovery read-only; writes nothing)" },
  args: {
    path: { type: "positional", required: true, description: "The write log's primary device or image file" },
    json: jsonFlag,
  },
  examples: ["druvaa wrl info /dev/sdb", "druvaa wrl info /var/lib/druvaa/wrl0.img --json"],
  async run({ args }) {
    const report = await inspectWrlAtPath(args.path);
    output(args.json, { ok: true, ...report }, () => describeWrl(report));
  },
});
