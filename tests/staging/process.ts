/**
 * A write workload for the staging process tests whose expected image is known exactly even
 * across a staging crash. The processes themselves are started by tests/helpers/role-process.ts.
 */
import { createHash } from "node:crypto";
import type { TestClient } from "./test-client.ts";
import { bytes } from "./helpers.ts";

export const sha256 = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");

interface SlotWrite {
  slot: number;
  offset: number;
  data: Uint8Array | undefined;
  zeroLength: number;
}

/**
 * Writes to a device in slots of `slotBytes`: a write covers the start of one slot, and no two
 * writes in flight share a slot (as the client's overlap gate would have it). Writes to a slot
 * are therefore ordered by their acks, and the expected image is each slot's last acked write.
 * A write the connection lost stays pending (its slot reserved) until resend().
 */
export class SlotWorkload {
  readonly model: Uint8Array;
  readonly pending = new Map<number, SlotWrite>();
  acked = 0;
  ackedBytes = 0;
  #counter = 0;
  readonly #slotCount: number;

  constructor(readonly deviceBytes: number, readonly slotBytes: number, readonly seed: number) {
    this.model = new Uint8Array(deviceBytes);
    this.#slotCount = deviceBytes / slotBytes;
  }

  #nextWrite(): SlotWrite {
    const id = this.#counter++;
    let slot = (id * 7919 + this.seed * 31) % this.#slotCount;
    while (this.pending.has(slot)) slot = (slot + 1) % this.#slotCount;
    const blocks = 1 + ((id * 13 + this.seed) % (this.slotBytes / 4096));
    const lengthBytes = blocks * 4096;
    const zero = id % 10 === 7;
    return { slot, offset: slot * this.slotBytes, data: zero ? undefined : bytes(lengthBytes, this.seed * 1_000_003 + id), zeroLength: lengthBytes };
  }

  #send(client: TestClient, write: SlotWrite, afterAck?: () => void): Promise<void> {
    this.pending.set(write.slot, write);
    return client.write("w0", "d0", write.offset, write.data, write.zeroLength).then(
      (answer) => {
        if (answer.type !== "writeAck") throw new Error(`write at ${write.offset} refused: ${answer.code}: ${answer.message}`);
        if (write.data === undefined) this.model.fill(0, write.offset, write.offset + write.zeroLength);
        else this.model.set(write.data, write.offset);
        this.pending.delete(write.slot);
        this.acked += 1;
        this.ackedBytes += write.data?.length ?? 0;
        afterAck?.();
      },
      () => undefined, // the connection went away: the write stays pending
    );
  }

  /** Issues `count` new writes with up to `depth` in flight; stops early if the connection closes. */
  async run(client: TestClient, count: number, depth: number, afterAck?: () => void): Promise<void> {
    const inflight = new Set<Promise<void>>();
    let issued = 0;
    while (issued < count || inflight.size > 0) {
      while (issued < count && inflight.size < depth && client.closedReason === undefined) {
        const sent = this.#send(client, this.#nextWrite(), afterAck);
        inflight.add(sent);
        void sent.then(() => inflight.delete(sent));
        issued += 1;
      }
      if (inflight.size === 0) break;
      await Promise.race(inflight);
    }
  }

  /** Sends every pending write again (as a real client does after reconnecting). */
  async resend(client: TestClient): Promise<void> {
    await Promise.all([...this.pending.values()].map((write) => this.#send(client, write)));
    if (this.pending.size > 0) throw new Error(`${this.pending.size} resent write(s) were not acked`);
  }
}
