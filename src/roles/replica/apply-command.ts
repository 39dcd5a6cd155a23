/**
 * `druvaa replica apply`: opens the replica devices (and, with --wrl, the replica WRL that keeps
 * resync sets until they are complete), loads the applied LSNs from the state directory, serves
 * staging relays (data port), restores (restore port) and status (control port) until
 * SIGTERM/SIGINT, then lets the shipment being applied finish and exits 0. With --managed, devices
 * also come from the panel's config (managed.ts; docs/panel.md "Replica"), beside any --device.
 */
import { mkdir } from "node:fs/promises";
import { command, jsonFlag, repeatedFlag } from "../../cli-support.ts";
import { replicaControlPortDefault, replicaDataPortDefault, replicaRestorePortDefault } from "../../constants.ts";
import { usageError } from "../../errors.ts";
import { logger } from "../../log.ts";
import { formatBytes, parseDurationMs, parseSizeBytes } from "../../units.ts";
import { ReplicaHistory } from "./history.ts";
import { journalRetentionMsDefault } from "./journal-constants.ts";
import { SnapshotExports } from "./snapshot-exports.ts";
import { removeDirectory } from "../../io/append-file.ts";
import { Failovers } from "./failover.ts";
import { checkReserve } from "./protected-device.ts";
import { announceReady, nodeIdFlag, parseNamedValues, parseServeAddress, resolveStateDir, untilSignalled } from "../common.ts";
import { linkSecurityArgs, resolveLinkSecurity } from "../link-security.ts";
import { ManagedConfig } from "../managed/config-routes.ts";
import { ReplicaCore, type ReplicaDevice } from "./core.ts";
import { ManagedDevices, type ManagedReplicaConfig } from "./managed.ts";
import { openReplicaDevices } from "./open-devices.ts";
import { SeedTracker } from "./media-seed.ts";
import { checkRsWrlDeviceName, ResyncLog } from "./resync-log.ts";
import { SeedRuns } from "./seed-runs.ts";
import { ReplicaServer } from "./server.ts";
import { fileStateStore } from "./state.ts";

const log = logger("replica");

/** --retention / --retention-size: the journal's bounds, or none (no journal). */
function retentionOf(duration: string | undefined, size: string | undefined, devices: readonly ReplicaDevice[]): { retention?: { ms: number; bytes: number } } {
  if (duration === undefined && size === undefined) return {};
  const ms = duration === undefined ? journalRetentionMsDefault : parseDurationMs(duration, "--retention");
  const bytes = size === undefined ? devices.reduce((sum, entry) => sum + entry.device.sizeBytes, 0) : parseSizeBytes(size, "--retention-size");
  if (ms <= 0 || bytes <= 0) throw usageError("--retention and --retention-size must be above zero", "e.g. --retention 24h --retention-size 50GiB");
  return { retention: { ms, bytes } };
}

/** Opens the written-since-media-point bitmap of every --await-seed device; returns those seeded already. */
async function openSeedTrackers(devices: ReplicaDevice[], names: string[], stateDir: string): Promise<Set<string>> {
  const seeded = new Set<string>();
  if (names.length > 0) await mkdir(stateDir, { recursive: true });
  for (const name of names) {
    const entry = devices.find((device) => device.name === name);
    if (entry === undefined) throw usageError(`--await-seed ${name}: no --device ${name}=PATH was given`, `Devices: ${devices.map((device) => device.name).join(", ")}`);
    const tracker = await SeedTracker.open(stateDir, name, entry.device.sizeBytes);
    if (tracker === undefined) {
      log.info(`--await-seed ${name}: the device was seeded already; nothing to track`);
      seeded.add(name);
      continue;
    }
    entry.seed = tracker;
    log.info(`device ${name} awaits its seed: ${formatBytes(tracker.writtenBytes)} written by replication since the media point`);
  }
  return seeded;
}

