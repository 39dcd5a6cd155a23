/**
 * Application-consistent checkpoints (`druvaa checkpoint --label NAME`, POST /checkpoint on the
 * client's control port). The operator freezes the application or file system (fsfreeze), asks
 * for a checkpoint, then thaws it. The client sends one checkpoint record per device (or the one
 * named) to staging, which logs it in the WRL like a write (recordFlags.checkpoint); it travels
 * through the relay to the replica at its exact place in the write order, where it names the
 * consistent point right after its LSN.
 *
 * Why the point covers every write the application saw complete: a write is acknowledged to the
 * application only after staging logged it (core.ts), and staging appends in arrival order, so a
 * checkpoint sent afterwards on the same connection is logged after all of them. That holds only
 * while every write goes through the WRL, hence the refusals (decision table, in this order):
 *
 *   condition                                       answer
 *   label not valid (checkpoint-label.ts rules)     USAGE (exit 2)
 *   device given and not served by this client      DEVICE_UNKNOWN (exit 4)
 *   client in disconnected mode or resyncing, or a  CHECKPOINT_UNAVAILABLE (exit 4): acknowledged
 *     resync set may still be open at the replica     writes are in the change map, not the WRL
 *   staging not connected                           CHECKPOINT_UNAVAILABLE (exit 4)
 *   staging refuses it (WRL full, shutting down,    CHECKPOINT_UNAVAILABLE (exit 4), naming the
 *     busy), the link drops, or no ack in time        devices already logged, if any
 *   staging refuses it otherwise (I/O error, ...)   CHECKPOINT_FAILED (exit 1)
 *   every device's checkpoint acknowledged          {label, checkpoints: [{device, wrl, lsn}]}
 *
 * It never blocks application writes: no range is held, and a checkpoint takes an epoch of its
 * own like a verify probe (issued and sent in one tick). Not guaranteed: that a refused or timed-out
 * checkpoint was not logged after all (its ack may come too late); the replica then knows the
 * label for some devices. Run it again with a new label.
 */
import { DruvaaError, exitCodes, usageError } from "../../errors.ts";
import type { ControlRoute } from "../../io/control-server.ts";
import { logger } from "../../log.ts";
import type { EpochAssigner } from "../../order/epochs.ts";
import { checkpointLabelAmbiguityHint, checkpointLabelRule, newCheckpointLabelProblem } from "../../protocol/checkpoint-label.ts";
import type { ClientDevice, ClientMode, ClientModeStatus } from "./types.ts";
import type { ProbeChannel } from "./verify-link.ts";

const log = logger("client:checkpoint");
const noPayload = new Uint8Array(0);

/** Refusals a later try may not get (the client reconnects, the WRL drains). */
const unavailableCodes: ReadonlySet<string> = new Set(["PROBE_LINK_LOST", "PROBE_ACK_TIMEOUT", "WRL_FULL", "BUSY", "SHUTTING_DOWN", "CLIENT_STOPPING"]);

/** What checkpoints need of the client core (a ClientCore is one). */
export interface CheckpointHost {
  readonly mode: ClientMode;
  modeStatus(): ClientModeStatus;
  readonly epochs: EpochAssigner;
}

export interface CheckpointRequest {
  label: string;
  /** One device; all of the client's when absent. */
  device?: string;
}

export interface CheckpointTaken {
  device: string;
  wrl: string;
  /** The staging WRL LSN of the checkpoint record: the point is right after it. */
  lsn: number;
}

export interface CheckpointResult {
  label: string;
  checkpoints: CheckpointTaken[];
}

export interface CheckpointOptions {
  host: CheckpointHost;
  probes: Pick<ProbeChannel, "send" | "linkIsUp">;
  devices: readonly Pick<ClientDevice, "name" | "wrl">[];
}

const retryHint = "The change map holds the writes; retry once the client is connected (druvaa resync --connect CLIENT:6007 waits until it is in sync)";

function unavailable(message: string, hint = retryHint): DruvaaError {
  return new DruvaaError("CHECKPOINT_UNAVAILABLE", message, hint, exitCodes.refused);
}

