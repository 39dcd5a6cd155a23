import { command, jsonFlag, output } from "../cli-support.ts";
import { parseSizeBytes } from "../units.ts";
import { addDeviceAtPath } from "../wrl/paths.ts";
import { describeWrl } from "../wrl/report-text.ts";

export default command({
  meta: { name: "add-device", description: "Add a secondary device to a write log (while no staging server has it open)" },
  args: {
    wrl: { type: "positional", required: true, description: "The write log: its primary device or image file" },
    path: { type: "positional", required: true, description: "The device or image file to add" },
    size: { type: "string", description: "Create the image file of this size if missing; on an existing device use at most this much" },
    force: { type: "boolean", description: "Overwrite a device that already holds or belongs to another write log" },
    json: jsonFlag,
  },
  examples: ["druvaa wrl add-device /dev/sdb /dev/sdc", "druvaa wrl add-device /var/lib/druvaa/wrl0.img /var/lib/druvaa/wrl1.img --size 20G --json"],
  async run({ args }) {
    const sizeBytes = args.size === undefined ? undefined : parseSizeBytes(args.size, "--size");
    const report = await addDeviceAtPath(args.wrl, args.path, { sizeBytes, force: args.force === true });
    output(args.json, { ok: true, ...report }, () => `added ${report.added.pathHint} as device ${report.added.index}\n${describeWrl(report)}`);
  },
});
