/**
 * `druvaa replica apply`: opens the replica devices, loads the applied LSNs from the state
 * directory, serves staging relays (data port), restores (restore port) and status (control
 * port) until SIGTERM/SIGINT, then lets the shipment being applied finish and exits 0.
 */
import { realpath } from "node:fs/promises";
import { command, jsonFlag, repeatedFlag } from "../../cli-support.ts";
import { replicaControlPortDefault, replicaDataPortDefault, replicaRestorePortDefault } from "../../constants.ts";
import { DruvaaError, usageError } from "../../errors.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { FileDevice } from "../../io/file-device.ts";
import { isBlockDevicePath, openBlockDevice } from "../../io/open-device.ts";
import { logger } from "../../log.ts";
import { announceReady, nodeIdFlag, parseNamedValues, parseServeAddress, resolveStateDir, untilSignalled } from "../common.ts";
import { ReplicaCore, type ReplicaDevice } from "./core.ts";
import { ReplicaServer } from "./server.ts";
import { fileStateStore } from "./state.ts";

const log = logger("replica");

/** Opens every `--device NAME=PATH`, refusing a path given twice; closes what it opened on failure. */
export async function openReplicaDevices(specs: ReadonlyMap<string, string>): Promise<ReplicaDevice[]> {
  const opened: ReplicaDevice[] = [];
  const byRealPath = new Map<string, string>();
  try {
    for (const [name, path] of specs) {
      const flag = `--device ${name}=${path}`;
      const real = await realpath(path).catch((error: unknown) => {
        if ((error as { code?: unknown }).code === "ENOENT") {
          throw new DruvaaError("NOT_FOUND", `${flag}: no such file or device`, `Check the path; create an image of the primary's size with: truncate -s SIZE ${path}`, 3);
        }
        return path;
      });
      const other = byRealPath.get(real);
      if (other !== undefined) throw usageError(`${flag}: the same device as --device ${other}`, "Give every replica device its own path");
      byRealPath.set(real, name);
      let device: BlockDevice;
      try {
        device = await openBlockDevice(path, { direct: true });
      } catch (error) {
        if (error instanceof DruvaaError) throw new DruvaaError(error.code, `${flag}: ${error.message}`, error.hint, error.exitCode, { cause: error });
        throw error;
      }
      // Raw devices do not promise that a discard reads back zeros: ZERO records write zeros there.
      const imageFile = !(await isBlockDevicePath(path));
      const entry: ReplicaDevice = { name, path, device, discardReadsZeros: imageFile };
      opened.push(entry);
      // An image file is written O_DIRECT (large records go to the disk as they are applied, so
      // the group's flush is short); small records go through a second, buffered handle: a
      // page-cache copy instead of a thread-pool round trip and a disk write each (apply.ts).
      if (imageFile && device instanceof FileDevice && device.direct) entry.smallWrites = await openBlockDevice(path);
    }
  } catch (error) {
    await Promise.allSettled(opened.flatMap((entry) => [entry.device.close(), entry.smallWrites?.close()]));
    throw error;
  }
  return opened;
}

export default command({
  meta: { name: "apply", description: "Serve staging relays: apply shipments in LSN order to the replica devices" },
  args: {
    listen: { type: "string", valueHint: "HOST:PORT", default: `127.0.0.1:${replicaDataPortDefault}`, description: `data port for staging relays (default port ${replicaDataPortDefault}; no host: 127.0.0.1)` },
    device: { type: "string", valueHint: "NAME=PATH", required: true, description: "a replica device (block device or image file); repeat for several" },
    control: { type: "string", valueHint: "HOST:PORT", default: `127.0.0.1:${replicaControlPortDefault}`, description: "control port (HTTP GET /status)" },
    restore: { type: "string", valueHint: "HOST:PORT", default: `127.0.0.1:${replicaRestorePortDefault}`, description: "restore port (druvaa restore)" },
    "state-dir": { type: "string", valueHint: "DIR", description: "where the applied LSNs are kept (default: $DRUVAA_STATE_DIR/replica, /var/lib/druvaa/replica as root)" },
    "node-id": { type: "string", valueHint: "ID", description: "this node's name in handshakes and status (default: the host name)" },
    json: jsonFlag,
  },
  examples: [
    "druvaa replica apply --listen 10.0.0.9:6003 --device disk0=/dev/sdc",
    "druvaa replica apply --device disk0=/srv/replica/disk0.img --state-dir /srv/replica/state --json",
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
    const devices = await openReplicaDevices(specs);
    try {
      const core = await ReplicaCore.open({ devices, store: fileStateStore(stateDir) });
      const running = await ReplicaServer.start({ core, nodeId, listen: listenAddress, restore: restoreAddress, control: controlAddress });
      const applied = core.status().wrls.map((wrl) => `${wrl.name} at LSN ${wrl.appliedLsn}`).join(", ");
      if (applied) log.info(`resuming: ${applied}`);
      announceReady(args.json, "replica", { ...running.addresses, nodeId, stateDir, devices: devices.map((entry) => ({ name: entry.name, path: entry.path, sizeBytes: entry.device.sizeBytes })) });
      await untilSignalled("replica", () => running.stop());
      log.info("stopped");
    } finally {
      await Promise.allSettled(devices.flatMap((entry) => [entry.device.close(), entry.smallWrites?.close()]));
    }
  },
});
