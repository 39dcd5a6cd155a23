/**
 * Coalesced shipments at the replica (ShipMessage.coalesced; docs/pipeline.md "Coalesced
 * shipments"). A coalesced span firstLsn..lastLsn carries only the newest version of each block
 * those records wrote: applied halfway, the device shows no point of the write order at all, so
 * it is applied only whole, from the replica WRL (RS-WRL), like a resync set that is complete as
 * soon as it is logged. Only a replica with an RS-WRL says it takes them (resumeAck
 * acceptsCoalesced); one without refuses them RS_WRL_NEEDED (core.ts).
 *
 * One span of a WRL with no resync set open (ResyncSets hands it here), checked in this order:
 *
 *   condition                                      answer
 *   firstLsn > appliedLsn + 1                      shipNack LSN_GAP
 *   lastLsn <= appliedLsn                          shipAck appliedLsn (re-delivery)
 *   device unknown / declared bigger / outside     shipNack DEVICE_UNKNOWN / DEVICE_TOO_SMALL /
 *                                                    OUT_OF_RANGE (nothing logged or written)
 *   the RS-WRL cannot hold it (full, too large)    shipNack RS_WRL_FULL (staging then ships those
 *                                                    records uncoalesced)
 *   logging fails                                  shipNack IO_ERROR
 *   logged (one group, `coalesced`, chained on     every extent written (they never overlap: any
 *     appliedLsn, durable)                           order), flushed, appliedLsn = lastLsn saved,
 *                                                    RS-WRL freed, shipAck lastLsn; a failed write
 *                                                    or flush: devices marked inconsistent, shipNack
 *                                                    IO_ERROR (redone at a restart, or re-delivered)
 *
 * A span too big for one frame comes as parts (ShipMessage.spanContinues on all but the last; part
 * k covers LSNs firstLsn_k..lastLsn_k, the next starts at lastLsn_k + 1, and they never overlap).
 * Each part is checked and logged as above, as a group of its own chained on appliedLsn; a part
 * with more to come is then held (`pending`, its writes copied out of the shipment's buffer) and
 * answered shipAck {appliedLsn, held: true}: nothing is applied, appliedLsn does not move, staging
 * keeps the records. The last part applies the held parts' extents and its own together, as one
 * span. A part that does not continue the span held (its firstLsn is not the held span's next LSN,
 * or appliedLsn moved since) drops what was held: a new session resent the span from its start,
 * or sent something else; a continuing part with nothing held to continue is refused LSN_GAP
 * (staging then resumes at appliedLsn + 1, the span's start). The RS-WRL keeps a held span's
 * groups until it is applied or dropped.
 *
 * A span that straddles appliedLsn (firstLsn <= appliedLsn < lastLsn: a re-delivery racing a
 * newer apply) is applied whole too: every block the span touches gets its value at lastLsn, and
 * blocks it does not touch hold the same at appliedLsn and at lastLsn, so the result is the image
 * at lastLsn from any point inside the span.
 *
 * While a resync set is open, a span is logged into the set like any record (resync-sets.ts): the
 * set is applied whole anyway, its records in logged order.
 *
 * Restart (redoSpans, from ResyncSets.recover, before anything else is applied or freed): per
 * WRL without a set open, the complete spans chained on its appliedLsn (0 for a WRL the state does
 * not know yet) were logged but maybe not applied: the one reaching furthest is applied (all of
 * them chain on the same LSN, so the furthest alone gives its end image), and appliedLsn saved.
 * A span of parts is complete when its groups, in RS-WRL order, run from a first part
 * (partFirstLsn <= appliedLsn + 1) through parts each starting where the previous ended to one
 * that does not continue, all fully present. A span cut short by a crash during its group commit,
 * or missing parts, was never acknowledged as applied: ignored (staging re-delivers it). Not guaranteed: a replica restarted without its RS-WRL after a crash in the
 * middle of applying a span shows the devices half-applied until staging re-delivers the span's
 * records (as for an ordinary shipment, docs/pipeline.md "Replica").
 */
