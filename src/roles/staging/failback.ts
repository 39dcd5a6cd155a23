/**
 * Staging's part in failback (druvaa failback drives it through failback-routes.ts): which blocks
 * the original primary wrote that the replica never acknowledged (pendingOf), and dropping those
 * records once failback made the primary equal to the side it chose (discardThrough).
 *
 * Pending records are those of LSN above the acknowledged point: max(the relay's appliedLsn, the
 * WRL's tail) — the relay notes an ack before the tail (a checkpoint write) follows it.
 *
 * discardThrough(throughLsn), decision table (checked in this order):
 *   throughLsn not a whole number >= 0            USAGE (exit 2)
 *   throughLsn > the WRL's durable head           DISCARD_BEYOND_HEAD (exit 4); nothing changes
 *   throughLsn <= the acknowledged point          ok, 0 records: nothing to do
 *   otherwise                                     the relay pauses (its session ends; what it had
 *                                                   in flight or queued is dropped), the records
 *                                                   are counted, the tail advances to throughLsn
 *                                                   durably (advanceTail: the path an ack takes, so
 *                                                   a restart does not send them again), the relay
 *                                                   counts them as acknowledged and resumes after
 *                                                   throughLsn; logged as a warning (a data drop)
 *
 * After a discard the replica must resume at throughLsn or later (druvaa failback aligns it): one
 * that says it applied less gets REPLICA_MISSING_RECORDS, as any replica missing freed records.
 *
 * Not guaranteed: a pending scan sees the WRL as it was when it started (records appended later
 * are not in it), and reads every pending record (payloads included) from the record cache or
 * the device, so it takes about as long as reading that much of the WRL. If the relay frees
 * records under it (a replica acknowledging them), it starts over, at most
 * stagingPendingScanAttemptsMax times.
 */
import { DruvaaError, exitCodes, usageError } from "../../errors.ts";
import { logger } from "../../log.ts";
import type { WrlRecord } from "../../wrl/types.ts";
import { stagingPendingRangesMax, stagingPendingReadBytes, stagingPendingScanAttemptsMax } from "./failback-constants.ts";
import { PendingRanges, type DeviceRange } from "./pending-ranges.ts";
import type { RelayWrl } from "./relay-types.ts";

const log = logger("staging:failback");

/** What failback needs of one WRL of the staging core (StagingCore.wrlHandle gives it). */
export interface FailbackWrl {
  name: string;
  uuid: string;
  wrl: RelayWrl;
  relay: {
    readonly appliedLsn: number;
    paused<T>(task: () => Promise<T>): Promise<T>;
    noteDiscarded(lsn: number): void;
  };
}

/** GET /wrl/pending?wrl=NAME */
export interface PendingAnswer {
  wrl: string;
  wrlUuid: string;
  /** Records up to this LSN were acknowledged by the replica; the ones above are pending. */
  ackedLsn: number;
  /** The durable head when the scan started: pending records are ackedLsn+1..headLsn. */
  headLsn: number;
  /** Pending records (every kind: markers, verify probes and checkpoints too). */
  records: number;
  /** Payload bytes they hold in the WRL (zero records: none). */
  bytes: number;
  /** What the pending data and ZERO records (and trims) write: sorted, non-overlapping, per device. */
  ranges: DeviceRange[];
  /** Bytes the ranges cover. */
  rangeBytes: number;
  /** True when gaps between ranges were closed to stay within stagingPendingRangesMax (a cover, not exact). */
  coarse: boolean;
}

/** POST /wrl/discard {wrl, throughLsn} */
export interface DiscardAnswer {
  wrl: string;
  discardedRecords: number;
  discardedBytes: number;
  /** The acknowledged point after the discard (throughLsn, or where it already was). */
  ackedLsn: number;
}

export function ackedLsnOf(target: FailbackWrl): number {
  return Math.max(target.relay.appliedLsn, target.wrl.info().tailLsn);
}

