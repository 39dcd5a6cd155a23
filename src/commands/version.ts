import { command, jsonFlag, output } from "../cli-support.ts";
import { druvaaVersion } from "../version.ts";

export default command({
  meta: { name: "version", description: "Print the druvaa version" },
  args: { json: jsonFlag },
  examples: ["druvaa version", "druvaa version --json"],
  run({ args }) {
    output(args.json, { version: druvaaVersion, bun: Bun.version, platform: `${process.platform}-${process.arch}` }, () => druvaaVersion);
  },
});
