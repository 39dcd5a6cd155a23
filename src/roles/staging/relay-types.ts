/**
 * What the relay (relay.ts) takes and reports: the connection and WRL it needs, its options and
 * its status (re-exported by relay.ts, which importers use); and the shapes of its shipments on
 * their way (relay.ts only).
 */
import type { ConsolaInstance } from "consola/basic";
import type { DruvaaError } from "../../errors.ts";
import type { Frame } from "../../protocol/frame.ts";
import type { Message, VerifyOutcome } from "../../protocol/messages.ts";
import type { ShipmentFrame } from "../../protocol/ship-codec.ts";
import type { Schedule } from "../../schedule.ts";
import type { WrlInfo, WrlRecord } from "../../wrl/types.ts";
import type { CompressionSetting, CompressionStatus } from "./compression.ts";
import type { LagTracker } from "./lag.ts";
import type { Clock } from "./relay-clock.ts";
import type { CoalesceSetting, CoalescingStatus } from "./relay-coalesce.ts";
import type { RateLimiter, RateLimitStatus, ScheduleStatus } from "./relay-pacing.ts";
import type { RpoEvent, RpoStatus } from "./rpo.ts";
import type { ShipmentLimits } from "./shipment.ts";

/** What the relay needs of a connection to the replica (a Connection is one). */
export interface RelayLink {
  send(message: Message, payload?: Uint8Array): Promise<void>;
  receive(timeoutMs?: number): Promise<Frame>;
  readonly closed: Promise<DruvaaError | undefined>;
  close(reason?: DruvaaError): Promise<void>;
  abort(reason?: DruvaaError): void;
}

/** What the relay needs of the WRL (a WriteLog is one). */
export interface RelayWrl {
  info(): WrlInfo;
  read(fromLsn: number, maxBytes?: number): Promise<WrlRecord[]>;
  advanceTail(lsn: number): Promise<void>;
}

export interface LastError {
  code: string;
  message: string;
  hint?: string;
  at: string;
}

export interface RelayStatus {
  address: string;
  connected: boolean;
  /** The last LSN the replica acknowledged (or, before it said, what this WRL freed). */
  appliedLsn: number;
  lastError: LastError | null;
  /**
   * Since when (ISO time) the replica has refused this WRL as failed over (druvaa failover; the
   * records wait here until druvaa failback), or null: relay-retry.ts.
   */
  failedOverSince: string | null;
  /** Shipments sent and not answered yet. */
  inflightShipments: number;
  /** The replica's devices and sizes, from its last resumeAck (null before one). */
  replicaDevices: { name: string; sizeBytes: number }[] | null;
  /** Shipments sent since the start (resends after a reconnect included). */
  shipmentsShipped: number;
  /** Payload bytes those shipments put on the wire (after compression; frame headers not counted). */
  bytesShipped: number;
  /** The --compression setting, the level in use, and what it saved (ship-codec.ts). */
  compression: CompressionStatus;
  /** The --coalesce setting and what coalescing did (relay-coalesce.ts). */
  coalescing: CoalescingStatus;
  /** Whether the relay is held by a split (POST /wrl/split, split.ts): nothing ships until the join. */
  split: boolean;
}

/** A WRL's --rate-limit, --schedule and --rpo (relay-flags.ts); each optional. */
export interface RelayTargets {
  /** Paces every frame the relay sends (relay-pacing.ts); may be shared with other relays. */
  rateLimit?: RateLimiter;
  /** Outside its windows the relay ships nothing. */
  schedule?: Schedule;
  /** The RPO target (relay-rpo.ts). */
  rpoTargetSeconds?: number;
}

/** The status of those targets: null for the ones not set; rpo always (its target may be null). */
export interface RelayTargetStatus {
  rateLimit: RateLimitStatus | null;
  schedule: ScheduleStatus | null;
  rpo: RpoStatus;
}

export interface RelayOptions {
  /** The WRL's name (--wrl NAME=…) and uuid. */
  name: string;
  uuid: string;
  wrl: RelayWrl;
  /** The replica's address as the user gave it (status, messages). */
  address: string;
  /** Opens a connection to the replica and completes the handshake. */
  dial: () => Promise<RelayLink>;
  /** Sizes of the devices attached to this WRL, declared in every shipment. */
  deviceSizes: () => ReadonlyMap<string, number>;
  lag: LagTracker;
  clock?: Clock;
  limits?: ShipmentLimits;
  windowMax?: number;
  /** zstd compression of shipments; default off (the staging command defaults to auto). */
  compression?: CompressionSetting;
  /** Coalescing of shipments (relay-coalesce.ts); default off (the staging command defaults to auto). */
  coalesce?: CoalesceSetting;
  log?: ConsolaInstance;
  /** Called with each verify outcome the replica reports in its acks. */
  onVerified?: (outcome: VerifyOutcome) => void;
  /** Bandwidth cap, schedule and RPO target; default none of them. */
  targets?: RelayTargets;
  /** Called with each change of the RPO state (relay-rpo.ts). */
  onEvent?: (event: RpoEvent) => void;
}

/** What the relay's #prepare did instead of preparing a shipment: nothing to ship, or records waiting for a window slot. */
export type NotPrepared = "idle" | "windowFull";

/** A shipment read from the WRL and being compressed (packed), not sent yet. */
export interface Packing {
  firstLsn: number;
  lastLsn: number;
  /** A coalesced span (ShipMessage.coalesced). */
  coalesced: boolean;
  /** A span part with more to come (ShipMessage.spanContinues): the replica answers it `held`. */
  spanContinues: boolean;
  /** The frame as it goes on the wire, and the pooled buffer it still uses (if any). */
  packed: Promise<{ frame: ShipmentFrame; pooled?: Uint8Array }>;
}

/** A shipment sent and not answered yet. */
export interface InflightShipment {
  firstLsn: number;
  lastLsn: number;
  coalesced: boolean;
  spanContinues: boolean;
  /** The recycled buffer the payload was copied into, if any: reusable once the replica acked. */
  pooled?: Uint8Array;
}