/** The records the replica has not acknowledged, and what they write (see the file comment). */
export async function pendingOf(target: FailbackWrl, rangesMax = stagingPendingRangesMax, afterLsn = 0): Promise<PendingAnswer> {
  for (let attempt = 1; ; attempt += 1) {
    const ackedLsn = ackedLsnOf(target);
    const headLsn = target.wrl.info().headLsn;
    const ranges = new PendingRanges(rangesMax);
    const walked = await walk(target, ackedLsn, headLsn, (record) => {
      // Records at or below afterLsn (a failover's point) are in the replica's image already.
      if (record.type !== "marker" && record.lsn > afterLsn) ranges.add(String(record.device), record.offset, record.lengthBytes);
    });
    if (walked === "freed" && attempt < stagingPendingScanAttemptsMax) continue;
    if (walked === "freed") {
      throw new DruvaaError("BUSY", `WRL ${target.name}: the replica kept acknowledging records while they were listed (${stagingPendingScanAttemptsMax} tries)`, "Try again; the pending records of a failed-over replica do not move", exitCodes.failure);
    }
    const merged = ranges.result();
    return { wrl: target.name, wrlUuid: target.uuid, ackedLsn, headLsn, records: walked.records, bytes: walked.payloadBytes, ranges: merged.ranges, rangeBytes: merged.bytes, coarse: merged.coarse };
  }
}

/** Drops the records up to `throughLsn` the replica never acknowledged (decision table above). */
export async function discardThrough(target: FailbackWrl, throughLsn: number): Promise<DiscardAnswer> {
  if (!Number.isSafeInteger(throughLsn) || throughLsn < 0) throw usageError(`throughLsn must be an LSN (a whole number >= 0), not ${String(throughLsn)}`, "Take it from GET /wrl/pending?wrl=NAME (headLsn)");
  const headLsn = target.wrl.info().headLsn;
  if (throughLsn > headLsn) {
    throw new DruvaaError(
      "DISCARD_BEYOND_HEAD",
      `WRL ${target.name} ends at LSN ${headLsn}: cannot discard through LSN ${throughLsn}, which was never logged; nothing was discarded`,
      `Give a throughLsn of at most ${headLsn} (GET /wrl/pending?wrl=${target.name} shows headLsn)`,
      exitCodes.refused,
    );
  }
  const nothing = (ackedLsn: number): DiscardAnswer => ({ wrl: target.name, discardedRecords: 0, discardedBytes: 0, ackedLsn });
  if (throughLsn <= ackedLsnOf(target)) return nothing(ackedLsnOf(target));
  return target.relay.paused(async () => {
    // No session runs now, so nothing moves the acknowledged point under the walk.
    const ackedLsn = ackedLsnOf(target);
    if (throughLsn <= ackedLsn) return nothing(ackedLsn);
    const walked = await walk(target, ackedLsn, throughLsn, () => undefined);
    if (walked === "freed") throw new DruvaaError("BUSY", `WRL ${target.name}: records were freed during the discard`, "Try again", exitCodes.failure);
    await target.wrl.advanceTail(throughLsn);
    target.relay.noteDiscarded(throughLsn);
    log.warn(`WRL ${target.name}: discarded ${walked.records} record(s) (LSN ${ackedLsn + 1}..${throughLsn}, ${walked.payloadBytes} bytes) the replica never acknowledged, as druvaa failback asked (POST /wrl/discard): the replica will never apply them`);
    return { wrl: target.name, discardedRecords: walked.records, discardedBytes: walked.payloadBytes, ackedLsn: throughLsn };
  });
}

/**
 * Reads records afterLsn+1..throughLsn in steps of stagingPendingReadBytes, calling `visit` for
 * each; "freed" when the tail passed a record before it was read (the caller starts over).
 */
async function walk(target: FailbackWrl, afterLsn: number, throughLsn: number, visit: (record: WrlRecord) => void): Promise<{ records: number; payloadBytes: number } | "freed"> {
  let records = 0;
  let payloadBytes = 0;
  let next = afterLsn + 1;
  while (next <= throughLsn) {
    let read: WrlRecord[];
    try {
      read = await target.wrl.read(next, stagingPendingReadBytes);
    } catch (error) {
      // The WRL refuses (or cannot find) records the tail passed meanwhile: not damage.
      if (target.wrl.info().tailLsn >= next) return "freed";
      throw error;
    }
    if (read.length === 0) throw new DruvaaError("WRL_CORRUPT", `WRL ${target.name}: no record at LSN ${next}, below its head`, "See druvaa wrl info and staging's log", exitCodes.failure);
    for (const record of read) {
      if (record.lsn > throughLsn) break;
      visit(record);
      records += 1;
      payloadBytes += record.data.length;
    }
    next = read[read.length - 1]!.lsn + 1;
  }
  return { records, payloadBytes };
}
