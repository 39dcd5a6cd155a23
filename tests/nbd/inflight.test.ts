/**
 * Many requests in flight on one connection: pipelined requests all complete with the right data,
 * replies go out as each request completes (out of order), the in-flight count and bytes stay
 * bounded (the server stops reading instead of buffering without end), and every way a connection
 * ends (DISC, the client's FIN, server close) first finishes what is in flight.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { existsSync } from "node:fs";
import { nbdInflightBytesMax, nbdInflightRequestsMax } from "../../src/constants.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { exportFromBlockDevice, type NbdExport } from "../../src/nbd/backend.ts";
import { startNbdServer, type NbdServer } from "../../src/nbd/server.ts";
import { removeDir, tempDir } from "./helpers.ts";
import { NBD, pattern, RawClient } from "./raw-client.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * A memory export whose writes wait at a gate until released; counts how many run at once.
 * `holdOnly` restricts the gate to writes at those offsets.
 */
class GatedExport {
  readonly device: MemoryDevice;
  readonly backend: NbdExport;
  running = 0;
  maxRunning = 0;
  private waiting: (() => void)[] = [];
  private open = false;

  constructor(sizeBytes: number, holdOnly?: Set<number>) {
    this.device = new MemoryDevice(sizeBytes, "gated", 512);
    const inner = exportFromBlockDevice(this.device, "");
    this.backend = {
      ...inner,
      write: async (offset, data, fua) => {
        this.running += 1;
        this.maxRunning = Math.max(this.maxRunning, this.running);
        try {
          if (!this.open && (holdOnly === undefined || holdOnly.has(offset))) await new Promise<void>((resolve) => this.waiting.push(resolve));
          await inner.write(offset, data, fua);
        } finally {
          this.running -= 1;
        }
      },
    };
  }

