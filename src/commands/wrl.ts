import { command } from "../cli-support.ts";

export default command({
  meta: { name: "wrl", description: "Create and inspect write logs (WRL) on image files or block devices" },
  subCommands: {
    create: () => import("./wrl-create.ts").then((m) => m.default),
    "add-device": () => import("./wrl-add-device.ts").then((m) => m.default),
    info: () => import("./wrl-info.ts").then((m) => m.default),
  },
  examples: [
    "druvaa wrl create --primary /dev/sdb --secondary /dev/sdc",
    "druvaa wrl info /dev/sdb --json",
  ],
});
