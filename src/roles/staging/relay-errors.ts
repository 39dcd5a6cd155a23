/**
 * How a relay session's end is told (relay.ts): a replica's refusal (shipNack) as an error with a
 * hint for the operator, and anything else thrown as a DruvaaError.
 */
import { DruvaaError, exitCodes } from "../../errors.ts";
import type { ShipNackMessage } from "../../protocol/messages.ts";

export function nackError(nack: ShipNackMessage): DruvaaError {
  return new DruvaaError(nack.code, `the replica refused: ${nack.message}`, nackHints[nack.code], exitCodes.refused);
}

const nackHints: Partial<Record<string, string>> = {
  WRL_MISMATCH: "The WRL was re-created on staging after the replica applied the old one; see the replica's message",
  LSN_GAP: "The replica lost its applied LSN (state directory removed?) or belongs to another staging server: it needs an initial sync",
  DEVICE_UNKNOWN: "Start the replica with a --device NAME=PATH for every device attached to this WRL",
  DEVICE_TOO_SMALL: "Give the replica a device at least as big as the client's",
  BUSY: "The replica is catching up; the relay retries",
};

export function asDruvaaError(error: unknown): DruvaaError {
  if (error instanceof DruvaaError) return error;
  return new DruvaaError("INTERNAL", error instanceof Error ? error.message : String(error));
}
