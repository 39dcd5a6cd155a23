/** The socket transport on loopback (TCP and Unix): real Bun sockets, real kernel buffers. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writePayloadSizeBytesMax } from "../../src/constants.ts";
import type { DruvaaError } from "../../src/errors.ts";
import { connect, formatAddress, listen, parseAddress, type Address, type Connection, type Listener, type SocketConnection } from "../../src/io/transport.ts";
import { encodeFrameBytes, FrameDecoder, type Frame } from "../../src/protocol/frame.ts";
import { clientHandshake, serverHandshake } from "../../src/protocol/handshake.ts";
import type { HelloMessage } from "../../src/protocol/messages.ts";

const scratch = mkdtempSync(join(tmpdir(), "druvaa-transport-"));
const listeners: Listener[] = [];
const children: { kill(): void }[] = [];
afterAll(async () => {
  for (const child of children) child.kill();
  await Promise.all(listeners.map((listener) => listener.stop()));
  rmSync(scratch, { recursive: true, force: true });
});

/** Answers ping with pong and echoes writes back (same payload), like a tiny staging server. */
async function startEchoServer(address: Address): Promise<Listener> {
  const listener = await listen(address, (connection) => {
    connection.onFrame((frame, peer) => {
      const { message } = frame;
      if (message.type === "ping") void peer.send({ type: "pong", nonce: message.nonce });
      else if (message.type === "write") void peer.send(message, frame.payload);
    });
  });
  listeners.push(listener);
  return listener;
}

function pseudoRandomBytes(length: number, seed: number): Uint8Array {
  const words = new Uint32Array(Math.ceil(length / 4));
  let state = seed | 1;
  for (let index = 0; index < words.length; index += 1) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    words[index] = state;
  }
  return new Uint8Array(words.buffer, 0, length);
}

/** Collects the frames a connection receives until `count` have arrived. */
function collect(connection: Connection, count: number): Promise<Frame[]> {
  const frames: Frame[] = [];
  return new Promise((resolve, reject) => {
    connection.onFrame((frame) => {
      frames.push(frame);
      if (frames.length === count) resolve(frames);
    });
    void connection.closed.then((reason) => reject(reason ?? new Error(`closed after ${frames.length} of ${count} frames`)));
  });
}

async function roundTripLargeWrites(address: Address, frameCount: number): Promise<void> {
  const server = await startEchoServer(address);
  const client = await connect(server.address);
  try {
    const payloads = Array.from({ length: frameCount }, (_, index) => pseudoRandomBytes(writePayloadSizeBytesMax, index + 1));
    const received = collect(client, frameCount);
    // All in flight at once: the queue and the kernel buffers fill, writes come back partial.
    await Promise.all(payloads.map((payload, reqId) => client.send({ type: "write", reqId, device: "sda", wrl: "w0", epoch: 1, offset: reqId * payload.length, length: payload.length }, payload)));
    const frames = await received;
    expect(frames.map((frame) => (frame.message as { reqId: number }).reqId)).toEqual([...payloads.keys()]);
    for (const [index, frame] of frames.entries()) expect(Buffer.from(frame.payload).equals(Buffer.from(payloads[index]!))).toBe(true);
    // The drain path ran for real (not only in the fake-socket tests).
    expect((client as SocketConnection).partialWrites).toBeGreaterThan(0);
  } finally {
    await client.close();
  }
}

describe("parseAddress", () => {
  const good: [string, Address][] = [
    ["10.0.0.5:6001", { kind: "tcp", host: "10.0.0.5", port: 6001 }],
    ["staging.example.com", { kind: "tcp", host: "staging.example.com", port: 6001 }],
    [":7000", { kind: "tcp", host: undefined, port: 7000 }],
    ["[::1]:6003", { kind: "tcp", host: "::1", port: 6003 }],
    ["[fe80::1]", { kind: "tcp", host: "fe80::1", port: 6001 }],
    ["localhost:0", { kind: "tcp", host: "localhost", port: 0 }],
    ["unix:/run/druvaa/staging.sock", { kind: "unix", path: "/run/druvaa/staging.sock" }],
    ["unix:relative.sock", { kind: "unix", path: "relative.sock" }],
  ];
  for (const [text, address] of good) {
    test(`"${text}"`, () => {
      expect(parseAddress(text, 6001)).toEqual(address);
      expect(parseAddress(formatAddress(address), 6001)).toEqual(address);
    });
  }

  const bad = ["", "   ", "host:", "host:65536", "host:-1", "host:6x", "::1", "a:b:c", "[10.0.0.1]:5", "bad_host:6001", "-lead:1", "unix:", `unix:/${"x".repeat(120)}`, "host:600001"];
  for (const text of bad) {
    test(`"${text}" is NET_BAD_ADDRESS with a hint`, () => {
      try {
        parseAddress(text, 6001);
        throw new Error("accepted");
      } catch (error) {
        expect((error as DruvaaError).code).toBe("NET_BAD_ADDRESS");
        expect((error as DruvaaError).hint?.length).toBeGreaterThan(0);
        expect((error as DruvaaError).exitCode).toBe(2);
      }
    });
  }
});

