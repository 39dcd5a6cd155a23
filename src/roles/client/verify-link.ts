/**
 * The verify side of the client's staging link. It sits between the StagingLink and the
 * ClientCore: every link event goes on to the core, but the answers to verify probes and the
 * `verifyReport` messages staging forwards from the replica stay here (verify.ts uses them).
 *
 * Probes are not part of the core's write path: they are never resent on a reconnect nor diverted
 * to the change map, and they do not count for the core's ack timeout. A probe whose connection
 * drops, that staging refuses, or that staging does not ack within the ack timeout fails; the
 * pass then releases its range (the application must never wait on a dead link because of a
 * verify) and probes again later. A failed probe may still have been logged: its outcome, if it
 * ever comes, names an LSN nobody waits for and is ignored.
 *
 * Outcomes are matched by device and LSN. Their waiter is registered when the ack arrives, before
 * any later frame of the connection is read, so an outcome can never come before its waiter.
 * Not guaranteed: that an outcome comes at all (staging forwards it only to the connection
 * holding the device when the replica reports it); the pass times out and probes again.
 */
import type { ConsolaInstance } from "consola/basic";
import { clientVerifyAckTimeoutMs } from "../../verify-constants.ts";
import { DruvaaError } from "../../errors.ts";
import { logger } from "../../log.ts";
import type { VerifyReportMessage, WriteMessage } from "../../protocol/messages.ts";
import type { LinkPeer } from "./staging-link.ts";
import { realTimers, type ClientTimers, type StagingSender, type WriteReply } from "./types.ts";

/** What the channel needs of the core: its link events, and request ids from its sequence. */
export interface ProbeCore extends LinkPeer {
  readonly verifyAccess: {
    /** A request id no write of the core uses. */
    takeReqId(): number;
  };
}

/** A probe staging logged: its LSN and, once the replica compared it, its outcome. */
export interface ProbeAck {
  lsn: number;
  /** Resolves with the outcome; never rejects (it may never resolve: time it out). */
  report: Promise<VerifyReportMessage>;
  /** Stops waiting for the outcome (a later one is ignored). */
  cancelReport(): void;
}

/** The fields of a probe the pass fills in (the channel adds type and reqId). */
export type ProbeFields = Omit<WriteMessage, "type" | "reqId">;

/** Failures of a probe that a later try may not have: the pass probes again. */
export const transientProbeCodes: ReadonlySet<string> = new Set(["PROBE_LINK_LOST", "PROBE_ACK_TIMEOUT", "WRL_FULL", "BUSY", "SHUTTING_DOWN", "IO_ERROR"]);

interface PendingProbe {
  resolve(ack: ProbeAck): void;
  reject(error: DruvaaError): void;
  device: string;
  cancelTimer: () => void;
}

export class ProbeChannel implements LinkPeer {
  readonly #core: ProbeCore;
  readonly #timers: ClientTimers;
  readonly #ackTimeoutMs: number;
  readonly #log: ConsolaInstance;
  #sender: StagingSender | undefined;
  readonly #pending = new Map<number, PendingProbe>();
  readonly #reports = new Map<string, (report: VerifyReportMessage) => void>();
  #linkWaiters: (() => void)[] = [];

  constructor(core: ProbeCore, options: { timers?: ClientTimers; ackTimeoutMs?: number; log?: ConsolaInstance } = {}) {
    this.#core = core;
    this.#timers = options.timers ?? realTimers;
    this.#ackTimeoutMs = options.ackTimeoutMs ?? clientVerifyAckTimeoutMs;
    this.#log = options.log ?? logger("client:verify");
  }

  /** A staging connection is up and attached. */
  get linkIsUp(): boolean {
    return this.#sender !== undefined;
  }

  /** Resolves when the link is up (at once if it is). */
  whenLinkUp(): Promise<void> {
    if (this.#sender !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.#linkWaiters.push(resolve));
  }

  /** Outcomes being waited for (status, tests). */
  get reportsAwaited(): number {
    return this.#reports.size;
  }

  // ---- LinkPeer: the StagingLink drives these ---------------------------------------------------

  linkUp(sender: StagingSender): void {
    this.#sender = sender;
    this.#core.linkUp(sender);
    for (const wake of this.#linkWaiters.splice(0)) wake();
  }

  linkDown(): void {
    this.#sender = undefined;
    this.#failAll(new DruvaaError("PROBE_LINK_LOST", "the staging connection was lost before staging acknowledged the verify probe"));
    this.#core.linkDown();
  }

  handleReply(reply: WriteReply): void {
    const probe = this.#pending.get(reply.reqId);
    if (probe === undefined) {
      this.#core.handleReply(reply);
      return;
    }
    this.#pending.delete(reply.reqId);
    probe.cancelTimer();
    if (reply.type === "writeNack") {
      probe.reject(new DruvaaError(reply.code, `staging refused a verify probe of ${probe.device}: ${reply.message}`));
      return;
    }
    // Registered now, synchronously: the outcome may be in the very next frame.
    const key = reportKey(probe.device, reply.lsn);
    let resolveReport!: (report: VerifyReportMessage) => void;
    const report = new Promise<VerifyReportMessage>((resolve) => (resolveReport = resolve));
    this.#reports.set(key, resolveReport);
    probe.resolve({ lsn: reply.lsn, report, cancelReport: () => void this.#reports.delete(key) });
  }

  handleVerifyReport(report: VerifyReportMessage): void {
    const key = reportKey(report.device, report.lsn);
    const resolve = this.#reports.get(key);
    if (resolve === undefined) {
      this.#log.debug(`verify outcome for ${report.device} at LSN ${report.lsn}, which no pass waits for; ignored`);
      return;
    }
    this.#reports.delete(key);
    resolve(report);
  }

  // ---- the verify pass's side ---------------------------------------------------------------------

  /**
   * Sends one probe; resolves once staging logged it (with its LSN and the outcome to come), or
   * rejects with a DruvaaError whose code says why (transientProbeCodes: try again later).
   */
  send(fields: ProbeFields, payload: Uint8Array): Promise<ProbeAck> {
    const sender = this.#sender;
    if (sender === undefined) return Promise.reject(new DruvaaError("PROBE_LINK_LOST", "staging is not connected"));
    const message: WriteMessage = { type: "write", reqId: this.#core.verifyAccess.takeReqId(), ...fields };
    return new Promise<ProbeAck>((resolve, reject) => {
      const cancelTimer = this.#timers.schedule(this.#ackTimeoutMs, () => {
        if (this.#pending.delete(message.reqId)) reject(new DruvaaError("PROBE_ACK_TIMEOUT", `staging did not acknowledge a verify probe of ${fields.device} within ${this.#ackTimeoutMs} ms`));
      });
      this.#pending.set(message.reqId, { resolve, reject, device: fields.device, cancelTimer });
      sender.send(message, payload);
    });
  }

  /** Shutdown: fails every probe waiting for its ack. */
  stop(): void {
    this.#failAll(new DruvaaError("CLIENT_STOPPING", "the client is shutting down"));
  }

  #failAll(error: DruvaaError): void {
    const probes = [...this.#pending.values()];
    this.#pending.clear();
    for (const probe of probes) {
      probe.cancelTimer();
      probe.reject(error);
    }
  }
}

function reportKey(device: string, lsn: number): string {
  return `${lsn}\u0000${device}`;
}
