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
 *   lag (bytes appended, not acknowledged) < lagBytesMin       0: the link keeps up, ship each
 *                                                                record at once (lowest RPO)
 *   otherwise                                                  lag / 2, within [2 shipments,
 *                                                                spanBytesMax]: the further behind,
 *                                                                the larger the span (fewer bytes)
 *
 * Refusals (RelayCoalescing.refused): a coalesced shipment answered RS_WRL_FULL (the replica WRL
 * cannot hold it) holds coalescing off up to that shipment's last LSN, so the records go as they
 * are and the relay always makes progress; RS_WRL_NEEDED (no RS-WRL after all) holds it off until
 * the next resumeAck says otherwise.
 *
 * Not guaranteed: a span as large as spanBytesMax — it also ends at the shipment's own bounds
 * (coalesce.ts), at the WRL's head, and before any record that must not be coalesced.
 */
import { assert } from "../../assert.ts";
import type { ShipNackCode } from "../../protocol/messages.ts";
import { usageError } from "../../errors.ts";
import type { WrlRecord } from "../../wrl/types.ts";
import { Coalescer } from "./coalesce.ts";
import type { RpoState } from "./rpo.ts";
import type { RelayWrl } from "./relay-types.ts";
import type { Shipment, ShipmentLimits } from "./shipment.ts";

const MiB = 1024 * 1024;

export const coalesceModes = ["off", "auto"] as const;
export type CoalesceMode = (typeof coalesceModes)[number];

/** Below this lag the relay does not coalesce (auto). */
export const coalesceLagBytesMinDefault = 16 * MiB;
/** Most data bytes of WRL records one span takes in. */
export const coalesceSpanBytesMaxDefault = 64 * MiB;

assert(coalesceLagBytesMinDefault > 0 && coalesceSpanBytesMaxDefault >= coalesceLagBytesMinDefault, "coalescing bounds are ordered");

export interface CoalesceSetting {
  mode: CoalesceMode;
  /** Tests make these small. */
  lagBytesMin?: number;
  spanBytesMax?: number;
}

export interface SpanPolicyInput {
  mode: CoalesceMode;
  replicaAccepts: boolean;
  lagBytes: number;
  rpoState: RpoState;
  shipmentBytesMax: number;
  lagBytesMin?: number;
  spanBytesMax?: number;
}

/** The span policy (table in the file comment): data bytes one span may take in; 0 = no coalescing. */
export function coalesceSpanBytes(input: SpanPolicyInput): number {
  const lagBytesMin = input.lagBytesMin ?? coalesceLagBytesMinDefault;
  const spanBytesMax = Math.max(input.spanBytesMax ?? coalesceSpanBytesMaxDefault, input.shipmentBytesMax);
  if (input.mode === "off" || !input.replicaAccepts) return 0;
  if (input.rpoState !== "ok") return spanBytesMax;
  if (input.lagBytes < lagBytesMin) return 0;
  return Math.min(spanBytesMax, Math.max(2 * input.shipmentBytesMax, Math.floor(input.lagBytes / 2)));
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
  lagBytes: number;
  rpoState: RpoState;
  /** Where more records of the span are read (up to limits.payloadBytesMax at a time). */
  wrl: Pick<RelayWrl, "info" | "read">;
}

export class RelayCoalescing {
  readonly #setting: CoalesceSetting;
  #replicaAccepts = false;
  /** No coalescing for spans starting at or below this LSN (after RS_WRL_FULL). */
  #holdThroughLsn = 0;
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
    else if (code === "RS_WRL_FULL") this.#holdThroughLsn = Math.max(this.#holdThroughLsn, shipment.lastLsn);
  }

  /**
   * The coalesced shipment from `records` (read from their first LSN) on, when the policy says to
   * coalesce and it covers at least two records; undefined: ship them as they are.
   */
  async build(records: readonly WrlRecord[], context: SpanContext): Promise<Shipment | undefined> {
    const first = records[0];
    if (first === undefined || first.lsn <= this.#holdThroughLsn) return undefined;
    const spanBytes = coalesceSpanBytes({ ...this.#setting, replicaAccepts: this.#replicaAccepts, lagBytes: context.lagBytes, rpoState: context.rpoState, shipmentBytesMax: context.limits.payloadBytesMax });
    if (spanBytes === 0) return undefined;
    const coalescer = new Coalescer(context.target, context.limits);
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
    this.#spans += 1;
    this.#recordsIn += coalescer.recordsIn;
    this.#recordsOut += coalescer.recordsOut;
    this.#bytesSaved += coalescer.bytesIn - coalescer.bytesOut;
    return coalescer.build();
  }

  status(): CoalescingStatus {
    return { mode: this.#setting.mode, replicaAccepts: this.#replicaAccepts, spans: this.#spans, recordsIn: this.#recordsIn, recordsOut: this.#recordsOut, bytesSaved: this.#bytesSaved };
  }
}
