/**
 * Verify probes on the replica (docs/pipeline.md "Resync sets and verify probes"): a probe names
 * a range of a client device and carries one sha256 digest per block, taken by the client at a
 * point of the write order. When apply reaches the same point (apply.ts orders the probe like a
 * write of its range), the replica reads its own range, digests each block, and reports the
 * blocks that differ. It writes nothing.
 *
 * Outcomes go back to staging in shipAck.verified, at most verifyOutcomesPerAckMax and about
 * replicaVerifyAckBytesMax of them per ack (VerifyOutbox): the ack is one frame header. For the
 * same reason an outcome lists at most replicaVerifyRangesMax ranges (below the protocol's
 * verifyRangesMax), past which it reports the whole probe range. What is NOT guaranteed: an outcome reaches staging. It is kept in memory only,
 * so a replica restart, or a relay connection lost before the ack carrying it, loses it (the
 * probe's shipment is applied and acknowledged, so it is not evaluated again): the client must
 * treat a probe without an answer after a while as unanswered and probe again.
 */
import { assert } from "../../assert.ts";
import { replicaVerifyAckBytesMax, replicaVerifyOutcomeFixedBytes, replicaVerifyRangeBytes, replicaVerifyRangesMax, replicaVerifyReadBytes, verifyOutcomesPerAckMax } from "../../constants.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { sharedBufferPool } from "../../io/buffer-pool.ts";
import { verifyBlockBytesOf, verifyDigestBytes, type ByteRange, type ShipAckMessage, type ShipRecord, type VerifyOutcome } from "../../protocol/messages.ts";
import { replicaVerifyPiecesInflightMax } from "../../verify-constants.ts";
import type { ProbeCheck, ReplicaDevice } from "./apply.ts";
import { Slots } from "../../io/slots.ts";

/**
 * Pieces being read or hashed at once, over every probe of this process. Apply runs up to
 * replicaApplyWritesInflightMax probes of a group at once; each reads and hashes one piece at a
 * time under a slot, so a few pieces keep the disk and the (one) hashing thread busy while the
 * read buffers, lent by the process's pool and given back after hashing, stay few: fresh ones
 * cost a page fault and a clear per 4 KiB, a fifth of the replica's CPU in a verify.
 */
const pieceSlots = new Slots(replicaVerifyPiecesInflightMax);

/** `length` bytes at `offset` of `device`, in a buffer lent by the pool where the device reads into one. */
async function readPiece(device: BlockDevice, offset: number, length: number): Promise<Uint8Array> {
  if (device.readInto === undefined) return device.read(offset, length);
  const buffer = sharedBufferPool.take(length, 0);
  try {
    await device.readInto(offset, buffer);
  } catch (error) {
    sharedBufferPool.give(buffer);
    throw error;
  }
  return buffer;
}

/**
 * Reads the probe's range of `target` (in pieces of replicaVerifyReadBytes), compares each block's
 * sha256 with the probe's digest, and leaves the outcome in `probe.outcome`: the differing
 * blocks merged into ranges, or the whole range when they make more than replicaVerifyRangesMax.
 */
export async function evaluateProbe(record: ShipRecord, target: ReplicaDevice, probe: ProbeCheck): Promise<void> {
  const blockBytes = verifyBlockBytesOf(record.flags);
  const blockCount = record.length / blockBytes;
  assert(Number.isInteger(blockCount) && probe.digests.length === blockCount * verifyDigestBytes, "the protocol checked the probe's length and digests");
  const differing: ByteRange[] = [];
  const actual = new Uint8Array(verifyDigestBytes);
  let tooMany = false;
  const end = record.offset + record.length;
  for (let pieceOffset = record.offset; pieceOffset < end && !tooMany; pieceOffset += replicaVerifyReadBytes) {
    await pieceSlots.take();
    let piece: Uint8Array | undefined;
    try {
      piece = await readPiece(target.device, pieceOffset, Math.min(replicaVerifyReadBytes, end - pieceOffset));
      tooMany = compareBlocks(piece, pieceOffset, record.offset, blockBytes, probe.digests, actual, differing);
    } finally {
      if (piece !== undefined) sharedBufferPool.give(piece);
      pieceSlots.give();
    }
  }
  probe.outcome = {
    device: record.device,
    lsn: record.lsn,
    offset: record.offset,
    length: record.length,
    differing: tooMany ? [{ offset: record.offset, length: record.length }] : differing,
  };
}

