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
 * A span cut short by a crash during its group commit was never acknowledged: ignored (staging
 * re-delivers it). Not guaranteed: a replica restarted without its RS-WRL after a crash in the
 * middle of applying a span shows the devices half-applied until staging re-delivers the span's
 * records (as for an ordinary shipment, docs/pipeline.md "Replica").
 */
import { logger } from "../../log.ts";
import type { ShipMessage } from "../../protocol/messages.ts";
import { formatBytes } from "../../units.ts";
import { planShipment, type PlannedWrite } from "./apply.ts";
import { describe, nack, type ShipReply } from "./apply-group.ts";
import { applySegment, plannedOf } from "./resync-apply.ts";
import type { LogEvent, ResyncLog } from "./resync-log.ts";
import type { SetHost } from "./resync-sets.ts";

const log = logger("replica:coalesced");
const noBytes = new Uint8Array(0);

export type SpanEvent = Extract<LogEvent, { kind: "span" }>;

/** One coalesced shipment of a WRL without a set open: the decision table above. */
export async function shipCoalesced(host: SetHost, rsLog: ResyncLog, free: () => Promise<void>, ship: ShipMessage, payload: Uint8Array): Promise<ShipReply> {
  const uuid = ship.wrlUuid;
  const appliedLsn = host.state().wrls.find((wrl) => wrl.uuid === uuid)?.appliedLsn ?? 0;
  if (ship.firstLsn > appliedLsn + 1) {
    return nack(ship, "LSN_GAP", `the coalesced span ${ship.firstLsn}..${ship.lastLsn} starts past LSN ${appliedLsn + 1}: the replica applied WRL ${ship.wrl} only up to LSN ${appliedLsn} (nothing was applied); resume from ${appliedLsn + 1}`);
  }
  if (ship.lastLsn <= appliedLsn) return { type: "shipAck", wrl: ship.wrl, appliedLsn };
  // Every extent, whatever its LSN: the span is applied whole or not at all.
  const plan = planShipment(ship, payload, 0, host.devices);
  if (!("writes" in plan)) return nack(ship, plan.code, plan.message);
  let outcome;
  try {
    outcome = await rsLog.append({ wrl: ship.wrl, wrlUuid: uuid, prevLsn: appliedLsn, throughLsn: ship.lastLsn, coalesced: true, records: plan.writes.map((write) => ({ record: write.record, payload: write.data ?? noBytes })) });
  } catch (error) {
    return nack(ship, "IO_ERROR", `LSN ${ship.firstLsn}..${ship.lastLsn}: logging the coalesced span to the replica WRL ${rsLog.path} failed: ${describe(error)}`);
  }
  if (outcome.refused !== undefined) {
    await free(); // a group cut short is never read back as a span to redo, but takes room
    const { neededBytes, freeBytes } = outcome.refused;
    return nack(ship, "RS_WRL_FULL", `the coalesced span ${ship.firstLsn}..${ship.lastLsn} of WRL ${ship.wrl} needs ${formatBytes(neededBytes)} in the replica WRL ${rsLog.path}, which has ${formatBytes(freeBytes)} free (or takes smaller records); staging ships these records uncoalesced`);
  }
  try {
    await applySpan(host, ship.wrl, uuid, plan.writes, ship.lastLsn, ship);
  } catch (error) {
    log.error(`WRL ${ship.wrl}: applying the coalesced span ${ship.firstLsn}..${ship.lastLsn} failed: ${describe(error)}`);
    return nack(ship, "IO_ERROR", `LSN ${ship.firstLsn}..${ship.lastLsn}: applying the coalesced span failed: ${describe(error)}`);
  }
  await free();
  return { type: "shipAck", wrl: ship.wrl, appliedLsn: ship.lastLsn };
}

/** At a restart: applies the spans logged and maybe not applied (see the file comment). */
export async function redoSpans(host: SetHost, spans: readonly SpanEvent[]): Promise<void> {
  const furthest = new Map<string, SpanEvent>();
  for (const span of spans) {
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

/** Writes, flushes, saves appliedLsn = lastLsn (applySegment marks the devices inconsistent on failure). */
function applySpan(host: SetHost, wrl: string, wrlUuid: string, writes: readonly PlannedWrite[], lastLsn: number, ship?: ShipMessage): Promise<void> {
  const closing: ShipMessage = ship ?? { type: "ship", wrl, wrlUuid, firstLsn: lastLsn, lastLsn, records: [] };
  return applySegment(host, closing, writes, lastLsn, undefined);
}
