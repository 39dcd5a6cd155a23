/**
 * The staging core's status (core.ts status(), served as GET /status by server.ts; the fields are
 * listed in docs/pipeline.md "Status"). Re-exported by core.ts, which importers use.
 */
import type { RateLimitStatus, ScheduleStatus } from "./relay-pacing.ts";
import type { RelayStatus } from "./relay-types.ts";
import type { RpoEvent, RpoStatus } from "./rpo.ts";

export interface StagingWrlStatus {
  name: string;
  uuid: string;
  devicePaths: string[];
  sizeBytes: number;
  usedBytes: number;
  freeBytes: number;
  fillRatio: number;
  headLsn: number;
  tailLsn: number;
  recordCount: number;
  pendingAppends: number;
  lagBytes: number;
  lagSeconds: number;
  /** Payload bytes appended since the start, and bytes the replica acknowledged since (lag.ts). */
  appendedBytes: number;
  ackedBytes: number;
  /** --rate-limit (null without one): the bucket this WRL's relay sends through, and its use. */
  rateLimit: RateLimitStatus | null;
  /** --schedule (null without one): whether shipping is allowed now, and when that changes. */
  schedule: ScheduleStatus | null;
  /** The RPO now, its trend, ETA to drain, and the state against --rpo (targetSeconds null without one). */
  rpo: RpoStatus;
  replica: RelayStatus;
  devices: { name: string; sizeBytes: number; clientNodeId: string; connected: boolean }[];
}

export interface StagingCoreStatus {
  wrls: StagingWrlStatus[];
  clients: { nodeId: string; address: string; inflightWrites: number; devices: { wrl: string; name: string }[] }[];
  /** Recent RPO state changes of every WRL, oldest first (at most stagingEventsMax, relay-rpo.ts). */
  events: RpoEvent[];
}
