/**
 * The client host's managed configuration (docs/panel.md "Client host"): the attachments the
 * agent runs, each as a `druvaa client attach` child. This module decodes and checks a pushed
 * config against this host (validate: reads only, never writes: the config may be aborted), makes
 * what a commit needs before a child starts (a missing change map), and turns an attachment into
 * the child's command line.
 *
 * Checks, each refused as a ConfigRefusal naming the field (`attachments[0].devices[0].path`):
 *   name        well-formed (a file name: logs and state live under STATE_DIR/attachments/NAME),
 *               unique, short enough for its control socket path
 *   devices     at least one; names well-formed and unique on the host (staging knows a device by
 *               its name); paths exist, are a block device or an image file of known, non-zero
 *               size, and are not given twice on the host
 *   staging     parses (default port 6001), port not 0
 *   wrl         well-formed name
 *   export      parses as a listen address, not the export of another attachment, and local
 *               (loopback or Unix socket: it carries no TLS) unless --insecure-allow-remote
 *   changemap   an existing change map with a region per device of the device's size (or, for one
 *               device, a single region of its size, as `client attach` accepts), or a missing file
 *               in an existing directory (created at commit); not shared by two attachments
 *   initialSync none|network|checksum|media; network and checksum need a changemap
 *   rateLimit   parses as a rate; needs a changemap (it paces the resync)
 *   enabled     a boolean
 * Unknown keys are refused too: a misspelt `changeMap` must not silently mean "no change map".
 * Not checked here: that staging is reachable and knows the WRL (the child's attach says so, and
 * its refusal shows in the agent's status and the attachment's log).
 */
import { realpath, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { createChangeMapAtPath, inspectChangeMapAtPath, type ChangeMapInfo } from "../../changemap/index.ts";
import { changeMapBlockSizeBytesDefault, unixSocketPathBytesMax } from "../../constants.ts";
import { DruvaaError } from "../../errors.ts";
import { formatAddress, parseAddress } from "../../io/address.ts";
import { openBlockDevice, pathExists } from "../../io/open-device.ts";
import { parseListenAddress } from "../../nbd/server.ts";
import { parseRateBytesPerSecond } from "../../units.ts";
import { checkName } from "../common.ts";
import { isLocalAddress } from "../link-security.ts";
import { ConfigRefusal } from "../managed/config-routes.ts";
import { initialSyncModes, type InitialSyncMode } from "./initial-sync.ts";

export interface AgentDevice {
  name: string;
  path: string;
}

export interface Attachment {
  name: string;
  devices: AgentDevice[];
  staging: string;
  wrl: string;
  export: string;
  changemap?: string;
  initialSync: InitialSyncMode;
  rateLimit?: string;
  enabled: boolean;
}

export interface AgentConfig {
  attachments: Attachment[];
}

export const emptyAgentConfig: AgentConfig = { attachments: [] };

/** Where the agent keeps an attachment's files (all under its state directory). */
export interface AttachmentPaths {
  /** The child's --state-dir. */
  stateDir: string;
  /** The child's stderr and stdout, appended. */
  logPath: string;
  /** The child's plain-HTTP control socket (see agent-children.ts). */
  controlSocket: string;
  /** The running child's pid, for cleaning up after an agent that was killed. */
  pidPath: string;
}

export function attachmentPaths(agentStateDir: string, name: string): AttachmentPaths {
  const dir = join(agentStateDir, "attachments");
  return { stateDir: join(dir, name), logPath: join(dir, `${name}.log`), controlSocket: join(agentStateDir, "run", `${name}.sock`), pidPath: join(dir, `${name}.pid`) };
}

export interface ValidateContext {
  /** The agent's state directory (socket paths are checked against the Unix limit). */
  stateDir: string;
  /** --insecure --insecure-allow-remote: an export may listen on a non-loopback address. */
  allowRemoteExport: boolean;
}

const attachmentKeys = new Set(["name", "devices", "staging", "wrl", "export", "changemap", "initialSync", "rateLimit", "enabled"]);
const deviceKeys = new Set(["name", "path"]);

function refuse(code: string, field: string, message: string, hint?: string): never {
  throw new ConfigRefusal(code, `${field}: ${message}`, hint, field);
}

function objectAt(value: unknown, field: string, keys: Set<string>): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) refuse("CONFIG_INVALID", field, "an object is needed");
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) if (!keys.has(key)) refuse("CONFIG_INVALID", `${field}.${key}`, "unknown setting", `Known: ${[...keys].join(", ")}`);
  return record;
}

