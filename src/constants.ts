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
/**
 * Group commit: most bytes written (or being written) and not yet durable. 32 MiB was tried and
 * measured no faster here (the disk, not this bound, sets the pace) and raised the staging RSS.
 */
export const wrlUnflushedBytesMax = 8 * MiB;
/** Appends waiting for a batch; past this, append() waits (back-pressure). */
export const wrlPendingAppendsMax = 4096;
/**
 * Records cached in memory for the relay (no read-back in the steady state). It covers the relay's
 * window in flight plus a backlog; a relay further behind reads from disk. Bounded for the RSS
 * target of a staging process (about 300 MB with the pooled receive buffers and batch buffers).
 */
export const wrlCacheBytesMax = 48 * MiB;

assert(wrlSuperblockAreaBytes % wrlAlignmentBytes === 0, "superblock area must be aligned");
assert(wrlDeviceSizeBytesMin > wrlSuperblockAreaBytes, "WRL minimum must leave room for records");
assert(writePayloadSizeBytesMax + frameHeaderSizeBytesMax <= frameSizeBytesMax, "a max write must fit one frame");
assert(writePayloadSizeBytesMax <= wrlGroupCommitBytesMax, "a max write must fit one group commit");
assert(directIoAlignmentBytes % sectorSizeBytes === 0, "direct I/O alignment is whole sectors");

// ---- block devices: discard --------------------------------------------------------------------
/**
 * Writes up to this size to a buffered (page cache) device are done synchronously on the event
 * loop (a memory copy into the page cache); larger ones, and every O_DIRECT write, go through the
 * thread pool so the loop never waits for a transfer.
 */
export const pageCacheSyncWriteBytesMax = 64 * KiB;
/** Largest piece of one BLKDISCARD ioctl (it blocks the JS thread; pieces let the loop breathe). */
export const discardPieceSizeBytesMax = 256 * MiB;
assert(discardPieceSizeBytesMax % directIoAlignmentBytes === 0, "discard pieces stay block aligned");

// ---- protocol messages and transport (src/protocol/, src/io/transport.ts) ----------------------
/** Longest node id, device name or WRL name in a message, in UTF-16 code units. */
export const protocolNameLengthMax = 256;
/** Longest free text (error message, hint) in a message, in UTF-16 code units. */
export const protocolTextLengthMax = 4096;
/** Most feature names a hello may announce. */
export const protocolFeaturesMax = 32;
/** Deepest nesting of arrays and maps in a CBOR header (status replies are the deepest). */
export const protocolCborDepthMax = 16;
/** Most records in one shipment; the header bound (frameHeaderSizeBytesMax) usually binds first. */
export const shipRecordsMax = 2048;
/** How long connect() waits for the TCP or Unix connection to be established. */
export const connectTimeoutMs = 10_000;
/** Bytes queued on a connection before send() makes its caller wait (resolves later). */
export const connectionSendQueueBytesMax = 32 * MiB;
/** Bytes of received frames waiting for a reader before the socket stops reading. */
export const connectionInboxBytesMax = 32 * MiB;
/** How long a closing connection may take to flush its queue and see the peer's FIN. */
export const connectionLingerMs = 5_000;
/** Queued frames smaller than this are copied together into one socket write. */
export const socketWriteCoalesceBytesMax = 64 * KiB;
/**
 * Received bytes (all connections of a process) between two looks at the process's RSS; over
 * gcRssBytesThreshold, a full garbage collection frees the dead receive chunks (connection-socket.ts).
 */
export const gcNudgeReceivedBytes = 32 * MiB;
export const gcRssBytesThreshold = 200 * 1000 * 1000;
/** Buffers of at least this many bytes are lent from the process's BufferPool (src/io/buffer-pool.ts). */
export const bufferPoolPooledBytesMin = 64 * KiB;
/** Idle bytes a BufferPool keeps for reuse; buffers given back past this are left to the GC. */
export const bufferPoolIdleBytesMax = 24 * MiB;
/** Longest Unix socket path (sun_path is 108 bytes with the terminating NUL on Linux). */
export const unixSocketPathBytesMax = 107;

assert(connectionSendQueueBytesMax >= frameSizeBytesMax + 4, "one largest frame must fit the send queue");
assert(connectionInboxBytesMax >= frameSizeBytesMax + 4, "one largest frame must fit the inbox");
assert(frameHeaderSizeBytesMax <= 0x10000, "the header length is a u16 on the wire");

