/**
 * The NBD handshake against raw sockets: what well-behaved clients get, and what happens to
 * clients that send garbage or absurd lengths. After every bad client, a second, well-behaved
 * client on the same server must still be served.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { exportFromBlockDevice } from "../../src/nbd/backend.ts";
import { memoryServer, removeDir, tempDir, type MemoryServer } from "./helpers.ts";
import { goData, NBD, pattern, RawClient, u32 } from "./raw-client.ts";

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

let dir: string;
let fixture: MemoryServer;
const second = new MemoryDevice(1024 * 1024, "second", 4096);

beforeAll(async () => {
  dir = tempDir();
  fixture = await memoryServer(dir, "hs", 4 * 1024 * 1024, [exportFromBlockDevice(second, "second", { readOnly: true })]);
});

afterAll(async () => {
  await fixture?.server.close();
  removeDir(dir);
});

/** A well-behaved client: handshake, write, read back, disconnect. */
async function wellBehavedClientWorks(): Promise<void> {
  const client = await RawClient.connect(fixture.socketPath);
  await client.start();
  const { sizeBytes } = await client.go("");
  expect(sizeBytes).toBe(4 * 1024 * 1024);
  const data = pattern(4096, 7);
  expect(await client.writeAt(8192, data)).toBe(0);
  expect(await client.readAt(8192, 4096)).toEqual(data);
  client.disconnect();
  await client.untilClosed();
}

describe("handshake", () => {
  test("greeting advertises FIXED_NEWSTYLE and NO_ZEROES", async () => {
    const client = await RawClient.connect(fixture.socketPath);
    expect(await client.readGreeting()).toBe(3);
    client.end();
  });

  test("OPT_LIST names every export, then ACK", async () => {
    const client = await RawClient.connect(fixture.socketPath);
    await client.start();
    client.sendOption(NBD.opt.list);
    const names: string[] = [];
    for (;;) {
      const reply = await client.readOptionReply();
      if (reply.type === NBD.rep.ack) break;
      expect(reply.type).toBe(NBD.rep.server);
      const length = new DataView(reply.data.buffer).getUint32(0);
      names.push(decode(reply.data.subarray(4, 4 + length)));
    }
    expect(names).toEqual(["", "second"]);
    client.sendOption(NBD.opt.abort);
    expect((await client.readOptionReply()).type).toBe(NBD.rep.ack);
    expect(await client.untilClosed()).toBe(0);
  });

  test("OPT_INFO reports size, flags, name and block sizes without ending negotiation", async () => {
    const client = await RawClient.connect(fixture.socketPath);
    await client.start();
    client.sendOption(NBD.opt.info, goData("second"));
    const infos = new Map<number, Uint8Array>();
    for (;;) {
      const reply = await client.readOptionReply();
      if (reply.type === NBD.rep.ack) break;
      expect(reply.type).toBe(NBD.rep.info);
      infos.set(new DataView(reply.data.buffer).getUint16(0), reply.data.subarray(2));
    }
    const exportInfo = new DataView(infos.get(0)!.slice().buffer);
    expect(Number(exportInfo.getBigUint64(0))).toBe(1024 * 1024);
    const flags = exportInfo.getUint16(8);
    expect(flags & 0x2).toBe(0x2); // READ_ONLY
    expect(flags & (0x8 | 0x20 | 0x40)).toBe(0); // no FUA, TRIM, WRITE_ZEROES on a read-only export
    expect(decode(infos.get(1)!)).toBe("second");
    const blockSize = new DataView(infos.get(3)!.slice().buffer);
    expect([blockSize.getUint32(0), blockSize.getUint32(4), blockSize.getUint32(8)]).toEqual([4096, 4096, 32 * 1024 * 1024]);
    // Still negotiating: GO on the default export works on the same connection.
    expect((await client.go("")).sizeBytes).toBe(4 * 1024 * 1024);
    client.disconnect();
    await client.untilClosed();
  });

  test("unsupported options get ERR_UNSUP and negotiation goes on", async () => {
    const client = await RawClient.connect(fixture.socketPath);
    await client.start();
    for (const option of [NBD.opt.structuredReply, NBD.opt.startTls, 12, 10, 11, 9999]) {
      client.sendOption(option);
      const reply = await client.readOptionReply();
      expect(reply.option).toBe(option);
      expect(reply.type).toBe(NBD.rep.errUnsup);
    }
    expect((await client.go("")).sizeBytes).toBe(4 * 1024 * 1024);
    client.disconnect();
    await client.untilClosed();
  });

  test("GO for an unknown export gets ERR_UNKNOWN with a message, then GO for a real one works", async () => {
    const client = await RawClient.connect(fixture.socketPath);
    await client.start();
    client.sendOption(NBD.opt.go, goData("nope"));
    const reply = await client.readOptionReply();
    expect(reply.type).toBe(NBD.rep.errUnknown);
    expect(decode(reply.data)).toContain("nope");
    expect((await client.go("second")).sizeBytes).toBe(1024 * 1024);
    client.disconnect();
    await client.untilClosed();
  });

  test("malformed GO data gets ERR_INVALID", async () => {
    const client = await RawClient.connect(fixture.socketPath);
    await client.start();
    const data = goData("");
    new DataView(data.buffer).setUint32(0, 1000); // name length runs past the data
    client.sendOption(NBD.opt.go, data);
    expect((await client.readOptionReply()).type).toBe(NBD.rep.errInvalid);
    client.sendOption(NBD.opt.list, new Uint8Array(3)); // LIST takes no data
    expect((await client.readOptionReply()).type).toBe(NBD.rep.errInvalid);
    expect((await client.go("")).sizeBytes).toBe(4 * 1024 * 1024);
    client.disconnect();
    await client.untilClosed();
  });

  test("EXPORT_NAME for a known export enters transmission (no zeroes when asked)", async () => {
    const client = await RawClient.connect(fixture.socketPath);
    await client.start();
    client.sendOption(NBD.opt.exportName, new TextEncoder().encode("second"));
    const reply = new DataView((await client.read(10)).buffer);
    expect(Number(reply.getBigUint64(0))).toBe(1024 * 1024);
    expect(reply.getUint16(8) & 0x3).toBe(0x3); // HAS_FLAGS | READ_ONLY
    expect((await client.readAt(0, 4096)).length).toBe(4096);
    client.disconnect();
    await client.untilClosed();
  });

  test("EXPORT_NAME for an unknown export closes the connection", async () => {
    const client = await RawClient.connect(fixture.socketPath);
    await client.start();
    client.sendOption(NBD.opt.exportName, new TextEncoder().encode("missing"));
    expect(await client.untilClosed()).toBe(0);
    await wellBehavedClientWorks();
  });
});

