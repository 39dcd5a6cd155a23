/**
 * When and how much the relay coalesces (`druvaa staging serve --coalesce off|auto`): the span
 * policy (a pure function) and the relay's coalescing state (RelayCoalescing: the replica's
 * capability, a hold after a refusal, the status counters). coalesce.ts does the merging.
 *
 * Policy (coalesceSpanBytes), first row that applies; the answer is the most data bytes of WRL
 * records one coalesced span takes in (0: ship records as they are):
 *
 *   condition                                                  span
 *   --coalesce off, or the replica did not say it takes them   0 (a replica without an RS-WRL
 *     (resumeAck.acceptsCoalesced)                               cannot apply a span atomically)
 *   the RPO target is at risk or missed (relay-rpo.ts)         spanBytesMax
 *   lag (bytes appended, not acknowledged) < lagBytesMin and   0: the link keeps up, ship each
 *     the oldest record not acknowledged is < lagSecondsMin      record at once (lowest RPO)
 *     old (lagSeconds, lag.ts) and the relay's window was not
 *     full in the last windowFullRecentMs
 *   otherwise                                                  the lag, within [2 shipments,
 *                                                                spanBytesMax]: the further behind,
 *                                                                the larger the span (fewer bytes;
 *                                                                the records wait for the link
 *                                                                anyway)
 *
 * Why lagSeconds: it says how the link keeps up, whatever its speed. A record that has waited a
 * second (the relay was window- or rate-limit-bound, or the link is slow) means the records read
 * now wait behind a second's worth of shipments anyway; a span only reorders that wait inside the
 * span (its first records are acknowledged with its last, which come sooner: fewer bytes). On a
 * fast link that keeps up, lagSeconds stays well under a second and nothing is coalesced, so the
 * RPO is not touched; lagBytesMin stays as the trigger for a burst that outruns the link before a
 * second has passed. A window that filled up (stagingRelayWindowMax shipments unanswered) says the
 * same at once: records wait for the link or the replica, so the span costs no RPO, and a burst is
 * coalesced from its first shipments on rather than after 16 MiB went out as they were.
 *
 * A span's input (spanBytes of record data) may cover many shipments' worth of records: it is
 * merged (overwrites inside the span cost nothing, so the merged payload is often much smaller
 * than the input) and sent as parts of at most one frame each (coalescedPayloadBytesMax of
 * payload; coalesce.ts cuts them at LSN boundaries): every part but the last says
 * `spanContinues`, the replica logs each in its RS-WRL, answers it `held`, and applies the span
 * atomically with its last part. The parts after the first wait here (queued) and go out one by
 * one as the window lets them, like any shipment; a session that ends drops them (the next one
 * resumes where the replica applied, the span's start, and builds anew).
 *
 * Refusals (RelayCoalescing.refused): a coalesced shipment answered RS_WRL_FULL (the replica WRL
 * cannot hold it) holds coalescing off up to that shipment's last LSN, so the records go as they
 * are and the relay always makes progress; RS_WRL_NEEDED (no RS-WRL after all) holds it off until
 * the next resumeAck says otherwise.
 *
 * Not guaranteed: a span as large as spanBytesMax — it also ends where its merged payload, its
 * extents or their header would no longer fit one frame (coalesce.ts), at the WRL's head, and
 * before any record that must not be coalesced.
 */
import { assert } from "../../assert.ts";
import { writePayloadSizeBytesMax } from "../../constants.ts";
import type { ShipNackCode } from "../../protocol/messages.ts";
import { usageError } from "../../errors.ts";
import type { WrlRecord } from "../../wrl/types.ts";
import { Coalescer } from "./coalesce.ts";
import type { LagTracker } from "./lag.ts";
import type { RpoState } from "./rpo.ts";
import type { RelayWrl } from "./relay-types.ts";
import type { Shipment, ShipmentLimits } from "./shipment.ts";

const MiB = 1024 * 1024;

export const coalesceModes = ["off", "auto"] as const;
export type CoalesceMode = (typeof coalesceModes)[number];

