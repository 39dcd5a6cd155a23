/**
 * `druvaa admin` (also `dradmin`): administration that is not part of replicating — the
 * certificate authority that lets druvaa nodes authenticate each other over TLS, the roles'
 * config files, this host's components and their health, and WRL and change-map info (the same
 * commands as `druvaa wrl` and `druvaa changemap`, for scripts written for the original dradmin).
 */
import { command } from "../cli-support.ts";

export default command({
  meta: { name: "admin", description: "Administer druvaa: certificate authority, node certificates, config files, this host's components, WRL and change-map info" },
  subCommands: {
    ca: () => import("./admin-ca.ts").then((m) => m.default),
    cert: () => import("./admin-cert.ts").then((m) => m.default),
    config: () => import("./admin-config.ts").then((m) => m.default),
    components: () => import("./admin-components.ts").then((m) => m.default),
    wrl: () => import("./wrl.ts").then((m) => m.default),
    changemap: () => import("./changemap.ts").then((m) => m.default),
  },
  examples: [
    "druvaa admin ca init --dir /etc/druvaa/ca --name acme-dr",
    "druvaa admin cert issue --role client --name db1 --device disk0 --out /tmp/certs",
    "druvaa admin cert revoke --cert /tmp/certs/db1.pem",
    "druvaa admin config check /etc/druvaa/staging.toml",
    "dradmin components                                  # this host's components, their config and health",
    "dradmin wrl info /dev/sdb --json",
  ],
});
