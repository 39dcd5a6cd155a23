/**
 * Every bound in druvaa, in one place, units last in the name (TigerBeetle `constants.zig`).
 * Related limits are asserted against each other when this module loads.
 */
import { assert } from "./assert.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

// ---- block devices -----------------------------------------------------------------------------
/** Sector size assumed for image files and in-memory devices. */
export const sectorSizeBytes = 512;
/** Alignment for O_DIRECT buffers and WRL records. */
export const directIoAlignmentBytes = 4 * KiB;
/** Largest single read/write issued to a device by druvaa itself. */
export const deviceIoSizeBytesMax = 32 * MiB;

// ---- protocol -----------------------------------------------------------------------------------
/** Magic at the start of every druvaa connection: "DRVA". */
export const protocolMagic = 0x44525641;
/** Wire protocol version; a peer with another major version is refused at handshake. */
export const protocolVersion = 1;
/** Largest frame (length prefix excluded): header + payload. */
export const frameSizeBytesMax = 8 * MiB + 64 * KiB;
/** Largest CBOR header inside a frame. */
export const frameHeaderSizeBytesMax = 64 * KiB;
/** Largest data payload of one write record. */
export const writePayloadSizeBytesMax = 8 * MiB;
/** How long a peer has to finish the handshake. */
export const handshakeTimeoutMs = 10_000;

// ---- write log (WRL) ---------------------------------------------------------------------------
/** WRL records and the superblock are aligned to this (O_DIRECT). */
export const wrlAlignmentBytes = 4 * KiB;
/** Superblock area at the start of the primary WRL device (two copies, alternately written). */
export const wrlSuperblockAreaBytes = 64 * KiB;
/** Smallest usable WRL device (superblock area + room for a few records). */
export const wrlDeviceSizeBytesMin = 1 * MiB;
/** Most devices one WRL may span (primary + secondaries). */
export const wrlDevicesMax = 16;
/** Group commit: most appends in one batch. */
export const wrlGroupCommitAppendsMax = 256;
/** Group commit: most bytes in one batch. */
export const wrlGroupCommitBytesMax = 8 * MiB;
/** Appends waiting for a batch; past this, append() waits (back-pressure). */
export const wrlPendingAppendsMax = 4096;
/** Records cached in memory for the relay (no read-back in the steady state). */
export const wrlCacheBytesMax = 64 * MiB;

assert(wrlSuperblockAreaBytes % wrlAlignmentBytes === 0, "superblock area must be aligned");
assert(wrlDeviceSizeBytesMin > wrlSuperblockAreaBytes, "WRL minimum must leave room for records");
assert(writePayloadSizeBytesMax + frameHeaderSizeBytesMax <= frameSizeBytesMax, "a max write must fit one frame");
assert(writePayloadSizeBytesMax <= wrlGroupCommitBytesMax, "a max write must fit one group commit");
assert(directIoAlignmentBytes % sectorSizeBytes === 0, "direct I/O alignment is whole sectors");