import { logger } from "../../log.ts";
import type { ShipMessage } from "../../protocol/messages.ts";
import { formatBytes } from "../../units.ts";
import { loggedPayloadOf, planShipment, type PlannedWrite } from "./apply.ts";
import { describe, nack, type ShipReply } from "./apply-group.ts";
import { applySegment, plannedOf } from "./resync-apply.ts";
import type { LogEvent, ResyncLog } from "./resync-log.ts";
import type { SetHost } from "./resync-sets.ts";
import { appliedLsnOf } from "./state.ts";

const log = logger("replica:coalesced");

export type SpanEvent = Extract<LogEvent, { kind: "span" }>;

/** The parts of a span held until its last part (see the file comment), per staging WRL uuid. */
export interface PendingSpan {
  /** The applied LSN its parts chain on. */
  prevLsn: number;
  /** The LSN the next part must start at. */
  nextLsn: number;
  /** The held parts' extents, their data copied. */
  writes: PlannedWrite[];
  /** The RS-WRL LSN of its first group (kept until the span is applied or dropped). */
  firstRsLsn: number | undefined;
}

/** One coalesced shipment of a WRL without a set open: the decision table above. */
export async function shipCoalesced(host: SetHost, rsLog: ResyncLog, free: () => Promise<void>, pending: Map<string, PendingSpan>, ship: ShipMessage, payload: Uint8Array): Promise<ShipReply> {
  const uuid = ship.wrlUuid;
  const appliedLsn = appliedLsnOf(host.state(), uuid);
  const held = pending.get(uuid);
  const continuing = held !== undefined && held.prevLsn === appliedLsn && ship.firstLsn === held.nextLsn;
  if (!continuing) pending.delete(uuid);
  if (!continuing && ship.firstLsn > appliedLsn + 1) {
    return nack(ship, "LSN_GAP", `the coalesced span ${ship.firstLsn}..${ship.lastLsn} starts past LSN ${appliedLsn + 1}: the replica applied WRL ${ship.wrl} only up to LSN ${appliedLsn} (nothing was applied); resume from ${appliedLsn + 1}`);
  }
  if (ship.lastLsn <= appliedLsn) return { type: "shipAck", wrl: ship.wrl, appliedLsn };
  // Every extent, whatever its LSN: the span is applied whole or not at all.
  const plan = planShipment(ship, payload, 0, host.devices);
  if (!("writes" in plan)) {
    pending.delete(uuid);
    return nack(ship, plan.code, plan.message);
  }
  const part = held !== undefined || ship.spanContinues === true ? { part: { firstLsn: ship.firstLsn, continues: ship.spanContinues === true } } : {};
  let outcome;
  try {
    outcome = await rsLog.append({ wrl: ship.wrl, wrlUuid: uuid, prevLsn: appliedLsn, throughLsn: ship.lastLsn, coalesced: true, records: plan.writes.map((write) => ({ record: write.record, payload: loggedPayloadOf(write) })), ...part });
  } catch (error) {
    pending.delete(uuid);
    return nack(ship, "IO_ERROR", `LSN ${ship.firstLsn}..${ship.lastLsn}: logging the coalesced span to the replica WRL ${rsLog.path} failed: ${describe(error)}`);
  }
  if (outcome.refused !== undefined) {
    pending.delete(uuid);
    await free(); // a group cut short is never read back as a span to redo, but takes room
    const { neededBytes, freeBytes } = outcome.refused;
    return nack(ship, "RS_WRL_FULL", `the coalesced span ${ship.firstLsn}..${ship.lastLsn} of WRL ${ship.wrl} needs ${formatBytes(neededBytes)} in the replica WRL ${rsLog.path}, which has ${formatBytes(freeBytes)} free (or takes smaller records); staging ships these records uncoalesced`);
  }
  const span = continuing ? held : { prevLsn: appliedLsn, nextLsn: ship.firstLsn, writes: [], firstRsLsn: outcome.firstRsLsn };
  if (ship.spanContinues === true) {
    // Held: the shipment's buffer goes back to the server's pool once answered.
    for (const write of plan.writes) span.writes.push(write.data === undefined ? write : { ...write, data: write.data.slice() });
    span.nextLsn = ship.lastLsn + 1;
    pending.set(uuid, span);
    return { type: "shipAck", wrl: ship.wrl, appliedLsn, held: true };
  }
  pending.delete(uuid);
  const writes = span.writes.length === 0 ? plan.writes : [...span.writes, ...plan.writes];
  try {
    await applySpan(host, ship.wrl, uuid, writes, ship.lastLsn, ship);
  } catch (error) {
    log.error(`WRL ${ship.wrl}: applying the coalesced span ${continuing ? span.prevLsn + 1 : ship.firstLsn}..${ship.lastLsn} failed: ${describe(error)}`);
    return nack(ship, "IO_ERROR", `LSN ${ship.firstLsn}..${ship.lastLsn}: applying the coalesced span failed: ${describe(error)}`);
  }
  await free();
  return { type: "shipAck", wrl: ship.wrl, appliedLsn: ship.lastLsn };
}