describe("loopback transport", () => {
  test("TCP: 8 MiB writes, many in flight, come back byte-equal and in order", async () => {
    await roundTripLargeWrites(parseAddress("127.0.0.1:0", 0), 8);
  });

  test("Unix socket: 8 MiB writes, many in flight, come back byte-equal and in order", async () => {
    await roundTripLargeWrites({ kind: "unix", path: join(scratch, "echo.sock") }, 6);
  });

  test("thousands of small frames in flight arrive in order", async () => {
    const server = await startEchoServer(parseAddress("127.0.0.1:0", 0));
    const client = await connect(server.address);
    try {
      const count = 5000;
      const received = collect(client, count);
      for (let nonce = 0; nonce < count; nonce += 1) void client.send({ type: "ping", nonce });
      expect((await received).map((frame) => (frame.message as { nonce: number }).nonce)).toEqual([...Array(count).keys()]);
    } finally {
      await client.close();
    }
  });

  test("a garbage-sending peer is told why and disconnected; a well-behaved peer keeps working", async () => {
    const server = await startEchoServer(parseAddress("127.0.0.1:0", 0));
    const good = await connect(server.address);
    try {
      await good.send({ type: "ping", nonce: 1 });
      expect((await good.receive(10_000)).message).toEqual({ type: "pong", nonce: 1 });

      for (const garbage of [
        new TextEncoder().encode("GET / HTTP/1.1\r\nHost: staging\r\n\r\n"),
        // A valid ping, then a frame whose header is not CBOR: the ping is still answered.
        new Uint8Array([...encodeFrameBytes({ type: "ping", nonce: 7 }), 0, 0, 0, 3, 0, 1, 0xff]),
      ]) {
        const replies = await rawExchange(server.address, garbage, false);
        const frames = decodeStream(replies);
        const last = frames.at(-1)!.message;
        expect(last.type).toBe("error");
        expect((last as { code: string }).code).toBe(garbage[0] === 0x47 ? "PROTO_FRAME_TOO_LARGE" : "PROTO_BAD_CBOR");
        if (garbage[0] !== 0x47) expect(frames[0]!.message).toEqual({ type: "pong", nonce: 7 });
      }

      await good.send({ type: "ping", nonce: 2 });
      expect((await good.receive(10_000)).message).toEqual({ type: "pong", nonce: 2 });
      expect(good.isOpen).toBe(true);
    } finally {
      await good.close();
    }
  });

  test("a peer that half-closes right after sending still gets every reply", async () => {
    const server = await startEchoServer(parseAddress("127.0.0.1:0", 0));
    const pings = Array.from({ length: 200 }, (_, nonce) => encodeFrameBytes({ type: "ping", nonce }));
    const frames = decodeStream(await rawExchange(server.address, new Uint8Array(Buffer.concat(pings)), true));
    expect(frames.map((frame) => frame.message)).toEqual(pings.map((_, nonce) => ({ type: "pong", nonce })));
  });

  test("handshake over TCP: a wrong role is refused with PROTO_ROLE on both ends; the right one is served", async () => {
    const serverResults: string[] = [];
    const listener = await listen(parseAddress("127.0.0.1:0", 0), (connection) => {
      serverHandshake(connection, { role: "staging", nodeId: "stg-1" }, ["client"], 10_000).then(
        (hello) => {
          serverResults.push(`ok:${hello.nodeId}`);
          connection.onFrame((frame, peer) => {
            if (frame.message.type === "ping") void peer.send({ type: "pong", nonce: frame.message.nonce });
          });
        },
        (error: DruvaaError) => {
          serverResults.push(error.code);
          void connection.close(error);
        },
      );
    });
    listeners.push(listener);

    const replica = await connect(listener.address);
    const refused = await clientHandshake(replica, { role: "replica", nodeId: "rep-1" }, ["staging"]).then(() => "accepted", (error: DruvaaError) => error.code);
    expect(refused).toBe("PROTO_ROLE");
    expect(await replica.closed).toMatchObject({ code: "PROTO_ROLE" });

    const client = await connect(listener.address);
    try {
      const ack = await clientHandshake(client, { role: "client", nodeId: "cli-1" }, ["staging"]);
      expect(ack.nodeId).toBe("stg-1");
      await client.send({ type: "ping", nonce: 3 });
      expect((await client.receive(10_000)).message).toEqual({ type: "pong", nonce: 3 });
    } finally {
      await client.close();
    }
    expect(serverResults).toEqual(["PROTO_ROLE", "ok:cli-1"]);
  });

  test("a peer that never says hello is dropped with PROTO_HANDSHAKE_TIMEOUT", async () => {
    let result: Promise<HelloMessage> | undefined;
    const listener = await listen(parseAddress("127.0.0.1:0", 0), (connection) => {
      result = serverHandshake(connection, { role: "staging", nodeId: "stg-1" }, ["client"], 50);
      result.catch((error: DruvaaError) => connection.close(error));
    });
    listeners.push(listener);
    const silent = await connect(listener.address);
    try {
      const reason = await silent.closed; // the server gives up and closes
      expect(reason).toMatchObject({ code: "PROTO_HANDSHAKE_TIMEOUT" });
      expect(await result!.then(() => "ok", (error: DruvaaError) => error.code)).toBe("PROTO_HANDSHAKE_TIMEOUT");
    } finally {
      silent.abort();
    }
  });
});