// ---- NBD server (src/nbd/) ----------------------------------------------------------------------
/**
 * Largest READ or WRITE payload the NBD server accepts, advertised as the maximum block size. 32 MiB
 * is the size every NBD client must be able to use (the spec's portable maximum payload).
 */
export const nbdRequestSizeBytesMax = 32 * MiB;
/** Preferred block size advertised to NBD clients (at least the device's logical block size). */
export const nbdPreferredBlockSizeBytes = 4 * KiB;
/** Longest NBD string (export name, description, error message): the spec's hard limit. */
export const nbdStringBytesMax = 4096;
/** Longest option payload during the NBD handshake (OPT_GO: name + info requests fit easily). */
export const nbdOptionDataBytesMax = 16 * KiB;
/** Most options one NBD client may send before choosing an export (a looping client is cut off). */
export const nbdOptionsPerConnectionMax = 1024;
/** How long an NBD client has from connecting to entering transmission. */
export const nbdHandshakeTimeoutMs = 10_000;
/** NBD requests being executed at once on one connection; past this the socket stops reading. */
export const nbdInflightRequestsMax = 256;
/**
 * Bytes held for one NBD connection: payloads of requests being executed plus replies not yet
 * handed to the kernel. Past this the socket stops reading (back-pressure on the client).
 */
export const nbdInflightBytesMax = 128 * MiB;
/** Replies smaller than this are copied together into one socket write (fewer syscalls). */
export const nbdReplyCoalesceBytesMax = 256 * KiB;
/** Zero buffer used to write zeroes (WRITE_ZEROES, TRIM fallback) in pieces of at most this. */
export const nbdZeroPieceBytesMax = 1 * MiB;
/** How long server close() waits for in-flight NBD requests before cutting connections. */
export const nbdCloseGraceMs = 30_000;

assert(nbdRequestSizeBytesMax % nbdPreferredBlockSizeBytes === 0, "NBD maximum payload is whole preferred blocks");
assert(nbdRequestSizeBytesMax <= deviceIoSizeBytesMax, "an NBD request must fit one device I/O");
assert(nbdInflightBytesMax >= 2 * nbdRequestSizeBytesMax, "two largest NBD requests must fit in flight");
assert(nbdOptionDataBytesMax >= 4 + nbdStringBytesMax + 2 + 2 * 16, "an OPT_GO with a longest name must fit");
assert(nbdZeroPieceBytesMax <= nbdRequestSizeBytesMax && nbdZeroPieceBytesMax % nbdPreferredBlockSizeBytes === 0, "zero pieces are whole blocks");

// ---- write log (WRL) on-disk format and internals (src/wrl/) -----------------------------------
/** One superblock copy; two live in the superblock area (at 0 and at half the area). */
export const wrlSuperblockCopyBytes = 8 * KiB;
/** Header at the start of every secondary WRL device: names the WRL and the device's index. */
export const wrlSecondaryHeaderAreaBytes = 4 * KiB;
/** Record header at the start of a record's first 4 KiB block; the payload follows it. */
export const wrlRecordHeaderBytes = 160;
/** Longest device name (UTF-8) a record can carry when the device is named, not numbered. */
export const wrlDeviceNameBytesMax = 64;
/** Longest path hint (UTF-8) the superblock keeps for each device. */
export const wrlPathHintBytesMax = 192;
/** Bytes appended but not yet durable; past this append() waits (back-pressure). */
export const wrlPendingBytesMax = 64 * MiB;
/** The head is checkpointed at least this often (bytes appended), bounding the recovery scan. */
export const wrlCheckpointIntervalBytes = 64 * MiB;
/** Reads of the log from disk (recovery scan, relay cache misses) fetch at least this much. */
export const wrlReadAheadBytes = 1 * MiB;
/** Payload budget of one WriteLog.read() call when the caller gives none. */
export const wrlReadBytesDefault = 8 * MiB;
/** Most records one WriteLog.read() call returns. */
export const wrlReadRecordsMax = 4096;
/**
 * Group commit hands records to the device in writes of about this size, each issued as soon as
 * its records are checksummed; a flush covers whatever writes completed before it started.
 */
export const wrlWriteChunkBytes = 256 * KiB;

