/**
 * The command lines of the agent's jobs (agent-jobs.ts), checked at the edge: a POST /jobs body
 * becomes the `druvaa restore` or `druvaa failback` arguments, or a JobRefusal (HTTP status, code,
 * hint, field). Reads the host (realpath of a restore target) but changes nothing.
 *
 *   restore  {attachment, to, at?, replicaRestore, device?, force?}
 *            → restore --replica RESTORE --device NAME --to PATH [--at AT] [--force] JOB_FLAGS --json
 *            `device` may be left out when the attachment has one device. `to` must be absolute and
 *            must not be a device of an enabled attachment (its client serves it: the restore would
 *            write under a live file system); `druvaa restore` itself refuses a target that is
 *            mounted, loop-attached, too small, or (without force) an existing non-empty file.
 *   failback {attachment, replica, staging?, keep?, dryRun?}
 *            → failback --connect REPLICA --device NAME --primary PATH (one device; several:
 *              --wrl WRL --primary NAME=PATH each) --staging STAGING [--changemap MAP]
 *              --client-state CHILD_STATE_DIR [--keep dr|primary] [--dry-run] JOB_FLAGS --json
 *            `replica` is the replica's control port (where it was failed over), `staging` staging's
 *            control port (default: the attachment's staging host, port 6002). --client-state is the
 *            attachment child's own state directory, where its generation is kept.
 * JOB_FLAGS: the job's security flags (agent-tls.ts: the job certificate under TLS); under TLS
 * without one, every job is refused first (409 JOB_CERT_MISSING).
 */
import { realpath } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { stagingControlPortDefault } from "../../constants.ts";
import { DruvaaError } from "../../errors.ts";
import { formatAddress, parseAddress } from "../../io/address.ts";
import { attachmentPaths, type AgentConfig, type Attachment } from "./agent-config.ts";
import type { JobSecurity } from "./agent-tls.ts";

export const jobKinds = ["restore", "failback"] as const;
export type JobKind = (typeof jobKinds)[number];

/** A POST /jobs the agent does not start: answered with `status` and the error (with its field). */
export class JobRefusal extends DruvaaError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
    hint: string | undefined,
    readonly field?: string,
  ) {
    super(code, message, hint);
  }

  answer(): Response {
    return Response.json({ ok: false, error: { ...this.toJSON(), ...(this.field === undefined ? {} : { field: this.field }) } }, { status: this.status });
  }
}

export interface JobRequest {
  kind: JobKind;
  attachment: Attachment;
  /** The arguments after the program (druvaa). */
  args: string[];
  /** Stop the attachment's child while the job runs (failback runs with the client stopped). */
  holdsAttachment: boolean;
}

const bad = (field: string, message: string, hint?: string) => new JobRefusal(400, "USAGE", `${field}: ${message}`, hint, field);

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || value.trim() === "" || value.length > 4096 || /[\u0000-\u001f]/.test(value)) throw bad(key, "a non-empty string is needed");
  return value;
}

function requiredString(body: Record<string, unknown>, key: string, hint: string): string {
  const value = optionalString(body, key);
  if (value === undefined) throw bad(key, "is required", hint);
  return value;
}

function optionalBoolean(body: Record<string, unknown>, key: string): boolean {
  const value = body[key];
  if (value === undefined || value === null) return false;
  if (typeof value !== "boolean") throw bad(key, "true or false is needed");
  return value;
}

function address(body: Record<string, unknown>, key: string, text: string): string {
  try {
    const parsed = parseAddress(text, 0);
    if (parsed.kind !== "tcp" || parsed.port === 0) throw new Error("not HOST:PORT");
  } catch (error) {
    throw bad(key, `"${text}" is not HOST:PORT (${error instanceof Error ? error.message : String(error)})`);
  }
  return text;
}

/** The devices' real paths of every enabled attachment (a path that does not resolve: as given). */
async function servedDevices(config: AgentConfig): Promise<Map<string, string>> {
  const served = new Map<string, string>();
  for (const attachment of config.attachments) {
    if (!attachment.enabled) continue;
    for (const device of attachment.devices) served.set(await realpath(device.path).catch(() => resolve(device.path)), attachment.name);
  }
  return served;
}