function stringAt(record: Record<string, unknown>, key: string, field: string): string {
  const value = record[key];
  if (typeof value !== "string" || value.trim() === "") refuse("CONFIG_INVALID", `${field}.${key}`, "a non-empty string is needed");
  return value;
}

/** A druvaa name (devices, WRLs, attachments): the usage error of checkName, as a refusal. */
function nameAt(record: Record<string, unknown>, key: string, field: string): string {
  const value = stringAt(record, key, field);
  try {
    return checkName(value, `${field}.${key}`);
  } catch (error) {
    const usage = error as DruvaaError;
    refuse("NAME_INVALID", `${field}.${key}`, `"${value}" is not a valid name`, usage.hint);
  }
}

/** Decodes and checks a pushed config (see the file comment); changes nothing on the host. */
export async function validateAgentConfig(raw: unknown, context: ValidateContext): Promise<AgentConfig> {
  const top = objectAt(raw, "config", new Set(["attachments"]));
  if (!Array.isArray(top.attachments)) refuse("CONFIG_INVALID", "attachments", "a list is needed", 'e.g. {"attachments": []}');
  const names = new Map<string, string>();
  const deviceNames = new Map<string, string>();
  const devicePaths = new Map<string, string>();
  const exports = new Map<string, string>();
  const changeMaps = new Map<string, string>();
  const attachments: Attachment[] = [];
  for (const [index, value] of top.attachments.entries()) {
    const field = `attachments[${index}]`;
    const record = objectAt(value, field, attachmentKeys);
    const name = nameAt(record, "name", field);
    if (names.has(name)) refuse("ATTACHMENT_DUPLICATE", `${field}.name`, `"${name}" is also ${names.get(name)}`, "Give every attachment its own name");
    names.set(name, `${field}.name`);
    const socket = attachmentPaths(context.stateDir, name).controlSocket;
    if (Buffer.byteLength(socket) > unixSocketPathBytesMax) refuse("NAME_TOO_LONG", `${field}.name`, `its control socket ${socket} would be longer than ${unixSocketPathBytesMax} bytes`, "Use a shorter name, or start the agent with a shorter --state-dir");

    if (!Array.isArray(record.devices) || record.devices.length === 0) refuse("CONFIG_INVALID", `${field}.devices`, "a list of at least one {name, path} is needed");
    const devices: AgentDevice[] = [];
    const sizes: number[] = [];
    for (const [deviceIndex, deviceValue] of record.devices.entries()) {
      const deviceField = `${field}.devices[${deviceIndex}]`;
      const device = objectAt(deviceValue, deviceField, deviceKeys);
      const deviceName = nameAt(device, "name", deviceField);
      if (deviceNames.has(deviceName)) refuse("DEVICE_NAME_DUPLICATE", `${deviceField}.name`, `"${deviceName}" is also ${deviceNames.get(deviceName)}: staging knows a device by its name`, "Give every device on this host its own name");
      deviceNames.set(deviceName, `${deviceField}.name`);
      const path = resolve(stringAt(device, "path", deviceField));
      sizes.push(await deviceSizeBytes(path, `${deviceField}.path`));
      const real = await realpath(path);
      if (devicePaths.has(real)) refuse("DEVICE_PATH_DUPLICATE", `${deviceField}.path`, `${path} is also ${devicePaths.get(real)}`, "Serve each device once");
      devicePaths.set(real, `${deviceField}.path`);
      devices.push({ name: deviceName, path });
    }

    const staging = stringAt(record, "staging", field);
    const stagingAddress = addressAt(() => parseAddress(staging, 6001), `${field}.staging`);
    if (stagingAddress.kind === "tcp" && stagingAddress.port === 0) refuse("ADDRESS_INVALID", `${field}.staging`, "port 0", "Give the port staging listens on (default 6001)");
    const wrl = nameAt(record, "wrl", field);
    const exportText = stringAt(record, "export", field);
    const exportAddress = addressAt(() => parseListenAddress(exportText), `${field}.export`);
    const exportKey = exportAddress.kind === "unix" ? `unix:${resolve(exportAddress.path)}` : formatAddress(exportAddress);
    if (exports.has(exportKey)) refuse("EXPORT_IN_USE", `${field}.export`, `${exportText} is also ${exports.get(exportKey)}`, "Give every attachment its own export socket or port");
    exports.set(exportKey, `${field}.export`);
    if (!context.allowRemoteExport && !isLocalAddress(exportAddress)) refuse("EXPORT_NOT_LOCAL", `${field}.export`, `${exportText} is not a loopback address, and the NBD export carries no TLS`, "Serve the export on a Unix socket or 127.0.0.1 and run the NBD client on this host");

    const changemap = record.changemap === undefined ? undefined : resolve(stringAt(record, "changemap", field));
    if (changemap !== undefined) {
      if (changeMaps.has(changemap)) refuse("CHANGEMAP_IN_USE", `${field}.changemap`, `${changemap} is also ${changeMaps.get(changemap)}`, "One change map per attachment: it has a region per device of the attachment");
      changeMaps.set(changemap, `${field}.changemap`);
      await checkChangeMap(changemap, devices, sizes, `${field}.changemap`);
    }
    const initialSync = record.initialSync;
    if (typeof initialSync !== "string" || !(initialSyncModes as readonly string[]).includes(initialSync)) refuse("CONFIG_INVALID", `${field}.initialSync`, `one of ${initialSyncModes.join(", ")} is needed`);
    if ((initialSync === "network" || initialSync === "checksum") && changemap === undefined) refuse("CHANGEMAP_NEEDED", `${field}.initialSync`, `${initialSync} needs a changemap: the blocks to send are marked there`, "Add a changemap, or use initialSync none or media");
    const rateLimit = record.rateLimit === undefined ? undefined : stringAt(record, "rateLimit", field);
    if (rateLimit !== undefined) {
      if (changemap === undefined) refuse("CHANGEMAP_NEEDED", `${field}.rateLimit`, "a rate limit paces the resync, which needs a changemap", "Add a changemap, or drop rateLimit");
      try {
        parseRateBytesPerSecond(rateLimit, `${field}.rateLimit`);
      } catch (error) {
        refuse("RATE_INVALID", `${field}.rateLimit`, `"${rateLimit}" is not a rate`, (error as DruvaaError).hint);
      }
    }
    if (typeof record.enabled !== "boolean") refuse("CONFIG_INVALID", `${field}.enabled`, "true or false is needed");
    attachments.push({ name, devices, staging, wrl, export: exportText, ...(changemap === undefined ? {} : { changemap }), initialSync: initialSync as InitialSyncMode, ...(rateLimit === undefined ? {} : { rateLimit }), enabled: record.enabled });
  }
  return { attachments };
}

