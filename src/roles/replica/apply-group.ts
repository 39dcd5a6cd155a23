/**
 * The parts of a grouped apply (ReplicaCore.#applyQueued, core.ts) that need none of the core's
 * private fields: a queued shipment and a group member, the state a shipment leads to, how a
 * failed group is answered, and the shipNack every refusal is sent as.
 */
import { protocolTextLengthMax, replicaShipQueueBytesMax, replicaShipQueueMax } from "../../constants.ts";
import { DruvaaError } from "../../errors.ts";
import { logger } from "../../log.ts";
import type { ShipAckMessage, ShipMessage, ShipNackCode, ShipNackMessage } from "../../protocol/messages.ts";
import type { DeviceState, ReplicaState, ResyncSetState, WrlState } from "./state.ts";
import { planShipment, type ReplicaDevice, type ShipmentPlan } from "./apply.ts";

const log = logger("replica:apply");

export type ShipReply = ShipAckMessage | ShipNackMessage;

export interface QueuedShipment {
  message: ShipMessage;
  payload: Uint8Array;
  resolve: (reply: ShipReply) => void;
  reject: (error: unknown) => void;
}

/** Shipments waiting for the apply lock, in arrival order, bounded by replicaShipQueueMax / replicaShipQueueBytesMax. */
export class ShipQueue {
  readonly #entries: QueuedShipment[] = [];
  #bytes = 0;

  get count(): number {
    return this.#entries.length;
  }

  /** Payload bytes waiting. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Whether one more shipment of `payloadBytes` may wait (otherwise it is refused BUSY). */
  fits(payloadBytes: number): boolean {
    return this.#entries.length < replicaShipQueueMax && this.#bytes + payloadBytes <= replicaShipQueueBytesMax;
  }

  push(entry: QueuedShipment): void {
    this.#entries.push(entry);
    this.#bytes += entry.payload.length;
  }

  take(): QueuedShipment | undefined {
    const entry = this.#entries.shift();
    if (entry !== undefined) this.#bytes -= entry.payload.length;
    return entry;
  }