/** Below this lag (and lagSecondsMin) the relay does not coalesce (auto). */
export const coalesceLagBytesMinDefault = 16 * MiB;
/** Once the oldest record not acknowledged is this old, the link does not keep up: coalesce (auto). */
export const coalesceLagSecondsMinDefault = 1;
/** A relay window that filled up this recently (ms) means the relay is behind (auto). */
export const coalesceWindowFullRecentMs = 1000;
/** Most data bytes of WRL records one span takes in. */
export const coalesceSpanBytesMaxDefault = 64 * MiB;
/**
 * Most payload bytes of one coalesced shipment: one frame's payload (constants.ts asserts that
 * writePayloadSizeBytesMax and the largest header fit frameSizeBytesMax; the header is bounded by
 * ShipmentLimits.headerBytesMax). The replica's queue holds a full window of such shipments.
 */
export const coalescedPayloadBytesMax = writePayloadSizeBytesMax;

assert(coalesceLagBytesMinDefault > 0 && coalesceSpanBytesMaxDefault >= coalesceLagBytesMinDefault, "coalescing bounds are ordered");
assert(coalesceLagSecondsMinDefault > 0, "coalescing waits for a lag");
assert(coalescedPayloadBytesMax <= coalesceSpanBytesMaxDefault, "a span's input can fill its merged payload");

export interface CoalesceSetting {
  mode: CoalesceMode;
  /** Tests make these small. */
  lagBytesMin?: number;
  lagSecondsMin?: number;
  spanBytesMax?: number;
  /** Most payload bytes of one part (default the larger of a shipment and coalescedPayloadBytesMax; the simulation makes it smaller than a shipment, so spans go in parts often). */
  partBytesMax?: number;
}

export interface SpanPolicyInput {
  mode: CoalesceMode;
  replicaAccepts: boolean;
  lagBytes: number;
  /** Age of the oldest record not acknowledged (0 when none). */
  lagSeconds: number;
  /** Whether the relay's window was full in the last coalesceWindowFullRecentMs. */
  windowFullRecently?: boolean;
  rpoState: RpoState;
  shipmentBytesMax: number;
  lagBytesMin?: number;
  lagSecondsMin?: number;
  spanBytesMax?: number;
}

/** The span policy (table in the file comment): data bytes one span may take in; 0 = no coalescing. */
export function coalesceSpanBytes(input: SpanPolicyInput): number {
  const lagBytesMin = input.lagBytesMin ?? coalesceLagBytesMinDefault;
  const lagSecondsMin = input.lagSecondsMin ?? coalesceLagSecondsMinDefault;
  const spanBytesMax = Math.max(input.spanBytesMax ?? coalesceSpanBytesMaxDefault, input.shipmentBytesMax);
  if (input.mode === "off" || !input.replicaAccepts) return 0;
  if (input.rpoState !== "ok") return spanBytesMax;
  if (input.lagBytes === 0 || (input.lagBytes < lagBytesMin && input.lagSeconds < lagSecondsMin && input.windowFullRecently !== true)) return 0;
  return Math.min(spanBytesMax, Math.max(2 * input.shipmentBytesMax, input.lagBytes));
}

/** `--coalesce off|auto`. */
export function parseCoalesce(text: string): CoalesceSetting {
  const value = text.trim().toLowerCase();
  if ((coalesceModes as readonly string[]).includes(value)) return { mode: value as CoalesceMode };
  throw usageError(`--coalesce ${text}: not off or auto`, "Use --coalesce auto (the default: coalesce only while the relay is behind and the replica has a replica WRL) or --coalesce off");
}

export interface CoalescingStatus {
  mode: CoalesceMode;
  /** Whether the replica said (last resumeAck) it takes coalesced shipments. */
  replicaAccepts: boolean;
  /** Coalesced shipments built, WRL records they covered, extents they carried, data bytes saved. */
  spans: number;
  recordsIn: number;
  recordsOut: number;
  bytesSaved: number;
}

export interface SpanContext {
  target: { wrl: string; wrlUuid: string; deviceSizes: ReadonlyMap<string, number> };
  limits: ShipmentLimits;
  lag: Pick<LagTracker, "lagBytes" | "lagSeconds">;
  nowMs: number;
  rpoState: RpoState;
  /** Where more records of the span are read (up to limits.payloadBytesMax at a time). */
  wrl: Pick<RelayWrl, "info" | "read">;
}

