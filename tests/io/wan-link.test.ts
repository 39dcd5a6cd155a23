/**
 * The WAN link emulator (src/io/wan-link.ts, wan-shaper.ts): the timing model with an injected
 * clock (exact numbers, no sleeping); the live link for bytes intact and in order both ways,
 * half-close, cuts, outages, bounded memory, stats (no assertion on wall-clock time).
 */
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import fc from "fast-check";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { DruvaaError } from "../../src/errors.ts";
import { parseAddress, type Address } from "../../src/io/address.ts";
import { Random } from "../../src/io/random.ts";
import { startWanLink, type WanLink, type WanLinkOptions } from "../../src/io/wan-link.ts";
import { LinkShaper, nextCutIntervalMs, serializationMs } from "../../src/io/wan-shaper.ts";
import { bytes } from "../helpers/bytes.ts";

const MiB = 1024 * 1024;
const liveTestTimeoutMs = 10_000;

describe("LinkShaper (injected clock)", () => {
  test("8 Mbit/s, 40 ms: 1 MB chunks sent together arrive at 1040, 2040, 3040 ms", () => {
    const shaper = new LinkShaper({ delayMs: 40, jitterMs: 0, rateBitsPerSecond: 8e6 });
    const arrivals = [0, 1, 2].map(() => shaper.schedule(1_000_000, 0));
    expect(arrivals).toEqual([
      { departMs: 1000, arriveMs: 1040 },
      { departMs: 2000, arriveMs: 2040 },
      { departMs: 3000, arriveMs: 3040 },
    ]);
  });

  test("an idle link serializes at once; a FIN takes no link time but waits behind the data", () => {
    const shaper = new LinkShaper({ delayMs: 40, jitterMs: 0, rateBitsPerSecond: 8e6 });
    expect(shaper.schedule(100_000, 500)).toEqual({ departMs: 600, arriveMs: 640 });
    expect(shaper.schedule(0, 550)).toEqual({ departMs: 600, arriveMs: 640 }); // FIN behind the chunk
    expect(shaper.schedule(10_000, 5000)).toEqual({ departMs: 5010, arriveMs: 5050 }); // idle again
  });

  test("rate and delay changes apply to later chunks; a shorter delay never overtakes", () => {
    const shaper = new LinkShaper({ delayMs: 100, jitterMs: 0, rateBitsPerSecond: 8e6 });
    expect(shaper.schedule(1_000_000, 0)).toEqual({ departMs: 1000, arriveMs: 1100 });
    shaper.setRate(16e6);
    expect(shaper.schedule(1_000_000, 0)).toEqual({ departMs: 1500, arriveMs: 1600 });
    shaper.setDelay(10);
    expect(shaper.schedule(0, 1500)).toEqual({ departMs: 1500, arriveMs: 1600 }); // held behind 1600
    expect(shaper.schedule(1000, 2000)).toEqual({ departMs: 2000.5, arriveMs: 2010.5 });
    shaper.forget();
    expect(shaper.schedule(1000, 0)).toEqual({ departMs: 0.5, arriveMs: 10.5 });
  });

  test("an unlimited rate is delay only", () => {
    const shaper = new LinkShaper({ delayMs: 25, jitterMs: 0, rateBitsPerSecond: Number.POSITIVE_INFINITY });
    for (const _ of [1, 2]) expect(shaper.schedule(64 * MiB, 10)).toEqual({ departMs: 10, arriveMs: 35 });
  });

  test("property: serialization back to back, delay within ±jitter, arrivals in order, seed replays", () => {
    const chunk = fc.record({ gapMs: fc.double({ min: 0, max: 200, noNaN: true }), sizeBytes: fc.integer({ min: 0, max: 2 * MiB }) });
    fc.assert(
      fc.property(
        fc.array(chunk, { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 1, max: 10_000 }).map((megabits) => megabits * 1e5),
        fc.integer({ min: 0, max: 300 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 0, max: 2 ** 31 }),
        (chunks, rateBitsPerSecond, delayMs, jitterMs, seed) => {
          const run = () => {
            const shaper = new LinkShaper({ delayMs, jitterMs, rateBitsPerSecond }, new Random(seed));
            let nowMs = 0;
            return chunks.map(({ gapMs, sizeBytes }) => {
              nowMs += gapMs;
              return { nowMs, sizeBytes, ...shaper.schedule(sizeBytes, nowMs) };
            });
          };
          const schedule = run();
          expect(run()).toEqual(schedule);
          const epsilon = 1e-6;
          schedule.forEach(({ nowMs, sizeBytes, departMs, arriveMs }, index) => {
            const previous = schedule[index - 1];
            const startMs = Math.max(nowMs, previous?.departMs ?? Number.NEGATIVE_INFINITY);
            expect(departMs).toBeCloseTo(startMs + serializationMs(sizeBytes, rateBitsPerSecond), 6);
            expect(arriveMs).toBeGreaterThanOrEqual(departMs + Math.max(0, delayMs - jitterMs) - epsilon);
            expect(arriveMs).toBeLessThanOrEqual(Math.max(departMs + delayMs + jitterMs, previous?.arriveMs ?? 0) + epsilon);
            if (previous !== undefined) expect(arriveMs).toBeGreaterThanOrEqual(previous.arriveMs);
          });
        },
      ),
      { numRuns: 200 },
    );
  });

  test("random cut intervals are seeded, positive, and average the mean", () => {
    const draw = (seed: number) => {
      const random = new Random(seed);
      return Array.from({ length: 20_000 }, () => nextCutIntervalMs(random, 250));
    };
    const intervals = draw(42);
    expect(draw(42)).toEqual(intervals);
    expect(intervals.every((intervalMs) => intervalMs >= 0 && Number.isFinite(intervalMs))).toBe(true);
    const meanMs = intervals.reduce((sum, intervalMs) => sum + intervalMs, 0) / intervals.length;
    expect(meanMs).toBeGreaterThan(240);
    expect(meanMs).toBeLessThan(260);
  });
});

