/**
 * `druvaa staging serve`: opens the WRLs (recovery runs), loads the attached devices from the
 * state directory, serves clients (data port) and status (control port), relays every WRL to its
 * replica (zstd-compressed per --compression, default auto: compression.ts; paced, windowed and
 * watched per --rate-limit, --schedule and --rpo: relay-flags.ts), until SIGTERM/SIGINT; then lets appends in flight finish, stops the relays, closes the WRLs with a
 * final checkpoint and exits 0. With --managed, WRLs also come from the panel's config
 * (managed.ts; docs/panel.md "Staging"), beside any --wrl, applied before the ready line. A WRL
 * split on the control port (POST /wrl/split, split.ts) stays split across restarts until joined.
 */
import { command, jsonFlag, repeatedFlag } from "../../cli-support.ts";
import { stagingControlPortDefault, stagingDataPortDefault } from "../../constants.ts";
import { sharedBufferPool } from "../../io/buffer-pool.ts";
import { logger } from "../../log.ts";
import { announceReady, nodeIdFlag, parseNamedValues, parseServeAddress, resolveStateDir, untilSignalled } from "../common.ts";
import { linkSecurityArgs, resolveLinkSecurity } from "../link-security.ts";
import { compressionFlagDefault, parseCompression } from "./compression.ts";
import { parseCoalesce } from "./relay-coalesce.ts";
import { relayFlagTargets } from "./relay-flags.ts";
import { StagingCore } from "./core.ts";
import { openWrls, planWrls } from "./open-wrls.ts";
import { replicaDialer, StagingServer } from "./server.ts";
import { fileDeviceStateStore } from "./state.ts";
import { readWrlKeyFile } from "../../wrl/key-file.ts";
import { ManagedConfig } from "../managed/config-routes.ts";
import { ManagedWrls, type ManagedStagingConfig } from "./managed.ts";
import { WrlSplits } from "./split.ts";

const log = logger("staging");