export class RelayCoalescing {
  readonly #setting: CoalesceSetting;
  #replicaAccepts = false;
  /** No coalescing for spans starting at or below this LSN (after RS_WRL_FULL). */
  #holdThroughLsn = 0;
  /** When the relay's window was last full (relay Clock ms). */
  #windowFullAtMs = Number.NEGATIVE_INFINITY;
  /** The parts of the current span not handed out yet. */
  #queued: Shipment[] = [];
  #spans = 0;
  #recordsIn = 0;
  #recordsOut = 0;
  #bytesSaved = 0;

  constructor(setting: CoalesceSetting = { mode: "off" }) {
    this.#setting = setting;
  }

  /** What the replica said in its resumeAck. */
  resumed(acceptsCoalesced: boolean | undefined): void {
    this.#replicaAccepts = acceptsCoalesced === true;
  }

  /** A shipment was refused: see the file comment. */
  refused(shipment: { lastLsn: number; coalesced?: boolean } | undefined, code: ShipNackCode): void {
    if (shipment?.coalesced !== true) return;
    if (code === "RS_WRL_NEEDED") this.#replicaAccepts = false;
    else if (code === "RS_WRL_FULL") this.#holdThroughLsn = Math.max(this.#holdThroughLsn, shipment.lastLsn, this.#queued.at(-1)?.message.lastLsn ?? 0);
    this.#queued = [];
  }

  /** The relay's window is full (all its slots unanswered): it is behind (the policy's window row). */
  noteWindowFull(nowMs: number): "windowFull" {
    this.#windowFullAtMs = nowMs;
    return "windowFull";
  }

  /** The next part of the span being sent, when it starts at `nextLsn`; otherwise the queue is dropped. */
  queued(nextLsn: number): Shipment | undefined {
    const part = this.#queued[0];
    if (part?.message.firstLsn === nextLsn) return this.#queued.shift();
    this.#queued = [];
    return undefined;
  }

  /**
   * The coalesced shipment from `records` (read from their first LSN) on, when the policy says to
   * coalesce and it covers at least two records; undefined: ship them as they are.
   */
  async build(records: readonly WrlRecord[], context: SpanContext): Promise<Shipment | undefined> {
    const first = records[0];
    if (first === undefined || first.lsn <= this.#holdThroughLsn) return undefined;
    // The policy's first row, before the lag is looked at: this runs for every shipment.
    if (this.#setting.mode === "off" || !this.#replicaAccepts) return undefined;
    const lag = { lagBytes: context.lag.lagBytes(), lagSeconds: context.lag.lagSeconds(context.nowMs), windowFullRecently: context.nowMs - this.#windowFullAtMs < coalesceWindowFullRecentMs };
    const spanBytes = coalesceSpanBytes({ ...this.#setting, ...lag, replicaAccepts: this.#replicaAccepts, rpoState: context.rpoState, shipmentBytesMax: context.limits.payloadBytesMax });
    if (spanBytes === 0) return undefined;
    // Many shipments' worth of records merge into parts of one frame each (see the file comment).
    const partBytes = this.#setting.partBytesMax ?? Math.max(context.limits.payloadBytesMax, coalescedPayloadBytesMax);
    const coalescer = new Coalescer(context.target, { ...context.limits, payloadBytesMax: partBytes }, Math.max(partBytes, spanBytes));
    let batch = records;
    let nextLsn = first.lsn;
    for (let more = true; more; ) {
      for (const record of batch) {
        if (coalescer.bytesIn >= spanBytes || coalescer.add(record) !== "added") {
          more = false;
          break;
        }
        nextLsn = record.lsn + 1;
      }
      if (!more || nextLsn > context.wrl.info().headLsn) break;
      batch = await context.wrl.read(nextLsn, context.limits.payloadBytesMax);
      if (batch.length === 0) break;
    }
    if (coalescer.recordsIn < 2) return undefined;
    const parts = coalescer.buildParts();
    if (parts === undefined) return undefined;
    this.#spans += 1;
    this.#recordsIn += coalescer.recordsIn;
    this.#recordsOut += coalescer.recordsOut;
    this.#bytesSaved += coalescer.bytesIn - coalescer.bytesOut;
    this.#queued = parts.slice(1);
    return parts[0];
  }

  status(): CoalescingStatus {
    return { mode: this.#setting.mode, replicaAccepts: this.#replicaAccepts, spans: this.#spans, recordsIn: this.#recordsIn, recordsOut: this.#recordsOut, bytesSaved: this.#bytesSaved };
  }
}
