/**
 * Small pure pieces of the client write path: splitting a range into protocol-sized pieces,
 * zeroing a local range, and turning staging's writeNack into the error the NBD client sees.
 */
import { nbdZeroPieceBytesMax } from "../../constants.ts";
import { DruvaaError } from "../../errors.ts";
import type { WriteMessage, WriteNackMessage } from "../../protocol/messages.ts";
import type { ClientDevice } from "./core.ts";
import type { ClientDeviceStatus, DeviceState } from "./types.ts";

/** [offset, length] pieces of at most `pieceMax` bytes covering the range, in order. */
export function split(offset: number, length: number, pieceMax: number): [number, number][] {
  const pieces: [number, number][] = [];
  for (let at = offset; at < offset + length; at += pieceMax) pieces.push([at, Math.min(pieceMax, offset + length - at)]);
  return pieces;
}

/** Shared, never written: the source for zeroing devices whose discard does not read zeros. */
let zeroPiece: Uint8Array | undefined;

/** Makes the local range read zeros: discard where that is enough, written zeros otherwise. */
export async function zeroLocal(spec: ClientDevice, offset: number, length: number, mayDiscard: boolean): Promise<void> {
  if (mayDiscard && spec.discardReadsZeros) {
    await spec.device.discard(offset, length);
    return;
  }
  zeroPiece ??= new Uint8Array(nbdZeroPieceBytesMax);
  // One piece at a time: a zero range may be large, and the device's own queue is what is fast.
  for (const [at, pieceLength] of split(offset, length, nbdZeroPieceBytesMax)) await spec.device.write(at, zeroPiece.subarray(0, pieceLength));
}

/**
 * The error an NBD request gets when staging refused one of its pieces (src/nbd/errno.ts maps
 * the code to the NBD error):
 *   WRL_FULL       -> WRL_FULL         -> EIO (disconnected mode with a change map: issue 4)
 *   OUT_OF_RANGE   -> IO_OUT_OF_RANGE  -> EINVAL
 *   anything else  -> STAGING_<code>   -> EIO, with staging's message
 * BUSY and SHUTTING_DOWN never get here: the core sends those writes again.
 */
export function nackError(reply: WriteNackMessage, message: WriteMessage): DruvaaError {
  const what = `${message.zero === true ? "zero write" : "write"} ${message.device}@${message.offset}+${message.length}`;
  switch (reply.code) {
    case "WRL_FULL":
      return new DruvaaError("WRL_FULL", `${what}: staging refused it: WRL ${message.wrl} is full (${reply.message})`, "Let the replica catch up (druvaa status --connect STAGING:6002), or give the WRL more space");
    case "OUT_OF_RANGE":
      return new DruvaaError("IO_OUT_OF_RANGE", `${what}: staging refused it as out of range: ${reply.message}`, "The device staging knows is smaller than this one; re-attach after fixing the sizes");
    default:
      return new DruvaaError(`STAGING_${reply.code}`, `${what}: staging refused it: ${reply.code}: ${reply.message}`, "See the staging server's log and status (druvaa status --connect STAGING:6002)");
  }
}

/** A device's status line (GET /status): its counters and the change map's dirty bytes. */
export function deviceStatusOf(state: DeviceState): ClientDeviceStatus {
  return {
    name: state.spec.name,
    path: state.spec.path,
    sizeBytes: state.spec.device.sizeBytes,
    wrl: state.spec.wrl,
    ackedLsn: state.ackedLsn,
    writes: state.writes,
    bytesWritten: state.bytesWritten,
    zeroedBytes: state.zeroedBytes,
    inflightWrites: state.inflightWrites,
    failedWrites: state.failedWrites,
    dirtyBytes: state.spec.changeMap?.dirtyBytes ?? null,
  };
}