// ---- live link: raw sockets on both sides, with their own partial-write handling ----

/** One raw socket of a test peer: queued writes (Bun drops what write() does not take), all reads kept. */
class Endpoint {
  readonly #chunks: Uint8Array[] = [];
  receivedBytes = 0;
  peerEnded = false;
  #queue: Uint8Array[] = [];
  #shutdownWhenFlushed = false;
  #shutdownSent = false;
  #resolveClosed!: (error: Error | undefined) => void;
  readonly closed = new Promise<Error | undefined>((resolve) => (this.#resolveClosed = resolve));
  #resolveEnded!: () => void;
  /** Resolves on the peer's FIN (or when the socket closes). */
  readonly ended = new Promise<void>((resolve) => (this.#resolveEnded = resolve));

  constructor(readonly socket: Socket<Endpoint>) {}

  get received(): Uint8Array {
    return Buffer.concat(this.#chunks);
  }

  send(data: Uint8Array, thenShutdown = false): void {
    for (let offset = 0; offset < data.length; offset += 1 * MiB) this.#queue.push(data.subarray(offset, offset + MiB));
    this.#shutdownWhenFlushed ||= thenShutdown;
    this.flush();
  }

  flush(): void {
    while (this.#queue.length > 0) {
      const head = this.#queue[0]!;
      const written = this.socket.write(head);
      if (written < 0) return;
      if (written < head.length) {
        this.#queue[0] = head.subarray(written);
        return; // the rest on drain
      }
      this.#queue.shift();
    }
    if (this.#shutdownWhenFlushed) {
      this.#shutdownWhenFlushed = false;
      this.#shutdownSent = true;
      this.socket.shutdown();
    }
  }

  onData(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.receivedBytes += chunk.length;
  }

  onEnd(): void {
    this.peerEnded = true;
    this.#resolveEnded();
  }

  onClose(error: Error | undefined): void {
    // Once our FIN has gone, Bun reports the peer's FIN as a close without an error (no `end`).
    if (error === undefined && this.#shutdownSent) this.peerEnded = true;
    this.#resolveEnded();
    this.#resolveClosed(error);
  }
}

const endpointHandlers = {
  binaryType: "uint8array" as const,
  data: (socket: Socket<Endpoint>, chunk: Uint8Array) => socket.data.onData(chunk),
  drain: (socket: Socket<Endpoint>) => socket.data.flush(),
  end: (socket: Socket<Endpoint>) => socket.data.onEnd(),
  close: (socket: Socket<Endpoint>, error?: Error) => socket.data.onClose(error),
  error: (socket: Socket<Endpoint>, error: Error) => socket.data.onClose(error),
};

/** A target server on 127.0.0.1:0; `accepted` lists its connections, `nextAccepted()` waits for one. */
function startServer(onOpen: (endpoint: Endpoint) => void = () => undefined) {
  const accepted: Endpoint[] = [];
  let waiter: ((endpoint: Endpoint) => void) | undefined;
  const server = Bun.listen<Endpoint>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      ...endpointHandlers,
      open(socket) {
        socket.data = new Endpoint(socket);
        accepted.push(socket.data);
        onOpen(socket.data);
        waiter?.(socket.data);
        waiter = undefined;
      },
    },
  });
  const address: Address = { kind: "tcp", host: "127.0.0.1", port: server.port };
  const nextAccepted = () => new Promise<Endpoint>((resolve) => (waiter = resolve));
  return { address, accepted, nextAccepted, stop: () => server.stop(true) };
}

async function connectClient(address: string): Promise<Endpoint> {
  const target = parseAddress(address, 0);
  let endpoint: Endpoint | undefined;
  const socket = {
    ...endpointHandlers,
    open(opened: Socket<Endpoint>) {
      endpoint = new Endpoint(opened);
      opened.data = endpoint;
    },
  };
  if (target.kind === "unix") await Bun.connect<Endpoint>({ unix: target.path, allowHalfOpen: true, socket });
  else await Bun.connect<Endpoint>({ hostname: target.host!, port: target.port, allowHalfOpen: true, socket });
  return endpoint!;
}

/** Runs `body` with a server and a link in front of it; everything is closed afterwards, even on failure. */
async function withLink(
  options: Partial<WanLinkOptions>,
  body: (link: WanLink, server: ReturnType<typeof startServer>, clients: Endpoint[]) => Promise<void>,
  onServerOpen?: (endpoint: Endpoint) => void,
): Promise<void> {
  const server = startServer(onServerOpen);
  const clients: Endpoint[] = [];
  let link: WanLink | undefined;
  try {
    link = await startWanLink({ listen: { kind: "tcp", host: "127.0.0.1", port: 0 }, target: server.address, delayMs: 5, rateBitsPerSecond: 1e9, seed: 1, ...options });
    await body(link, server, clients);
  } finally {
    for (const client of clients) client.socket.terminate();
    await link?.stop();
    server.stop();
  }
}

/** Both peers send `sizeBytes` at once and half-close; each must receive the other's bytes, then the FIN. */
async function fullDuplexExchange(link: WanLink, server: ReturnType<typeof startServer>, clients: Endpoint[], sizeBytes: number): Promise<void> {
  const up = bytes(sizeBytes, 1);
  const down = bytes(sizeBytes, 2);
  const accepted = server.nextAccepted();
  const client = await connectClient(link.address);
  clients.push(client);
  client.send(up, true);
  const serverSide = await accepted;
  serverSide.send(down, true);
  await Promise.all([client.ended, serverSide.ended]);
  expect(serverSide.peerEnded).toBe(true); // a FIN, not a reset
  expect(client.peerEnded).toBe(true);
  expect(serverSide.receivedBytes).toBe(sizeBytes);
  expect(client.receivedBytes).toBe(sizeBytes);
  expect(Buffer.compare(serverSide.received, up)).toBe(0);
  expect(Buffer.compare(client.received, down)).toBe(0);
  // Both FINs crossed: the link closes both sockets (graceful, no error).
  expect(await client.closed).toBeUndefined();
  expect(await serverSide.closed).toBeUndefined();
}

describe("startWanLink", () => {
  test("8 MiB each way at once, with delay and rate: intact, in order, half-closed, counted", async () => {
    await withLink({ delayMs: 10, rateBitsPerSecond: 400e6 }, async (link, server, clients) => {
      await fullDuplexExchange(link, server, clients, 8 * MiB);
      expect(link.stats()).toMatchObject({ bytesUp: 8 * MiB, bytesDown: 8 * MiB, connections: 1, cuts: 0, refused: 0 });
    });
  }, liveTestTimeoutMs);

  test("unix socket in front of TCP, with jitter: intact and in order; the socket file is removed on stop", async () => {
    const directory = mkdtempSync(join(tmpdir(), "druvaa-wan-"));
    const path = join(directory, "link.sock");
    try {
      await withLink({ listen: { kind: "unix", path }, delayMs: 3, jitterMs: 3, rateBitsPerSecond: 200e6, seed: 7 }, async (link, server, clients) => {
        expect(link.address).toBe(`unix:${path}`);
        await fullDuplexExchange(link, server, clients, 1 * MiB);
      });
      expect(existsSync(path)).toBe(false);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  }, liveTestTimeoutMs);

  test("memory stays bounded: a fast sender on a slow link is paused, and no byte is lost", async () => {
    const queueBytesMax = 256 * 1024;
    await withLink({ delayMs: 2, rateBitsPerSecond: 80e6, queueBytesMax }, async (link, server, clients) => {
      const up = bytes(3 * MiB, 3);
      const accepted = server.nextAccepted();
      const client = await connectClient(link.address);
      clients.push(client);
      client.send(up, true); // loopback takes it far faster than 80 Mbit/s drains it
      const serverSide = await accepted;
      await serverSide.ended;
      expect(Buffer.compare(serverSide.received, up)).toBe(0);
      const { queuedBytesPeak } = link.stats();
      expect(queuedBytesPeak).toBeGreaterThan(queueBytesMax); // the bound was reached...
      expect(queuedBytesPeak).toBeLessThanOrEqual(queueBytesMax + 1 * MiB); // ...and held, give or take one read
    });
  }, liveTestTimeoutMs);

  test("a slow reader (the link's writes come back partial): no byte is lost", async () => {
    // The target reads one chunk per timer turn, so its socket buffers fill and the link's writes
    // to it are cut short (Bun drops the untaken tail: the link must resend it on drain).
    const slowReader = (endpoint: Endpoint) => {
      const onData = endpoint.onData.bind(endpoint);
      endpoint.onData = (chunk) => {
        onData(chunk);
        endpoint.socket.pause();
        setTimeout(() => endpoint.socket.resume(), 1);
      };
    };
    await withLink({ delayMs: 1, rateBitsPerSecond: Number.POSITIVE_INFINITY }, async (link, server, clients) => {
      const up = bytes(8 * MiB, 4);
      const accepted = server.nextAccepted();
      const client = await connectClient(link.address);
      clients.push(client);
      client.send(up, true);
      const serverSide = await accepted;
      await serverSide.ended;
      expect(serverSide.receivedBytes).toBe(up.length);
      expect(Buffer.compare(serverSide.received, up)).toBe(0);
    }, slowReader);
  }, liveTestTimeoutMs);

  test("cut() resets both ends of every connection", async () => {
    await withLink({}, async (link, server, clients) => {
      const accepted = server.nextAccepted();
      const client = await connectClient(link.address);
      clients.push(client);
      const serverSide = await accepted; // both sockets of the proxied connection exist
      link.cut();
      await Promise.all([client.closed, serverSide.closed]);
      expect(client.peerEnded).toBe(false); // a reset, not a FIN
      expect(serverSide.peerEnded).toBe(false);
      expect(link.stats()).toMatchObject({ connections: 1, cuts: 1, open: 0 });
    });
  }, liveTestTimeoutMs);

  test("setDown(true) cuts and refuses connections; setDown(false) lets them through again", async () => {
    await withLink({}, async (link, server, clients) => {
      const before = await connectClient(link.address);
      clients.push(before);
      await server.nextAccepted();
      link.setDown(true);
      await before.closed;
      const refused = await connectClient(link.address);
      clients.push(refused);
      await refused.closed; // closed by the link at once...
      expect(server.accepted.length).toBe(1); // ...without ever reaching the target
      expect(link.stats()).toMatchObject({ connections: 1, refused: 1, cuts: 1 });
      link.setDown(false);
      await fullDuplexExchange(link, server, clients, 64 * 1024);
      expect(link.stats()).toMatchObject({ connections: 2, refused: 1, cuts: 1, bytesUp: 64 * 1024, bytesDown: 64 * 1024 });
    });
  }, liveTestTimeoutMs);

  test("a reset by the target reaches the client", async () => {
    await withLink({}, async (link, server, clients) => {
      const accepted = server.nextAccepted();
      const client = await connectClient(link.address);
      clients.push(client);
      (await accepted).socket.terminate();
      await client.closed;
      expect(client.peerEnded).toBe(false);
      expect(link.stats().cuts).toBe(0); // the target's doing, not the link's
    });
  }, liveTestTimeoutMs);

  test("random cuts (cutEveryMs) reset connections", async () => {
    await withLink({ cutEveryMs: 20, seed: 3 }, async (link, _server, clients) => {
      const client = await connectClient(link.address);
      clients.push(client);
      await client.closed;
      expect(link.stats().cuts).toBeGreaterThanOrEqual(1);
    });
  }, liveTestTimeoutMs);

  test("a target nobody listens on: the client is reset", async () => {
    const server = startServer();
    const deadTarget = server.address;
    server.stop(); // the port is free now: connecting to it is refused
    const link = await startWanLink({ listen: { kind: "tcp", host: "127.0.0.1", port: 0 }, target: deadTarget, delayMs: 1, rateBitsPerSecond: 1e9 });
    let client: Endpoint | undefined;
    try {
      client = await connectClient(link.address);
      await client.closed;
      expect(link.stats()).toMatchObject({ connections: 1, bytesUp: 0, bytesDown: 0 });
    } finally {
      client?.socket.terminate();
      await link.stop();
    }
  }, liveTestTimeoutMs);

  test("bad options are a WAN_LINK_BAD_OPTION error with a hint", async () => {
    const base: WanLinkOptions = { listen: { kind: "tcp", host: "127.0.0.1", port: 0 }, target: { kind: "tcp", host: "127.0.0.1", port: 9 }, delayMs: 1, rateBitsPerSecond: 1e6 };
    for (const bad of [{ rateBitsPerSecond: 0 }, { delayMs: -1 }, { jitterMs: Number.NaN }, { cutEveryMs: 0 }, { seed: 1.5 }, { queueBytesMax: 10 }, { target: { kind: "tcp", host: undefined, port: 0 } as Address }]) {
      const error = await startWanLink({ ...base, ...bad }).then(() => undefined, (caught: unknown) => caught);
      expect(error).toBeInstanceOf(DruvaaError);
      expect((error as DruvaaError).code).toBe("WAN_LINK_BAD_OPTION");
      expect((error as DruvaaError).hint).toBeTruthy();
    }
  });
});
