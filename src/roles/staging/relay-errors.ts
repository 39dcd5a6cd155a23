/**
 * How a relay session's end is told (relay.ts): a replica's refusal (shipNack) or an answer to
 * resume that cannot be shipped to, as an error with a hint for the operator, and anything else
 * thrown as a DruvaaError.
 */
import { stagingResumeTimeoutMs } from "../../constants.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import type { Message, ShipNackMessage } from "../../protocol/messages.ts";

export function nackError(nack: ShipNackMessage): DruvaaError {
  return new DruvaaError(nack.code, `the replica refused: ${nack.message}`, nackHints[nack.code], exitCodes.refused);
}

const nackHints: Partial<Record<string, string>> = {
  WRL_MISMATCH: "The WRL was re-created on staging after the replica applied the old one; see the replica's message",
  LSN_GAP: "The replica lost its applied LSN (state directory removed?) or belongs to another staging server: it needs an initial sync",
  DEVICE_UNKNOWN: "Start the replica with a --device NAME=PATH for every device attached to this WRL",
  DEVICE_TOO_SMALL: "Give the replica a device at least as big as the client's plus its header reserve (druvaa replica apply --protect-headers, default 1 MiB; druvaa sizing --primary-size SIZE)",
  BUSY: "The replica is catching up; the relay retries",
  FAILED_OVER: "The replica's devices of this WRL were failed over (druvaa failover): records wait here until druvaa failback; the relay asks again every few seconds",
};

export function asDruvaaError(error: unknown): DruvaaError {
  if (error instanceof DruvaaError) return error;
  return new DruvaaError("INTERNAL", error instanceof Error ? error.message : String(error));
}

export function resumeTimeoutError(): DruvaaError {
  return new DruvaaError("RESUME_TIMEOUT", `the replica did not answer resume within ${stagingResumeTimeoutMs} ms`, "Is the replica overloaded or stuck? Check its log and status (druvaa status --connect REPLICA:6004)", exitCodes.timeout);
}

/** Why the answer to `resume` ends the session; undefined for a resumeAck of this WRL. */
export function resumeReplyError(reply: Message, wrl: string, wrlUuid: string): DruvaaError | undefined {
  if (reply.type === "shipNack") return nackError(reply);
  if (reply.type === "error") return new DruvaaError(reply.code, `the replica refused: ${reply.message}`, reply.hint);
  if (reply.type === "resumeAck" && reply.wrl === wrl && reply.wrlUuid === wrlUuid) return undefined;
  const what = reply.type === "resumeAck" ? `a resumeAck for WRL ${reply.wrl} (${reply.wrlUuid})` : `a ${reply.type} message`;
  return new DruvaaError("PROTO_UNEXPECTED", `the replica answered resume of WRL ${wrl} (${wrlUuid}) with ${what}`, "Run the same druvaa release on staging and replica");
}

export function replicaAheadError(wrl: string, appliedLsn: number, headLsn: number): DruvaaError {
  return new DruvaaError(
    "REPLICA_AHEAD",
    `the replica applied WRL ${wrl} up to LSN ${appliedLsn}, but this WRL ends at LSN ${headLsn}: it lost records the replica has, so shipping would skip new ones`,
    "The WRL was damaged or restored from an old copy; re-create it (druvaa wrl create --force) and start the replica afresh (initial sync)",
    exitCodes.refused,
  );
}

/** Records 1..tailLsn were freed after a replica acknowledged them: this one never got them. */
export function replicaMissingRecordsError(address: string, wrl: string, appliedLsn: number, tailLsn: number): DruvaaError {
  return new DruvaaError(
    "REPLICA_MISSING_RECORDS",
    `the replica at ${address} applied WRL ${wrl} only up to LSN ${appliedLsn}, but this WRL freed records up to LSN ${tailLsn} after a replica acknowledged them: it is not the replica this WRL replicates to, or it lost its state; nothing was sent`,
    "Point --replica at the replica server this WRL replicates to; for a new replica, re-create the WRL (druvaa wrl create --force) and start the pair with an initial sync (druvaa client attach --initial-sync checksum|network)",
    exitCodes.refused,
  );
}
