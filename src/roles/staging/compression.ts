/**
 * zstd compression of the relay's shipments (`druvaa staging serve --compression off|1..19|auto`):
 * the setting, its bounds, the `auto` level policy, and the ShipmentCompressor the relay runs
 * every shipment through (the wire format is src/protocol/ship-codec.ts).
 *
 * Default `auto`: it starts at level 1 (fast: ~0.5-2 GB/s on this kind of data, so it costs the
 * staging server little), and goes up only while the relay is held back downstream — by the link
 * or the replica — with CPU time to spare. A shipment that zstd does not make smaller travels as
 * it is, whatever the setting.
 *
 * `auto`, decided every compressionAutoPeriodShipments shipments from that period's sums
 * (compressMs: wall time spent compressing, divided by the shipments compressed side by side
 * (compressionPackingMax); waitMs: time the relay had records to ship but waited, for a window
 * slot or for the connection's send queue to drain), in this order:
 *
 *   compressing (level >= 1):
 *     rawBytes / wireBytes < compressionAutoGainMin    paused (the data barely compresses)
 *     compressMs > waitMs                              one lower (compression, not the link, holds
 *                                                        shipping up); at the lowest level paused only
 *                                                        when the waits are negligible (waitMs *
 *                                                        compressionAutoRaiseFactor < compressMs: a
 *                                                        LAN), else held (a WAN filling its window)
 *     waitMs > 0 and waitMs >= compressionAutoRaiseFactor
 *       * compressMs                                   one higher, up to compressionAutoLevelMax
 *                                                        (link-bound, the CPU is mostly idle)
 *     otherwise                                        unchanged
 *   paused (level 0, shipments travel as they are):
 *     compressionAutoProbePeriods periods paused       lowest level (look again: the data or the
 *                                                        link may have changed)
 *     waitMs > 0 and waitMs >= compressionAutoRaiseFactor
 *       * (rawBytes * the last measured ms per byte)   lowest level (link-bound: compressing pays)
 *     otherwise                                        paused
 *
 * So on a LAN, where the replica keeps up and the relay hardly waits, auto costs no CPU, and on a
 * WAN, where the relay waits on the link, it compresses harder while the CPU has room.
 * A relay that is idle (caught up) waits on nothing, so it drifts down to paused.
 *
 * Boost (boost(true), from the relay while its RPO target is at risk or missed, relay-rpo.ts):
 * `auto` compresses at compressionBoostLevelMin at least and never pauses — fewer bytes on the
 * wire drain the backlog sooner — and still goes higher by the table above while link-bound.
 * boost(false) lifts the floor; the level then comes down by the table. No effect on a fixed
 * level or off.
 * Deterministic given the samples (autoLevelStep is pure); the samples themselves are wall time.
 */
import { assert } from "../../assert.ts";
import { usageError } from "../../errors.ts";
import { compressShipment, type ShipmentFrame } from "../../protocol/ship-codec.ts";

/** zstd levels --compression takes (20-22 need large windows and are far too slow for a relay). */
export const compressionLevelMin = 1;
export const compressionLevelMax = 19;
/** The levels `auto` moves between; past 6 zstd gets 2-3x slower for a few percent more. */
export const compressionAutoLevelMin = 1;
export const compressionAutoLevelMax = 6;
/** Shipments per `auto` decision. */
export const compressionAutoPeriodShipments = 8;
/** Periods `auto` stays paused before it compresses again to look. */
export const compressionAutoProbePeriods = 16;
/** `auto` raises the level while the relay waits at least this many times longer than it compresses. */
export const compressionAutoRaiseFactor = 4;
/** The lowest level `auto` uses while boosted (RPO target at risk). */
export const compressionBoostLevelMin = 3;
/** Below this raw/wire ratio over a period, `auto` goes back to its lowest level. */
export const compressionAutoGainMin = 1.1;
/** Payloads below this travel as they are: a zstd frame's own bytes would eat most of the gain. */
export const compressionPayloadBytesMin = 1024;
/**
 * Shipments a relay compresses at once (each on a thread of Bun's pool): compressing the next
 * one overlaps waiting for this one. Off, shipments are not packed ahead at all.
 */
export const compressionPackingMax = 2;
/** What `druvaa staging serve` uses without --compression. */
export const compressionFlagDefault = "auto";

