/**
 * The restore stream of one replica device (ReplicaCore.restore, core.ts): restoreBegin, the
 * device's bytes in restoreChunkBytes chunks, restoreEnd with their SHA-256. The core decides
 * when it may run (a consistent point, apply held) and what size and LSN it announces.
 */
import { createHash } from "node:crypto";
import { restoreChunkBytes } from "../../constants.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import type { RestoreBeginMessage, RestoreDataMessage, RestoreEndMessage } from "../../protocol/messages.ts";
import type { ReplicaDevice } from "./apply.ts";

export type RestoreMessage = RestoreBeginMessage | RestoreDataMessage | RestoreEndMessage;
/** Delivers a restore message to the restorer; resolves when it may send more. */
export type RestoreSend = (message: RestoreMessage, payload?: Uint8Array) => Promise<void>;

export interface RestoreResult {
  device: string;
  sizeBytes: number;
  appliedLsn: number;
  sha256: string;
}

/**
 * Sends `sizeBytes` of `target` to `send`, announced as holding the records up to `appliedLsn`.
 * Throws SHUTTING_DOWN between chunks once `stopping()` says so, and whatever `send` throws.
 */
export async function streamRestore(target: ReplicaDevice, sizeBytes: number, appliedLsn: number, send: RestoreSend, stopping: () => boolean): Promise<RestoreResult> {
  await send({ type: "restoreBegin", device: target.name, sizeBytes, appliedLsn });
  const hash = createHash("sha256");
  const block = target.device.logicalBlockSizeBytes;
  // The last chunk of a declared size may end inside a replica block (a 512-byte-sector client
  // on a 4 KiB replica): read whole blocks, send the declared bytes.
  const readChunk = async (offset: number): Promise<Uint8Array> => {
    const lengthBytes = Math.min(restoreChunkBytes, sizeBytes - offset);
    const readBytes = Math.min(Math.ceil(lengthBytes / block) * block, target.device.sizeBytes - offset);
    const data = await target.device.read(offset, readBytes);
    return data.subarray(0, lengthBytes);
  };
  let next = sizeBytes > 0 ? readChunk(0) : undefined;
  try {
    for (let offset = 0; next !== undefined; offset += restoreChunkBytes) {
      const data = await next;
      // Read the next chunk while this one is sent.
      next = offset + restoreChunkBytes < sizeBytes ? readChunk(offset + restoreChunkBytes) : undefined;
      if (stopping()) throw shuttingDown();
      hash.update(data);
      await send({ type: "restoreData", device: target.name, offset, length: data.length }, data);
    }
  } finally {
    next?.catch(() => undefined); // a read started for a restorer that is gone
  }
  const sha256 = hash.digest("hex");
  await send({ type: "restoreEnd", device: target.name, sizeBytes, sha256 });
  return { device: target.name, sizeBytes, appliedLsn, sha256 };
}

export function shuttingDown(): DruvaaError {
  return new DruvaaError("SHUTTING_DOWN", "the replica is shutting down", "Run the restore again once the replica is back", exitCodes.refused);
}
