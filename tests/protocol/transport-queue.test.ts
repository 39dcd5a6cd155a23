/**
 * The connection's write queue against a fake socket that takes as few bytes per write() as the
 * test likes (Bun's socket.write() may take part of a buffer and drop the rest): everything sent
 * arrives once, in order, byte-equal; FIN only after the last byte; send() back-pressure.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { connectionSendQueueBytesMax } from "../../src/constants.ts";
import { SocketConnection, type SocketLike } from "../../src/io/transport.ts";
import { encodeFrameBytes, FrameDecoder, type Frame } from "../../src/protocol/frame.ts";
import { anyMessage, concatBytes, propertySeed } from "./arbitraries.ts";

const seed = propertySeed();
console.log(`transport-queue.test.ts: fast-check seed ${seed} (replay: FC_SEED=${seed} node_modules/.bin/bun test tests/protocol/transport-queue.test.ts)`);

/** A socket whose write() accepts budgets[i] bytes on the i-th call (cycling); 0 = kernel buffer full. */
class FakeSocket implements SocketLike {
  readonly written: Uint8Array[] = [];
  calls = 0;
  shutdownAt: number | undefined;
  ended = false;
  terminated = false;
  violations: string[] = [];
  connection: SocketConnection | undefined;

  constructor(public budgets: number[]) {}

