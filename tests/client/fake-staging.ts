/**
 * A fake staging server for client tests: real sockets (src/io/transport.ts) and the real
 * handshake, answers attach as told, acks every write and records it (data copied), so a test can
 * replay exactly what staging was given and compare it with the primary.
 */
import { DruvaaError } from "../../src/errors.ts";
import { listen, parseAddress, type Connection, type Listener } from "../../src/io/transport.ts";
import { serverHandshake } from "../../src/protocol/handshake.ts";
import type { AttachMessage, ErrorInfo, Role, VerifyReportMessage, WriteKind, WriteMessage } from "../../src/protocol/messages.ts";
import { compareDigests } from "./verify-fakes.ts";

export interface FakeStagingOptions {
  /** Refuse every attach with this reason. */
  refuseAttach?: ErrorInfo;
  /** Abort the first connection when this many writes have arrived on it (the last one unacked). */
  dropAfterWrites?: number;
  /** The role announced in helloAck (a wrong one shows how the client reacts). */
  role?: Role;
  /** Record writes but hold their acks until releaseAcks(). */
  holdAcks?: boolean;
  /**
   * Answer verify probes like a replica that applied everything before them: a verifyReport
   * from the replay of the records so far (plus corruptReplica() damage), after the ack.
   */
  answerProbes?: boolean;
}

export interface StagingRecord {
  lsn: number;
  device: string;
  wrl: string;
  epoch: number;
  offset: number;
  length: number;
  zero: boolean;
  data: Uint8Array | undefined;
  /** The write's kind (resync, resyncEnd, verify); absent for an ordered write. */
  kind?: WriteKind;
}

export const fakeWrlUuid = "0f0e0d0c-0b0a-4908-8706-050403020100";

export class FakeStaging {
  readonly records: StagingRecord[] = [];
  readonly attaches: AttachMessage[] = [];
  /** Connections that completed the handshake. */
  sessions = 0;
  /** Writes that arrived on the dropped connection and were never acked. */
  readonly dropped: WriteMessage[] = [];
  #lsn = 0;
  #dropDone = false;
  #heldAcks: (() => void)[] = [];
  readonly #damage: { device: string; offset: number; bytes: Uint8Array }[] = [];

  private constructor(readonly listener: Listener, readonly options: FakeStagingOptions) {}

  /** Listens on `listenAddress` (default: a free loopback port). */
  static async start(options: FakeStagingOptions = {}, listenAddress = "127.0.0.1:0"): Promise<FakeStaging> {
    let staging: FakeStaging | undefined;
    const listener = await listen(parseAddress(listenAddress, 0), (connection) => void staging!.serve(connection));
    staging = new FakeStaging(listener, options);
    return staging;
  }

  get address(): string {
    const address = this.listener.address;
    return address.kind === "tcp" ? `127.0.0.1:${address.port}` : `unix:${address.path}`;
  }

  async stop(): Promise<void> {
    await this.listener.stop();
  }

  /** Closes every open connection abruptly (as a crashed staging would). */
  dropAll(): void {
    for (const connection of this.listener.connections) connection.abort(new DruvaaError("NET_RESET", "fake staging dropped the connection"));
  }

  /** Acks held with holdAcks arrived so far. */
  get heldAcks(): number {
    return this.#heldAcks.length;
  }

  /** Sends the held acks and stops holding. */
  releaseAcks(): void {
    this.options.holdAcks = false;
    for (const send of this.#heldAcks.splice(0)) send();
  }

  /** With answerProbes: the replica's copy of `device` holds `bytes` at `offset` whatever was written. */
  corruptReplica(device: string, offset: number, bytes: Uint8Array): void {
    this.#damage.push({ device, offset, bytes });
  }

  /** The device image staging's log produces, replayed in LSN order onto zeros. */
  replay(device: string, sizeBytes: number): Uint8Array {
    const image = new Uint8Array(sizeBytes);
    for (const record of this.records) {
      if (record.device !== device || record.kind === "verify" || record.kind === "resyncEnd") continue;
      if (record.zero) image.fill(0, record.offset, record.offset + record.length);
      else image.set(record.data!, record.offset);
    }
    return image;
  }

  /** The outcome a replica at this point of the log would report for the probe. */
  #probeReport(message: WriteMessage, lsn: number, digests: Uint8Array): VerifyReportMessage {
    const sizeBytes = this.attaches.find((attach) => attach.device === message.device)!.sizeBytes;
    const image = this.replay(message.device, sizeBytes);
    for (const damage of this.#damage) if (damage.device === message.device) image.set(damage.bytes, damage.offset);
    const differing = compareDigests(image, message.offset, message.length, message.verifyBlockBytes!, digests);
    return { type: "verifyReport", wrl: message.wrl, device: message.device, lsn, offset: message.offset, length: message.length, differing };
  }

  private async serve(connection: Connection): Promise<void> {
    try {
      await serverHandshake(connection, { role: this.options.role ?? "staging", nodeId: "fake-staging" }, ["client"]);
    } catch {
      await connection.close();
      return;
    }
    this.sessions += 1;
    const dropThis = this.options.dropAfterWrites !== undefined && !this.#dropDone;
    let writesHere = 0;
    connection.onFrame((frame) => {
      const message = frame.message;
      if (message.type === "attach") {
        this.attaches.push(message);
        const refusal = this.options.refuseAttach;
        void connection.send(refusal === undefined
          ? { type: "attachAck", device: message.device, wrl: message.wrl, accepted: true, wrlUuid: fakeWrlUuid }
          : { type: "attachAck", device: message.device, wrl: message.wrl, accepted: false, error: refusal }).catch(() => undefined);
      } else if (message.type === "write") {
        writesHere += 1;
        if (dropThis && writesHere >= this.options.dropAfterWrites!) {
          this.#dropDone = true;
          this.dropped.push(message);
          connection.abort(new DruvaaError("NET_RESET", "fake staging dropped the connection"));
          return;
        }
        this.#lsn += 1;
        this.records.push({
          lsn: this.#lsn,
          device: message.device,
          wrl: message.wrl,
          epoch: message.epoch,
          offset: message.offset,
          length: message.length,
          zero: message.zero === true,
          data: message.zero === true ? undefined : frame.payload.slice(),
          ...(message.kind === undefined ? {} : { kind: message.kind }),
        });
        const lsn = this.#lsn;
        const report = message.kind === "verify" && this.options.answerProbes === true ? this.#probeReport(message, lsn, frame.payload) : undefined;
        const ack = () => {
          void connection.send({ type: "writeAck", reqId: message.reqId, lsn }).catch(() => undefined);
          if (report !== undefined) void connection.send(report).catch(() => undefined);
        };
        if (this.options.holdAcks === true) this.#heldAcks.push(ack);
        else ack();
      }
    });
  }
}
