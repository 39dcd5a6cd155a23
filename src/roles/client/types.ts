/**
 * The types of the client's write path (core.ts): devices, options, status shapes, and the
 * per-device and per-write bookkeeping the core keeps.
 */
import type { ActiveRange } from "../../changemap/activity-log.ts";
import type { ChangeMapRegion } from "../../changemap/index.ts";
import type { DruvaaError } from "../../errors.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import type { WriteAckMessage, WriteMessage, WriteNackMessage } from "../../protocol/messages.ts";
import type { ConsolaInstance } from "consola/basic";

export interface ClientDevice {
  /** Device name: the NBD export name and the name staging logs it under. */
  readonly name: string;
  /** Where it lives (shown in status). */
  readonly path: string;
  /** The WRL (consistency group) it is attached to. */
  readonly wrl: string;
  readonly device: BlockDevice;
  /** True when discard() makes the range read zeros (image files, memory): zeroing may discard. */
  readonly discardReadsZeros: boolean;
  /** Its region of the change map (--changemap): enables disconnected mode and resync. */
  readonly changeMap?: ChangeMapRegion;
}

/** connected: every write is logged at staging; disconnected: writes are marked in the change
 *  map and completed locally; resyncing: writes are logged again while dirty blocks are sent. */
export type ClientMode = "connected" | "disconnected" | "resyncing";

/** What the core needs from a live connection to staging. */
export interface StagingSender {
  /** Queues a frame; delivery is confirmed by writeAck, not by this call. */
  send(message: WriteMessage, payload: Uint8Array | undefined): void;
}

export type WriteReply = WriteAckMessage | WriteNackMessage;

/** The client's replication mode, for status and `druvaa resync`. */
export interface ClientModeStatus {
  mode: ClientMode;
  /** A change map is attached (disconnected mode is possible). */
  changeMap: boolean;
  /** Since when writes have not all been logged at staging (0 when connected). */
  disconnectedSeconds: number;
  disconnectReason: string | null;
  /** Dirty bytes over every device (null without a change map). */
  dirtyBytes: number | null;
  resync: { sentBytes: number; remainingBytes: number; seconds: number } | null;
  lastResync: { outcome: string; sentBytes: number; seconds: number } | null;
  /** Devices whose resync set may still be open at the replica (a resyncEnd is due). */
  resyncSetsOpen: string[];
}

/** Timers, passed in so a simulation can drive them. */
export interface ClientTimers {
  /** Runs `fn` after `delayMs`; returns a function that cancels it. */
  schedule(delayMs: number, fn: () => void): () => void;
  /** Milliseconds since some fixed point (default Date.now). */
  now?(): number;
}

export const realTimers: ClientTimers = {
  schedule(delayMs, fn) {
    const handle = setTimeout(fn, delayMs);
    return () => clearTimeout(handle);
  },
  now: () => Date.now(),
};

export interface ClientCoreOptions {
  devices: readonly ClientDevice[];
  /** First epoch handed out (one past the highest an earlier run used, when known). Default 1. */
  startEpoch?: number;
  timers?: ClientTimers;
  log?: ConsolaInstance;
  inflightWritesMax?: number;
  inflightBytesMax?: number;
  /** Disconnected mode: an unacknowledged write older than this diverts to the change map. */
  ackTimeoutMs?: number;
  /** Resync bandwidth, bytes per second (0: unlimited). */
  resyncRateBytesPerSecond?: number;
  /** Called after a resync pass left every region clean (the caller makes the clears durable). */
  onResynced?: () => void;
  /** Devices whose resync set the last run may have left open: the first pass ends them. */
  resyncSetsOpen?: readonly string[];
  /** After a crash, where the extents cannot be verified: what recoverActiveExtents() does (default: mark the ranges dirty; crash-recovery.ts). */
  recoverActiveExtents?: (ranges: readonly ActiveRange[], devices: readonly ClientDevice[]) => Promise<void>;
}

/** Per-device counters, kept by the core and shown in status. */
export interface DeviceCounters {
  /** Highest LSN staging acked for this device (0: none yet). */
  ackedLsn: number;
  /** NBD writes, TRIMs and WRITE_ZEROES completed successfully. */
  writes: number;
  /** Data bytes of those writes. */
  bytesWritten: number;
  /** Bytes zeroed by TRIM / WRITE_ZEROES. */
  zeroedBytes: number;
  /** NBD write requests between admission and reply. */
  inflightWrites: number;
  /** Requests that ended in an error reply. */
  failedWrites: number;
}

export interface ClientDeviceStatus extends DeviceCounters {
  name: string;
  path: string;
  sizeBytes: number;
  wrl: string;
  /** Bytes marked dirty in the change map and not yet resynced (null: no change map). */
  dirtyBytes: number | null;
}

export interface DeviceState extends DeviceCounters {
  readonly spec: ClientDevice;
}

/** One `write` message to staging, from send to ack. */
export interface PendingWrite {
  readonly message: WriteMessage;
  readonly payload: Uint8Array | undefined;
  readonly state: DeviceState;
  readonly resolve: (lsn: number) => void;
  readonly reject: (error: DruvaaError) => void;
  /** Cancels a scheduled resend after a transient answer (BUSY, SHUTTING_DOWN, IO_ERROR, ...). */
  cancelRetry?: () => void;
  /** Handed to a sender at least once. */
  sent?: boolean;
  /** Sent on a connection that is gone: staging may have logged it without our seeing the ack. */
  mayBeLogged?: boolean;
  /** When it was last handed to a sender (for the ack timeout). */
  sentAt?: number;
}
