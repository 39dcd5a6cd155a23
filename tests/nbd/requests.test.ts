/**
 * Transmission-phase requests over a raw socket: every command does what it says, and every bad
 * request gets the error number the NBD spec asks for, changes no byte of the export, is logged
 * once, and leaves the connection serving.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { DruvaaError } from "../../src/errors.ts";
import { logger } from "../../src/log.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { exportFromBlockDevice, type NbdExport } from "../../src/nbd/backend.ts";
import { startNbdServer } from "../../src/nbd/server.ts";
import { memoryServer, removeDir, tempDir, type MemoryServer } from "./helpers.ts";
import { NBD, pattern, RawClient } from "./raw-client.ts";

const MiB = 1024 * 1024;
const sizeBytes = 4 * MiB;
let dir: string;
let fixture: MemoryServer;
const readOnlyDevice = new MemoryDevice(MiB, "ro", 512);
let failNext: Error | undefined;

/** Backend whose writes fail with whatever `failNext` holds. */
const failing: NbdExport = {
  ...exportFromBlockDevice(new MemoryDevice(MiB, "failing", 512), "failing"),
  async write() {
    if (failNext !== undefined) throw failNext;
  },
  read() {
    throw new Error("synchronous throw from a backend");
  },
};

/** Every log record the server emits, through a logger passed to it. */
const records: { type: string; text: string }[] = [];
const log = logger("client:nbd");
// Independent of the process-wide level other test files may change (they share this process).
log.level = 3;
log.addReporter({
  log(record) {
    records.push({ type: record.type, text: record.args.map(String).join(" ") });
  },
});

beforeAll(async () => {
  dir = tempDir();
  fixture = await memoryServer(dir, "rq", sizeBytes, [exportFromBlockDevice(readOnlyDevice, "ro", { readOnly: true }), failing], log);
});

afterAll(async () => {
  await fixture?.server.close();
  removeDir(dir);
});

beforeEach(async () => {
  await fixture.device.write(0, pattern(sizeBytes, 1));
});

async function connect(name = ""): Promise<RawClient> {
  const client = await RawClient.connect(fixture.socketPath);
  await client.start();
  await client.go(name);
  return client;
}

describe("valid requests", () => {
  test("READ, WRITE (+FUA), FLUSH, TRIM, WRITE_ZEROES (+FUA), CACHE", async () => {
    const client = await connect();
    const flushesBefore = fixture.device.flushCount;
    const data = pattern(64 * 1024, 9);
    expect(await client.writeAt(MiB, data)).toBe(0);
    expect(await client.readAt(MiB, data.length)).toEqual(data);

    client.request(NBD.cmd.write, 1, 2 * MiB, 4096, NBD.flag.fua, pattern(4096, 2));
    expect(await client.reply()).toMatchObject({ error: 0, cookie: 1 });
    expect(fixture.device.flushCount).toBe(flushesBefore + 1);

    client.request(NBD.cmd.flush, 2, 0, 0);
    expect(await client.reply()).toMatchObject({ error: 0, cookie: 2 });
    expect(fixture.device.flushCount).toBe(flushesBefore + 2);

    client.request(NBD.cmd.trim, 3, 0, 8192);
    expect(await client.reply()).toMatchObject({ error: 0, cookie: 3 });

    client.request(NBD.cmd.writeZeroes, 4, 3 * MiB, 65536, NBD.flag.fua | NBD.flag.noHole);
    expect(await client.reply()).toMatchObject({ error: 0, cookie: 4 });
    expect(fixture.device.flushCount).toBe(flushesBefore + 3);

    client.request(NBD.cmd.cache, 5, 0, MiB);
    expect(await client.reply()).toMatchObject({ error: 0, cookie: 5 });

    const expected = pattern(sizeBytes, 1);
    expected.set(data, MiB);
    expected.set(pattern(4096, 2), 2 * MiB);
    expected.fill(0, 0, 8192); // MemoryDevice discard reads back as zeroes
    expected.fill(0, 3 * MiB, 3 * MiB + 65536);
    expect(Bun.hash.xxHash64(fixture.device.snapshot())).toBe(Bun.hash.xxHash64(expected));
    client.disconnect();
    await client.untilClosed();
  });

  test("max-size (32 MiB) WRITE and READ; WRITE_ZEROES larger than that zeroes the whole range", async () => {
    const original = pattern(40 * MiB, 5);
    const big = new MemoryDevice(40 * MiB, "big", 512, original.slice());
    const server = await startNbdServer({ listen: `unix:${dir}/big.sock`, exports: [exportFromBlockDevice(big, "")] });
    try {
      const client = await RawClient.connect(`${dir}/big.sock`);
      await client.start();
      await client.go("");
      // Replies this large leave the socket in many partial writes.
      const largest = pattern(32 * MiB, 11);
      expect(await client.writeAt(8 * MiB, largest)).toBe(0);
      expect(Bun.hash.xxHash64(await client.readAt(8 * MiB, 32 * MiB))).toBe(Bun.hash.xxHash64(largest));
      client.request(NBD.cmd.writeZeroes, 7, 4096, 36 * MiB);
      expect(await client.reply()).toMatchObject({ error: 0, cookie: 7 });
      const expected = original.slice();
      expected.set(largest, 8 * MiB);
      expected.fill(0, 4096, 4096 + 36 * MiB);
      expect(Bun.hash.xxHash64(big.snapshot())).toBe(Bun.hash.xxHash64(expected));
      client.disconnect();
      await client.untilClosed();
    } finally {
      await server.close();
    }
  });
});

