/** `druvaa admin config`: the roles' config files (docs/admin.md, "Config files"). */
import { command } from "../cli-support.ts";

export default command({
  meta: { name: "config", description: "Check a role's config file, or show the config it stands for" },
  subCommands: {
    check: () => import("./admin-config-check.ts").then((m) => m.default),
    show: () => import("./admin-config-show.ts").then((m) => m.default),
  },
  examples: ["druvaa admin config check /etc/druvaa/staging.toml", "druvaa admin config show /etc/druvaa/client/db1.toml --json"],
});