assert(wrlSuperblockCopyBytes * 2 <= wrlSuperblockAreaBytes, "both superblock copies fit the area");
assert(wrlSuperblockCopyBytes % wrlAlignmentBytes === 0 && wrlSecondaryHeaderAreaBytes % wrlAlignmentBytes === 0, "WRL metadata is whole aligned blocks");
assert(wrlRecordHeaderBytes + wrlDeviceNameBytesMax <= wrlAlignmentBytes, "a record header fits its first block");
assert(wrlPendingBytesMax >= wrlGroupCommitBytesMax, "one full batch may be pending");
assert(wrlUnflushedBytesMax >= wrlGroupCommitBytesMax && wrlPendingBytesMax >= wrlUnflushedBytesMax, "a full batch may be in flight");
assert(wrlReadAheadBytes % wrlAlignmentBytes === 0, "read-ahead is whole blocks");
assert(wrlWriteChunkBytes % wrlAlignmentBytes === 0 && wrlWriteChunkBytes <= wrlGroupCommitBytesMax, "write chunks are whole blocks within a batch");

// ---- pipeline messages (src/protocol/specs-*.ts) -----------------------------------------------
/**
 * Largest range one ZERO record or zero write (TRIM / WRITE_ZEROES) covers. No payload travels
 * with it, so it may be far larger than a data write; the replica applies it in pieces.
 */
export const zeroRecordBytesMax = 1024 * MiB;
/** Most devices a resumeAck or a shipment may list (the header bound can bind first with long names). */
export const protocolDevicesMax = 256;
/** Largest logical block size an attach may declare (devices have 512 or 4096). */
export const protocolLogicalBlockSizeBytesMax = 64 * KiB;
/** Largest range one verify probe covers (its payload: one 32-byte digest per block). */
export const verifyRangeBytesMax = 64 * MiB;
/** Smallest and largest block of a verify probe's digests. */
export const verifyBlockBytesMin = 512;
export const verifyBlockBytesMax = 1 * MiB;
/** Most differing ranges one verify outcome lists (more: the whole probe range is reported). */
export const verifyRangesMax = 1024;
/** Most verify outcomes one shipAck carries. */
export const verifyOutcomesPerAckMax = 256;

assert(zeroRecordBytesMax >= writePayloadSizeBytesMax, "a zero record covers at least what a data record does");
assert(Number.isSafeInteger(shipRecordsMax * zeroRecordBytesMax), "a shipment's extents stay safe integers");
assert((verifyRangeBytesMax / verifyBlockBytesMin) * 32 <= writePayloadSizeBytesMax, "a verify probe's digests fit one write");
assert(protocolLogicalBlockSizeBytesMax >= sectorSizeBytes && protocolLogicalBlockSizeBytesMax <= writePayloadSizeBytesMax, "one logical block fits a write");

// ---- client role (src/roles/client/) -----------------------------------------------------------
/** NBD writes (and zero requests) the client has between overlap gate and completion, all devices. */
export const clientInflightWritesMax = 1024;
/** Payload bytes of those writes held for a possible resend; past this new writes wait. */
export const clientInflightBytesMax = 256 * MiB;
/** Reconnect backoff towards staging: first delay, doubled each failure up to the maximum. */
export const clientReconnectDelayMsMin = 100;
export const clientReconnectDelayMsMax = 1_000;
/** How long staging has to answer all attach requests of a connection. */
export const clientAttachTimeoutMs = 10_000;
/** On SIGTERM/SIGINT: how long in-flight writes may take to finish before they are failed. */
export const clientShutdownWaitMs = 10_000;
/** A write staging refused with BUSY is sent again after this long. */
export const clientBusyRetryDelayMs = 200;

assert(clientInflightBytesMax >= nbdRequestSizeBytesMax, "one largest NBD write must fit in flight");
assert(clientReconnectDelayMsMin > 0 && clientReconnectDelayMsMin <= clientReconnectDelayMsMax, "reconnect backoff bounds are ordered");
/**
 * Epochs the client reserves in its state file ahead of use, so a restart after a crash starts
 * above every epoch the dead process handed out; re-reserved when half is used.
 */
export const clientEpochReserve = 1_000_000;
/** How often the client checks its epoch reservation and saves its state file. */
export const clientStateSaveIntervalMs = 1_000;
/**
 * Disconnected mode (with --changemap): a write staging has not acknowledged within this long
 * sends the client into disconnected mode (the write completes locally, its blocks marked in the
 * change map), so the application never stalls longer. `--ack-timeout` overrides it.
 */