interface BadCase {
  name: string;
  type: number;
  offset: number;
  length: number;
  flags?: number;
  /** Payload bytes to send after the header (a WRITE's data), default none. */
  payloadBytes?: number;
  errno: number;
}

const bad: BadCase[] = [
  { name: "READ past the end", type: NBD.cmd.read, offset: sizeBytes - 512, length: 1024, errno: NBD.errno.EINVAL },
  { name: "READ at offset 2^63", type: NBD.cmd.read, offset: 2 ** 63, length: 512, errno: NBD.errno.EINVAL },
  { name: "WRITE past the end", type: NBD.cmd.write, offset: sizeBytes - 512, length: 1024, payloadBytes: 1024, errno: NBD.errno.ENOSPC },
  { name: "WRITE_ZEROES past the end", type: NBD.cmd.writeZeroes, offset: sizeBytes, length: 512, errno: NBD.errno.ENOSPC },
  { name: "TRIM past the end", type: NBD.cmd.trim, offset: sizeBytes - 512, length: 4096, errno: NBD.errno.EINVAL },
  { name: "READ larger than the maximum payload", type: NBD.cmd.read, offset: 0, length: 32 * MiB + 512, errno: NBD.errno.EINVAL },
  { name: "WRITE larger than the maximum payload", type: NBD.cmd.write, offset: 0, length: 32 * MiB + 512, payloadBytes: 32 * MiB + 512, errno: NBD.errno.EINVAL },
  { name: "WRITE at a misaligned offset", type: NBD.cmd.write, offset: 100, length: 512, payloadBytes: 512, errno: NBD.errno.EINVAL },
  { name: "WRITE of a misaligned length", type: NBD.cmd.write, offset: 0, length: 100, payloadBytes: 100, errno: NBD.errno.EINVAL },
  { name: "TRIM misaligned", type: NBD.cmd.trim, offset: 512, length: 1000, errno: NBD.errno.EINVAL },
  { name: "READ of zero length", type: NBD.cmd.read, offset: 0, length: 0, errno: NBD.errno.EINVAL },
  { name: "WRITE of zero length", type: NBD.cmd.write, offset: 0, length: 0, errno: NBD.errno.EINVAL },
  { name: "unknown command type", type: 42, offset: 0, length: 512, errno: NBD.errno.EINVAL },
  { name: "BLOCK_STATUS without a metadata context", type: NBD.cmd.blockStatus, offset: 0, length: 512, errno: NBD.errno.EINVAL },
  { name: "READ with the DF flag (no structured replies)", type: NBD.cmd.read, offset: 0, length: 512, flags: NBD.flag.df, errno: NBD.errno.EINVAL },
  { name: "WRITE with NO_HOLE (only valid on WRITE_ZEROES)", type: NBD.cmd.write, offset: 0, length: 512, flags: NBD.flag.noHole, payloadBytes: 512, errno: NBD.errno.EINVAL },
  { name: "FLUSH with a length", type: NBD.cmd.flush, offset: 0, length: 512, errno: NBD.errno.EINVAL },
  { name: "WRITE_ZEROES with FAST_ZERO", type: NBD.cmd.writeZeroes, offset: 0, length: 4096, flags: NBD.flag.fastZero, errno: NBD.errno.ENOTSUP },
];

