/**
 * Checking a staging server's managed configuration (docs/panel.md "Staging") against this host,
 * at POST /config/prepare. Nothing here changes anything: it reads the file system (stat,
 * realpath, a read-only open of an existing WRL) and the running WRLs' state.
 *
 * Refusals, each a ConfigRefusal naming the field at fault (i: the WRL's index in `wrls`, j: the
 * path's index in its `paths`):
 *
 *   condition                                                  code                    field
 *   config not {wrls: [...]}, entry not an object              CONFIG_INVALID          wrls / wrls[i]
 *   name not a WRL name (--wrl NAME rules)                     WRL_NAME_INVALID        wrls[i].name
 *   name twice, or a --wrl flag's name                         WRL_NAME_TAKEN          wrls[i].name
 *   paths not a non-empty list of absolute paths               PATH_INVALID            wrls[i].paths / wrls[i].paths[j]
 *   sizeBytes not a positive integer                           SIZE_INVALID            wrls[i].sizeBytes
 *   replica not HOST:PORT (default port 6003), or port 0, or   ADDRESS_INVALID         wrls[i].replica
 *     not loopback under --insecure (no --insecure-allow-remote)
 *   compression / rateLimit / rpo not as --compression,        COMPRESSION_INVALID /   wrls[i].compression / …
 *     --rate-limit NAME=RATE, --rpo NAME=DURATION take them    RATE_INVALID / RPO_INVALID
 *   a path given twice (in this config or by a --wrl flag)     WRL_PATH_TAKEN          wrls[i].paths[j]
 *   a running WRL given other paths or another sizeBytes       WRL_CHANGE_UNSUPPORTED  wrls[i].paths / wrls[i].sizeBytes
 *   primary missing and no sizeBytes, or its directory missing NOT_FOUND               wrls[i].paths[0]
 *   primary there but not a druvaa WRL, or its key is not      WRL_NOT_FOUND /         wrls[i].paths[0]
 *     --encrypt-at-rest's                                      WRL_KEY_* / WRL_NOT_ENCRYPTED
 *   secondary missing (of an existing WRL; of a new one: its   NOT_FOUND               wrls[i].paths[j]
 *     directory missing), or more paths than the WRL has       WRL_DEVICE_NOT_MEMBER
 *   a running WRL dropped while it holds records not yet       WRL_NOT_EMPTY           wrls
 *     relayed, or while a client holding a device of it is     WRL_IN_USE              wrls
 *     connected
 *
 * A running WRL whose replica, compression, rateLimit or rpo changes is not refused: its relay is
 * restarted with the new settings (managed.ts). Not checked: free space for a WRL to be created
 * (druvaa wrl create at commit reports it in GET /config `applied.error`).
 */
import { realpath, stat } from "node:fs/promises";
import { basename, dirname, isAbsolute, join } from "node:path";
import { replicaDataPortDefault } from "../../constants.ts";
import { DruvaaError } from "../../errors.ts";
import { parseAddress } from "../../io/address.ts";
import { openBlockDevice } from "../../io/open-device.ts";
import { WriteLog } from "../../wrl/write-log.ts";
import { notAWrl } from "../../wrl/recovery.ts";
import { checkName } from "../common.ts";
import { isLocalAddress } from "../link-security.ts";
import { ConfigRefusal } from "../managed/config-routes.ts";
import { parseCompression } from "./compression.ts";
import { parseRate, parseRpoSeconds } from "./relay-flags.ts";

/** One WRL of the managed config, as the panel sends it (saved as it is). */
export interface ManagedWrlSpec {
  name: string;
  /** Primary first, then secondaries. */
  paths: string[];
  /** The size a missing primary is created with (druvaa wrl create --size) at commit. */
  sizeBytes?: number;
  /** HOST:PORT of the replica server (default port 6003). */
  replica: string;
  /** As --compression: auto, off, or a level 1–19. */
  compression?: string | number;
  /** As --rate-limit NAME=RATE: a budget of this WRL's own. */
  rateLimit?: string;
  /** As --rpo NAME=DURATION. */
  rpo?: string;
}

export interface ManagedStagingConfig {
  wrls: ManagedWrlSpec[];
}

/** A managed WRL open now, as validation needs it. */
export interface RunningWrl {
  paths: readonly string[];
  /** Records appended and not yet acknowledged by the replica. */
  unrelayedRecords: number;
  /** Devices of connected clients attached to it. */
  connectedDevices: readonly string[];
}

