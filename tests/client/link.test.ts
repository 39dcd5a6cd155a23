/**
 * StagingLink + ClientCore over real loopback sockets against the fake staging server: attach,
 * refusals, an unreachable or wrong peer (and retrying in the background after an unreachable
 * start), and a connection drop in the middle of writes.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { DruvaaError } from "../../src/errors.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { connect, listen, parseAddress } from "../../src/io/transport.ts";
import { ClientCore } from "../../src/roles/client/core.ts";
import { StagingLink } from "../../src/roles/client/staging-link.ts";
import { filled } from "./core-helpers.ts";
import { FakeStaging, fakeWrlUuid, type FakeStagingOptions } from "./fake-staging.ts";

const KiB = 1024;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(address: string, sizes = [256 * KiB, 128 * KiB]) {
  const devices = sizes.map((size, index) => new MemoryDevice(size, `disk${index}`, 512));
  const core = new ClientCore({ devices: devices.map((device, index) => ({ name: `disk${index}`, path: `/mem/${index}`, wrl: "w1", device, discardReadsZeros: true })) });
  const link = new StagingLink({
    address,
    dial: () => connect(parseAddress(address, 6001)),
    nodeId: "test-client",
    attachments: devices.map((device, index) => ({ device: `disk${index}`, wrl: "w1", sizeBytes: device.sizeBytes, logicalBlockSizeBytes: 512 })),
    peer: core,
  });
  cleanups.push(() => link.stop());
  return { devices, core, link, exports: new Map(core.exports().map((e) => [e.name, e])) };
}

async function fakeStaging(options: FakeStagingOptions = {}, listenAddress?: string): Promise<FakeStaging> {
  const staging = await FakeStaging.start(options, listenAddress);
  cleanups.push(() => staging.stop());
  return staging;
}

async function startError(link: StagingLink): Promise<DruvaaError> {
  const error = await link.start().then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(DruvaaError);
  return error as DruvaaError;
}

describe("staging link", () => {
  test("attaches every device with its size and block size, then carries writes", async () => {
    const staging = await fakeStaging();
    const { link, exports, devices } = setup(staging.address);
    await link.start();
    expect(staging.attaches).toEqual([
      { type: "attach", device: "disk0", wrl: "w1", sizeBytes: 256 * KiB, logicalBlockSizeBytes: 512 },
      { type: "attach", device: "disk1", wrl: "w1", sizeBytes: 128 * KiB, logicalBlockSizeBytes: 512 },
    ]);
    expect(link.wrlUuids.get("disk1")).toBe(fakeWrlUuid);
    expect(link.status()).toMatchObject({ address: staging.address, connected: true, lastError: null });
    await exports.get("disk1")!.write(4096, filled(8192, 0x42), false);
    expect(staging.records).toMatchObject([{ device: "disk1", wrl: "w1", offset: 4096, length: 8192, zero: false }]);
    expect(await devices[1]!.read(4096, 8192)).toEqual(filled(8192, 0x42));
  });

  test("an attach refused by staging fails start() with staging's code and message", async () => {
    const staging = await fakeStaging({ refuseAttach: { code: "DEVICE_TOO_BIG", message: "disk0 is 256 KiB, the replica's disk0 only 128 KiB" } });
    const { link } = setup(staging.address);
    const error = await startError(link);
    expect(error.code).toBe("DEVICE_TOO_BIG");
    expect(error.message).toContain("the replica's disk0 only 128 KiB");
    expect(error.hint).toContain("replica");
  });

  test("staging unreachable at start: STAGING_UNREACHABLE with a hint", async () => {
    // A port nobody listens on: bind one, note it, close it.
    const probe = await listen(parseAddress("127.0.0.1:0", 0), () => undefined);
    const port = probe.address.kind === "tcp" ? probe.address.port : 0;
    await probe.stop();
    const { link } = setup(`127.0.0.1:${port}`);
    const error = await startError(link);
    expect(error.code).toBe("STAGING_UNREACHABLE");
    expect(error.hint).toContain("druvaa staging serve");
  });

  test("a peer that is not a staging server is refused (PROTO_ROLE)", async () => {
    const staging = await fakeStaging({ role: "replica" });
    const { link } = setup(staging.address);
    expect((await startError(link)).code).toBe("PROTO_ROLE");
  });

  test("connection dropped mid-write: the client reconnects, re-attaches, resends, and every write lands", async () => {
    const staging = await fakeStaging({ dropAfterWrites: 3 });
    const { link, exports, devices } = setup(staging.address);
    await link.start();
    const exp = exports.get("disk0")!;
    const writes = Array.from({ length: 8 }, (_, i) => exp.write(i * 16 * KiB, filled(16 * KiB, i + 1), false));
    await Promise.all(writes);
    expect(staging.sessions).toBe(2);
    expect(staging.attaches.length).toBe(4); // both devices, twice
    expect(staging.dropped.length).toBe(1);
    expect(link.status().reconnects).toBe(1);
    expect(link.status().lastError?.code).toBeDefined();
    // Every write reached staging (the dropped one was resent) and the primary equals the replay.
    const image = devices[0]!.snapshot();
    for (let i = 0; i < 8; i += 1) expect(image.subarray(i * 16 * KiB, (i + 1) * 16 * KiB)).toEqual(filled(16 * KiB, i + 1));
    expect(staging.replay("disk0", 256 * KiB)).toEqual(image);
    expect(link.connected).toBe(true);
  });

  test("staging gone for a while: writes wait, then complete after it comes back", async () => {
    const staging = await fakeStaging();
    const { link, exports, devices } = setup(staging.address);
    await link.start();
    staging.dropAll();
    await Bun.sleep(20);
    const write = exports.get("disk0")!.write(0, filled(4096, 7), false);
    await write;
    expect(await devices[0]!.read(0, 4096)).toEqual(filled(4096, 7));
    expect(staging.records.length).toBe(1);
    expect(staging.sessions).toBe(2);
  });

  test("start failed (staging unreachable), then retryInBackground: the link comes up once staging listens, and writes flow", async () => {
    const probe = await listen(parseAddress("127.0.0.1:0", 0), () => undefined);
    const port = probe.address.kind === "tcp" ? probe.address.port : 0;
    await probe.stop();
    const address = `127.0.0.1:${port}`;
    const { link, exports, devices } = setup(address);
    const error = await startError(link);
    expect(error.code).toBe("STAGING_UNREACHABLE");
    link.retryInBackground(error);
    expect(link.status()).toMatchObject({ connected: false, lastError: { code: "STAGING_UNREACHABLE" } });
    await Bun.sleep(300);
    expect(link.connected).toBe(false);
    const staging = await fakeStaging({}, address);
    for (let waited = 0; !link.connected && waited < 10_000; waited += 20) await Bun.sleep(20);
    expect(link.connected).toBe(true);
    expect(staging.attaches.map((a) => a.device)).toEqual(["disk0", "disk1"]);
    await exports.get("disk0")!.write(0, filled(4096, 9), false);
    expect(staging.records.length).toBe(1);
    expect(await devices[0]!.read(0, 4096)).toEqual(filled(4096, 9));
  });
});