/** The checks of the decision table before anything is sent. */
function checkRequest(options: CheckpointOptions, request: CheckpointRequest): Pick<ClientDevice, "name" | "wrl">[] {
  const problem = newCheckpointLabelProblem(request.label);
  if (problem !== undefined) throw usageError(`checkpoint label ${JSON.stringify(String(request.label).slice(0, 80))} is not valid: ${problem}`, `Use ${checkpointLabelRule}; ${checkpointLabelAmbiguityHint}, e.g. before-upgrade-2026-01-31`);
  const devices = request.device === undefined ? [...options.devices] : options.devices.filter((device) => device.name === request.device);
  if (devices.length === 0) {
    throw new DruvaaError("DEVICE_UNKNOWN", `this client serves no device named ${request.device}`, `It serves: ${options.devices.map((device) => device.name).join(", ")}; or leave out the device to checkpoint all of them`, exitCodes.refused);
  }
  const mode = options.host.mode;
  if (mode !== "connected") {
    throw unavailable(`the client is ${mode === "disconnected" ? "in disconnected mode" : "resyncing"}: its acknowledged writes are not all in staging's write log, so the point could not flow through the log`);
  }
  const open = options.host.modeStatus().resyncSetsOpen;
  if (open.length > 0) throw unavailable(`a resync set of ${open.join(", ")} may still be open at the replica (its resyncEnd is due): the point could not flow through the log as a consistent one`);
  if (!options.probes.linkIsUp) {
    throw unavailable("the client is not connected to staging: the point could not flow through the log", "Check staging (druvaa status --connect STAGING:6002); the change map (if any) holds the writes; retry once the client is connected");
  }
  return devices;
}

/** Takes a checkpoint (see the file comment): resolves once staging logged it for every device. */
export async function takeCheckpoint(options: CheckpointOptions, request: CheckpointRequest): Promise<CheckpointResult> {
  const devices = checkRequest(options, request);
  const { epochs } = options.host;
  // Issued and sent in one tick, every device's, like a write (core.ts).
  const sent = devices.map((device) => {
    const epoch = epochs.issue();
    const ack = options.probes.send({ kind: "checkpoint", label: request.label, device: device.name, wrl: device.wrl, epoch, offset: 0, length: 0 }, noPayload);
    const done = ack.then(
      (logged) => {
        logged.cancelReport(); // a checkpoint has no outcome to wait for
        return { device: device.name, wrl: device.wrl, lsn: logged.lsn };
      },
      (error: unknown) => {
        throw error instanceof DruvaaError ? error : new DruvaaError("CHECKPOINT_FAILED", String(error));
      },
    );
    void done.finally(() => epochs.complete()).catch(() => undefined);
    return { device, done };
  });
  const results = await Promise.allSettled(sent.map((entry) => entry.done));
  const taken = results.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
  const failedAt = results.findIndex((result) => result.status === "rejected");
  if (failedAt < 0) {
    log.info(`checkpoint ${request.label}: ${taken.map((entry) => `${entry.device} at LSN ${entry.lsn} of WRL ${entry.wrl}`).join(", ")}`);
    return { label: request.label, checkpoints: taken };
  }
  const error = (results[failedAt] as PromiseRejectedResult).reason as DruvaaError;
  const partly = taken.length === 0 ? "" : `; logged for ${taken.map((entry) => `${entry.device} (LSN ${entry.lsn})`).join(", ")} only`;
  // The channel is the verify probes' (verify-link.ts): its messages speak of probes.
  const why = error.message.replaceAll("verify probe", "checkpoint");
  const message = `checkpoint ${request.label} of ${sent[failedAt]!.device.name} was not logged at staging: ${error.code}: ${why}${partly}`;
  log.warn(message);
  if (unavailableCodes.has(error.code)) throw unavailable(`${message}; the point could not flow through the log`, `${retryHint}; use a new label`);
  throw new DruvaaError("CHECKPOINT_FAILED", message, "Check staging's log (druvaa status --connect STAGING:6002), then retry with a new label", exitCodes.failure);
}

/** The control route: POST /checkpoint {label, device?} → {label, checkpoints: [{device, wrl, lsn}]}. */
export function checkpointRoutes(options: CheckpointOptions): Record<string, ControlRoute> {
  return {
    "POST /checkpoint": async (request) => takeCheckpoint(options, parseRequest(await request.json().catch(() => undefined))),
  };
}

function parseRequest(body: unknown): CheckpointRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw usageError("the request body is not a JSON object", 'e.g. {"label":"before-upgrade","device":"disk0"}');
  const { label, device } = body as Record<string, unknown>;
  if (typeof label !== "string") throw usageError("checkpoint: `label` is required", 'e.g. {"label":"before-upgrade"}');
  if (device !== undefined && (typeof device !== "string" || device.length === 0)) throw usageError("checkpoint: `device` must be a device (export) name", 'e.g. {"label":"before-upgrade","device":"disk0"}');
  return device === undefined ? { label } : { label, device };
}