export interface ValidateContext {
  /** `--wrl NAME=PATHS` flags (not managed): their names and paths are not for the config. */
  flagWrls: ReadonlyMap<string, readonly string[]>;
  /** --encrypt-at-rest: every WRL must be encrypted with it (new ones are created with it). */
  payloadKey: Uint8Array | undefined;
  /** The managed WRL of that name open now, or undefined. */
  running(name: string): RunningWrl | undefined;
  /** --insecure without --insecure-allow-remote: relays in plaintext only to loopback replicas. */
  loopbackOnly: boolean;
}

const example = '{"wrls": [{"name": "fast", "paths": ["/var/lib/druvaa/wrl/fast.img"], "sizeBytes": 1073741824, "replica": "10.0.0.9:6003"}]}';

/** Decodes and checks `raw` (see the table above); `current` is the committed config. */
export async function validateStagingConfig(raw: unknown, current: ManagedStagingConfig, context: ValidateContext): Promise<ManagedStagingConfig> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw) || !Array.isArray((raw as { wrls?: unknown }).wrls)) {
    throw new ConfigRefusal("CONFIG_INVALID", "config: {wrls: [...]} is needed", `e.g. ${example}`, "wrls");
  }
  const wrls = (raw as { wrls: unknown[] }).wrls.map((entry, index) => decodeWrl(entry, `wrls[${index}]`, context));
  const names = new Map<string, number>();
  for (const [index, wrl] of wrls.entries()) {
    const field = `wrls[${index}].name`;
    if (names.has(wrl.name)) throw new ConfigRefusal("WRL_NAME_TAKEN", `${field}: ${wrl.name} is also wrls[${names.get(wrl.name)}]`, "Give every WRL its own name", field);
    if (context.flagWrls.has(wrl.name)) throw new ConfigRefusal("WRL_NAME_TAKEN", `${field}: ${wrl.name} is a --wrl flag of this staging server`, "Pick another name, or drop the --wrl flag and restart the staging server", field);
    names.set(wrl.name, index);
  }
  checkRemovals(wrls, current, context);
  const taken = new Map<string, string>();
  for (const [name, paths] of context.flagWrls) for (const path of paths) taken.set(await realPathOf(path), `a path of the --wrl flag ${name}`);
  for (const [index, wrl] of wrls.entries()) {
    for (const [j, path] of wrl.paths.entries()) {
      const field = `wrls[${index}].paths[${j}]`;
      const real = await realPathOf(path);
      const other = taken.get(real);
      if (other !== undefined) throw new ConfigRefusal("WRL_PATH_TAKEN", `${field}: ${path} is also ${other}`, "Every WRL needs devices of its own", field);
      taken.set(real, `wrls[${index}].paths[${j}]`);
    }
  }
  for (const [index, wrl] of wrls.entries()) await checkOnHost(wrl, `wrls[${index}]`, current.wrls.find((old) => old.name === wrl.name), context);
  return { wrls };
}

