import { command } from "../../cli-support.ts";

export default command({
  meta: { name: "client", description: "Serve primary devices over NBD and replicate every write through a staging server" },
  subCommands: {
    attach: () => import("./attach.ts").then((m) => m.default),
    agent: () => import("./agent.ts").then((m) => m.default),
  },
  examples: [
    "druvaa client attach --device disk0=/dev/sdb --staging 10.0.0.5:6001 --wrl fast --export unix:/run/druvaa/disk0.sock",
    "druvaa client agent --control 127.0.0.1:6007 --state-dir /var/lib/druvaa/client --insecure      # attachments configured by the panel",
    "druvaa status --connect 127.0.0.1:6007      # the client's status",
  ],
});