describe("bad handshakes close only their own connection", () => {
  test("garbage instead of client flags and options", async () => {
    const client = await RawClient.connect(fixture.socketPath);
    await client.readGreeting();
    client.send(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: example\r\n\r\n"));
    expect(await client.untilClosed()).toBe(0);
    await wellBehavedClientWorks();
  });

  test("valid client flags, then garbage instead of an option", async () => {
    const client = await RawClient.connect(fixture.socketPath);
    await client.start();
    client.send(pattern(64, 3));
    expect(await client.untilClosed()).toBe(0);
    await wellBehavedClientWorks();
  });

  test("a client without FIXED_NEWSTYLE is refused", async () => {
    const client = await RawClient.connect(fixture.socketPath);
    await client.readGreeting();
    client.send(u32(0));
    expect(await client.untilClosed()).toBe(0);
    await wellBehavedClientWorks();
  });

  test("unknown client flag bits are refused", async () => {
    const client = await RawClient.connect(fixture.socketPath);
    await client.readGreeting();
    client.send(u32(0x1 | 0x80));
    expect(await client.untilClosed()).toBe(0);
    await wellBehavedClientWorks();
  });

  test("an option with an absurd length gets ERR_TOO_BIG and the connection is closed", async () => {
    const client = await RawClient.connect(fixture.socketPath);
    await client.start();
    client.sendOption(NBD.opt.go, new Uint8Array(0), 0xffff_fff0);
    const reply = await client.readOptionReply();
    expect(reply.type).toBe(NBD.rep.errTooBig);
    expect(decode(reply.data)).toContain("limit");
    expect(await client.untilClosed()).toBe(0);
    await wellBehavedClientWorks();
  });

  test("OPT_ABORT followed at once by the client closing (as nbdinfo --list does) leaves nothing behind", async () => {
    const before = fixture.server.connections();
    const client = await RawClient.connect(fixture.socketPath);
    await client.start();
    client.sendOption(NBD.opt.abort);
    client.end();
    await client.untilClosed();
    while (fixture.server.connections() > before) await Bun.sleep(5);
    expect(fixture.server.connections()).toBe(before);
    await wellBehavedClientWorks();
  });

  test("a client that connects and goes away mid-handshake leaves nothing behind", async () => {
    const before = fixture.server.connections();
    const client = await RawClient.connect(fixture.socketPath);
    await client.readGreeting();
    client.send(new Uint8Array([0, 0])); // half of the client flags
    client.end();
    await client.untilClosed();
    await wellBehavedClientWorks();
    while (fixture.server.connections() > before) await Bun.sleep(5);
    expect(fixture.server.connections()).toBe(before);
  });
});
