/**
 * `druvaa client attach`: the thin process around ClientCore. Opens the devices, attaches them
 * at staging (refusals end the command before anything is exported), serves them as NBD exports
 * on one listener, serves GET /status on the control port, and on SIGTERM/SIGINT stops taking
 * requests, lets in-flight writes finish (at most clientShutdownWaitMs), flushes and exits.
 */
import { realpathSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { command, jsonFlag, repeatedFlag } from "../../cli-support.ts";
import { openChangeMapAtPath, type ChangeMap, type ChangeMapRegion } from "../../changemap/index.ts";
import { clientChangeMapSyncIntervalMs, clientShutdownWaitMs, clientStateSaveIntervalMs } from "../../constants.ts";
import { parseDurationMs, parseRateBytesPerSecond } from "../../units.ts";
import { DruvaaError, exitCodes, usageError } from "../../errors.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { startControlServer, type ControlRoute, type ControlServer } from "../../io/control-server.ts";
import { isBlockDevicePath, openBlockDevice } from "../../io/open-device.ts";
import { connect, formatAddress, parseAddress } from "../../io/transport.ts";
import { logger } from "../../log.ts";
import { parseListenAddress, startNbdServer, type NbdServer } from "../../nbd/server.ts";
import { statusHeader } from "../server-support.ts";
import { announceReady, checkName, defaultNodeId, parseNamedValues, resolveStateDir, untilSignalled } from "../common.ts";
import { linkSecurityArgs, resolveLinkSecurity } from "../link-security.ts";
import { ClientCore, type ClientDevice } from "./core.ts";
import { StagingLink } from "./staging-link.ts";
import { activityLogPath, crashRecoveryOf, openActivityLog, recoverAndStart, resyncSetsOpenAtStart } from "./activity-setup.ts";
import type { CrashRecovery } from "./crash-recovery.ts";
import { withActivityLog } from "./activity-export.ts";
import type { ActivityLog } from "../../changemap/activity-log.ts";
import { ClientStateFile, type ClientState } from "./state.ts";
import { parseInitialSyncMode } from "./initial-sync.ts";
import { setUpVerify, type ClientVerify } from "./verify-setup.ts";
import { checkpointRoutes } from "./checkpoint.ts";

const log = logger("client");

export default command({
  meta: { name: "attach", description: "Serve devices as NBD exports; every write is logged at staging before it is written locally" },
  args: {
    device: { type: "string", valueHint: "NAME=PATH", required: true, description: "a device to serve as export NAME (block device or image file); repeat for more" },
    staging: { type: "string", valueHint: "HOST:PORT", required: true, description: "the staging server's data port (default port 6001)" },
    wrl: { type: "string", valueHint: "WRLNAME", required: true, description: "the staging WRL (consistency group) the devices join" },
    export: { type: "string", valueHint: "unix:SOCKET|HOST:PORT", required: true, description: "where NBD clients connect (one listener, one export per device)" },
    control: { type: "string", valueHint: "HOST:PORT", default: "127.0.0.1:6007", description: "control port (GET /status): HTTPS for admin and panel certificates with TLS, plain HTTP on loopback with --insecure" },
    "control-socket": { type: "string", valueHint: "PATH", description: "also serve the control routes as plain HTTP on this Unix socket, whatever the TLS flags: for the supervising `druvaa client agent` (put it in a directory only its user can enter)" },
    "state-dir": { type: "string", valueHint: "DIR", description: "where the client keeps its state (default /var/lib/druvaa/client as root)" },
    "node-id": { type: "string", valueHint: "ID", description: "this client's name at staging (default: the host name)" },
    changemap: { type: "string", valueHint: "PATH", description: "change map (druvaa changemap create) with a region per --device NAME: enables disconnected mode and resync" },
    "ack-timeout": { type: "string", valueHint: "DURATION", default: "5s", description: "with --changemap: a write staging has not acknowledged by then completes locally, marked in the change map" },
    "rate-limit": { type: "string", valueHint: "RATE", description: "with --changemap: resync bandwidth, e.g. 20MiB/s (default: unlimited)" },
    "initial-sync": { type: "string", valueHint: "none|network|checksum|media", default: "none", description: "once per device and WRL: none (replica already equal), network (send it all; needs --changemap), checksum (send what differs; needs --changemap), media (replica seeded from a backup)" },
    ...linkSecurityArgs,
    config: { type: "string", valueHint: "FILE", description: "take flags from this TOML file (keys: the long flag names, e.g. /etc/druvaa/client/NAME.toml); flags given here override its keys. Check one with: druvaa admin config check FILE" },
    json: jsonFlag,
  },
  examples: [
    "druvaa client attach --device disk0=/dev/sdb --staging 10.0.0.5:6001 --wrl fast --export unix:/run/druvaa/disk0.sock --tls-cert /etc/druvaa/tls/db1.pem --tls-key /etc/druvaa/tls/db1.key --tls-ca /etc/druvaa/tls/ca.pem",
    "druvaa client attach --device db=/srv/db.img --device logs=/srv/logs.img --staging staging:6001 --wrl app --export 127.0.0.1:10809",
    "qemu-io -f raw 'nbd+unix:///disk0?socket=/run/druvaa/disk0.sock' -c 'write 0 1M'   # write through it",
    "druvaa changemap create /var/lib/druvaa/disk0.map --region disk0=100GiB && druvaa client attach --device disk0=/dev/sdb --changemap /var/lib/druvaa/disk0.map --staging 10.0.0.5:6001 --wrl fast --export unix:/run/druvaa/disk0.sock",
    "druvaa client attach --device disk0=/dev/sdb --changemap /var/lib/druvaa/disk0.map --initial-sync checksum --rate-limit 50MiB/s --staging 10.0.0.5:6001 --wrl fast --export unix:/run/druvaa/disk0.sock",
  ],
  async run({ args, rawArgs }) {
    const deviceFlags = parseNamedValues(repeatedFlag(rawArgs, "device"), "--device", "disk0=/dev/sdb");
    if (deviceFlags.size === 0) throw usageError("--device is required", "e.g. --device disk0=/dev/sdb");
    const stagingAddress = parseAddress(args.staging, 6001);
    if (stagingAddress.kind === "tcp" && stagingAddress.port === 0) throw usageError(`--staging ${args.staging}: port 0`, "Give the port staging listens on (default 6001)");
    const wrl = checkName(args.wrl, "--wrl");
    const exportAddress = parseListenAddress(args.export); // a bad --export is a usage error before anything is opened
    const controlAddress = parseAddress(args.control, 6007);
    const controlSocket = args["control-socket"] === undefined ? undefined : parseAddress(`unix:${args["control-socket"]}`, 6007);
    if (controlSocket?.kind === "unix") {
      const socketDir = dirname(controlSocket.path);
      const mode = statSync(socketDir, { throwIfNoEntry: false })?.mode;
      if (mode === undefined) throw usageError(`--control-socket ${controlSocket.path}: no directory ${socketDir}`, `Create it for this user alone: mkdir -m 700 ${socketDir}`);
      if ((mode & 0o077) !== 0) throw usageError(`--control-socket ${controlSocket.path}: other users may enter ${socketDir}, and the socket is plain HTTP without TLS`, `Put it in a directory only this user can enter (chmod 700 ${socketDir})`);
    }
    const stateDir = resolveStateDir(args["state-dir"], "client");
    const nodeId = args["node-id"] ?? defaultNodeId();
    const staging = formatAddress(stagingAddress);
    const ackTimeoutMs = parseDurationMs(args["ack-timeout"], "--ack-timeout");
    if (args.changemap === undefined && args["rate-limit"] !== undefined) throw usageError("--rate-limit needs --changemap (it limits resync)", "Add --changemap PATH, or drop --rate-limit");
    const resyncRate = args["rate-limit"] === undefined ? 0 : parseRateBytesPerSecond(args["rate-limit"], "--rate-limit");
    const initialSyncMode = parseInitialSyncMode(args["initial-sync"], args.changemap !== undefined);
    // The NBD export carries no TLS: it stays local (unless --insecure --insecure-allow-remote).
    const security = await resolveLinkSecurity(args, { links: [stagingAddress], controls: [controlAddress], plaintextPorts: [exportAddress] });
    const stagingTls = security.forPeer("staging");

    const opened = await openDevices(deviceFlags, wrl);
    let changeMap: ChangeMap | undefined;
    let devices = opened;
    try {
      if (args.changemap !== undefined) {
        changeMap = await openChangeMapAtPath(args.changemap);
        const map = changeMap;
        devices = opened.map((d) => ({ ...d, changeMap: regionFor(map, d.name, d.device.sizeBytes, opened.length) }));
        const dirty = devices.reduce((sum, d) => sum + d.changeMap!.dirtyBytes, 0);
        log.info(`change map ${args.changemap}: ${dirty} dirty byte(s) to resync`);
      }
    } catch (error) {
      await changeMap?.close().catch(() => undefined);
      await Promise.allSettled(opened.map((d) => d.device.close()));
      throw error;
    }
    let link: StagingLink | undefined;
    let nbd: NbdServer | undefined;
    let control: ControlServer | undefined;
    let controlLocal: ControlServer | undefined;
    let saveTimer: ReturnType<typeof setInterval> | undefined;
    let mapSyncTimer: ReturnType<typeof setInterval> | undefined;
    let activity: ActivityLog | undefined;
    let verify: ClientVerify | undefined;
    let recovery: CrashRecovery | undefined;
    const syncMap = () => changeMap?.sync().catch((error: unknown) => log.error(`change map ${args.changemap}: ${error instanceof Error ? error.message : String(error)}`));
    try {
      let core: ClientCore | undefined;
      const describe = (): Omit<ClientState, "epochReservedUpTo" | "savedAt"> => ({
        nodeId,
        staging,
        devices: devices.map((d) => {
          const acked = core?.deviceStatus().find((status) => status.name === d.name)?.ackedLsn ?? 0;
          const wrlUuid = link?.wrlUuids.get(d.name);
          return { name: d.name, path: d.path, wrl: d.wrl, ackedLsn: acked, ...(wrlUuid === undefined ? {} : { wrlUuid }) };
        }),
        ...(changeMap === undefined ? {} : { changeMapUuid: changeMap.uuid }),
      });
      const stateFile = await ClientStateFile.open(stateDir, describe);
      const activityPath = changeMap === undefined ? undefined : await activityLogPath(args.changemap!, stateDir);
      if (changeMap !== undefined) activity = await openActivityLog(activityPath!, changeMap, devices);
      const resyncSetsOpen = activity === undefined ? [] : resyncSetsOpenAtStart(activity, devices);
      const liveCore = (core = new ClientCore({ devices, startEpoch: stateFile.startEpoch, ackTimeoutMs, resyncRateBytesPerSecond: resyncRate, onResynced: () => void syncMap(), resyncSetsOpen }));
      // After a crash the active extents stay pinned in the activity log until recovered (below).
      const recovering = activity === undefined ? [] : await recoverAndStart(activity, changeMap!, devices, log, activityPath!);
      if (changeMap !== undefined) mapSyncTimer = setInterval(syncMap, clientChangeMapSyncIntervalMs);
      const verifying = (verify = setUpVerify({ core: liveCore, devices, initialSyncMode, records: stateFile, wrlUuidOf: (name) => link?.wrlUuids.get(name) }));
      const recovered = (recovery = activity === undefined ? undefined : crashRecoveryOf(activity, recovering, liveCore, devices, verifying));
      link = new StagingLink({
        address: staging,
        dial: () => connect(stagingAddress, undefined, stagingTls === undefined ? {} : { tls: stagingTls }),
        nodeId,
        attachments: devices.map((d) => ({ device: d.name, wrl: d.wrl, sizeBytes: d.device.sizeBytes, logicalBlockSizeBytes: d.device.logicalBlockSizeBytes })),
        peer: verifying.probes,
      });
      await startLink(link, changeMap !== undefined);
      if (!link.connected) liveCore.linkDown(); // disconnected mode from the start
      // Checksum-first once staging is connected; without staging the extents are marked dirty now.
      await recovered?.start();
      if (link.connected) log.info(`attached ${devices.map((d) => d.name).join(", ")} to WRL ${wrl} at staging ${staging}`);

      const activeLog = activity;
      const exports = liveCore.exports().map((exp, index) => (activeLog === undefined ? exp : withActivityLog(exp, activeLog, devices[index]!.changeMap!.name)));
      nbd = await startNbdServer({ listen: args.export, exports });
      const server = nbd;
      const started = Date.now();
      const activeLink = link;
      const routes: Record<string, ControlRoute> = {
        "/status": () => ({
          ...statusHeader({ role: "client", nodeId }, started, Date.now()),
          staging: activeLink.status(),
          devices: liveCore.deviceStatus().map((d) => ({ ...d, export: server.uri(d.name), wrlUuid: activeLink.wrlUuids.get(d.name) ?? null })),
          inflightWrites: liveCore.inflightWrites,
          unackedWrites: liveCore.unackedWrites,
          ...liveCore.modeStatus(),
          activityLog: activity === undefined ? null : { path: activityPath, ...activity.status() },
          crashRecovery: recovered?.status() ?? null,
          ...verifying.status(),
        }),
        "POST /resync": () => {
          if (changeMap === undefined) throw new DruvaaError("NO_CHANGEMAP", "this client has no change map: every write is logged at staging, there is nothing to resync", "Start the client with --changemap PATH for disconnected mode and resync", exitCodes.refused);
          return liveCore.requestResync();
        },
        ...verifying.routes(),
        ...checkpointRoutes({ host: liveCore, probes: verifying.probes, devices }),
      };
      control = await startControlServer(controlAddress, routes, "client", { tls: security.forControl() });
      // The file system guards it (the agent's 0700 run directory), not TLS: see agent-children.ts.
      if (controlSocket !== undefined) controlLocal = await startControlServer(controlSocket, routes, "client");
      const controlAddressBound = control.address;

      let saving = Promise.resolve();
      const save = () => (saving = saving.then(() => stateFile.save(liveCore.epochHigh, describe())).catch((error) => log.error(`saving ${stateFile.path}: ${error instanceof Error ? error.message : String(error)}`)));
      saveTimer = setInterval(save, clientStateSaveIntervalMs);
      verifying.startInitialSync(save);

      // The signal handler goes in before the ready line: a parent that signals on reading it must not find it missing (registered after the line, Bun may not have it in place yet).
      const stopped = untilSignalled("client", async () => {
        verifying.stop();
        recovered?.stop();
        const failedWrites = await shutdown(liveCore, server);
        clearInterval(saveTimer);
        await save();
        // Clean only when no write was cut short: those may be in the WRL and not on the primary.
        if (activity !== undefined && !(failedWrites === 0 && (await activity.closeClean(liveCore.modeStatus().resyncSetsOpen)))) {
          log.warn(`activity log ${activityPath} left as after a crash: the next start resyncs its extents`);
        }
        if (failedWrites > 0) {
          throw new DruvaaError("SHUTDOWN_WRITES_FAILED", `stopped with ${failedWrites} write(s) that staging never acknowledged; their NBD clients got EIO and nothing was written locally for them`, `Staging ${staging} was unreachable or stuck; check it with: druvaa status --connect STAGING:6002`, exitCodes.failure);
        }
      });
      announceReady(args.json, "client", {
        nodeId,
        staging,
        export: server.address,
        exports: Object.fromEntries(devices.map((d) => [d.name, server.uri(d.name)])),
        control: controlAddressBound,
        ...(controlLocal === undefined ? {} : { controlSocket: controlLocal.address }),
        stateDir,
      });

      await stopped;
    } finally {
      verify?.stop();
      recovery?.stop();
      clearInterval(saveTimer);
      clearInterval(mapSyncTimer);
      await nbd?.close();
      await control?.stop();
      await controlLocal?.stop();
      await link?.stop();
      await Promise.allSettled(devices.map((d) => d.device.close()));
      await activity?.close().catch((error: unknown) => log.error(`closing the activity log: ${error instanceof Error ? error.message : String(error)}`));
      await changeMap?.close().catch((error: unknown) => log.error(`closing change map ${args.changemap}: ${error instanceof Error ? error.message : String(error)}`));
    }
  },
});

/**
 * The first staging session. Unreachable (or not answering the attach) with a change map: the
 * client serves anyway, in disconnected mode, and keeps trying; without one it cannot (every
 * write needs staging's ack), so it exits with the reason. Refusals always end the command.
 */
async function startLink(link: StagingLink, hasChangeMap: boolean): Promise<void> {
  try {
    await link.start();
  } catch (error) {
    const transient = error instanceof DruvaaError && (error.code === "STAGING_UNREACHABLE" || error.code === "ATTACH_TIMEOUT");
    if (!transient) throw error;
    if (!hasChangeMap) {
      throw new DruvaaError(error.code, `${error.message}; without --changemap the client cannot serve writes until staging takes them`, `${error.hint ?? "Check the staging server"}; or start the client with --changemap PATH (druvaa changemap create PATH --region NAME=SIZE): it then serves in disconnected mode and resyncs once staging is up`, error.exitCode, { cause: error });
    }
    log.warn(`${error.message}: serving in disconnected mode (writes complete locally, marked in the change map) and connecting in the background`);
    link.retryInBackground(error);
  }
}

/**
 * Stops the NBD server (new requests get ESHUTDOWN, in-flight ones finish), waits at most
 * clientShutdownWaitMs, then fails what is still waiting for staging; flushes every device.
 * Returns how many write requests had to be failed.
 */
async function shutdown(core: ClientCore, nbd: NbdServer): Promise<number> {
  core.refuseNewWrites();
  const closing = nbd.close();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = await Promise.race([
    closing.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), clientShutdownWaitMs))),
  ]);
  clearTimeout(timer);
  let failedWrites = 0;
  if (timedOut) {
    failedWrites = core.inflightWrites;
    log.error(`${failedWrites} write(s) still waiting for staging after ${clientShutdownWaitMs} ms; failing them (the NBD clients get EIO, nothing is written locally)`);
    core.abort();
  }
  await closing;
  await core.flushAll();
  log.info("devices flushed; stopped");
  return failedWrites;
}