assert(compressionLevelMin <= compressionAutoLevelMin && compressionAutoLevelMin <= compressionAutoLevelMax && compressionAutoLevelMax <= compressionLevelMax, "auto levels lie within the levels --compression takes");
assert(compressionAutoLevelMin <= compressionBoostLevelMin && compressionBoostLevelMin <= compressionAutoLevelMax, "the boost floor is a level auto uses");
assert(compressionAutoRaiseFactor > 1 && compressionAutoGainMin >= 1 && compressionAutoPeriodShipments >= 1, "auto thresholds leave a band where the level holds");

/** `inline` (fixed levels): compress on the event loop, not Bun's thread pool — deterministic (the simulation). */
export type CompressionSetting = { mode: "off" } | { mode: "fixed"; level: number; inline?: boolean } | { mode: "auto" };

export const compressionOff: CompressionSetting = { mode: "off" };

/** `--compression` as given: off, auto, or a level 1..19. USAGE error with a hint otherwise. */
export function parseCompression(text: string): CompressionSetting {
  const value = text.trim().toLowerCase();
  if (value === "off" || value === "none" || value === "0") return { mode: "off" };
  if (value === "auto") return { mode: "auto" };
  const level = /^\d{1,3}$/.test(value) ? Number(value) : Number.NaN;
  if (Number.isInteger(level) && level >= compressionLevelMin && level <= compressionLevelMax) return { mode: "fixed", level };
  const why = Number.isNaN(level) ? "not off, auto or a zstd level" : `not a zstd level in ${compressionLevelMin}..${compressionLevelMax}`;
  throw usageError(
    `--compression ${text}: ${why}`,
    `Use --compression auto (the default: level ${compressionAutoLevelMin}..${compressionAutoLevelMax} by link and CPU), a fixed level such as --compression 3 (${compressionLevelMin} fastest .. ${compressionLevelMax} smallest), or --compression off`,
  );
}

export interface AutoLevelState {
  /** 0: paused (shipments travel as they are). */
  level: number;
  /** Compression cost measured when last compressing (ms per raw byte); 0 before any. */
  msPerByte: number;
  /** Periods spent paused so far. */
  pausedPeriods: number;
  /** Sums over the current period. */
  shipments: number;
  compressMs: number;
  waitMs: number;
  rawBytes: number;
  wireBytes: number;
}

export interface CompressionSample {
  compressMs: number;
  waitMs: number;
  rawBytes: number;
  /** What was sent: the compressed size, or rawBytes when compressing did not pay. */
  wireBytes: number;
}

export function autoLevelStart(): AutoLevelState {
  return { level: compressionAutoLevelMin, msPerByte: 0, pausedPeriods: 0, shipments: 0, compressMs: 0, waitMs: 0, rawBytes: 0, wireBytes: 0 };
}

/** The `auto` policy (table above): adds one shipment's sample, decides at the end of a period. */
export function autoLevelStep(state: AutoLevelState, sample: CompressionSample): AutoLevelState {
  const period = {
    ...state,
    shipments: state.shipments + 1,
    compressMs: state.compressMs + sample.compressMs,
    waitMs: state.waitMs + sample.waitMs,
    rawBytes: state.rawBytes + sample.rawBytes,
    wireBytes: state.wireBytes + sample.wireBytes,
  };
  if (period.shipments < compressionAutoPeriodShipments) return period;
  const next = (level: number, msPerByte: number, pausedPeriods = 0): AutoLevelState => ({ ...autoLevelStart(), level, msPerByte, pausedPeriods });
  const linkBound = (compressMs: number) => period.waitMs > 0 && period.waitMs >= compressionAutoRaiseFactor * compressMs;
  if (period.level === 0) {
    if (period.pausedPeriods + 1 >= compressionAutoProbePeriods || linkBound(period.msPerByte * period.rawBytes)) return next(compressionAutoLevelMin, period.msPerByte);
    return next(0, period.msPerByte, period.pausedPeriods + 1);
  }
  const msPerByte = period.rawBytes > 0 ? period.compressMs / period.rawBytes : period.msPerByte;
  if (period.rawBytes < compressionAutoGainMin * period.wireBytes) return next(0, msPerByte);
  if (period.compressMs > period.waitMs) {
    if (period.level > compressionAutoLevelMin) return next(period.level - 1, msPerByte);
    return next(period.waitMs * compressionAutoRaiseFactor < period.compressMs ? 0 : period.level, msPerByte);
  }
  if (linkBound(period.compressMs)) return next(Math.min(compressionAutoLevelMax, period.level + 1), msPerByte);
  return next(period.level, msPerByte);
}