function addressAt<T>(parse: () => T, field: string): T {
  try {
    return parse();
  } catch (error) {
    refuse("ADDRESS_INVALID", field, (error as Error).message, error instanceof DruvaaError ? error.hint : undefined);
  }
}

/** The size of the device or image at `path` (opened read-only), refused with the field. */
async function deviceSizeBytes(path: string, field: string): Promise<number> {
  let stats;
  try {
    stats = await stat(path);
  } catch {
    refuse("DEVICE_NOT_FOUND", field, `${path}: no such file or device`, "Give a block device (lsblk lists them) or an existing image file");
  }
  if (!stats.isBlockDevice() && !stats.isFile()) refuse("DEVICE_UNSUPPORTED", field, `${path} is neither a block device nor a regular file`, "Give a block device or an image file");
  let sizeBytes: number;
  try {
    const device = await openBlockDevice(path, { readOnly: true });
    sizeBytes = device.sizeBytes;
    await device.close();
  } catch (error) {
    const info = error instanceof DruvaaError ? error : undefined;
    refuse(info?.code ?? "DEVICE_UNREADABLE", field, `${path}: ${(error as Error).message}`, info?.hint);
  }
  if (sizeBytes === 0) refuse("DEVICE_EMPTY", field, `${path}: size 0`, "Give a device or image with data space (truncate -s 1G PATH)");
  return sizeBytes;
}