/** Decodes a POST /jobs body against the committed config (see the file comment). */
export async function jobRequestOf(raw: unknown, config: AgentConfig, stateDir: string, security: Pick<JobSecurity, "argsFor">): Promise<JobRequest> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw bad("body", "a JSON object is needed", 'e.g. {"kind": "restore", "attachment": "pair-db", "to": "/srv/restore/disk0.img", "replicaRestore": "10.0.0.9:6005"}');
  const body = raw as Record<string, unknown>;
  if (typeof body.kind !== "string" || !(jobKinds as readonly string[]).includes(body.kind)) throw bad("kind", `one of ${jobKinds.join(", ")} is needed`);
  const kind = body.kind as JobKind;
  // First: a job this agent cannot run (TLS without a job certificate) is refused whatever else the body says.
  const securityArgs = security.argsFor(kind);
  const name = requiredString(body, "attachment", "The attachment's name (GET /status lists them)");
  const attachment = config.attachments.find((entry) => entry.name === name);
  if (attachment === undefined) throw new JobRefusal(404, "ATTACHMENT_UNKNOWN", `no attachment named "${name}" on this client host`, "GET /status lists the attachments of the committed config", "attachment");

  if (kind === "restore") {
    const replicaRestore = address(body, "replicaRestore", requiredString(body, "replicaRestore", "The replica's restore port, HOST:PORT (its GET /status addresses.restore)"));
    const to = requiredString(body, "to", "An absolute path on this host: a new image file, or with force an existing file or block device");
    if (!isAbsolute(to)) throw bad("to", `"${to}" is not an absolute path`, "e.g. /srv/restore/disk0.img");
    const deviceName = optionalString(body, "device") ?? (attachment.devices.length === 1 ? attachment.devices[0]!.name : undefined);
    if (deviceName === undefined) throw bad("device", `attachment ${name} has several devices: say which to restore`, `Devices: ${attachment.devices.map((device) => device.name).join(", ")}`);
    if (!attachment.devices.some((device) => device.name === deviceName)) throw bad("device", `attachment ${name} has no device "${deviceName}"`, `Devices: ${attachment.devices.map((device) => device.name).join(", ")}`);
    const target = await realpath(to).catch(() => resolve(to));
    const servedBy = (await servedDevices(config)).get(target);
    if (servedBy !== undefined) {
      throw new JobRefusal(409, "TARGET_IN_USE", `${to} is a device of attachment ${servedBy}, which is enabled: its client serves it`, `Restore to another path, or stop the pair first (action stop) to restore over its device`, "to");
    }
    const at = optionalString(body, "at");
    const args = ["restore", "--replica", replicaRestore, "--device", deviceName, "--to", to, ...(at === undefined ? [] : ["--at", at]), ...(optionalBoolean(body, "force") ? ["--force"] : []), ...securityArgs, "--json"];
    return { kind, attachment, args, holdsAttachment: false };
  }

  const replica = address(body, "replica", requiredString(body, "replica", "The replica's control port, HOST:PORT (where the device was failed over)"));
  const stagingGiven = optionalString(body, "staging");
  let staging: string;
  if (stagingGiven !== undefined) staging = address(body, "staging", stagingGiven);
  else {
    const data = parseAddress(attachment.staging, stagingControlPortDefault);
    if (data.kind !== "tcp") throw bad("staging", `attachment ${name} reaches staging at ${attachment.staging}: its control port cannot be guessed`, "Give staging's control port as staging: HOST:PORT");
    staging = formatAddress({ kind: "tcp", host: data.host ?? "127.0.0.1", port: stagingControlPortDefault });
  }
  const keep = body.keep;
  if (keep !== undefined && keep !== null && keep !== "dr" && keep !== "primary") throw bad("keep", `"${String(keep)}": must be dr or primary`, "dr: the DR side's data wins where both were written; primary: the original primary's wins");
  const targets = attachment.devices.length === 1
    ? ["--device", attachment.devices[0]!.name, "--primary", attachment.devices[0]!.path]
    : ["--wrl", attachment.wrl, ...attachment.devices.flatMap((device) => ["--primary", `${device.name}=${device.path}`])];
  const args = [
    "failback", "--connect", replica, ...targets, "--staging", staging,
    ...(attachment.changemap === undefined ? [] : ["--changemap", attachment.changemap]),
    "--client-state", attachmentPaths(stateDir, name).stateDir,
    ...(typeof keep === "string" ? ["--keep", keep] : []),
    ...(optionalBoolean(body, "dryRun") ? ["--dry-run"] : []),
    ...securityArgs, "--json",
  ];
  return { kind, attachment, args, holdsAttachment: true };
}
