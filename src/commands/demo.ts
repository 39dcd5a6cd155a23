import { command } from "../cli-support.ts";

export default command({
  meta: { name: "demo", description: "Run a whole replication system on local image files, with live status" },
  args: {},
  run() {
    throw new Error("demo: not yet");
  },
});