export default command({
  meta: { name: "serve", description: "Log client writes in WRLs (group commit) and relay each WRL to its replica" },
  args: {
    listen: { type: "string", valueHint: "HOST:PORT", default: `127.0.0.1:${stagingDataPortDefault}`, description: `data port for clients (default port ${stagingDataPortDefault}; no host: 127.0.0.1)` },
    wrl: { type: "string", valueHint: "NAME=PATH[,PATH...]", description: "a write log (made with druvaa wrl create): primary, then secondaries; repeat for several (needed unless --managed)" },
    managed: { type: "boolean", description: "also take WRLs from the panel (druvaa panel): POST /config/prepare, /config/commit, /config/abort and GET /config on the control port; the committed config (STATE_DIR/managed-config.json) is applied at every start. --wrl and --replica are then optional; see docs/panel.md" },
    replica: { type: "string", valueHint: "NAME=HOST:PORT", description: "the replica server WRL NAME relays to (default port 6003); one per --wrl" },
    control: { type: "string", valueHint: "HOST:PORT", default: `127.0.0.1:${stagingControlPortDefault}`, description: "control port (GET /status): HTTPS for admin and panel certificates with TLS, plain HTTP on loopback with --insecure" },
    "state-dir": { type: "string", valueHint: "DIR", description: "where attached devices, split WRLs (and, with --managed, the pushed config) are kept (default: $DRUVAA_STATE_DIR/staging, /var/lib/druvaa/staging as root)" },
    compression: {
      type: "string",
      valueHint: "off|1..19|auto",
      default: compressionFlagDefault,
      description: "zstd for shipments: auto (default: level 1, up to 6 while the link holds shipping back), a level 1 (fast) .. 19 (small), or off (a LAN faster than zstd); data zstd cannot shrink goes as is",
    },
    coalesce: {
      type: "string",
      valueHint: "off|auto",
      default: "auto",
      description: "coalesce shipments (keep only the newest version of each block over a span of records, applied atomically by the replica): auto (default: only while the relay is behind and the replica has a replica WRL, --wrl) or off",
    },
    "rate-limit": {
      type: "string",
      valueHint: "RATE|NAME=RATE",
      description: "cap on what the relays send to their replicas, whole frames counted (e.g. 20Mbit, 5MiB/s): RATE is one budget shared by every WRL without its own; NAME=RATE gives WRL NAME a budget of its own; repeat",
    },
    schedule: {
      type: "string",
      valueHint: "WINDOWS|NAME=WINDOWS",
      description: 'when the relays may ship, e.g. "Mon-Fri 19:00-07:00, Sat-Sun" (local time; end with " UTC" for UTC); outside, the WRL buffers; NAME=WINDOWS for one WRL; repeat',
    },
    rpo: {
      type: "string",
      valueHint: "DURATION|NAME=DURATION",
      description: "RPO target (e.g. 30s): status and events say when a WRL is at risk of missing it, and auto compression works harder meanwhile; NAME=DURATION for one WRL; repeat",
    },
    "node-id": { type: "string", valueHint: "ID", description: "this node's name in handshakes and status (default: the host name)" },
    "encrypt-at-rest": { type: "string", valueHint: "KEYFILE", description: "the 32-byte key (mode 600) the WRLs were created with by druvaa wrl create --encrypt-at-rest KEYFILE: record payloads stay encrypted on the WRL devices" },
    ...linkSecurityArgs,
    config: { type: "string", valueHint: "FILE", description: "take flags from this TOML file (keys: the long flag names, e.g. /etc/druvaa/staging.toml); flags given here override its keys. Check one with: druvaa admin config check FILE" },
    json: jsonFlag,
  },
  examples: [
    "druvaa staging serve --listen 10.0.0.5:6001 --wrl fast=/dev/sdb --replica fast=10.0.0.9:6003 --tls-cert /etc/druvaa/tls/staging1.pem --tls-key /etc/druvaa/tls/staging1.key --tls-ca /etc/druvaa/tls/ca.pem",
    "druvaa staging serve --wrl fast=/dev/sdb,/dev/sdc --replica fast=dr-site:6003 --wrl bulk=/dev/sdd --replica bulk=dr-site:6013",
    "druvaa staging serve --wrl fast=/dev/sdb --replica fast=dr-site:6003 --compression 3   # a fixed zstd level for a slow WAN",
    'druvaa staging serve --wrl fast=/dev/sdb --replica fast=dr-site:6003 --wrl bulk=/dev/sdd --replica bulk=dr-site:6013 --rate-limit 20Mbit --schedule bulk="Mon-Fri 19:00-07:00, Sat-Sun" --rpo fast=30s',
    "druvaa staging serve --listen :0 --control :0 --wrl w0=/srv/wrl0.img --replica w0=127.0.0.1:6003 --json   # ports chosen by the system, printed in the ready line",
    "druvaa staging serve --managed --listen 10.0.0.5:6001 --control 10.0.0.5:6002 --state-dir /var/lib/druvaa/staging --tls-cert staging1.pem --tls-key staging1.key --tls-ca ca.pem   # WRLs pushed by the panel",
  ],
  async run({ args, rawArgs }) {
    const wrlFlags = parseNamedValues(repeatedFlag(rawArgs, "wrl"), "--wrl", "fast=/dev/sdb");
    const replicaFlags = parseNamedValues(repeatedFlag(rawArgs, "replica"), "--replica", "fast=10.0.0.9:6003");
    const managedMode = args.managed === true;
    // --managed alone serves no WRL until the panel commits one.
    const plans = managedMode && wrlFlags.size === 0 && replicaFlags.size === 0 ? [] : planWrls(wrlFlags, replicaFlags);
    const listenAddress = parseServeAddress(args.listen, stagingDataPortDefault);
    const controlAddress = parseServeAddress(args.control, stagingControlPortDefault);
    const nodeId = nodeIdFlag(args["node-id"]);
    const compression = parseCompression(args.compression ?? compressionFlagDefault);
    const coalesce = parseCoalesce(args.coalesce ?? "auto");
    const { targets: relayTargets, defaults: relayDefaults } = relayFlagTargets({ rateLimit: repeatedFlag(rawArgs, "rate-limit"), schedule: repeatedFlag(rawArgs, "schedule"), rpo: repeatedFlag(rawArgs, "rpo") }, plans.map((plan) => plan.name));
    const stateDir = resolveStateDir(args["state-dir"], "staging");
    const security = await resolveLinkSecurity(args, { links: [listenAddress, ...plans.map((plan) => plan.replica)], controls: [controlAddress] });
    const replicaTls = security.forPeer("replica");
    const payloadKey = args["encrypt-at-rest"] === undefined ? undefined : await readWrlKeyFile(args["encrypt-at-rest"]);
    const wrls = await openWrls(plans, { payloadKey });
    let managed: ManagedWrls | undefined;
    try {
      for (const { name, wrl } of wrls) {
        // A record's payload is the receive buffer its write arrived in (pooled by the server):
        // once the record is freed (shipped and acknowledged), the buffer serves the next writes.
        wrl.onFreedData((data) => sharedBufferPool.give(data));
        const info = wrl.info();
        log.info(`WRL ${name} (${info.uuid}): head LSN ${info.headLsn}, tail LSN ${info.tailLsn}, ${info.recordCount} record(s) to relay${wrl.recovery ? `; recovery: ${wrl.recovery.stopReason}` : ""}`);
      }
      const core = await StagingCore.open({
        wrls: wrls.map((entry) => ({ name: entry.name, wrl: entry.wrl, devicePaths: entry.devicePaths, replicaAddress: entry.replicaText, dialReplica: replicaDialer(entry.replica, nodeId, replicaTls) })),
        store: fileDeviceStateStore(stateDir),
        // Clients come in through SocketConnection, which never reuses bytes it delivered (its
        // pooled receive buffers come back only through onFreedData above, after the WRL is done).
        receivedBytesStay: true,
        compression,
        coalesce,
        relayTargets,
      });
      let config: ManagedConfig<ManagedStagingConfig> | undefined;
      if (managedMode) {
        const loopbackOnly = security.mode === "insecure" && args["insecure-allow-remote"] !== true;
        managed = new ManagedWrls({ core, flagWrls: new Map(plans.map((plan) => [plan.name, plan.paths])), payloadKey, nodeId, replicaTls, loopbackOnly, relayDefaults });
        config = await ManagedConfig.open(stateDir, managed);
        // Before the ports open: a prepare then always sees the committed WRLs running.
        await config.start();
      }
      // Before the relays start: a WRL split before a restart (STATE_DIR/splits.json) ships nothing until joined.
      const splits = await WrlSplits.open(stateDir, core);
      const server = await StagingServer.start({
        core,
        nodeId,
        listen: listenAddress,
        control: controlAddress,
        tls: security.forPeer("client"),
        controlTls: security.forControl(),
        splits,
        ...(config === undefined ? {} : { routes: config.routes(), statusExtra: () => ({ managed: config.status() }) }),
      });
      core.start();
      // Listening for SIGTERM before the ready line: a stop sent right after it is a clean stop.
      const stopped = untilSignalled("staging", () => server.stop());
      announceReady(args.json, "staging", {
        ...server.addresses,
        nodeId,
        stateDir,
        wrls: [...wrls, ...(managed?.opened ?? [])].map((entry) => ({ name: entry.name, uuid: entry.wrl.info().uuid, devicePaths: entry.devicePaths, replica: entry.replicaText })),
        ...(config === undefined ? {} : { managed: config.status() }),
      });
      await stopped;
    } finally {
      // Waits for appends still committing, then writes the final checkpoint.
      const results = await Promise.allSettled([...wrls.map((entry) => entry.wrl.close()), ...(managed === undefined ? [] : [managed.close()])]);
      const failed = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
      // A WRL that could not write its final checkpoint still recovers every acked record at the
      // next start; the exit code tells the operator to look.
      if (failed !== undefined) throw failed.reason;
    }
    log.info("stopped");
  },
});