export const clientAckTimeoutMsDefault = 5_000;
/** While disconnected with the link up (e.g. after "WRL full"), a resync is tried this often. */
export const clientResyncRetryMs = 2_000;
/** Resync: longest chunk (one read, record, ack); bytes and chunks in flight (after a disconnect
 *  mostly 4 KiB blocks, hundreds per group commit at staging; each holds a range in the overlap
 *  gate, scanned linearly); the smallest chunk and in-flight bytes after repeated "WRL full". */
export const clientResyncChunkBytes = 4 * MiB;
export const clientResyncInflightBytesMax = 16 * MiB;
export const clientResyncChunksInflightMax = 512;
export const clientResyncChunkBytesMin = 64 * KiB;
assert(clientResyncChunkBytesMin <= clientResyncChunkBytes && clientResyncChunkBytes <= Math.min(writePayloadSizeBytesMax, clientResyncInflightBytesMax) && clientResyncInflightBytesMax <= connectionSendQueueBytesMax, "resync chunk and in-flight bounds are ordered");
/** Clears of the change map (lazily durable) are made durable at least this often. */
export const clientChangeMapSyncIntervalMs = 5_000;
/** Activity log (--changemap): bytes one extent covers (bigger: fewer log writes, more to resync after a crash). */
export const clientActivityExtentBytes = 4 * MiB;
/** Extent ranges (slots) it holds at most (LRU); an idle one is dropped after clientActivityColdMs. */
export const clientActivitySlotsMax = 256;
export const clientActivityColdMs = 10_000;
/** A sequential stream entering a new extent activates this many at once (one log write each). */
export const clientActivitySequentialExtents = 4;
/** One copy of the activity log (two, written alternately): header, slot table, CRC. */
export const clientActivityCopyBytes = 8 * KiB;
assert(clientActivityExtentBytes % directIoAlignmentBytes === 0 && clientActivityExtentBytes >= nbdRequestSizeBytesMax / 8, "activity extents are whole blocks and not tiny");
assert(64 + clientActivitySlotsMax * 16 + 4 <= clientActivityCopyBytes && clientActivityCopyBytes % directIoAlignmentBytes === 0, "the slot table fits one aligned activity-log copy");
assert(clientActivitySequentialExtents >= 1 && clientActivitySequentialExtents * 4 <= clientActivitySlotsMax, "sequential read-ahead leaves room in the log");
/** Crash recovery (crash-recovery.ts): verify passes over recovered extents at once; after this long unverified, they are marked dirty instead. */
export const clientCrashRecoveryPassesMax = 4;
export const clientCrashRecoveryVerifyTimeoutMs = 300_000;

// ---- replica (src/roles/replica/, src/commands/restore.ts) ---------------------------------------
/** Default ports of `druvaa replica apply` (the original product's install guide). */
export const replicaDataPortDefault = 6003;
export const replicaControlPortDefault = 6004;
export const replicaRestorePortDefault = 6005;
/** Shipments waiting to be applied, over all relay connections; past this a shipment gets BUSY. */
export const replicaShipQueueMax = 64;
/** Payload bytes of the shipments waiting to be applied; past this a shipment gets BUSY. */
export const replicaShipQueueBytesMax = 96 * MiB;
/** Shipments one relay connection may have queued or applying; past this the replica stops reading it. */
export const replicaConnectionShipWindowMax = 8;
/** Device writes of one shipment issued at once (non-overlapping records run in parallel). */
export const replicaApplyWritesInflightMax = 32;
/**
 * Shipments applied as one group, and their payload bytes: one flush and one state save for all
 * of them (the state save alone is two fsyncs), then every one is acked. Past either bound the
 * group ends and the next shipments form the next group. Half a relay connection's window, so
 * the relay keeps shipping the next group while this one is flushed and saved.
 */
