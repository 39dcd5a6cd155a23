/**
 * The bounds of the online verify (src/roles/client/verify*.ts, src/roles/replica/verify.ts), kept
 * beside src/constants.ts (same conventions: units last, related limits asserted when the module
 * loads) because that file is at its size limit. The protocol's verify bounds stay there, and so
 * does replicaVerifyReadBytes.
 */
import { assert } from "./assert.ts";
import { bufferPoolIdleBytesMax, deviceIoSizeBytesMax, replicaVerifyReadBytes, verifyBlockBytesMax, verifyBlockBytesMin, verifyRangeBytesMax } from "./constants.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * Bytes of one probe: read, hashed and held in the overlap gate until staging acks it (fewer when
 * an outcome could otherwise list more ranges than the replica does: planProbes).
 */
export const clientVerifyChunkBytes = 8 * MiB;
/**
 * Probes being read, hashed or sent at once (each holds a chunk buffer: 64 MiB in all); probes
 * waiting for their outcome. Reads are O_DIRECT where they can be (direct-reader.ts): no kernel
 * read-ahead, so it is the probes in flight that keep the disk busy while one hashes (4 took a
 * fifth longer than 8 for 2 GiB here).
 */
export const clientVerifyProbesInflight = 8;
export const clientVerifyWindowChunks = 32;
/** Digest block of a verify pass when the device has no change map (with one: its block size). */
export const clientVerifyBlockBytesDefault = 64 * KiB;
/** Hashing yields to the event loop after this many bytes (NBD requests keep being served). */
export const clientVerifyHashSliceBytes = 1 * MiB;
/** A probe staging has not acked by then is given up (its range released) and sent again. */
export const clientVerifyAckTimeoutMs = 10_000;
/** A probe whose outcome has not come by then is sent again (doubling up to the maximum). */
export const clientVerifyReportTimeoutMs = 60_000;
export const clientVerifyReportTimeoutMsMax = 600_000;
/** Wait between tries while the link is down or the client is not connected, and after a refusal. */
export const clientVerifyRetryMs = 500;
/** Finished verify runs kept for GET /verify; differing ranges one run keeps for its report. */
export const clientVerifyRunsKept = 16;
export const clientVerifyRangesKeptMax = 65_536;

assert(clientVerifyChunkBytes <= verifyRangeBytesMax && clientVerifyChunkBytes <= deviceIoSizeBytesMax, "a verify chunk is one probe and one device read");
assert(clientVerifyBlockBytesDefault >= verifyBlockBytesMin && clientVerifyBlockBytesDefault <= verifyBlockBytesMax, "the default verify block is a valid probe block");
assert(clientVerifyReportTimeoutMs <= clientVerifyReportTimeoutMsMax && clientVerifyProbesInflight <= clientVerifyWindowChunks, "verify bounds are ordered");

/**
 * Replica: pieces of replicaVerifyReadBytes being read or hashed at once, over every probe of the
 * process (two keep the disk busy while one hashes; their buffers are reused through the pool).
 */
export const replicaVerifyPiecesInflightMax = 4;
assert(replicaVerifyPiecesInflightMax >= 2 && replicaVerifyPiecesInflightMax * replicaVerifyReadBytes <= bufferPoolIdleBytesMax, "replica verify read buffers stay reusable in the pool");
