/**
 * When the relay (relay.ts) tries again after a session ended with an error, and what it logs.
 *
 *   session ended with                      wait before the next session        log
 *   FAILED_OVER (the replica's devices of   stagingFailedOverRetryMs (slow:     warn once per episode, with
 *     this WRL were failed over: druvaa       only druvaa failback ends it)       the hint; info when it ends
 *     failover)
 *   any other error                         stagingRelayDelayMsMin, doubling    warn each new error; the same
 *                                             to stagingRelayDelayMsMax; reset    one again about once per
 *                                             once a session got an ack           maximum backoff
 *
 * A failed-over episode starts with the first FAILED_OVER and ends only when the replica takes the
 * WRL again: it acknowledges a shipment, or accepts a resume with nothing to ship (errors in
 * between — the replica restarting during failback — do not end it; nor does a resume accepted
 * by a replica that then refuses the shipments).
 * Records are never dropped meanwhile: they wait in the WRL (which, once full, makes the clients
 * switch to their change maps) until the replica takes them or druvaa failback discards them
 * (POST /wrl/discard, failback.ts).
 */
import type { ConsolaInstance } from "consola/basic";
import { stagingRelayDelayMsMax, stagingRelayDelayMsMin } from "../../constants.ts";
import type { DruvaaError } from "../../errors.ts";
import { stagingFailedOverRetryMs } from "./failback-constants.ts";
import type { LastError } from "./relay-types.ts";

export class RelayRetry {
  #delayMs = stagingRelayDelayMsMin;
  #failedOverSinceMs: number | null = null;

  constructor(private readonly who: { wrl: string; address: string; log: ConsolaInstance; now: () => number }) {}

  /**
   * The session ended with `failure` (`previous`: the error before it; `acked`: the session got a
   * shipment acknowledged). Logs per the table above; returns how long to wait, in ms.
   */
  failed(failure: DruvaaError, previous: LastError | null, acked: boolean): number {
    const { wrl, address, log } = this.who;
    if (acked) this.#delayMs = stagingRelayDelayMsMin;
    if (failure.code === "FAILED_OVER") {
      if (this.#failedOverSinceMs === null) {
        this.#failedOverSinceMs = this.who.now();
        log.warn(`replica ${address}: the replica's devices of WRL ${wrl} were failed over (druvaa failover); records wait here until druvaa failback (asking again every ${stagingFailedOverRetryMs / 1000} s)`);
      }
      return stagingFailedOverRetryMs;
    }
    const delayMs = this.#delayMs;
    const repeated = previous?.code === failure.code && previous.message === failure.message;
    if (!repeated || delayMs === stagingRelayDelayMsMax) log.warn(`replica ${address}: ${failure.message} (${failure.code}); retrying in ${delayMs} ms`);
    this.#delayMs = Math.min(stagingRelayDelayMsMax, delayMs * 2);
    return delayMs;
  }

  /** The replica takes the WRL again (see the file comment): a failed-over episode is over. */
  accepted(): void {
    if (this.#failedOverSinceMs === null) return;
    this.who.log.info(`replica ${this.who.address}: accepts WRL ${this.who.wrl} again (it refused it as failed over since ${new Date(this.#failedOverSinceMs).toISOString()})`);
    this.#failedOverSinceMs = null;
  }

  /** When the current failed-over episode began (ISO time), or null when there is none. */
  get failedOverSince(): string | null {
    return this.#failedOverSinceMs === null ? null : new Date(this.#failedOverSinceMs).toISOString();
  }
}
