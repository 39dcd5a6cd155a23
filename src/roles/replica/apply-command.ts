/**
 * `druvaa replica apply`: opens the replica devices (and, with --wrl, the replica WRL that keeps
 * resync sets until they are complete), loads the applied LSNs from the state directory, serves
 * staging relays (data port), restores (restore port) and status (control port) until
 * SIGTERM/SIGINT, then lets the shipment being applied finish and exits 0.
 */
import { mkdir, realpath } from "node:fs/promises";
import { command, jsonFlag, repeatedFlag } from "../../cli-support.ts";
import { replicaControlPortDefault, replicaDataPortDefault, replicaRestorePortDefault } from "../../constants.ts";
import { DruvaaError, exitCodes, usageError } from "../../errors.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { FileDevice } from "../../io/file-device.ts";
import { isBlockDevicePath, openBlockDevice } from "../../io/open-device.ts";
import { logger } from "../../log.ts";
import { formatBytes, parseDurationMs, parseSizeBytes } from "../../units.ts";
import { ReplicaHistory } from "./history.ts";
import { journalRetentionMsDefault } from "./journal-constants.ts";
import { SnapshotExports } from "./snapshot-exports.ts";
import { removeDirectory } from "../../io/append-file.ts";
import { Failovers } from "./failover.ts";
import { protectReserveBytesDefault } from "../../protect-constants.ts";
import { checkReserve, openProtected, ProtectedDevice, protectedLogicalSizeBytes } from "./protected-device.ts";
import { replicaDeviceSizeBytes } from "../../sizing.ts";
import { announceReady, nodeIdFlag, parseNamedValues, parseServeAddress, resolveStateDir, untilSignalled } from "../common.ts";
import { linkSecurityArgs, resolveLinkSecurity } from "../link-security.ts";
import { ReplicaCore, type ReplicaDevice } from "./core.ts";
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

/**
 * Opens every `--device NAME=PATH`, refusing a path given twice; closes what it opened on failure.
 * Each device is wrapped as a protected replica device (header sectors swapped, protected-device.ts)
 * with a reserve of `protectHeadersBytes`; 0 opens it plain (unprotected). Before anything is
 * written (a new replica's marker), a device smaller than the size its primary declared
 * (`declared`, from the saved state) is refused. The devices of a failed-over WRL (`unchecked`,
 * name → the reserve they had) are wrapped without the marker checks: their head is plain now,
 * or being swapped back.
 */
export async function openReplicaDevices(specs: ReadonlyMap<string, string>, protectHeadersBytes = protectReserveBytesDefault, options: { declared?: ReadonlyMap<string, number>; unchecked?: ReadonlyMap<string, number> } = {}): Promise<ReplicaDevice[]> {
  const opened: ReplicaDevice[] = [];
  const byRealPath = new Map<string, string>();
  const within = (flag: string, error: unknown) => (error instanceof DruvaaError ? new DruvaaError(error.code, `${flag}: ${error.message}`, error.hint, error.exitCode, { cause: error }) : error);
  try {
    for (const [name, path] of specs) {
      const flag = `--device ${name}=${path}`;
      const real = await realpath(path).catch((error: unknown) => {
        if ((error as { code?: unknown }).code === "ENOENT") {
          throw new DruvaaError("NOT_FOUND", `${flag}: no such file or device`, `Check the path; create an image of the primary's size plus the header reserve (--protect-headers; druvaa sizing --primary-size SIZE tells it) with: truncate -s SIZE ${path}`, 3);
        }
        return path;
      });
      const other = byRealPath.get(real);
      if (other !== undefined) throw usageError(`${flag}: the same device as --device ${other}`, "Give every replica device its own path");
      byRealPath.set(real, name);
      const physical = await openBlockDevice(path, { direct: true }).catch((error: unknown) => {
        throw within(flag, error);
      });
      const reserve = options.unchecked?.get(name) ?? protectHeadersBytes;
      let device: BlockDevice = physical;
      try {
        const logicalBytes = reserve > 0 ? protectedLogicalSizeBytes(physical.sizeBytes, reserve, physical.logicalBlockSizeBytes) : physical.sizeBytes;
        checkDeclaredSize(name, path, logicalBytes, options.declared?.get(name), reserve);
        if (options.unchecked?.has(name)) device = reserve > 0 ? new ProtectedDevice(physical, reserve) : physical;
        else if (reserve > 0) device = await openProtected(physical, { reserveBytes: reserve });
      } catch (error) {
        await physical.close().catch(() => undefined); // already failing with the better error
        throw within(flag, error);
      }
      const entry: ReplicaDevice = { name, path, device, discardReadsZeros: true };
      opened.push(entry);
      // Raw devices do not promise that a discard reads back zeros: ZERO records write zeros there.
      const imageFile = !(await isBlockDevicePath(path));
      (entry as { discardReadsZeros: boolean }).discardReadsZeros = imageFile;
      // An image file is written O_DIRECT (large records go to the disk as they are applied, so
      // the group's flush is short); small records go through a second, buffered handle: a
      // page-cache copy instead of a thread-pool round trip and a disk write each (apply.ts).
      if (imageFile && physical instanceof FileDevice && physical.direct) {
        const small = await openBlockDevice(path);
        entry.smallWrites = reserve > 0 ? new ProtectedDevice(small, reserve) : small;
      }
    }
  } catch (error) {
    await Promise.allSettled(opened.flatMap((entry) => [entry.device.close(), entry.smallWrites?.close()]));
    throw error;
  }
  return opened;
}