  /** Shipments taken for a group that ended early wait again, at the front, in their order. */
  putBack(entries: readonly QueuedShipment[]): void {
    for (const entry of entries) this.#bytes += entry.payload.length;
    this.#entries.unshift(...entries);
  }
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
 * failed save leaves the core's committed state as it was. `changes` (default: the shipment's
 * lastLsn, the WRL's resync marks kept) sets the applied LSN, the devices left in an unbuffered
 * resync (an empty list clears them), and the open resync set (null: none). `changes.absent`
 * names declared devices the replica lacks (only checkpoints named them: ShipmentPlan.absent): they
 * are not recorded, so the state lists only devices the replica has.
 */
export function nextState(base: ReplicaState, ship: ShipMessage, written: ReadonlySet<string>, nowMs: number, changes: { appliedLsn?: number; resyncUnbuffered?: string[]; resyncSet?: ResyncSetState | null; absent?: ReadonlySet<string> } = {}): ReplicaState {
  const before = base.wrls.find((other) => other.uuid === ship.wrlUuid);
  const wrl: WrlState = { name: ship.wrl, uuid: ship.wrlUuid, appliedLsn: changes.appliedLsn ?? ship.lastLsn, lastAppliedAt: new Date(nowMs).toISOString() };
  const resyncSet = changes.resyncSet === undefined ? before?.resyncSet : changes.resyncSet ?? undefined;
  if (resyncSet !== undefined) wrl.resyncSet = resyncSet;
  const unbuffered = changes.resyncUnbuffered ?? before?.resyncUnbuffered;
  if (unbuffered !== undefined && unbuffered.length > 0) wrl.resyncUnbuffered = unbuffered;
  // A re-created WRL only gets here when the old one never applied anything: drop that entry.
  const wrls = [...base.wrls.filter((other) => other.uuid !== ship.wrlUuid && other.name !== ship.wrl), wrl];
  const devices = new Map<string, DeviceState>(base.devices.map((device) => [device.name, { ...device }]));
  const entry = (name: string) => devices.get(name) ?? devices.set(name, { name }).get(name)!;
  for (const { name, sizeBytes } of ship.devices ?? []) {
    if (changes.absent?.has(name) === true) continue;
    entry(name).declaredSizeBytes = sizeBytes;
    entry(name).wrlUuid = ship.wrlUuid;
  }
  for (const name of written) entry(name).wrlUuid = ship.wrlUuid;
  return { version: base.version, wrls, devices: [...devices.values()] };
}

/**
 * WRL_MISMATCH when the WRL `name` was applied (or has a resync set open) under another uuid in
 * `state`: the WRL was re-created, and its records cannot be applied over the old history. A WRL
 * only `seen` (never applied) under another uuid is simply forgotten.
 */
export function checkWrlIdentity(state: ReplicaState, seen: Map<string, WrlState>, name: string, uuid: string, stateWhere: string): ShipNackMessage | undefined {
  const other = state.wrls.find((wrl) => wrl.name === name && wrl.uuid !== uuid && (wrl.appliedLsn > 0 || wrl.resyncSet !== undefined));
  if (other !== undefined) {
    return nack(
      { wrl: name },
      "WRL_MISMATCH",
      `WRL ${name} now has uuid ${uuid}, but this replica applied WRL ${name} (uuid ${other.uuid}) up to LSN ${other.appliedLsn}${other.resyncSet === undefined ? "" : ` and keeps its resync set open since LSN ${other.resyncSet.firstLsn}`}: ` +
        `the WRL was re-created, and its records cannot be applied over the old history. The replica needs an initial sync; to start it afresh, stop it and remove ${stateWhere}`,
    );
  }
  for (const [seenUuid, entry] of seen) if (entry.name === name && seenUuid !== uuid) seen.delete(seenUuid);
  return undefined;
}

export function nack(ship: { wrl: string }, code: ShipNackCode, message: string): ShipNackMessage {
  return { type: "shipNack", wrl: ship.wrl, code, message: message.slice(0, protocolTextLengthMax) };
}

export function describe(error: unknown): string {
  return error instanceof DruvaaError ? `${error.code}: ${error.message}` : error instanceof Error ? error.message : String(error);
}

/**
 * One shipment against the state reached so far (core.ts decision table): its writes, or the
 * answer it gets without any. `mismatch` is the WRL identity check's refusal, if any.
 */
export function prepareShipment(ship: ShipMessage, payload: Uint8Array, state: ReplicaState, devices: ReadonlyMap<string, ReplicaDevice>, mismatch: ShipNackMessage | undefined): ShipmentPlan | ShipReply {
  if (mismatch !== undefined) return mismatch;
  const appliedLsn = state.wrls.find((wrl) => wrl.uuid === ship.wrlUuid)?.appliedLsn ?? 0;
  if (ship.firstLsn > appliedLsn + 1) {
    return nack(ship, "LSN_GAP", `the shipment starts at LSN ${ship.firstLsn}, but the replica applied WRL ${ship.wrl} only up to LSN ${appliedLsn}: records ${appliedLsn + 1}..${ship.firstLsn - 1} are missing (nothing was applied); resume from ${appliedLsn + 1}`);
  }
  if (ship.lastLsn <= appliedLsn) return { type: "shipAck", wrl: ship.wrl, appliedLsn };
  if (ship.coalesced === true) return nack(ship, "RS_WRL_NEEDED", `a coalesced span (LSN ${ship.firstLsn}..${ship.lastLsn}) is applied only whole, from a replica WRL, and this replica has none (start it with --wrl PATH); nothing was applied`);
  const plan = planShipment(ship, payload, appliedLsn, devices);
  return "writes" in plan ? plan : nack(ship, plan.code, plan.message);
}