export const replicaApplyGroupShipmentsMax = 4;
export const replicaApplyGroupBytesMax = 8 * MiB;
/** Piece size of the zeros written for a ZERO record where a discard might not read back zeros. */
export const replicaZeroPieceBytes = 1 * MiB;
/** Bytes of a verify probe's range read (and digested) at once; whole verify blocks of any size. */
export const replicaVerifyReadBytes = 4 * MiB;
/**
 * Differing ranges one verify outcome lists at most; past it the whole probe range is reported.
 * Below verifyRangesMax: a range costs up to ~29 bytes of CBOR, so 4096 of them do not fit the
 * header of a shipAck (or of staging's verifyReport), which is bounded by frameHeaderSizeBytesMax.
 */
export const replicaVerifyRangesMax = 1024;
/** Estimated CBOR bytes of the verify outcomes one shipAck carries (the rest go with the next acks). */
export const replicaVerifyAckBytesMax = 48 * KiB;
/** Upper bounds of the CBOR bytes of one outcome: fixed fields (+ the device name) and each range. */
export const replicaVerifyOutcomeFixedBytes = 96;
export const replicaVerifyRangeBytes = 29;
/**
 * Payload bytes of a resync set read back from the replica WRL (RS-WRL) and applied at once when
 * the set is complete; the next piece is applied after it (LSN order across pieces).
 */
export const replicaSetApplyReadBytes = 32 * MiB;
/** Bytes per restoreData message: read, hashed and sent as one chunk. */
export const restoreChunkBytes = 4 * MiB;
/** How long a restore may wait for its receiver to take a chunk (apply is paused meanwhile). */
export const restoreStallTimeoutMs = 60_000;
/** How long a restore connection has, after the handshake, to ask for a device. */
export const restoreRequestTimeoutMs = 10_000;

assert(restoreChunkBytes <= writePayloadSizeBytesMax && restoreChunkBytes % directIoAlignmentBytes === 0, "a restore chunk fits one message and stays block aligned");
assert(replicaZeroPieceBytes % directIoAlignmentBytes === 0, "zero pieces are whole blocks");
assert(replicaVerifyReadBytes % verifyBlockBytesMax === 0, "a verify read piece holds whole verify blocks of every size");
assert(replicaVerifyRangesMax <= verifyRangesMax, "the replica lists no more ranges than the protocol allows");
assert(replicaVerifyOutcomeFixedBytes + 3 * protocolNameLengthMax + replicaVerifyRangesMax * replicaVerifyRangeBytes <= replicaVerifyAckBytesMax, "one largest outcome fits an ack");
assert(replicaVerifyAckBytesMax + 4 * KiB <= frameHeaderSizeBytesMax, "an ack with its outcomes fits a frame header");
assert(replicaSetApplyReadBytes >= writePayloadSizeBytesMax, "a set apply piece holds the largest record");
assert(replicaApplyGroupShipmentsMax >= 1 && replicaApplyGroupShipmentsMax <= replicaConnectionShipWindowMax, "an apply group fits what one relay connection sends");
assert(replicaShipQueueBytesMax >= replicaConnectionShipWindowMax * writePayloadSizeBytesMax, "one relay's full window fits the apply queue");
/** Chunks `druvaa restore` writes to its target at once (sequential, non-overlapping). */
export const restoreWritesInflightMax = 4;

// ---- staging server (src/roles/staging/) ---------------------------------------------------------
/** Default ports of `druvaa staging serve` (the original product's install guide). */
export const stagingDataPortDefault = 6001;
export const stagingControlPortDefault = 6002;
/** Writes of one client connection appended and not yet answered; past this the connection stops being read. */
export const stagingSessionInflightWritesMax = 1024;
/** Payload bytes of those writes; past this the connection stops being read. */
export const stagingSessionInflightBytesMax = 256 * MiB;
/** Payload budget of one shipment to the replica (one record larger than this travels alone). */
export const stagingShipmentBytesMax = 2 * MiB;
/** Estimated CBOR header bytes of one shipment; records past it go in the next shipment. */
export const stagingShipmentHeaderBytesMax = frameHeaderSizeBytesMax - 4 * KiB;
/**
 * Shipments a relay has sent and not yet seen answered (the window): two of the replica's apply
 * groups (replicaApplyGroupShipmentsMax), so the next group is on its way while one is flushed.
 */
