/** `druvaa staging …`: the staging server role. */
import { command } from "../../cli-support.ts";

export default command({
  meta: { name: "staging", description: "Run the staging server: log client writes in WRLs and relay them to replicas" },
  subCommands: {
    serve: () => import("./serve-command.ts").then((m) => m.default),
  },
  examples: [
    "druvaa staging serve --listen 10.0.0.5:6001 --wrl fast=/dev/sdb --replica fast=10.0.0.9:6003",
    "druvaa staging serve --wrl fast=/srv/wrl/fast.img --replica fast=127.0.0.1:6003 --json",
  ],
});
