import { command } from "../cli-support.ts";

export default command({
  meta: { name: "changemap", description: "Create and inspect change maps: the persistent bitmaps of blocks written while staging is unreachable" },
  subCommands: {
    create: () => import("./changemap-create.ts").then((m) => m.default),
    info: () => import("./changemap-info.ts").then((m) => m.default),
  },
  examples: [
    "druvaa changemap create /var/lib/druvaa/vol0.chm --volume-size 100GiB",
    "druvaa changemap create /dev/sdc --region vol0=100GiB --region vol1=20GiB",
    "druvaa changemap info /var/lib/druvaa/vol0.chm --json",
  ],
});