/** The region `client attach` uses for a device: named like it, or a one-device map's only region. */
function regionOf(info: ChangeMapInfo, deviceName: string, deviceCount: number): ChangeMapInfo["regions"][number] | undefined {
  const named = info.regions.find((region) => region.name === deviceName);
  if (named !== undefined || deviceCount > 1 || info.regions.length !== 1) return named;
  return info.regions[0];
}

async function checkChangeMap(path: string, devices: AgentDevice[], sizes: number[], field: string): Promise<void> {
  if (!(await pathExists(path))) {
    const parent = await stat(dirname(path)).catch(() => undefined);
    if (parent === undefined || !parent.isDirectory()) refuse("CHANGEMAP_DIR_MISSING", field, `${path} does not exist, nor does its directory ${dirname(path)}`, `Create the directory (mkdir -p ${dirname(path)}), or pick a path in an existing one`);
    return; // created at commit with a region per device
  }
  let info: ChangeMapInfo;
  try {
    info = await inspectChangeMapAtPath(path);
  } catch (error) {
    const known = error instanceof DruvaaError ? error : undefined;
    refuse(known?.code ?? "CHANGEMAP_INVALID", field, `${path}: ${(error as Error).message}`, known?.hint ?? "Give a change map made by druvaa changemap create, or a path that does not exist yet");
  }
  devices.forEach((device, index) => {
    const region = regionOf(info, device.name, devices.length);
    if (region === undefined) refuse("CHANGEMAP_REGION_UNKNOWN", field, `${path} has no region '${device.name}' (it has: ${info.regions.map((r) => r.name).join(", ")})`, `Give a change map with a region per device (druvaa changemap create PATH --region ${device.name}=SIZE), or a new path`);
    if (region.volumeSizeBytes !== sizes[index]) refuse("CHANGEMAP_REGION_SIZE", field, `region '${region.name}' of ${path} tracks ${region.volumeSizeBytes} bytes, but ${device.path} holds ${sizes[index]}`, "Give a change map made for this device, or a new path");
  });
}

/** Creates the attachment's change map when it does not exist yet (commit time): a region per device, of its size. */
export async function ensureChangeMap(attachment: Attachment): Promise<boolean> {
  if (attachment.changemap === undefined || (await pathExists(attachment.changemap))) return false;
  const regions = [];
  for (const device of attachment.devices) {
    const opened = await openBlockDevice(device.path, { readOnly: true });
    regions.push({ name: device.name, volumeSizeBytes: opened.sizeBytes });
    await opened.close();
  }
  await createChangeMapAtPath({ path: attachment.changemap, regions, blockSizeBytes: changeMapBlockSizeBytesDefault });
  return true;
}

/** The `druvaa client attach` arguments of an attachment (without the program; with --json). */
export function attachArgs(attachment: Attachment, paths: AttachmentPaths, nodeId: string, securityArgs: readonly string[]): string[] {
  return [
    "client", "attach",
    ...attachment.devices.flatMap((device) => ["--device", `${device.name}=${device.path}`]),
    "--staging", attachment.staging,
    "--wrl", attachment.wrl,
    "--export", attachment.export,
    "--control", "127.0.0.1:0",
    "--control-socket", paths.controlSocket,
    "--state-dir", paths.stateDir,
    "--node-id", nodeId,
    ...(attachment.changemap === undefined ? [] : ["--changemap", attachment.changemap]),
    "--initial-sync", attachment.initialSync,
    ...(attachment.rateLimit === undefined ? [] : ["--rate-limit", attachment.rateLimit]),
    ...securityArgs,
    "--json",
  ];
}

/** Two attachments run the same child (same command line): key order does not matter. */
export function sameAttachment(a: Attachment, b: Attachment): boolean {
  const key = (x: Attachment) => JSON.stringify([x.name, x.devices.map((d) => [d.name, d.path]), x.staging, x.wrl, x.export, x.changemap ?? null, x.initialSync, x.rateLimit ?? null, x.enabled]);
  return key(a) === key(b);
}