describe("connect and listen errors", () => {
  test("nobody listening: NET_CONNECT_REFUSED (TCP and Unix)", async () => {
    const probe = await listen(parseAddress("127.0.0.1:0", 0), () => {});
    const address = probe.address;
    await probe.stop();
    for (const target of [address, { kind: "unix", path: join(scratch, "nobody.sock") } as Address]) {
      expect(await connect(target).then(() => "connected", (error: DruvaaError) => error.code)).toBe("NET_CONNECT_REFUSED");
    }
  });

  test("a busy TCP port is NET_ADDRESS_IN_USE", async () => {
    const first = await listen(parseAddress("127.0.0.1:0", 0), () => {});
    listeners.push(first);
    expect(await listen(first.address, () => {}).then(() => "listening", (error: DruvaaError) => error.code)).toBe("NET_ADDRESS_IN_USE");
  });

  test("a Unix socket left by a killed process is replaced; a live one is refused", async () => {
    const path = join(scratch, "stale.sock");
    const child = Bun.spawn({
      cmd: [process.execPath, "-e", `Bun.listen({ unix: ${JSON.stringify(path)}, socket: { data() {} } }); console.log("up"); setInterval(() => {}, 1000);`],
      stdout: "pipe",
    });
    children.push(child);
    const reader = child.stdout.getReader();
    await reader.read(); // "up": the child listens
    const live = await listen({ kind: "unix", path }, () => {}).then(() => "listening", (error: DruvaaError) => error.code);
    expect(live).toBe("NET_ADDRESS_IN_USE");
    child.kill("SIGKILL");
    await child.exited;
    const server = await startEchoServer({ kind: "unix", path });
    const client = await connect(server.address);
    try {
      await client.send({ type: "ping", nonce: 9 });
      expect((await client.receive(10_000)).message).toEqual({ type: "pong", nonce: 9 });
    } finally {
      await client.close();
    }
  });
});

/** A raw Bun client: writes `bytes`, optionally half-closes, returns everything received until the server closes. */
async function rawExchange(address: Address, bytes: Uint8Array, halfClose: boolean): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let done!: () => void;
  const closed = new Promise<void>((resolve) => (done = resolve));
  const handlers = {
    binaryType: "uint8array" as const,
    data(_socket: unknown, chunk: Uint8Array) {
      chunks.push(chunk.slice());
    },
    end(socket: { end(): void }) {
      socket.end();
    },
    close() {
      done();
    },
  };
  const socket =
    address.kind === "unix"
      ? await Bun.connect({ unix: address.path, allowHalfOpen: true, socket: handlers })
      : await Bun.connect({ hostname: address.host ?? "127.0.0.1", port: address.port, allowHalfOpen: true, socket: handlers });
  expect(socket.write(bytes)).toBe(bytes.length); // small enough for the kernel buffer
  if (halfClose) socket.shutdown();
  await closed;
  return new Uint8Array(Buffer.concat(chunks));
}

function decodeStream(bytes: Uint8Array): Frame[] {
  const decoder = new FrameDecoder();
  const frames = [...decoder.push(bytes)];
  decoder.finish();
  return frames;
}