/** Refuses, before anything is written to it, a device smaller than the size its primary declared. */
function checkDeclaredSize(name: string, path: string, logicalBytes: number, declaredBytes: number | undefined, reserve: number): void {
  if (declaredBytes === undefined || declaredBytes <= logicalBytes) return;
  const neededBytes = replicaDeviceSizeBytes(declaredBytes, reserve);
  const withReserve = reserve > 0 ? ` plus the ${formatBytes(reserve)} header reserve (--protect-headers)` : "";
  throw new DruvaaError("REPLICA_DEVICE_TOO_SMALL", `offers ${logicalBytes} bytes, but its primary declared ${declaredBytes}: it needs ${neededBytes} bytes (the primary's size${withReserve})`, `Grow it, e.g. for an image: truncate -s ${neededBytes} ${path}`, exitCodes.refused);
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
    device: { type: "string", valueHint: "NAME=PATH", required: true, description: "a replica device (block device or image file); repeat for several" },
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
    json: jsonFlag,
  },
  examples: [
    "druvaa replica apply --listen 10.0.0.9:6003 --device disk0=/dev/sdc --tls-cert /etc/druvaa/tls/dr1.pem --tls-key /etc/druvaa/tls/dr1.key --tls-ca /etc/druvaa/tls/ca.pem",
    "druvaa replica apply --device disk0=/srv/replica/disk0.img --state-dir /srv/replica/state --json",
    "druvaa wrl create --primary /srv/replica/rswrl.img --size 20G && druvaa replica apply --device disk0=/dev/sdc --wrl /srv/replica/rswrl.img",
    "druvaa replica apply --listen :0 --control :0 --restore :0 --device d0=d0.img --json   # ports chosen by the system, printed in the ready line",
  ],
  async run({ args, rawArgs }) {
    const specs = parseNamedValues(repeatedFlag(rawArgs, "device"), "--device", "disk0=/dev/sdc");
    if (specs.size === 0) throw usageError("at least one --device NAME=PATH is needed", "e.g. --device disk0=/dev/sdc");
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
    try {
      const awaitSeed = repeatedFlag(rawArgs, "await-seed");
      const seededAlready = await openSeedTrackers(devices, awaitSeed, stateDir);
      history = await ReplicaHistory.open({ stateDir, ...retentionOf(args.retention, args["retention-size"], devices) });
      const core = await ReplicaCore.open({ devices, store, rsWrl, history, failedOver: failovers.failedOver });
      await removeDirectory(`${stateDir}/snapshot-scratch`); // writable snapshots' writes do not outlive the process
      const recovery = new SnapshotExports(core, `${stateDir}/snapshot-scratch`);
      failovers.setEndSnapshots(async (names) => {
        history?.endSnapshotsOf(names);
        await recovery.releaseDevices(names);
      });
      await failovers.resume(core.recoveryHost);
      const declared = (name: string) => core.status().devices.find((device) => device.name === name)?.declaredSizeBytes ?? undefined;
      const tls = { data: security.forPeer("staging"), restore: security.forPeer(["admin", "panel"]), control: security.forControl() };
      const running = await ReplicaServer.start({ core, nodeId, listen: listenAddress, restore: restoreAddress, control: controlAddress, tls, recovery, failovers, ...(awaitSeed.length > 0 ? { seeds: new SeedRuns({ devices, exclusive: core.exclusive, declaredSizeBytes: declared, seededAlready }) } : {}) });
      const applied = core.status().wrls.map((wrl) => `${wrl.name} at LSN ${wrl.appliedLsn}`).join(", ");
      if (applied) log.info(`resuming: ${applied}`);
      announceReady(args.json, "replica", { ...running.addresses, nodeId, stateDir, rsWrl: rsWrl?.path ?? null, devices: devices.map((entry) => ({ name: entry.name, path: entry.path, sizeBytes: entry.device.sizeBytes, protectedHeaderBytes: protectHeadersBytes })) });
      await untilSignalled("replica", () => running.stop());
      log.info("stopped");
    } finally {
      await history?.close().catch(() => undefined);
      await Promise.allSettled([...devices.flatMap((entry) => [entry.device.close(), entry.smallWrites?.close()]), rsWrl?.close()]);
    }
  },
});