export interface CompressionStatus {
  mode: CompressionSetting["mode"];
  /** The zstd level shipments are compressed at now (null when off; 0 when auto paused it). */
  level: number | null;
  /** Payload bytes of every shipment sent (resends included) before and after compression. */
  rawBytes: number;
  wireBytes: number;
  /** rawBytes / wireBytes: 1 when nothing was saved (or nothing sent), 3 when the link carried a third. */
  compressionRatio: number;
  /** Shipments sent compressed, and wall time spent compressing (those that did not pay included). */
  compressedShipments: number;
  compressMs: number;
  /** auto with the level floor raised (RPO target at risk): at least compressionBoostLevelMin, never paused. */
  boosted: boolean;
}

/** One relay's compression: picks the level, compresses, counts. Used by one shipping loop at a time. */
export class ShipmentCompressor {
  readonly #setting: CompressionSetting;
  readonly #now: () => number;
  #auto = autoLevelStart();
  #pendingWaitMs = 0;
  #rawBytes = 0;
  #wireBytes = 0;
  #compressedShipments = 0;
  #compressMs = 0;
  #boosted = false;

  /** `now`: a monotonic clock in milliseconds with sub-millisecond resolution. */
  constructor(setting: CompressionSetting = compressionOff, now: () => number = () => performance.now()) {
    if (setting.mode === "fixed") assert(Number.isInteger(setting.level) && setting.level >= compressionLevelMin && setting.level <= compressionLevelMax, "a fixed level is one --compression takes");
    this.#setting = setting;
    this.#now = now;
  }

  /** Shipments the relay may have in pack() at once. */
  get packingMax(): number {
    return this.#setting.mode === "off" ? 1 : compressionPackingMax;
  }

  get level(): number | null {
    if (this.#setting.mode === "off") return null;
    return this.#setting.mode === "fixed" ? this.#setting.level : this.#auto.level;
  }

  /** Raises (on) or lifts (off) auto's level floor: see "Boost" above. */
  boost(on: boolean): void {
    if (this.#setting.mode !== "auto" || on === this.#boosted) return;
    this.#boosted = on;
    if (on) this.#auto = { ...this.#auto, level: Math.max(this.#auto.level, compressionBoostLevelMin), pausedPeriods: 0 };
  }

  /** The relay had records to ship but waited `ms` (window full, or the send queue draining). */
  noteWait(ms: number): void {
    if (this.#setting.mode === "auto" && ms > 0) this.#pendingWaitMs += ms;
  }

  /**
   * The shipment as it goes on the wire: compressed when the setting says so, the payload is big
   * enough and zstd makes it smaller; otherwise as given. The given payload is not referred to by
   * a compressed result (its buffer may be reused once this resolves).
   */
  async pack(shipment: ShipmentFrame): Promise<ShipmentFrame> {
    const level = this.level;
    const rawBytes = shipment.payload.length;
    let packed = shipment;
    if (level !== null && rawBytes >= compressionPayloadBytesMin) {
      const startedMs = this.#now();
      if (level > 0) packed = (await compressShipment(shipment, level, this.#setting.mode === "fixed" && this.#setting.inline === true)) ?? shipment;
      const compressMs = level > 0 ? Math.max(0, this.#now() - startedMs) : 0;
      this.#compressMs += compressMs;
      if (this.#setting.mode === "auto") {
        // Shipments compressed side by side share the wall time: what the relay waited on each is a share.
        this.#auto = autoLevelStep(this.#auto, { compressMs: compressMs / this.packingMax, waitMs: this.#pendingWaitMs, rawBytes, wireBytes: packed.payload.length });
        if (this.#boosted && this.#auto.level < compressionBoostLevelMin) this.#auto = { ...this.#auto, level: compressionBoostLevelMin, pausedPeriods: 0 };
        this.#pendingWaitMs = 0;
      }
    }
    if (packed !== shipment) this.#compressedShipments += 1;
    this.#rawBytes += rawBytes;
    this.#wireBytes += packed.payload.length;
    return packed;
  }

  status(): CompressionStatus {
    return {
      mode: this.#setting.mode,
      level: this.level,
      rawBytes: this.#rawBytes,
      wireBytes: this.#wireBytes,
      compressionRatio: this.#wireBytes === 0 ? 1 : this.#rawBytes / this.#wireBytes,
      compressedShipments: this.#compressedShipments,
      compressMs: Math.round(this.#compressMs * 1000) / 1000,
      boosted: this.#boosted,
    };
  }
}
