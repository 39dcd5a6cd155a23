/**
 * A scripted replica for the failover/failback tests (tests/staging/failback.test.ts): reached
 * through MemoryLinks (real frame codec), it refuses the WRL as failed over — at resume, or at
 * every shipment — or accepts it from `appliedLsn` on, or takes shipments and never answers them.
 * It records every resume and shipment it got.
 */
import type { Message } from "../../src/protocol/messages.ts";
import type { RelayLink } from "../../src/roles/staging/relay.ts";
import { MemoryLink } from "./helpers.ts";

export type ReplicaMode =
  /** resume answered shipNack FAILED_OVER (what a replica whose devices were failed over says). */
  | "failed-over"
  /** resume accepted, every shipment answered shipNack FAILED_OVER (failover during a session). */
  | "failed-over-at-ship"
  /** resume answered with `appliedLsn`; shipments acknowledged (appliedLsn follows them). */
  | "accepting"
  /** resume answered with `appliedLsn`; shipments kept unanswered (in flight at staging). */
  | "holding";

export class FailoverReplica {
  mode: ReplicaMode = "failed-over";
  appliedLsn = 0;
  dials = 0;
  /** Arrival times (Date.now) of every resume. */
  readonly resumes: number[] = [];
  /** LSN span of every shipment received, in order (nacked and held ones too). */
  readonly shipments: { firstLsn: number; lastLsn: number }[] = [];
  readonly #links = new Set<MemoryLink>();

  constructor(private readonly devices: { name: string; sizeBytes: number }[]) {}

  readonly dial = async (): Promise<RelayLink> => {
    this.dials += 1;
    const link: MemoryLink = new MemoryLink((frame) => {
      const message = frame.message;
      const answer = (reply: Message) => queueMicrotask(() => link.deliver(reply));
      if (message.type === "resume") {
        this.resumes.push(Date.now());
        if (this.mode === "failed-over") {
          answer({ type: "shipNack", wrl: message.wrl, code: "FAILED_OVER", message: `the devices of WRL ${message.wrl} were failed over at this replica (druvaa failover)` });
        } else {
          answer({ type: "resumeAck", wrl: message.wrl, wrlUuid: message.wrlUuid, appliedLsn: this.appliedLsn, devices: this.devices });
        }
        return;
      }
      if (message.type !== "ship") throw new Error(`failover replica got ${message.type}`);
      this.shipments.push({ firstLsn: message.firstLsn, lastLsn: message.lastLsn });
      if (this.mode === "holding") return;
      if (this.mode === "accepting") {
        this.appliedLsn = message.lastLsn;
        answer({ type: "shipAck", wrl: message.wrl, appliedLsn: message.lastLsn });
        return;
      }
      answer({ type: "shipNack", wrl: message.wrl, code: "FAILED_OVER", message: `the devices of WRL ${message.wrl} were failed over at this replica (druvaa failover)` });
    }, () => this.#links.delete(link));
    this.#links.add(link);
    return link;
  };

  /** Connections open now. */
  get openLinks(): number {
    return this.#links.size;
  }
}