export default command({
  meta: { name: "apply", description: "Serve staging relays: apply shipments in LSN order to the replica devices" },
  args: {
    listen: { type: "string", valueHint: "HOST:PORT", default: `127.0.0.1:${replicaDataPortDefault}`, description: `data port for staging relays (default port ${replicaDataPortDefault}; no host: 127.0.0.1)` },
    device: { type: "string", valueHint: "NAME=PATH", description: "a replica device (block device or image file); repeat for several (needed unless --managed)" },
    managed: { type: "boolean", description: "also take replica devices from the panel (druvaa panel): POST /config/prepare, /config/commit, /config/abort and GET /config on the control port; the committed config (STATE_DIR/managed-config.json) is applied at every start. --device is then optional (its devices stay, beside the managed ones); --retention then needs --retention-size; see docs/panel.md" },
    control: { type: "string", valueHint: "HOST:PORT", default: `127.0.0.1:${replicaControlPortDefault}`, description: "control port (GET /status): HTTPS for admin and panel certificates with TLS, plain HTTP on loopback with --insecure" },
    restore: { type: "string", valueHint: "HOST:PORT", default: `127.0.0.1:${replicaRestorePortDefault}`, description: "restore port (druvaa restore)" },
    "await-seed": { type: "string", valueHint: "NAME", description: "device NAME is seeded later from a backup (druvaa replica seed): record every block replication writes to it from now on; repeat for several" },
    wrl: { type: "string", valueHint: "PATH", description: "replica WRL (RS-WRL, made with druvaa wrl create): resync sets wait there until complete, so the replica stays at its last consistent point during a resync" },
    retention: { type: "string", valueHint: "DURATION", description: "keep a point-in-time journal (before-images in STATE_DIR/journal) for this long, e.g. 24h: restore, snapshot and failover --at any point inside it (default: no journal; 24h with --retention-size alone)" },
    "retention-size": { type: "string", valueHint: "SIZE", description: "bound the journal's size (e.g. 50GiB; default with --retention: the replica devices' total size); whichever of the two binds first drops the oldest points" },
    "state-dir": { type: "string", valueHint: "DIR", description: "where the applied LSNs are kept (default: $DRUVAA_STATE_DIR/replica, /var/lib/druvaa/replica as root)" },
    "node-id": { type: "string", valueHint: "ID", description: "this node's name in handshakes and status (default: the host name)" },
    "protect-headers": { type: "string", valueHint: "BYTES", default: "1MiB", description: "keep each device's first BYTES swapped with its last BYTES, so the replica is never recognised (blkid, mount) as a volume; devices need the primary's size plus BYTES (druvaa sizing --primary-size); 0: unprotected" },
    ...linkSecurityArgs,
    config: { type: "string", valueHint: "FILE", description: "take flags from this TOML file (keys: the long flag names, e.g. /etc/druvaa/replica.toml); flags given here override its keys. Check one with: druvaa admin config check FILE" },
    json: jsonFlag,
  },
  examples: [
    "druvaa replica apply --listen 10.0.0.9:6003 --device disk0=/dev/sdc --tls-cert /etc/druvaa/tls/dr1.pem --tls-key /etc/druvaa/tls/dr1.key --tls-ca /etc/druvaa/tls/ca.pem",
    "druvaa replica apply --device disk0=/srv/replica/disk0.img --state-dir /srv/replica/state --json",
    "druvaa wrl create --primary /srv/replica/rswrl.img --size 20G && druvaa replica apply --device disk0=/dev/sdc --wrl /srv/replica/rswrl.img",
    "druvaa replica apply --listen :0 --control :0 --restore :0 --device d0=d0.img --json   # ports chosen by the system, printed in the ready line",
    "druvaa replica apply --managed --listen 10.0.0.9:6003 --control 10.0.0.9:6004 --state-dir /srv/replica/state --tls-cert dr1.pem --tls-key dr1.key --tls-ca ca.pem   # devices pushed by the panel",
  ],
  async run({ args, rawArgs }) {
    const specs = parseNamedValues(repeatedFlag(rawArgs, "device"), "--device", "disk0=/dev/sdc");
    const managedMode = args.managed === true;
    if (specs.size === 0 && !managedMode) throw usageError("at least one --device NAME=PATH is needed (or --managed: devices from the panel)", "e.g. --device disk0=/dev/sdc");
    // Managed devices come and go: the journal's default bound (the devices' total size) would be a guess.
    if (managedMode && args.retention !== undefined && args["retention-size"] === undefined) throw usageError("--managed --retention needs --retention-size: the managed devices change with the config", "e.g. --retention 24h --retention-size 50GiB");
    const listenAddress = parseServeAddress(args.listen, replicaDataPortDefault);
    const controlAddress = parseServeAddress(args.control, replicaControlPortDefault);
    const restoreAddress = parseServeAddress(args.restore, replicaRestorePortDefault);
    const nodeId = nodeIdFlag(args["node-id"]);
    const stateDir = resolveStateDir(args["state-dir"], "replica");
    const security = await resolveLinkSecurity(args, { links: [listenAddress, restoreAddress], controls: [controlAddress] });
    if (args.wrl !== undefined) for (const name of specs.keys()) checkRsWrlDeviceName(name);
    const rsWrl = args.wrl === undefined ? undefined : await ResyncLog.open(args.wrl);
    const protectHeadersBytes = parseSizeBytes(args["protect-headers"], "--protect-headers");
    if (protectHeadersBytes > 0) checkReserve(protectHeadersBytes);
    // The saved state and the failover records first: a device too small for what its primary
    // declared is refused before anything is written, and failed-over devices open as they are.
    const store = fileStateStore(stateDir);
    const failovers = await Failovers.load(stateDir).catch(async (error: unknown) => {
      await rsWrl?.close().catch(() => undefined);
      throw error;
    });
    const declaredSizes = new Map(((await store.load().catch(() => undefined))?.devices ?? []).flatMap((device) => (device.declaredSizeBytes === undefined ? [] : [[device.name, device.declaredSizeBytes] as const])));
    const devices = await openReplicaDevices(specs, protectHeadersBytes, { declared: declaredSizes, unchecked: failovers.plainDevices() }).catch(async (error: unknown) => {
      await rsWrl?.close().catch(() => undefined); // already failing with the better error
      throw error;
    });
    let history: ReplicaHistory | undefined;
    const managedDevices = managedMode ? new ManagedDevices({ flagDevices: specs, protectHeadersBytes, failovers, declaredSizeBytes: declaredSizes, ...(args.wrl === undefined ? {} : { rsWrlPath: args.wrl }) }) : undefined;
    try {
      let managed: ManagedConfig<ManagedReplicaConfig> | undefined;
      if (managedDevices !== undefined) {
        await mkdir(stateDir, { recursive: true });
        managed = await ManagedConfig.open(stateDir, managedDevices);
        await managed.start(); // opens the committed devices: the core opens (and recovers) with them
      }
      const allDevices = [...devices, ...(managedDevices?.devices ?? [])];
      const awaitSeed = repeatedFlag(rawArgs, "await-seed");
      const seededAlready = await openSeedTrackers(allDevices, awaitSeed, stateDir);
      history = await ReplicaHistory.open({ stateDir, ...retentionOf(args.retention, args["retention-size"], allDevices) });
      const core = await ReplicaCore.open({ devices: allDevices, store, rsWrl, history, failedOver: failovers.failedOver });
      await removeDirectory(`${stateDir}/snapshot-scratch`); // writable snapshots' writes do not outlive the process
      const recovery = new SnapshotExports(core, `${stateDir}/snapshot-scratch`);
      const endSnapshots = async (names: readonly string[], why?: { reason: string; hint: string }) => {
        history?.endSnapshotsOf(names, why);
        await recovery.releaseDevices(names);
      };
      failovers.setEndSnapshots(endSnapshots);
      managedDevices?.attach({ core, endSnapshots: (names) => endSnapshots(names, { reason: "the device was dropped from the replica's managed config", hint: "It is no longer replicated here" }) });
      await failovers.resume(core.recoveryHost);
      const declared = (name: string) => core.status().devices.find((device) => device.name === name)?.declaredSizeBytes ?? undefined;
      const tls = { data: security.forPeer("staging"), restore: security.forPeer(["admin", "panel"]), control: security.forControl() };
      const running = await ReplicaServer.start({ core, nodeId, listen: listenAddress, restore: restoreAddress, control: controlAddress, tls, recovery, failovers, managed, ...(awaitSeed.length > 0 ? { seeds: new SeedRuns({ devices: allDevices, exclusive: core.exclusive, declaredSizeBytes: declared, seededAlready }) } : {}) });
      const applied = core.status().wrls.map((wrl) => `${wrl.name} at LSN ${wrl.appliedLsn}`).join(", ");
      if (applied) log.info(`resuming: ${applied}`);
      // The signal handler goes in before the ready line: a parent that signals on reading it must not find it missing (registered after the line, Bun may not have it in place yet).
      const stopped = untilSignalled("replica", () => running.stop());
      announceReady(args.json, "replica", { ...running.addresses, nodeId, stateDir, rsWrl: rsWrl?.path ?? null, devices: allDevices.map((entry) => ({ name: entry.name, path: entry.path, sizeBytes: entry.device.sizeBytes, protectedHeaderBytes: protectHeadersBytes })), ...(managed === undefined ? {} : { managed: managed.status() }) });
      await stopped;
      log.info("stopped");
    } finally {
      await history?.close().catch(() => undefined);
      await Promise.allSettled([...devices.flatMap((entry) => [entry.device.close(), entry.smallWrites?.close()]), managedDevices?.close(), rsWrl?.close()]);
    }
  },
});
