/**
 * A small druvaa client for the staging tests: the real transport and handshake, attach, then
 * writes with many in flight, each answered by writeAck/writeNack (matched by reqId).
 */
import { connect, parseAddress, type Connection } from "../../src/io/transport.ts";
import { clientHandshake } from "../../src/protocol/handshake.ts";
import type { AttachAckMessage, Message, WriteAckMessage, WriteNackMessage } from "../../src/protocol/messages.ts";

export type WriteAnswer = WriteAckMessage | WriteNackMessage;

export class TestClient {
  #nextReqId = 1;
  #epoch = 1;
  readonly #writes = new Map<number, { resolve: (answer: WriteAnswer) => void; reject: (error: unknown) => void }>();
  readonly #attaches = new Map<string, (answer: AttachAckMessage) => void>();
  /** Set when the connection closed (answers still pending then never come). */
  closedReason: unknown;

  private constructor(readonly connection: Connection) {
    connection.onFrame((frame) => {
      const message: Message = frame.message;
      if (message.type === "writeAck" || message.type === "writeNack") {
        const waiting = this.#writes.get(message.reqId);
        this.#writes.delete(message.reqId);
        waiting?.resolve(message);
      } else if (message.type === "attachAck") {
        const resolve = this.#attaches.get(`${message.wrl}/${message.device}`);
        this.#attaches.delete(`${message.wrl}/${message.device}`);
        resolve?.(message);
      }
    });
    // Writes still waiting when the connection closes will never be answered: fail them.
    void connection.closed.then((reason) => {
      this.closedReason = reason ?? "closed";
      for (const waiting of this.#writes.values()) waiting.reject(this.closedReason);
      this.#writes.clear();
    });
  }

  static async connect(address: string, nodeId = "test-client"): Promise<TestClient> {
    const connection = await connect(parseAddress(address, 6001));
    try {
      await clientHandshake(connection, { role: "client", nodeId }, ["staging"]);
    } catch (error) {
      connection.abort();
      throw error;
    }
    return new TestClient(connection);
  }

  get pendingWrites(): number {
    return this.#writes.size;
  }

  attach(wrl: string, device: string, sizeBytes: number, logicalBlockSizeBytes = 512): Promise<AttachAckMessage> {
    const answer = new Promise<AttachAckMessage>((resolve) => this.#attaches.set(`${wrl}/${device}`, resolve));
    void this.connection.send({ type: "attach", device, wrl, sizeBytes, logicalBlockSizeBytes });
    return answer;
  }

  /** Sends a data write (or, with data undefined, a zero write of `zeroLength`); resolves with the answer. */
  write(wrl: string, device: string, offset: number, data: Uint8Array | undefined, zeroLength = 0): Promise<WriteAnswer> {
    const reqId = this.#nextReqId++;
    if (this.closedReason !== undefined) return Promise.reject(this.closedReason);
    const answer = new Promise<WriteAnswer>((resolve, reject) => this.#writes.set(reqId, { resolve, reject }));
    const epoch = this.#epoch++;
    if (data === undefined) void this.connection.send({ type: "write", reqId, device, wrl, epoch, offset, length: zeroLength, zero: true }).catch(() => undefined);
    else void this.connection.send({ type: "write", reqId, device, wrl, epoch, offset, length: data.length }, data).catch(() => undefined);
    return answer;
  }

  async close(): Promise<void> {
    await this.connection.close();
  }
}
