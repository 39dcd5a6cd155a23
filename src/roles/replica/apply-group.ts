/**
 * The parts of a grouped apply (ReplicaCore.#applyQueued, core.ts) that need none of the core's
 * private fields: a queued shipment and a group member, the state a shipment leads to, how a
 * failed group is answered, and the shipNack every refusal is sent as.
 */
import { protocolTextLengthMax } from "../../constants.ts";
import { DruvaaError } from "../../errors.ts";
import { logger } from "../../log.ts";
import type { ShipAckMessage, ShipMessage, ShipNackCode, ShipNackMessage } from "../../protocol/messages.ts";
import type { DeviceState, ReplicaState, WrlState } from "./state.ts";

const log = logger("replica:apply");

export type ShipReply = ShipAckMessage | ShipNackMessage;

export interface QueuedShipment {
  message: ShipMessage;
  payload: Uint8Array;
  resolve: (reply: ShipReply) => void;
  reject: (error: unknown) => void;
}

/** A shipment taken into an apply group, with the answer it gets once the group is durable. */
export interface GroupMember {
  entry: QueuedShipment;
  /** Devices its records write. */
  planned: ReadonlySet<string>;
  /** Whether its records are applied with the group (not a re-delivery, not refused). */
  applied: boolean;
  reply: ShipReply;
}

/** Devices a failed apply may have left half-written, until their WRL passes `untilLsn`. */
export type InconsistentDevices = Map<string, { wrlUuid: string; untilLsn: number }>;

/** A write, flush or save of the group failed: nothing of it is acknowledged. */
export function failGroup(members: readonly GroupMember[], why: string, inconsistent: InconsistentDevices): void {
  for (const { entry, planned, reply } of members) {
    const ship = entry.message;
    // Some records may have reached the devices: they hold no consistent point until this
    // shipment is applied whole (staging re-delivers it, since it was not acked).
    for (const name of planned) inconsistent.set(name, { wrlUuid: ship.wrlUuid, untilLsn: ship.lastLsn });
    entry.resolve(reply.type === "shipNack" ? reply : nack(ship, "IO_ERROR", `LSN ${ship.firstLsn}..${ship.lastLsn}: ${why}`));
  }
  log.warn(`refused ${members.length} shipment(s) with IO_ERROR: ${why}`);
}

/**
 * The state after `ship` is applied to `base` at `nowMs` (lastAppliedAt): a new object, so a
 * failed save leaves the core's committed state as it was.
 */
export function nextState(base: ReplicaState, ship: ShipMessage, written: ReadonlySet<string>, nowMs: number): ReplicaState {
  const wrl: WrlState = { name: ship.wrl, uuid: ship.wrlUuid, appliedLsn: ship.lastLsn, lastAppliedAt: new Date(nowMs).toISOString() };
  // A re-created WRL only gets here when the old one never applied anything: drop that entry.
  const wrls = [...base.wrls.filter((other) => other.uuid !== ship.wrlUuid && other.name !== ship.wrl), wrl];
  const devices = new Map<string, DeviceState>(base.devices.map((device) => [device.name, { ...device }]));
  const entry = (name: string) => devices.get(name) ?? devices.set(name, { name }).get(name)!;
  for (const { name, sizeBytes } of ship.devices ?? []) {
    entry(name).declaredSizeBytes = sizeBytes;
    entry(name).wrlUuid = ship.wrlUuid;
  }
  for (const name of written) entry(name).wrlUuid = ship.wrlUuid;
  return { version: base.version, wrls, devices: [...devices.values()] };
}

export function nack(ship: { wrl: string }, code: ShipNackCode, message: string): ShipNackMessage {
  return { type: "shipNack", wrl: ship.wrl, code, message: message.slice(0, protocolTextLengthMax) };
}

export function describe(error: unknown): string {
  return error instanceof DruvaaError ? `${error.code}: ${error.message}` : error instanceof Error ? error.message : String(error);
}