  release(): void {
    this.open = true;
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  async untilRunning(count: number): Promise<void> {
    while (this.running < count) await Bun.sleep(2);
  }
}

let dir: string;
beforeAll(() => {
  dir = tempDir();
});
afterAll(() => removeDir(dir));

let serverCount = 0;
async function serve(backend: NbdExport): Promise<{ server: NbdServer; socketPath: string }> {
  serverCount += 1;
  const socketPath = join(dir, `s${serverCount}.sock`);
  return { server: await startNbdServer({ listen: `unix:${socketPath}`, exports: [backend] }), socketPath };
}

async function connect(socketPath: string): Promise<RawClient> {
  const client = await RawClient.connect(socketPath);
  await client.start();
  await client.go("");
  return client;
}

describe("pipelining", () => {
  test("64 writes sent without waiting, then 64 reads: every cookie answered once, bytes right", async () => {
    const device = new MemoryDevice(8 * MiB, "memory", 512);
    const { server, socketPath } = await serve(exportFromBlockDevice(device, ""));
    try {
      const client = await connect(socketPath);
      const blockBytes = 64 * KiB;
      for (let index = 0; index < 64; index += 1) {
        client.request(NBD.cmd.write, 1000 + index, index * blockBytes, blockBytes, 0, pattern(blockBytes, index));
      }
      const writeCookies = new Set<number>();
      for (let index = 0; index < 64; index += 1) {
        const reply = await client.reply();
        expect(reply.error).toBe(0);
        writeCookies.add(reply.cookie);
      }
      expect([...writeCookies].sort()).toEqual(Array.from({ length: 64 }, (_, index) => 1000 + index));

      for (let index = 0; index < 64; index += 1) client.request(NBD.cmd.read, 2000 + index, index * blockBytes, blockBytes);
      for (let index = 0; index < 64; index += 1) {
        const reply = await client.reply(() => blockBytes);
        expect(reply.error).toBe(0);
        expect(reply.data).toEqual(pattern(blockBytes, reply.cookie - 2000));
      }
      const expected = new Uint8Array(8 * MiB);
      for (let index = 0; index < 64; index += 1) expected.set(pattern(blockBytes, index), index * blockBytes);
      expect(Bun.hash.xxHash64(device.snapshot())).toBe(Bun.hash.xxHash64(expected));
      client.disconnect();
      await client.untilClosed();
    } finally {
      await server.close();
    }
  });

  test("replies go out as requests complete, not in request order", async () => {
    const gated = new GatedExport(MiB, new Set([0]));
    const { server, socketPath } = await serve(gated.backend);
    try {
      const client = await connect(socketPath);
      client.request(NBD.cmd.write, 1, 0, 4096, 0, pattern(4096, 1)); // held at the gate
      client.request(NBD.cmd.write, 2, 4096, 4096, 0, pattern(4096, 2));
      expect((await client.reply()).cookie).toBe(2);
      gated.release();
      expect(await client.reply()).toMatchObject({ cookie: 1, error: 0 });
      expect(gated.device.snapshot().subarray(0, 8192)).toEqual(new Uint8Array([...pattern(4096, 1), ...pattern(4096, 2)]));
      client.disconnect();
      await client.untilClosed();
    } finally {
      gated.release();
      await server.close();
    }
  });
});

describe("back-pressure", () => {
  test(`at most nbdInflightRequestsMax (${nbdInflightRequestsMax}) requests run at once; the rest wait and then complete`, async () => {
    const gated = new GatedExport(4 * MiB);
    const { server, socketPath } = await serve(gated.backend);
    try {
      const client = await connect(socketPath);
      const total = nbdInflightRequestsMax + 44;
      for (let index = 0; index < total; index += 1) client.request(NBD.cmd.write, index, index * 4096, 4096, 0, pattern(4096, index));
      await gated.untilRunning(nbdInflightRequestsMax);
      await Bun.sleep(50); // give an unbounded server the chance to start more
      expect(gated.running).toBe(nbdInflightRequestsMax);
      gated.release();
      const cookies = new Set<number>();
      for (let index = 0; index < total; index += 1) {
        const reply = await client.reply();
        expect(reply.error).toBe(0);
        cookies.add(reply.cookie);
      }
      expect(cookies.size).toBe(total);
      expect(gated.maxRunning).toBe(nbdInflightRequestsMax);
      expect(gated.device.snapshot().subarray((total - 1) * 4096, total * 4096)).toEqual(pattern(4096, total - 1));
      client.disconnect();
      await client.untilClosed();
    } finally {
      gated.release();
      await server.close();
    }
  });

  test(`in-flight payload bytes stay within nbdInflightBytesMax (${nbdInflightBytesMax / MiB} MiB)`, async () => {
    const writeBytes = 4 * MiB;
    const admitted = nbdInflightBytesMax / writeBytes;
    const total = admitted + 8;
    const gated = new GatedExport(total * writeBytes);
    const { server, socketPath } = await serve(gated.backend);
    try {
      const client = await connect(socketPath);
      const payload = pattern(writeBytes, 3);
      for (let index = 0; index < total; index += 1) client.request(NBD.cmd.write, index, index * writeBytes, writeBytes, 0, payload);
      await gated.untilRunning(admitted);
      await Bun.sleep(50);
      expect(gated.running).toBe(admitted);
      gated.release();
      for (let index = 0; index < total; index += 1) expect((await client.reply()).error).toBe(0);
      expect(gated.maxRunning).toBe(admitted);
      client.disconnect();
      await client.untilClosed();
    } finally {
      gated.release();
      await server.close();
    }
  });
});

describe("ending a connection finishes in-flight requests first", () => {
  test("NBD_CMD_DISC: every earlier request is replied to and applied, then the connection closes", async () => {
    const gated = new GatedExport(MiB);
    const { server, socketPath } = await serve(gated.backend);
    try {
      const client = await connect(socketPath);
      for (let index = 0; index < 10; index += 1) client.request(NBD.cmd.write, index, index * 4096, 4096, 0, pattern(4096, index));
      client.disconnect();
      await gated.untilRunning(10);
      gated.release();
      for (let index = 0; index < 10; index += 1) expect((await client.reply()).error).toBe(0);
      expect(await client.untilClosed()).toBe(0);
      for (let index = 0; index < 10; index += 1) expect(gated.device.snapshot().subarray(index * 4096, (index + 1) * 4096)).toEqual(pattern(4096, index));
    } finally {
      gated.release();
      await server.close();
    }
  });

  test("client half-closes (FIN) after its requests: replies still arrive, then the server closes", async () => {
    const gated = new GatedExport(MiB);
    const { server, socketPath } = await serve(gated.backend);
    try {
      const client = await connect(socketPath);
      for (let index = 0; index < 5; index += 1) client.request(NBD.cmd.write, index, index * 4096, 4096, 0, pattern(4096, index));
      await gated.untilRunning(5);
      client.shutdownWrite();
      gated.release();
      for (let index = 0; index < 5; index += 1) expect((await client.reply()).error).toBe(0);
      expect(await client.untilClosed()).toBe(0);
      while (server.connections() > 0) await Bun.sleep(2);
    } finally {
      gated.release();
      await server.close();
    }
  });

  test("client vanishes with requests in flight: they finish, the connection is cleaned up", async () => {
    const gated = new GatedExport(MiB);
    const { server, socketPath } = await serve(gated.backend);
    try {
      const client = await connect(socketPath);
      for (let index = 0; index < 5; index += 1) client.request(NBD.cmd.write, index, index * 4096, 4096, 0, pattern(4096, index));
      await gated.untilRunning(5);
      client.end();
      await client.untilClosed();
      gated.release();
      while (server.connections() > 0) await Bun.sleep(2);
      expect(server.connections()).toBe(0);
      // Writes the server had accepted still land (the client just never hears about them).
      expect(gated.device.snapshot().subarray(4 * 4096, 5 * 4096)).toEqual(pattern(4096, 4));
    } finally {
      gated.release();
      await server.close();
    }
  });

  test("server close(): waits for in-flight requests, replies, closes connections, removes the socket file", async () => {
    const gated = new GatedExport(MiB);
    const { server, socketPath } = await serve(gated.backend);
    try {
      const client = await connect(socketPath);
      const idle = await connect(socketPath);
      for (let index = 0; index < 5; index += 1) client.request(NBD.cmd.write, index, index * 4096, 4096, 0, pattern(4096, index));
      await gated.untilRunning(5);
      expect(server.connections()).toBe(2);
      let closed = false;
      const closing = server.close().then(() => (closed = true));
      await Bun.sleep(20);
      expect(closed).toBe(false);
      gated.release();
      for (let index = 0; index < 5; index += 1) expect((await client.reply()).error).toBe(0);
      await closing;
      expect(await client.untilClosed()).toBe(0);
      expect(await idle.untilClosed()).toBe(0);
      expect(server.connections()).toBe(0);
      expect(existsSync(socketPath)).toBe(false);
      for (let index = 0; index < 5; index += 1) expect(gated.device.snapshot().subarray(index * 4096, (index + 1) * 4096)).toEqual(pattern(4096, index));
    } finally {
      gated.release();
      await server.close();
    }
  });
});