describe("bad requests: error reply, nothing written, connection keeps serving", () => {
  for (const c of bad) {
    test(c.name, async () => {
      const client = await connect();
      const before = fixture.device.snapshot();
      const warningsBefore = records.filter((r) => r.type === "warn").length;
      client.request(c.type, 0x1234, c.offset, c.length, c.flags ?? 0, c.payloadBytes === undefined ? undefined : pattern(c.payloadBytes, 77));
      const reply = await client.reply();
      expect(reply.cookie).toBe(0x1234);
      expect(reply.error).toBe(c.errno);
      expect(Bun.hash.xxHash64(fixture.device.snapshot())).toBe(Bun.hash.xxHash64(before));
      // Logged once (a fast-zero probe is routine, not logged as a refusal).
      const warnings = records.filter((r) => r.type === "warn").slice(warningsBefore);
      expect(warnings.length).toBe(c.errno === NBD.errno.ENOTSUP ? 0 : 1);
      // The same connection still serves.
      const data = pattern(4096, 3);
      expect(await client.writeAt(4096, data)).toBe(0);
      expect(await client.readAt(4096, 4096)).toEqual(data);
      client.disconnect();
      await client.untilClosed();
    });
  }
});

describe("read-only export", () => {
  test("WRITE, TRIM and WRITE_ZEROES get EPERM and change nothing; READ works", async () => {
    await readOnlyDevice.write(0, pattern(MiB, 4));
    const client = await connect("ro");
    client.request(NBD.cmd.write, 1, 0, 4096, 0, pattern(4096, 8));
    expect(await client.reply()).toMatchObject({ cookie: 1, error: NBD.errno.EPERM });
    client.request(NBD.cmd.trim, 2, 0, 4096);
    expect(await client.reply()).toMatchObject({ cookie: 2, error: NBD.errno.EPERM });
    client.request(NBD.cmd.writeZeroes, 3, 0, 4096);
    expect(await client.reply()).toMatchObject({ cookie: 3, error: NBD.errno.EPERM });
    expect(await client.readAt(0, MiB)).toEqual(pattern(MiB, 4));
    expect(readOnlyDevice.snapshot()).toEqual(pattern(MiB, 4));
    client.disconnect();
    await client.untilClosed();
  });
});

describe("backend failures", () => {
  test("an Error becomes EIO, DruvaaError NO_SPACE becomes ENOSPC, a synchronous throw EIO; the connection goes on", async () => {
    const client = await connect("failing");
    failNext = new Error("disk on fire");
    expect(await client.writeAt(0, pattern(512, 1))).toBe(NBD.errno.EIO);
    failNext = new DruvaaError("NO_SPACE", "full");
    expect(await client.writeAt(0, pattern(512, 1))).toBe(NBD.errno.ENOSPC);
    failNext = new DruvaaError("IO_READ_ONLY", "read-only");
    expect(await client.writeAt(0, pattern(512, 1))).toBe(NBD.errno.EPERM);
    client.request(NBD.cmd.read, 9, 0, 512);
    expect(await client.reply(() => 512)).toMatchObject({ cookie: 9, error: NBD.errno.EIO, data: new Uint8Array(0) });
    failNext = undefined;
    expect(await client.writeAt(0, pattern(512, 1))).toBe(0);
    client.disconnect();
    await client.untilClosed();
  });
});

describe("wrong request magic", () => {
  test("closes that connection after replying to the request before it; others keep working", async () => {
    const client = await connect();
    const other = await connect();
    const before = fixture.device.snapshot();
    client.request(NBD.cmd.read, 5, 0, 512);
    const garbage = pattern(28 + 4096, 99);
    client.send(garbage);
    expect(await client.reply(() => 512)).toMatchObject({ cookie: 5, error: 0 });
    expect(await client.untilClosed()).toBe(0);
    expect(Bun.hash.xxHash64(fixture.device.snapshot())).toBe(Bun.hash.xxHash64(before));
    const data = pattern(4096, 6);
    expect(await other.writeAt(0, data)).toBe(0);
    expect(await other.readAt(0, 4096)).toEqual(data);
    other.disconnect();
    await other.untilClosed();
  });
});