  write(data: Uint8Array): number {
    if (this.shutdownAt !== undefined) this.violations.push("write after shutdown");
    const take = Math.min(data.length, this.budgets[this.calls++ % this.budgets.length]!);
    this.written.push(data.slice(0, take)); // copy: the caller may reuse nothing, but be strict
    return take;
  }
  shutdown(): void {
    if ((this.connection?.queuedBytes ?? 0) > 0) this.violations.push("shutdown with bytes still queued");
    this.shutdownAt = this.bytes().length;
  }
  end(): void {
    this.ended = true;
  }
  terminate(): void {
    this.terminated = true;
  }
  pause(): void {}
  resume(): void {}
  bytes(): Uint8Array {
    return concatBytes(this.written);
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** Plays the event loop: drain events until the queue is empty (bounded, so a bug cannot hang). */
async function drainAll(socket: FakeSocket, connection: SocketConnection): Promise<void> {
  await tick();
  for (let round = 0; connection.queuedBytes > 0; round += 1) {
    if (round > 1_000_000) throw new Error("queue never drained");
    connection.handleDrain();
  }
}

function decodeAll(bytes: Uint8Array): Frame[] {
  const decoder = new FrameDecoder();
  const frames = [...decoder.push(bytes)];
  decoder.finish();
  return frames;
}

describe("connection write queue (fake socket)", () => {
  test("partial writes: every frame arrives once, in order, byte-equal; FIN after the last byte", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(anyMessage, { minLength: 1, maxLength: 20 }),
        // Budgets per write() call, cycled: 0 (buffer full), a few bytes, or a kernel-sized slice.
        fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 7 }), fc.integer({ min: 4096, max: 300_000 })), { minLength: 1, maxLength: 10 }).filter((budgets) => budgets.some((budget) => budget >= 4096)),
        fc.nat({ max: 1_500_000 }),
        async (items, budgets, bigPayloadBytes) => {
          const socket = new FakeSocket(budgets);
          const connection = new SocketConnection(socket, "fake");
          socket.connection = connection;
          // One large write among the small frames, as a client sends.
          const big = new Uint8Array(bigPayloadBytes).map((_, index) => (index * 131) >>> 3);
          const all = [...items, { message: { type: "write" as const, reqId: 1, device: "d", wrl: "w", epoch: 1, offset: 0, length: big.length }, payload: big }, ...items];
          const sends = all.map((item) => connection.send(item.message, item.payload));
          const closing = connection.close();
          await drainAll(socket, connection);
          await Promise.all(sends);
          expect(socket.violations).toEqual([]);
          expect(socket.shutdownAt).toBe(socket.bytes().length);
          const expected = concatBytes(all.map((item) => encodeFrameBytes(item.message, item.payload)));
          expect(Buffer.from(socket.bytes()).equals(Buffer.from(expected))).toBe(true);
          expect(decodeAll(socket.bytes()).map((frame) => frame.message)).toEqual(all.map((item) => item.message));
          // The peer's FIN completes the close.
          connection.handlePeerEnd();
          expect(socket.ended).toBe(true);
          connection.handleClose();
          await closing;
          expect(await connection.closed).toBeUndefined();
        },
      ),
      { seed, numRuns: 60 },
    );
  });

  test("send() makes its caller wait while more than connectionSendQueueBytesMax is queued", async () => {
    const socket = new FakeSocket([0]); // the peer does not read: nothing can be written
    const connection = new SocketConnection(socket, "fake");
    const payload = new Uint8Array(8 * 1024 * 1024);
    const write = (reqId: number) => ({ type: "write" as const, reqId, device: "d", wrl: "w", epoch: 0, offset: 0, length: payload.length });
    const framesUnderBound = Math.floor(connectionSendQueueBytesMax / (payload.length + 100));
    for (let reqId = 0; reqId < framesUnderBound; reqId += 1) await connection.send(write(reqId), payload);
    let released = false;
    const over = connection.send(write(framesUnderBound), payload).then(() => (released = true));
    for (let round = 0; round < 5; round += 1) await tick();
    expect(released).toBe(false);
    expect(connection.queuedBytes).toBeGreaterThan(connectionSendQueueBytesMax);
    socket.budgets = [256 * 1024]; // the peer reads again
    await drainAll(socket, connection);
    await over;
    expect(released).toBe(true);
    expect(decodeAll(socket.bytes()).map((frame) => (frame.message as { reqId: number }).reqId)).toEqual([...Array(framesUnderBound + 1).keys()]);
  });

  test("a socket that closes under queued frames rejects waiting senders and receivers with the reason", async () => {
    const socket = new FakeSocket([0]);
    const connection = new SocketConnection(socket, "fake");
    const payload = new Uint8Array(8 * 1024 * 1024);
    let blocked: Promise<string> | undefined;
    for (let reqId = 0; blocked === undefined; reqId += 1) {
      let settled = false;
      const sending = connection.send({ type: "write", reqId, device: "d", wrl: "w", epoch: 0, offset: 0, length: payload.length }, payload).then(
        () => "sent",
        (error) => error.code as string,
      );
      void sending.then(() => (settled = true));
      await tick();
      if (!settled) blocked = sending;
    }
    const receiving = connection.receive().then(
      () => "frame",
      (error) => error.code as string,
    );
    connection.handleClose(new Error("connection reset by peer"));
    expect(await blocked).toBe("SYSTEM");
    expect(await receiving).toBe("SYSTEM");
    expect(await connection.closed).toMatchObject({ code: "SYSTEM" });
    expect(await connection.send({ type: "ping", nonce: 2 }).then(() => "sent", (error) => error.code)).toBe("SYSTEM");
    expect(connection.queuedBytes).toBe(0);
  });

  test("a reply sent fire-and-forget on a closed connection is not an unhandled rejection", async () => {
    const unhandled: unknown[] = [];
    const record = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", record);
    try {
      const connection = new SocketConnection(new FakeSocket([1 << 20]), "fake");
      connection.handleClose();
      void connection.send({ type: "writeAck", reqId: 1, lsn: 1 });
      for (let round = 0; round < 3; round += 1) await tick();
      expect(unhandled).toEqual([]);
      // Whoever awaits it still learns the connection is closed.
      expect(await connection.send({ type: "ping", nonce: 1 }).then(() => "sent", (error) => error.code)).toBe("NET_RESET");
    } finally {
      process.off("unhandledRejection", record);
    }
  });
});
