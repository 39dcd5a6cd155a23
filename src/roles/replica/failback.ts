/**
 * The replica's side of completing a failback (failback-routes.ts has the control routes; the tool
 * is src/commands/failback.ts): the export closed, each device's head copied into the reserve
 * (a saved step: record.failback.copied), the marker written (protected again), the WRL resuming
 * at throughLsn, the generation recorded, the record removed. Every step can run again: a restart
 * or a re-sent POST /failback/complete finishes it.
 */
import type { BlockDevice } from "../../io/block-device.ts";
import { alignedBuffer } from "../../io/handle-device.ts";
import { logger } from "../../log.ts";
import { directIoAlignmentBytes } from "../../constants.ts";
import { protectCopyPieceBytesMax, protectMarkerBlockBytes } from "../../protect-constants.ts";
import type { ReplicaDevice } from "./apply.ts";
import { recordGeneration, removeFailover, type FailoverRecord } from "./failover-state.ts";
import { closePromoted, type Failovers } from "./failover.ts";
import { copyPhysical, protectedLogicalSizeBytes, ProtectedDevice, writeMarker } from "./protected-device.ts";

const log = logger("replica:failback");

/**
 * Completes the failback of `record` (phase failing-back; under the apply lock; idempotent): the
 * export closed, header sectors swapped in again, appliedLsn = failback.throughLsn, the older
 * history forgotten, the generation recorded, the record removed: the WRL is replicated again.
 */
export async function completeFailback(failovers: Failovers, record: FailoverRecord, devices: ReadonlyMap<string, ReplicaDevice>): Promise<void> {
  const host = failovers.host;
  const { throughLsn, generation } = record.failback!;
  const promoted = failovers.promoted.get(record.wrlUuid);
  if (promoted !== undefined) {
    failovers.promoted.delete(record.wrlUuid);
    await closePromoted(promoted);
  }
  for (const [name, entry] of devices) {
    if (!(entry.device instanceof ProtectedDevice)) continue;
    if (!(record.failback!.copied ?? []).includes(name)) {
      await copyHeadToReserve(entry.device.physical, entry.device.reserveBytes);
      record = { ...record, failback: { ...record.failback!, copied: [...(record.failback!.copied ?? []), name] } };
      await failovers.save(record);
    }
    await sealProtected(entry.device.physical, entry.device.reserveBytes);
  }
  const state = host.state();
  await host.save({ ...state, wrls: state.wrls.map((wrl) => (wrl.uuid === record.wrlUuid ? { ...wrl, appliedLsn: throughLsn! } : wrl)) });
  await host.history?.forget(record.wrlUuid, Math.max(throughLsn!, record.appliedLsnBefore));
  await recordGeneration(failovers.stateDir, record.wrlUuid, generation!);
  await removeFailover(failovers.stateDir, record.wrlUuid);
  failovers.records.delete(record.wrlUuid);
  failovers.failedOver.delete(record.wrlUuid);
  log.info(`WRL ${record.wrl} failed back: the devices are replicas again (header sectors swapped), applying from LSN ${throughLsn! + 1}; generation ${generation} is the history now`);
}

/**
 * Re-protecting a plain device, step 1: its head [0, R) copied to the reserve [L, L + R), flushed.
 * The caller saves that it did (run it once: a second run would copy what sealProtected left).
 */
async function copyHeadToReserve(physical: BlockDevice, reserveBytes: number): Promise<void> {
  await copyPhysical(physical, 0, protectedLogicalSizeBytes(physical.sizeBytes, reserveBytes, physical.logicalBlockSizeBytes), reserveBytes);
  await physical.flush();
}

/**
 * Step 2, idempotent: the marker block written (the device opens protected from then on and reads
 * its head from the reserve), then [4 KiB, R) zeroed so no signature is left; each flushed.
 */
async function sealProtected(physical: BlockDevice, reserveBytes: number): Promise<void> {
  const logicalSizeBytes = protectedLogicalSizeBytes(physical.sizeBytes, reserveBytes, physical.logicalBlockSizeBytes);
  await writeMarker(physical, { state: "protected", reserveBytes, logicalSizeBytes, logicalBlockSizeBytes: physical.logicalBlockSizeBytes, uuid: crypto.randomUUID().replaceAll("-", "") });
  const zeros = alignedBuffer(Math.min(protectCopyPieceBytesMax, reserveBytes), directIoAlignmentBytes);
  for (let at = protectMarkerBlockBytes; at < reserveBytes; at += zeros.length) await physical.write(at, zeros.subarray(0, Math.min(zeros.length, reserveBytes - at)));
  await physical.flush();
}
