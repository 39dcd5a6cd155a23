/**
 * The restore stream of one replica device (ReplicaCore.restore, core.ts): restoreBegin, the
 * device's bytes in restoreChunkBytes chunks, restoreEnd with their CRC32C. The core decides
 * when it may run (a consistent point, apply held) and what size and LSN it announces.
 */
import { crc32c } from "../../wrl/crc32c.ts";
import { assert } from "../../assert.ts";
import { restoreChunkBytes } from "../../constants.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import type { RestoreBeginMessage, RestoreDataMessage, RestoreEndMessage } from "../../protocol/messages.ts";
import type { ReplicaDevice } from "./apply.ts";
import type { InconsistentDevices } from "./apply-group.ts";
import type { ReplicaState, WrlState } from "./state.ts";

/** Chunks read ahead of the one being sent (each restoreChunkBytes). */
const restoreReadAheadChunks = 4;

export type RestoreMessage = RestoreBeginMessage | RestoreDataMessage | RestoreEndMessage;
/** Delivers a restore message to the restorer; resolves when it may send more. */
export type RestoreSend = (message: RestoreMessage, payload?: Uint8Array) => Promise<void>;

export interface RestoreResult {
  device: string;
  sizeBytes: number;
  appliedLsn: number;
  /** CRC32C of the image sent (restoreEnd's). */
  crc32c: number;
}

/**
 * What a restore of `target` exports now: the size its client declared (else the device's), and
 * the applied LSN of the WRL that last wrote it. Refuses (REPLICA_INCONSISTENT) a device not at a
 * consistent point: a failed apply left it half-written, or an unbuffered resync (no RS-WRL) is
 * going on.
 */
export function restorePoint(target: ReplicaDevice, state: ReplicaState, inconsistent: InconsistentDevices): { sizeBytes: number; appliedLsn: number } {
  const mark = inconsistent.get(target.name);
  if (mark !== undefined) {
    throw new DruvaaError("REPLICA_INCONSISTENT", `device ${target.name} is not at a consistent point: applying a shipment to it failed, and LSN ${mark.untilLsn} has not been re-applied yet`, "Check the replica's log and status (druvaa status --connect REPLICA:6004); try again once staging has re-delivered", exitCodes.refused);
  }
  const resyncing = state.wrls.find((wrl) => wrl.resyncUnbuffered?.includes(target.name));
  if (resyncing !== undefined) {
    throw new DruvaaError("REPLICA_INCONSISTENT", `device ${target.name} is not at a consistent point: WRL ${resyncing.name} is resyncing it without a replica WRL, and its resync has not ended`, "Try again once the resync has ended (druvaa status --connect REPLICA:6004); a replica started with --wrl PATH keeps its last consistent point during a resync", exitCodes.refused);
  }
  const deviceState = state.devices.find((device) => device.name === target.name);
  const sizeBytes = deviceState?.declaredSizeBytes ?? target.device.sizeBytes;
  const appliedLsn = deviceState?.wrlUuid === undefined ? 0 : (state.wrls.find((wrl) => wrl.uuid === deviceState.wrlUuid)?.appliedLsn ?? 0);
  assert(sizeBytes <= target.device.sizeBytes, "declared sizes above the device are refused before they are saved");
  return { sizeBytes, appliedLsn };
}

/**
 * Sends `sizeBytes` of `target` to `send`, announced as holding the records up to `appliedLsn`.
 * Throws SHUTTING_DOWN between chunks once `stopping()` says so, and whatever `send` throws.
 */
export async function streamRestore(target: ReplicaDevice, sizeBytes: number, appliedLsn: number, send: RestoreSend, stopping: () => boolean, read: (offset: number, length: number) => Promise<Uint8Array> = (offset, length) => target.device.read(offset, length)): Promise<RestoreResult> {
  await send({ type: "restoreBegin", device: target.name, sizeBytes, appliedLsn });
  let crc = 0;
  const block = target.device.logicalBlockSizeBytes;
  // The last chunk of a declared size may end inside a replica block (a 512-byte-sector client
  // on a 4 KiB replica): read whole blocks, send the declared bytes.
  const readChunk = async (offset: number): Promise<Uint8Array> => {
    const lengthBytes = Math.min(restoreChunkBytes, sizeBytes - offset);
    const readBytes = Math.min(Math.ceil(lengthBytes / block) * block, target.device.sizeBytes - offset);
    const data = await read(offset, readBytes);
    return data.subarray(0, lengthBytes);
  };
  // Reads run restoreReadAheadChunks ahead of the chunk being sent (the device is read while the
  // network and the restorer's disk are busy).
  const ahead: Promise<Uint8Array>[] = [];
  let nextRead = 0;
  const fill = () => {
    while (ahead.length < restoreReadAheadChunks && nextRead < sizeBytes) {
      ahead.push(readChunk(nextRead));
      nextRead += restoreChunkBytes;
    }
  };
  try {
    fill();
    for (let offset = 0; ahead.length > 0; offset += restoreChunkBytes) {
      const data = await ahead.shift()!;
      fill();
      if (stopping()) throw shuttingDown();
      crc = crc32c(data, crc);
      await send({ type: "restoreData", device: target.name, offset, length: data.length }, data);
    }
  } finally {
    for (const pending of ahead) pending.catch(() => undefined); // reads started for a restorer that is gone
  }
  await send({ type: "restoreEnd", device: target.name, sizeBytes, crc32c: crc });
  return { device: target.name, sizeBytes, appliedLsn, crc32c: crc };
}

/** The WRL that last wrote a device (undefined: none yet), from the state. */
export function wrlOfDevice(target: ReplicaDevice, state: ReplicaState): { wrl: WrlState | undefined } {
  const uuid = state.devices.find((device) => device.name === target.name)?.wrlUuid;
  return { wrl: uuid === undefined ? undefined : state.wrls.find((wrl) => wrl.uuid === uuid) };
}

export function shuttingDown(): DruvaaError {
  return new DruvaaError("SHUTTING_DOWN", "the replica is shutting down", "Run the restore again once the replica is back", exitCodes.refused);
}
