/**
 * `druvaa panel`: the configuration server and the web DR-Panel. Its database keeps users and
 * sessions, components, the configuration (WRLs, change maps, pairs, transactions), activity,
 * alerts, metric history and mail settings. It serves the web UI at the listen address (Wizard,
 * New, Manage, Settings, Help; src/roles/panel/ui/, built into the binary) on the JSON API under
 * /api (docs/panel.md) with logins, roles and CSRF checks; pushes configuration to managed
 * components in two-phase commits; polls every component's GET /status for live status, alerts and
 * metric history; sends email alerts and the weekly digest. Serves until SIGTERM/SIGINT, then stops
 * the poll and the mail queue, closes the database and exits 0.
 */
import { dirname, join } from "node:path";
import { mkdir } from "node:fs/promises";
import { command, jsonFlag } from "../../cli-support.ts";
import { logger } from "../../log.ts";
import { announceReady, parseServeAddress, resolveStateDir, untilSignalled } from "../common.ts";
import { controlServerRoles, linkSecurityArgs, resolveLinkSecurity } from "../link-security.ts";
import { panelPortDefault } from "./constants.ts";
import { schemaVersionLatest } from "./migrations.ts";
import { PanelServer } from "./server.ts";
import { PanelStore } from "./store.ts";

const log = logger("panel");

export default command({
  meta: { name: "panel", description: "Configuration server and web DR-Panel (Wizard, New, Manage, Settings, Help) at the listen address: pairs, live status, alerts, restore/failback jobs; JSON API under /api" },
  args: {
    listen: { type: "string", valueHint: "HOST:PORT", default: `127.0.0.1:${panelPortDefault}`, description: `where the panel serves (default port ${panelPortDefault}; no host: 127.0.0.1); HTTPS with TLS, plain HTTP on loopback with --insecure` },
    db: { type: "string", valueHint: "PATH", description: "the panel's SQLite database, created on first run with user admin / password druvaa to be changed at the first login (default STATE/panel.db: /var/lib/druvaa/panel/panel.db as root, else $DRUVAA_STATE_DIR/panel or ~/.local/state/druvaa/panel)" },
    ...linkSecurityArgs,
    config: { type: "string", valueHint: "FILE", description: "take flags from this TOML file (keys: the long flag names, e.g. /etc/druvaa/panel.toml); flags given here override its keys. Check one with: druvaa admin config check FILE" },
    json: jsonFlag,
  },
  examples: [
    "druvaa panel --insecure                                             # open http://127.0.0.1:8000 in a browser (database in the state directory)",
    "druvaa panel --listen 10.0.0.2:8000 --db /var/lib/druvaa/panel.db --tls-cert panel.pem --tls-key panel.key --tls-ca ca.pem",
    "druvaa panel --listen :0 --db /tmp/panel.db --insecure --json        # port chosen by the system, printed in the ready line",
  ],
  async run({ args }) {
    const listen = parseServeAddress(args.listen, panelPortDefault);
    // The panel port is the "control" address for the plaintext rule: HTTPS with TLS, loopback without.
    const security = await resolveLinkSecurity(args, { links: [], controls: [listen] });
    const own = security.forControl()?.bunServerOptions as { cert?: string; key?: string } | undefined;
    const https = own?.cert !== undefined && own.key !== undefined ? { cert: own.cert, key: own.key } : undefined;
    const db = args.db ?? join(resolveStateDir(undefined, "panel"), "panel.db");
    await mkdir(dirname(db), { recursive: true });
    const store = PanelStore.open(db);
    try {
      if (store.openedAtVersion < schemaVersionLatest) log.info(`database ${db}: schema version ${store.openedAtVersion} → ${schemaVersionLatest}`);
      const server = await PanelServer.start({ store, listen, https, componentTls: security.mode === "tls" ? security.forPeer(controlServerRoles) : undefined });
      // The signal handler goes in before the ready line: a parent that signals on reading it must not find it missing (registered after the line, Bun may not have it in place yet).
      const stopped = untilSignalled("panel", () => server.stop());
      announceReady(args.json, "panel", { listen: server.address, url: server.url, db, schemaVersion: schemaVersionLatest, security: security.describe });
      await stopped;
      log.info("stopped");
    } finally {
      store.close();
    }
  },
});