export const stagingRelayWindowMax = 8;
/** Relay reconnect backoff towards the replica: first delay, doubled each failure up to the maximum. */
export const stagingRelayDelayMsMin = 100;
export const stagingRelayDelayMsMax = 5_000;
/** A relay with nothing to ship looks at its WRL at least this often (appends also wake it at once). */
export const stagingRelayIdlePollMs = 1_000;
/** How long the replica has to answer `resume`. */
export const stagingResumeTimeoutMs = 10_000;
/** Lag bookkeeping: appends within this long of each other share one entry (bounds lagSeconds' error). */
export const stagingLagSampleIntervalMs = 100;
/** Lag bookkeeping entries per WRL; past this neighbours are merged (coarser, still an upper bound). */
export const stagingLagRangesMax = 65_536;
/** On SIGTERM: how long appends in flight may take to finish before the WRLs are closed anyway. */
export const stagingShutdownWaitMs = 30_000;

assert(stagingRelayWindowMax <= replicaConnectionShipWindowMax, "the relay window fits what one replica connection takes");
assert(stagingShipmentBytesMax <= writePayloadSizeBytesMax && stagingShipmentBytesMax * stagingRelayWindowMax <= replicaShipQueueBytesMax, "a full window of shipments fits the replica's apply queue");
assert(stagingShipmentHeaderBytesMax < frameHeaderSizeBytesMax, "estimated shipment headers leave a margin under the frame header bound");
assert(stagingRelayDelayMsMin > 0 && stagingRelayDelayMsMin <= stagingRelayDelayMsMax, "relay backoff bounds are ordered");
assert(stagingSessionInflightBytesMax >= writePayloadSizeBytesMax, "one largest write fits a session's in-flight bytes");

// ---- change map (src/changemap/) ------------------------------------------------------------------
/** One copy of the change-map header; two live at the start of the map (at 0 and at this offset). */
export const changeMapHeaderCopyBytes = 16 * KiB;
/** Both header copies; the first region's bitmap starts right after. */
export const changeMapHeaderAreaBytes = 2 * changeMapHeaderCopyBytes;
/** Most regions (client devices) one change-map file or device may hold. */
export const changeMapRegionsMax = 48;
/** Longest region name (UTF-8 bytes). */
export const changeMapRegionNameBytesMax = 64;
/** Longest device identity a region may record (UTF-8 bytes), e.g. a /dev/disk/by-id name. */
export const changeMapDeviceIdentityBytesMax = 128;
/** Volume bytes one bit covers: default, and bounds (always a power of two). */
export const changeMapBlockSizeBytesDefault = 4 * KiB;
export const changeMapBlockSizeBytesMin = 512;
export const changeMapBlockSizeBytesMax = 64 * MiB;
/** Each region's bitmap starts at a multiple of this (whole 4 KiB sectors for O_DIRECT). */
export const changeMapBitmapAlignmentBytes = 4 * KiB;
/** All bitmaps of one map, held in memory while it is open (16 TiB of volumes at 4 KiB a bit). */
export const changeMapBitmapBytesTotalMax = 512 * MiB;
/** Largest single write of bitmap sectors (adjacent changed sectors are written together). */
export const changeMapWriteBytesMax = 1 * MiB;
/** Bitmap writes of one group commit issued at once. */
export const changeMapWritesInflightMax = 16;
/** Dirty ranges `druvaa changemap info` lists per region. */
export const changeMapInfoRangesMax = 16;

assert(changeMapHeaderCopyBytes % changeMapBitmapAlignmentBytes === 0, "header copies are whole aligned sectors");
assert(128 + changeMapRegionsMax * 256 + 4 <= changeMapHeaderCopyBytes, "the region table fits one header copy");
assert(2 + changeMapRegionNameBytesMax <= 72 && 122 + changeMapDeviceIdentityBytesMax <= 256, "region entry fields fit 256 bytes");
assert(changeMapBitmapAlignmentBytes % directIoAlignmentBytes === 0, "bitmaps are O_DIRECT aligned");
assert(changeMapBlockSizeBytesMin >= sectorSizeBytes && changeMapBlockSizeBytesMin <= changeMapBlockSizeBytesDefault && changeMapBlockSizeBytesDefault <= changeMapBlockSizeBytesMax, "change-map block sizes are ordered");
assert(changeMapWriteBytesMax % changeMapBitmapAlignmentBytes === 0 && changeMapWriteBytesMax <= deviceIoSizeBytesMax, "bitmap writes are whole aligned sectors within one device I/O");
assert(changeMapBitmapBytesTotalMax % changeMapBitmapAlignmentBytes === 0, "the bitmap bound is whole sectors");
