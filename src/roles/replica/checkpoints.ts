/**
 * Checkpoint records at the replica (recordFlags.checkpoint; `druvaa checkpoint --label NAME`):
 * how a shipment's (or the RS-WRL's) checkpoint record becomes a PlannedWrite that writes nothing
 * and names the consistent point right after its LSN. The replica's point-in-time journal reads
 * them from a plan with checkpointsOf().
 *
 * A checkpoint is not checked against the replica's devices: it writes nothing, so its range
 * (always 0+0) and its device do not matter; a device the replica does not have (a client device
 * that only ever sent checkpoints) gets a stand-in target that refuses every I/O, and applyWrites
 * neither writes nor flushes it.
 */
import { assert } from "../../assert.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { checkpointLabelOf, checkpointLabelPayload, checkpointLabelRule } from "../../protocol/checkpoint-label.ts";
import { recordFlags, type ShipMessage, type ShipRecord } from "../../protocol/messages.ts";
import type { PlannedWrite, ReplicaDevice } from "./apply.ts";

/** A checkpoint of the write order: `label` is the state right after staging WRL LSN `lsn`. */
export interface CheckpointMark {
  label: string;
  lsn: number;
}

export function isCheckpointRecord(record: { flags: number }): boolean {
  return (record.flags & recordFlags.checkpoint) !== 0;
}

/**
 * True when records of `ship` name `device` and all of them are checkpoints (so the replica need
 * not have it). A device declared and named by no record at all is still refused (planShipment).
 */
export function onlyCheckpointsOf(ship: ShipMessage, device: string): boolean {
  let named = false;
  for (const record of ship.records) {
    if (record.device !== device) continue;
    if (!isCheckpointRecord(record)) return false;
    named = true;
  }
  return named;
}

/**
 * The PlannedWrite of a checkpoint record whose payload is `labelBytes`: data and probe undefined.
 * A shipment's labels were checked at decode (checkShipCheckpoints); one read back from the RS-WRL
 * held its CRC but was never checked as a label, so a bad one (a log written by another release,
 * or a bug) is the typed RS_WRL_CORRUPT, never an assert that stops the replica at start.
 */
export function plannedCheckpoint(record: ShipRecord, labelBytes: Uint8Array, devices: ReadonlyMap<string, ReplicaDevice>): PlannedWrite {
  assert(isCheckpointRecord(record), "a checkpoint record");
  const label = checkpointLabelOf(labelBytes);
  if (label === undefined) {
    throw new DruvaaError(
      "RS_WRL_CORRUPT",
      `the checkpoint record at LSN ${record.lsn} (device ${record.device}) carries a label that is not ${checkpointLabelRule}`,
      "The replica WRL holds a record this druvaa did not write: run the release that wrote it, or start the replica afresh (an initial sync)",
      exitCodes.failure,
    );
  }
  const target = devices.get(record.device) ?? absentDevice(record.device);
  return { record, target, data: undefined, probe: undefined, checkpoint: { label, lsn: record.lsn } };
}

/** The checkpoints among `writes`, in order. */
export function checkpointsOf(writes: readonly PlannedWrite[]): CheckpointMark[] {
  const marks: CheckpointMark[] = [];
  for (const write of writes) if (write.checkpoint !== undefined) marks.push({ label: write.checkpoint.label, lsn: write.checkpoint.lsn });
  return marks;
}

const noBytes = new Uint8Array(0);

/** What a planned record logs in the RS-WRL as its payload: its data, its digests, its label, or nothing. */
export function loggedPayloadOf(write: PlannedWrite): Uint8Array {
  if (write.data !== undefined) return write.data;
  if (write.probe !== undefined) return write.probe.digests;
  if (write.checkpoint !== undefined) return checkpointLabelPayload(write.checkpoint.label);
  return noBytes;
}

/** Stand-in for a device the replica lacks, named only by checkpoints: never written, nothing to flush. */
function absentDevice(name: string): ReplicaDevice {
  const refuse = () => Promise.reject(new DruvaaError("DEVICE_UNKNOWN", `the replica has no device ${name} (only checkpoints named it)`, `Start the replica with --device ${name}=PATH`, exitCodes.refused));
  const device: BlockDevice = {
    name: `(absent ${name})`,
    sizeBytes: 0,
    logicalBlockSizeBytes: 512,
    read: refuse,
    write: refuse,
    discard: refuse,
    flush: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
  return { name, device, discardReadsZeros: false };
}