/**
 * Hashes each block of `piece` (at `pieceOffset` of the device; the probe starts at `probeOffset`)
 * and adds the blocks whose digest differs to `differing`, merged; true once a block would make
 * more than replicaVerifyRangesMax ranges (the caller then reports the whole probe range).
 */
function compareBlocks(piece: Uint8Array, pieceOffset: number, probeOffset: number, blockBytes: number, digests: Uint8Array, actual: Uint8Array, differing: ByteRange[]): boolean {
  for (let at = 0; at < piece.length; at += blockBytes) {
    const blockIndex = (pieceOffset - probeOffset + at) / blockBytes;
    Bun.SHA256.hash(piece.subarray(at, at + blockBytes), actual);
    if (sameDigest(actual, digests, blockIndex * verifyDigestBytes)) continue;
    const offset = pieceOffset + at;
    const last = differing[differing.length - 1];
    if (last !== undefined && last.offset + last.length === offset) last.length += blockBytes;
    else if (differing.length === replicaVerifyRangesMax) return true;
    else differing.push({ offset, length: blockBytes });
  }
  return false;
}

function sameDigest(actual: Uint8Array, digests: Uint8Array, at: number): boolean {
  for (let index = 0; index < verifyDigestBytes; index += 1) if (actual[index] !== digests[at + index]) return false;
  return true;
}

/** The outcomes of the probes among `writes`, in LSN order (those evaluated). */
export function probeOutcomes(writes: readonly { probe: ProbeCheck | undefined }[]): VerifyOutcome[] {
  const outcomes: VerifyOutcome[] = [];
  for (const write of writes) if (write.probe?.outcome !== undefined) outcomes.push(write.probe.outcome);
  return outcomes;
}

/** An upper bound of the CBOR bytes of `outcome` in a message header. */
export function outcomeBytesMax(outcome: VerifyOutcome): number {
  return replicaVerifyOutcomeFixedBytes + 3 * outcome.device.length + outcome.differing.length * replicaVerifyRangeBytes;
}

/**
 * Outcomes waiting for an ack, per WRL uuid, oldest first. Memory: one entry per probe evaluated
 * and not yet acknowledged; every ack of the WRL takes the oldest ones, up to
 * verifyOutcomesPerAckMax and replicaVerifyAckBytesMax (at least one).
 */
export class VerifyOutbox {
  readonly #waiting = new Map<string, VerifyOutcome[]>();

  add(wrlUuid: string, outcomes: readonly VerifyOutcome[]): void {
    if (outcomes.length === 0) return;
    const list = this.#waiting.get(wrlUuid);
    if (list === undefined) this.#waiting.set(wrlUuid, [...outcomes]);
    else list.push(...outcomes);
  }

  /** Outcomes waiting for this WRL (status). */
  count(wrlUuid: string): number {
    return this.#waiting.get(wrlUuid)?.length ?? 0;
  }

  /** `ack` with the WRL's oldest waiting outcomes in `verified` (none waiting: `ack` as given). */
  attach(wrlUuid: string, ack: ShipAckMessage): ShipAckMessage {
    const list = this.#waiting.get(wrlUuid);
    if (list === undefined) return ack;
    let count = 0;
    for (let bytes = 0; count < list.length && count < verifyOutcomesPerAckMax; count += 1) {
      bytes += outcomeBytesMax(list[count]!);
      if (count > 0 && bytes > replicaVerifyAckBytesMax) break;
    }
    const verified = list.splice(0, count);
    if (list.length === 0) this.#waiting.delete(wrlUuid);
    return { ...ack, verified };
  }
}