/** The device's region: named like the device (or the map's only region, for one device). */
function regionFor(map: ChangeMap, name: string, sizeBytes: number, deviceCount: number): ChangeMapRegion {
  const regionName = map.regionNames.includes(name) || deviceCount > 1 || map.regionNames.length !== 1 ? name : map.regionNames[0]!;
  return map.region(regionName, { volumeSizeBytes: sizeBytes });
}

async function openDevices(flags: Map<string, string>, wrl: string): Promise<ClientDevice[]> {
  const opened: ClientDevice[] = [];
  const realPaths = new Map<string, string>();
  try {
    for (const [name, path] of flags) {
      const device: BlockDevice = await openBlockDevice(path);
      const discardReadsZeros = !(await isBlockDevicePath(path));
      opened.push({ name, path, wrl, device, discardReadsZeros });
      const real = realpathSync(path);
      const other = realPaths.get(real);
      if (other !== undefined) throw usageError(`--device ${name}=${path}: the same device as ${other}`, "Serve each device once; one export per device");
      realPaths.set(real, name);
      if (device.sizeBytes === 0) throw new DruvaaError("DEVICE_EMPTY", `${path}: size 0`, "Give a device or image with data space (truncate -s 1G PATH)", exitCodes.usage);
    }
    return opened;
  } catch (error) {
    await Promise.allSettled(opened.map((d) => d.device.close()));
    throw error;
  }
}