function decodeWrl(entry: unknown, at: string, context: ValidateContext): ManagedWrlSpec {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) throw new ConfigRefusal("CONFIG_INVALID", `${at}: an object {name, paths, sizeBytes?, replica, compression?, rateLimit?, rpo?} is needed`, `e.g. ${example}`, at);
  const { name, paths, sizeBytes, replica, compression, rateLimit, rpo } = entry as Record<string, unknown>;
  if (typeof name !== "string") throw new ConfigRefusal("WRL_NAME_INVALID", `${at}.name: a WRL name is needed`, "e.g. fast", `${at}.name`);
  refusedAs("WRL_NAME_INVALID", `${at}.name`, () => checkName(name, `${at}.name`));
  if (!Array.isArray(paths) || paths.length === 0) throw new ConfigRefusal("PATH_INVALID", `${at}.paths: a list of paths is needed, primary first`, 'e.g. ["/var/lib/druvaa/wrl/fast.img"]', `${at}.paths`);
  for (const [j, path] of paths.entries()) {
    if (typeof path !== "string" || !isAbsolute(path)) throw new ConfigRefusal("PATH_INVALID", `${at}.paths[${j}]: an absolute path is needed`, "e.g. /var/lib/druvaa/wrl/fast.img or /dev/sdb", `${at}.paths[${j}]`);
  }
  if (sizeBytes !== undefined && !(typeof sizeBytes === "number" && Number.isSafeInteger(sizeBytes) && sizeBytes > 0)) {
    throw new ConfigRefusal("SIZE_INVALID", `${at}.sizeBytes: ${String(sizeBytes)} is not a positive number of bytes`, "druvaa sizing tells the WRL size a workload needs", `${at}.sizeBytes`);
  }
  if (typeof replica !== "string") throw new ConfigRefusal("ADDRESS_INVALID", `${at}.replica: the replica's HOST:PORT is needed`, `e.g. 10.0.0.9:${replicaDataPortDefault}`, `${at}.replica`);
  const address = refusedAs("ADDRESS_INVALID", `${at}.replica`, () => parseAddress(replica, replicaDataPortDefault));
  if (address.kind === "tcp" && address.port === 0) throw new ConfigRefusal("ADDRESS_INVALID", `${at}.replica: ${replica}: port 0`, `Give the port the replica listens on (default ${replicaDataPortDefault})`, `${at}.replica`);
  if (context.loopbackOnly && !isLocalAddress(address)) {
    throw new ConfigRefusal("ADDRESS_INVALID", `${at}.replica: plaintext to ${replica} refused: it is not a loopback address`, "Run the staging server with TLS (--tls-cert, --tls-key, --tls-ca), or with --insecure-allow-remote if this network is private", `${at}.replica`);
  }
  const spec: ManagedWrlSpec = { name, paths: paths as string[], replica };
  if (sizeBytes !== undefined) spec.sizeBytes = sizeBytes as number;
  if (compression !== undefined) {
    if (typeof compression !== "string" && typeof compression !== "number") throw new ConfigRefusal("COMPRESSION_INVALID", `${at}.compression: auto, off or a level 1-19`, undefined, `${at}.compression`);
    refusedAs("COMPRESSION_INVALID", `${at}.compression`, () => parseCompression(String(compression)));
    spec.compression = compression;
  }
  if (rateLimit !== undefined) {
    if (typeof rateLimit !== "string") throw new ConfigRefusal("RATE_INVALID", `${at}.rateLimit: a rate such as 20Mbit or 5MiB/s`, undefined, `${at}.rateLimit`);
    refusedAs("RATE_INVALID", `${at}.rateLimit`, () => parseRate(rateLimit, `${at}.rateLimit ${rateLimit}`));
    spec.rateLimit = rateLimit;
  }
  if (rpo !== undefined) {
    if (typeof rpo !== "string") throw new ConfigRefusal("RPO_INVALID", `${at}.rpo: a duration such as 30s, 5m or 1h`, undefined, `${at}.rpo`);
    refusedAs("RPO_INVALID", `${at}.rpo`, () => parseRpoSeconds(rpo, `${at}.rpo ${rpo}`));
    spec.rpo = rpo;
  }
  return spec;
}

/** Running WRLs the config drops: refused while they hold unrelayed records or a client is connected. */
function checkRemovals(wrls: readonly ManagedWrlSpec[], current: ManagedStagingConfig, context: ValidateContext): void {
  for (const old of current.wrls) {
    if (wrls.some((wrl) => wrl.name === old.name)) continue;
    const running = context.running(old.name);
    if (running === undefined) continue;
    if (running.unrelayedRecords > 0) {
      throw new ConfigRefusal("WRL_NOT_EMPTY", `WRL ${old.name} holds ${running.unrelayedRecords} record(s) not yet relayed to its replica (${old.replica})`, `Let it drain first (druvaa status --connect STAGING_CONTROL --wait-drained), or keep it in the config`, "wrls");
    }
    if (running.connectedDevices.length > 0) {
      throw new ConfigRefusal("WRL_IN_USE", `WRL ${old.name} is in use: a client is connected with device(s) ${running.connectedDevices.join(", ")}`, "Stop the pairs that use it first (druvaa client attach on their hosts)", "wrls");
    }
  }
}

