/** `druvaa admin ca`: the certificate authority's own commands. */
import { command } from "../cli-support.ts";

export default command({
  meta: { name: "ca", description: "Create the certificate authority that signs druvaa node certificates" },
  subCommands: {
    init: () => import("./admin-ca-init.ts").then((m) => m.default),
  },
  examples: ["druvaa admin ca init --dir /etc/druvaa/ca --name acme-dr --json"],
});
