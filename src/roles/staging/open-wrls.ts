/**
 * The staging server's WRLs from the command line: `--wrl NAME=PATH[,PATH...]` paired with
 * `--replica NAME=HOST:PORT`. Everything that can be refused without touching a device is
 * checked first (names, pairing, duplicate paths); then each WRL is opened (recovery runs), and
 * on any failure the ones already opened are closed again.
 */
import { realpath, stat } from "node:fs/promises";
import { resolve as resolvePath } from "node:path";
import { DruvaaError, exitCodes, usageError } from "../../errors.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { openBlockDevice } from "../../io/open-device.ts";
import { parseAddress, type Address } from "../../io/transport.ts";
import { replicaDataPortDefault } from "../../constants.ts";
import { WriteLog } from "../../wrl/write-log.ts";
import type { WrlDeviceEntry } from "../../wrl/types.ts";

export interface WrlPlan {
  name: string;
  /** Primary first, then secondaries in the order the log uses them. */
  paths: string[];
  replica: Address;
  /** The replica address as given. */
  replicaText: string;
}

export interface OpenedWrl {
  name: string;
  wrl: WriteLog;
  /** The paths of every device of the log, primary first. */
  devicePaths: string[];
  replica: Address;
  replicaText: string;
}

/** Pairs every --wrl with its --replica; refuses a WRL without one and a replica for no WRL. */
export function planWrls(wrls: ReadonlyMap<string, string>, replicas: ReadonlyMap<string, string>): WrlPlan[] {
  if (wrls.size === 0) throw usageError("at least one --wrl NAME=PATH is needed (or --managed: WRLs from the panel)", "Create a WRL with: druvaa wrl create --primary PATH --size 10G; then: --wrl fast=PATH --replica fast=REPLICA:6003");
  for (const name of replicas.keys()) {
    if (!wrls.has(name)) throw usageError(`--replica ${name}=…: no --wrl named ${name}`, `The WRLs given are: ${[...wrls.keys()].join(", ")}; every --replica names one of them`);
  }
  const plans: WrlPlan[] = [];
  const seen = new Map<string, string>();
  for (const [name, value] of wrls) {
    const replicaText = replicas.get(name);
    if (replicaText === undefined) throw usageError(`--wrl ${name}: no --replica ${name}=HOST:PORT`, `Each WRL relays to one replica server, e.g. --replica ${name}=10.0.0.9:${replicaDataPortDefault}`);
    const paths = value.split(",").map((path) => path.trim());
    if (paths.some((path) => path === "")) throw usageError(`--wrl ${name}=${value}: an empty path`, `e.g. --wrl ${name}=/dev/sdb or --wrl ${name}=/dev/sdb,/dev/sdc`);
    for (const path of paths) {
      const absolute = resolvePath(path);
      const other = seen.get(absolute);
      if (other !== undefined) throw usageError(`--wrl ${name}: ${path} is also given for WRL ${other}`, "Every WRL needs devices of its own");
      seen.set(absolute, name);
    }
    let replica: Address;
    try {
      replica = parseAddress(replicaText, replicaDataPortDefault);
    } catch (error) {
      if (error instanceof DruvaaError) throw usageError(`--replica ${name}=${replicaText}: ${error.message}`, error.hint);
      throw error;
    }
    if (replica.kind === "tcp" && replica.port === 0) throw usageError(`--replica ${name}=${replicaText}: port 0`, "Give the port the replica listens on (default 6003)");
    plans.push({ name, paths, replica, replicaText });
  }
  return plans;
}

/**
 * Opens every planned WRL (recovery runs); closes what it opened if one fails. With
 * `payloadKey` (--encrypt-at-rest) every WRL must be encrypted with that key.
 */
export async function openWrls(plans: readonly WrlPlan[], opts: { payloadKey?: Uint8Array } = {}): Promise<OpenedWrl[]> {
  const opened: OpenedWrl[] = [];
  try {
    const uuids = new Map<string, string>();
    for (const plan of plans) {
      const wrl = await openOne(plan, opts.payloadKey);
      const uuid = wrl.info().uuid;
      const other = uuids.get(uuid);
      if (other !== undefined) {
        await wrl.close();
        throw usageError(`--wrl ${plan.name}: the same write log (uuid ${uuid}) as --wrl ${other}`, "Give every WRL name its own write log");
      }
      uuids.set(uuid, plan.name);
      const devicePaths = wrl.info().devices.map((entry) => plan.paths[entry.index] ?? entry.pathHint);
      opened.push({ name: plan.name, wrl, devicePaths, replica: plan.replica, replicaText: plan.replicaText });
    }
  } catch (error) {
    await Promise.allSettled(opened.map((entry) => entry.wrl.close()));
    throw error;
  }
  return opened;
}

async function openOne(plan: WrlPlan, payloadKey: Uint8Array | undefined): Promise<WriteLog> {
  const flag = `--wrl ${plan.name}=${plan.paths.join(",")}`;
  const [primaryPath, ...secondaryPaths] = plan.paths as [string, ...string[]];
  try {
    await stat(primaryPath);
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") {
      throw new DruvaaError("WRL_NOT_FOUND", `${flag}: ${primaryPath}: no such file or device`, `Create the write log first: druvaa wrl create --primary ${primaryPath} --size 10G`, exitCodes.notFound);
    }
    throw error;
  }
  let primary: BlockDevice;
  try {
    primary = await openBlockDevice(primaryPath, { direct: true });
  } catch (error) {
    if (error instanceof DruvaaError && (error.code === "DEVICE_SIZE_ZERO" || error.code === "DEVICE_SIZE_UNALIGNED")) {
      throw new DruvaaError("WRL_NOT_FOUND", `${flag}: ${primaryPath} is not a druvaa write log (${error.message})`, `Create one with: druvaa wrl create --primary ${primaryPath}`, exitCodes.notFound);
    }
    throw prefixed(error, flag);
  }
  // Secondaries by the paths given, in order; any the command line leaves out by the path the
  // superblock remembers for them.
  const resolveSecondary = async (entry: WrlDeviceEntry): Promise<BlockDevice> => {
    const path = secondaryPaths[entry.index - 1] ?? entry.pathHint;
    return openBlockDevice(await realpath(path).catch(() => path), { direct: true });
  };
  let wrl: WriteLog;
  try {
    wrl = await WriteLog.open({ primary, resolve: resolveSecondary }, { payloadKey });
  } catch (error) {
    await primary.close().catch(() => undefined);
    if (error instanceof DruvaaError && error.code === "WRL_DEVICE_MISSING") {
      throw new DruvaaError(error.code, `${flag}: ${error.message}`, `Give the secondaries' paths after the primary, in order: --wrl ${plan.name}=${primaryPath},SECONDARY[,...] (see: druvaa wrl info ${primaryPath})`, error.exitCode, { cause: error });
    }
    throw prefixed(error, flag);
  }
  const listed = wrl.info().devices.length;
  if (plan.paths.length > listed) {
    await wrl.close();
    throw new DruvaaError("WRL_DEVICE_NOT_MEMBER", `${flag}: the write log has ${listed} device(s), but ${plan.paths.length} paths are given`, `Add a device with: druvaa wrl add-device ${primaryPath} ${plan.paths[listed]} (with the staging server stopped)`, exitCodes.refused);
  }
  return wrl;
}

function prefixed(error: unknown, flag: string): unknown {
  if (!(error instanceof DruvaaError)) return error;
  return new DruvaaError(error.code, `${flag}: ${error.message}`, error.hint, error.exitCode, { cause: error });
}