/** Paths, sizes and the WRL itself on this host (the table above). */
async function checkOnHost(wrl: ManagedWrlSpec, at: string, old: ManagedWrlSpec | undefined, context: ValidateContext): Promise<void> {
  const running = context.running(wrl.name);
  if (running !== undefined) {
    if (running.paths.length !== wrl.paths.length || running.paths.some((path, j) => path !== wrl.paths[j])) {
      throw new ConfigRefusal("WRL_CHANGE_UNSUPPORTED", `${at}.paths: WRL ${wrl.name} runs on ${running.paths.join(", ")}; its devices cannot change while it is served`, "Add a WRL under a new name with the new devices, move the pairs to it, then remove this one", `${at}.paths`);
    }
    if (old !== undefined && old.sizeBytes !== wrl.sizeBytes) {
      throw new ConfigRefusal("WRL_CHANGE_UNSUPPORTED", `${at}.sizeBytes: WRL ${wrl.name} exists; its size cannot change`, "Keep its sizeBytes; for a bigger WRL add one under a new name and move the pairs to it", `${at}.sizeBytes`);
    }
    return; // open here: it is a WRL, with every device
  }
  const [primary, ...secondaries] = wrl.paths as [string, ...string[]];
  const primaryKind = await kindOf(primary);
  if (primaryKind === "missing") {
    if (wrl.sizeBytes === undefined) throw new ConfigRefusal("NOT_FOUND", `${at}.paths[0]: ${primary}: no such file or device, and no sizeBytes to create it with`, "Give sizeBytes to create the WRL there, or the path of an existing one (druvaa wrl create)", `${at}.paths[0]`);
    for (const [j, path] of wrl.paths.entries()) {
      if ((await kindOf(path)) === "missing" && (await kindOf(dirname(path))) !== "directory") throw new ConfigRefusal("NOT_FOUND", `${at}.paths[${j}]: the directory ${dirname(path)} does not exist`, `Create it first (mkdir -p ${dirname(path)}), or pick another path`, `${at}.paths[${j}]`);
    }
    return;
  }
  if (primaryKind !== "device") throw refusal(notAWrl(primary, `a ${primaryKind}, not a file or block device`), `${at}.paths[0]`);
  for (const [k, path] of secondaries.entries()) {
    if ((await kindOf(path)) === "missing") throw new ConfigRefusal("NOT_FOUND", `${at}.paths[${k + 1}]: ${path}: no such file or device`, `Give the secondaries of the WRL at ${primary} in order (druvaa wrl info ${primary})`, `${at}.paths[${k + 1}]`);
  }
  const deviceCount = await probeWrl(wrl.paths, context.payloadKey, `${at}.paths[0]`);
  if (wrl.paths.length > deviceCount) {
    throw new ConfigRefusal("WRL_DEVICE_NOT_MEMBER", `${at}.paths[${deviceCount}]: the WRL at ${primary} has ${deviceCount} device(s), but ${wrl.paths.length} paths are given`, `Add a device with: druvaa wrl add-device ${primary} ${wrl.paths[deviceCount]}`, `${at}.paths[${deviceCount}]`);
  }
}

/** Opens the WRL read-only (recovery without writing) with the secondaries given; returns its device count. */
async function probeWrl(paths: readonly string[], payloadKey: Uint8Array | undefined, field: string): Promise<number> {
  const [primaryPath, ...secondaryPaths] = paths as [string, ...string[]];
  let wrl: WriteLog | undefined;
  try {
    const primary = await openBlockDevice(primaryPath, { readOnly: true }).catch((error: unknown) => {
      if (error instanceof DruvaaError && (error.code === "DEVICE_SIZE_ZERO" || error.code === "DEVICE_SIZE_UNALIGNED")) throw notAWrl(primaryPath, error.message);
      throw error;
    });
    try {
      wrl = await WriteLog.open({ primary, resolve: (entry) => openBlockDevice(secondaryPaths[entry.index - 1] ?? entry.pathHint, { readOnly: true }) }, { readOnly: true, payloadKey });
    } catch (error) {
      await primary.close().catch(() => undefined); // already failing with the better error
      throw error;
    }
    return wrl.info().devices.length;
  } catch (error) {
    throw refusal(error, field);
  } finally {
    await wrl?.close();
  }
}

type PathKind = "missing" | "device" | "directory" | "special file";

async function kindOf(path: string): Promise<PathKind> {
  const info = await stat(path).catch((error: unknown) => {
    if ((error as { code?: unknown }).code === "ENOENT") return undefined;
    throw error;
  });
  if (info === undefined) return "missing";
  if (info.isFile() || info.isBlockDevice()) return "device";
  return info.isDirectory() ? "directory" : "special file";
}

/** The real path of `path`, or of its directory joined with its name when it does not exist yet. */
export async function realPathOf(path: string): Promise<string> {
  return realpath(path).catch(async () => join(await realpath(dirname(path)).catch(() => dirname(path)), basename(path)));
}

function refusal(error: unknown, field: string): ConfigRefusal {
  if (error instanceof ConfigRefusal) return error;
  if (error instanceof DruvaaError) return new ConfigRefusal(error.code, `${field}: ${error.message}`, error.hint, field);
  return new ConfigRefusal("CONFIG_INVALID", `${field}: ${error instanceof Error ? error.message : String(error)}`, undefined, field);
}

/** Runs `parse`; what it throws is refused with `code` and `field`, keeping its message and hint. */
function refusedAs<T>(code: string, field: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (!(error instanceof DruvaaError)) throw error;
    throw new ConfigRefusal(code, error.message.startsWith(field) ? error.message : `${field}: ${error.message}`, error.hint, field);
  }
}