/** At a restart: applies the spans logged and maybe not applied (see the file comment). */
export async function redoSpans(host: SetHost, events: readonly SpanEvent[]): Promise<void> {
  const furthest = new Map<string, SpanEvent>();
  for (const span of wholeSpans(events)) {
    const wrl = host.state().wrls.find((entry) => entry.uuid === span.wrlUuid);
    if (!span.complete || wrl?.resyncSet !== undefined || span.prevLsn !== (wrl?.appliedLsn ?? 0) || span.throughLsn <= span.prevLsn) continue;
    if ((furthest.get(span.wrlUuid)?.throughLsn ?? -1) < span.throughLsn) furthest.set(span.wrlUuid, span);
  }
  for (const span of furthest.values()) {
    log.info(`WRL ${span.wrl}: the coalesced span ${span.prevLsn + 1}..${span.throughLsn} was logged but maybe not applied: applying it again`);
    const writes = span.records.map(({ record, payload }) => plannedOf(host.devices, span.wrl, record, payload));
    await applySpan(host, span.wrl, span.wrlUuid, writes, span.throughLsn);
  }
}

/**
 * The spans the logged groups make, in RS-WRL order: a group without parts is a span; parts are
 * put together (see the file comment), a span whose parts do not all chain or are not all complete
 * comes out incomplete, and a part left waiting for the rest (the RS-WRL ends) too.
 */
export function wholeSpans(events: readonly SpanEvent[]): SpanEvent[] {
  const spans: SpanEvent[] = [];
  const open = new Map<string, SpanEvent>();
  for (const event of events) {
    const part = event.part;
    if (part === undefined) {
      spans.push(event);
      continue;
    }
    const sofar = open.get(event.wrlUuid);
    open.delete(event.wrlUuid);
    let span: SpanEvent;
    if (part.firstLsn <= event.prevLsn + 1) span = { ...event, records: [...event.records] };
    else if (sofar !== undefined && sofar.prevLsn === event.prevLsn && part.firstLsn === sofar.throughLsn + 1) {
      for (const record of event.records) sofar.records.push(record); // sofar's records are this function's own copy
      span = { ...sofar, throughLsn: event.throughLsn, complete: sofar.complete && event.complete, part };
    } else continue; // a part whose start is gone (dropped, freed): never acknowledged as applied
    if (part.continues) open.set(event.wrlUuid, span);
    else spans.push(span);
  }
  for (const span of open.values()) spans.push({ ...span, complete: false });
  return spans;
}

/** Writes, flushes, saves appliedLsn = lastLsn (applySegment marks the devices inconsistent on failure). */
function applySpan(host: SetHost, wrl: string, wrlUuid: string, writes: readonly PlannedWrite[], lastLsn: number, ship?: ShipMessage): Promise<void> {
  const closing: ShipMessage = ship ?? { type: "ship", wrl, wrlUuid, firstLsn: lastLsn, lastLsn, records: [] };
  return applySegment(host, closing, writes, lastLsn, undefined);
}
