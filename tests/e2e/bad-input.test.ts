/**
 * Bad input against a running system, on every port: garbage, truncated and oversized frames, a
 * hello of the wrong kind, valid frames with impossible content, NBD requests out of range, too
 * big or misaligned, unknown export names, and a client device bigger than the replica's. Each
 * must end in a clean refusal (an error reply, a closed connection, a clear message), must not
 * touch any data, and must leave every process serving: after each case a fresh write through
 * the NBD export still reaches the restored replica, and every pid is still alive.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { connectNbd } from "../../src/nbd/client.ts";
import { cbor } from "../../src/protocol/cbor.ts";
import { encodeFrameBytes } from "../../src/protocol/frame.ts";
import { buildHello } from "../../src/protocol/handshake.ts";
import type { Message, Role } from "../../src/protocol/messages.ts";
import { NBD, RawClient } from "../nbd/raw-client.ts";
import { TestClient } from "../staging/test-client.ts";
import { decodeFrames, errorOf, frameOfHeader, RawSocket } from "./raw-socket.ts";
import { createImage, createReplicaImage, druvaa, MiB, plainSha256, readRange, run, sha256File, startSystem, startTracked, type System } from "./helpers.ts";

const sizeBytes = 32 * MiB;
const smallBytes = 16 * MiB;
let system: System;
let goodWrites = 0;

beforeAll(async () => {
  system = await startSystem({ sizeBytes, replicaOnly: { small: smallBytes } });
});
afterAll(async () => {
  await system?.stop();
});

/** A fresh pattern written through the NBD export must reach the restored replica; no pid died. */
async function expectStillReplicates(): Promise<void> {
  const seed = ++goodWrites;
  const offset = seed * 256 * 1024;
  const data = randomBytes(64 * 1024);
  const nbd = await connectNbd(system.exportAddress, "disk0");
  try {
    await nbd.write(offset, data);
  } finally {
    await nbd.close();
  }
  await system.waitDrained(30);
  const restored = await system.restore("disk0");
  expect(Buffer.from(await readRange(restored, offset, data.length)).equals(data)).toBe(true);
  expect(await sha256File(restored, sizeBytes)).toBe(await sha256File(system.primaryPath("disk0"), sizeBytes));
  system.assertAlive();
}

const hello = (role: Role) => encodeFrameBytes(buildHello({ role, nodeId: "bad-input-test" }));

/** The druvaa framed ports, each with the role its handshake accepts. */
const framedPorts = (): { name: string; address: string; role: Role }[] => [
  { name: "staging data", address: system.stagingListen, role: "client" },
  { name: "replica data", address: system.replicaListen, role: "staging" },
  { name: "replica restore", address: system.replicaRestore, role: "client" },
];

/** Sends `bytes` (after a real handshake when asked) and expects the peer to close the connection. */
async function expectClosedAfter(address: string, bytes: Uint8Array, handshakeAs?: Role): Promise<void> {
  const socket = await RawSocket.connect(address);
  try {
    if (handshakeAs !== undefined) {
      socket.send(hello(handshakeAs));
      // The helloAck is one frame: wait for its length field and all it announces.
      expect(await socket.until(() => socket.received.length >= 4 && socket.received.length >= 4 + socket.received.readUInt32BE(0), 5_000)).toBe(true);
    }
    socket.send(bytes);
    expect(await socket.peerClosed()).toBe(true);
  } finally {
    socket.destroy();
  }
}

describe("garbage and truncated frames on the druvaa ports", () => {
  const notCbor = frameOfHeader(new Uint8Array([0xff, 0xfe, 0xfd, 0x1c, 0x00, 0x9f]));
  const unknownType = frameOfHeader(cbor.encode({ type: "launchMissiles", target: "disk0" }));
  const badMagic = frameOfHeader(cbor.encode({ ...buildHello({ role: "client", nodeId: "x" }), magic: 0x1234 }));
  const tooLong = frameOfHeader(new Uint8Array(8), 0xffff_fff0);

  test("random bytes, an oversized length, a non-CBOR header, an unknown message, a foreign magic: each connection is closed", async () => {
    for (const port of framedPorts()) {
      for (const bytes of [new Uint8Array(randomBytes(4096)), tooLong, notCbor, unknownType, badMagic]) await expectClosedAfter(port.address, bytes);
    }
    await expectStillReplicates();
  }, 60_000);

  test("a hello of a role the port does not serve is refused with helloAck accepted: false", async () => {
    for (const port of framedPorts()) {
      const socket = await RawSocket.connect(port.address);
      try {
        socket.send(hello("panel"));
        expect(await socket.peerClosed()).toBe(true);
        const length = socket.received.readUInt32BE(0);
        const headerLength = socket.received.readUInt16BE(4);
        const ack = cbor.decode(socket.received.subarray(6, 6 + headerLength)) as { type: string; accepted: boolean; error?: { code: string } };
        expect(length).toBeGreaterThan(2);
        expect({ port: port.name, type: ack.type, accepted: ack.accepted, code: ack.error?.code }).toEqual({ port: port.name, type: "helloAck", accepted: false, code: "PROTO_ROLE" });
      } finally {
        socket.destroy();
      }
    }
    await expectStillReplicates();
  }, 60_000);

  test("garbage and truncated frames after a real handshake; truncated frames before one", async () => {
    for (const port of framedPorts()) {
      await expectClosedAfter(port.address, new Uint8Array(randomBytes(1024)), port.role);
      await expectClosedAfter(port.address, notCbor, port.role);
      await expectClosedAfter(port.address, unknownType, port.role);
      // A frame cut short, then the sender ends its side: the server must drop the connection.
      for (const handshakeAs of [undefined, port.role]) {
        const socket = await RawSocket.connect(port.address);
        try {
          if (handshakeAs !== undefined) {
            socket.send(hello(handshakeAs));
            await socket.until(() => socket.received.length >= 6, 5_000);
          }
          socket.send(hello("client").subarray(0, 9));
          socket.end();
          expect(await socket.peerClosed()).toBe(true);
        } finally {
          socket.destroy();
        }
      }
    }
    await expectStillReplicates();
  }, 60_000);
});

describe("well-formed frames with impossible content", () => {
  test("staging: write before attach, attach of a device another client holds, writes out of range or misaligned", async () => {
    const headBefore = (await system.status("staging")).wrls[0].headLsn;
    const rogue = await TestClient.connect(system.stagingListen, "rogue-node");
    try {
      const early = await rogue.write("wrl0", "disk0", 0, new Uint8Array(4096).fill(0x66));
      expect(early).toMatchObject({ type: "writeNack", code: "DEVICE_UNKNOWN" });
      const busy = await rogue.attach("wrl0", "disk0", sizeBytes);
      expect(busy).toMatchObject({ accepted: false, error: { code: "DEVICE_BUSY" } });
      expect((await rogue.attach("nowrl", "disk0", sizeBytes)).error?.code).toBe("WRL_UNKNOWN");
      // A device the replica has (so nothing else could stall the relay): its writes are checked.
      expect(await rogue.attach("wrl0", "small", smallBytes, 512)).toMatchObject({ accepted: true });
      for (const [offset, length] of [[smallBytes - 4096, 8192], [smallBytes, 4096], [100, 4096], [4096, 100]] as const) {
        const answer = await rogue.write("wrl0", "small", offset, new Uint8Array(length).fill(0x77));
        expect({ offset, length, answer: answer.type, code: answer.type === "writeNack" ? answer.code : "none" }).toEqual({ offset, length, answer: "writeNack", code: "OUT_OF_RANGE" });
      }
    } finally {
      await rogue.close();
    }
    expect((await system.status("staging")).wrls[0].headLsn).toBe(headBefore);
    expect(await plainSha256(system.replicaPath("small"))).toBe(zerosSha256(smallBytes));
    await expectStillReplicates();
  }, 60_000);

  test("replica: shipments with an LSN gap, past the device end or misaligned are refused, nothing applied", async () => {
    const replicaBefore = await sha256File(system.replicaPath("disk0"));
    const socket = await RawSocket.connect(system.replicaListen);
    try {
      socket.send(hello("staging"));
      const frames = () => decodeFrames(socket.received);
      const wrlUuid = "0b5e55ed-0000-4000-8000-000000000001";
      const wrl = "rogue";
      socket.send(encodeFrameBytes({ type: "resume", wrl, wrlUuid } as Message));
      expect(await socket.until(() => frames().some((f) => f.type === "resumeAck" || f.type === "shipNack"), 5_000)).toBe(true);
      const ship = (firstLsn: number, offset: number) =>
        encodeFrameBytes({ type: "ship", wrl, wrlUuid, firstLsn, lastLsn: firstLsn, records: [{ lsn: firstLsn, epoch: 1, device: "disk0", offset, length: 4096, flags: 0 }] } as Message, new Uint8Array(4096).fill(0x99));
      socket.send(ship(1000, 0));
      socket.send(ship(1, sizeBytes));
      socket.send(ship(1, 100));
      const refusals = () => frames().filter((f) => f.type === "shipNack").map((f) => f.code);
      await socket.until(() => refusals().length >= 3 || socket.closed, 5_000);
      expect(refusals()).toEqual(["LSN_GAP", "OUT_OF_RANGE", "OUT_OF_RANGE"]);
      expect(frames().some((f) => f.type === "shipAck")).toBe(false);
    } finally {
      socket.destroy();
    }
    expect(await sha256File(system.replicaPath("disk0"))).toBe(replicaBefore);
    await expectStillReplicates();
  }, 60_000);

  test("restore port: an unknown device is a clear DEVICE_UNKNOWN error", async () => {
    const result = await druvaa(["restore", "--replica", system.replicaRestore, "--device", "nope", "--to", join(system.dir, "nope.img"), "--json"]);
    expect(result.exitCode).not.toBe(0);
    const error = errorOf(result.stdout);
    expect(error.code).toBe("DEVICE_UNKNOWN");
    expect(error.hint).toContain("disk0");
    await expectStillReplicates();
  }, 60_000);
});

/** sha256 of `bytes` zero bytes: an image nothing was ever written to. */
function zerosSha256(bytes: number): string {
  return createHash("sha256").update(Buffer.alloc(bytes)).digest("hex");
}

describe("HTTP control ports", () => {
  test("garbage and truncated requests on every control port; /status still answers", async () => {
    for (const address of [system.clientControl, system.stagingControl, system.replicaControl]) {
      for (const bytes of [new Uint8Array(randomBytes(2048)), new TextEncoder().encode("GET /sta"), new TextEncoder().encode("POST /status HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nabc")]) {
        const socket = await RawSocket.connect(address);
        try {
          socket.send(bytes);
          socket.end();
          expect(await socket.peerClosed()).toBe(true);
        } finally {
          socket.destroy();
        }
      }
      const missing = await fetch(`http://${address}/no-such-path`);
      expect(missing.status).toBe(404);
      expect(((await (await fetch(`http://${address}/status`)).json()) as { role: string }).role).toMatch(/client|staging|replica/);
    }
    await expectStillReplicates();
  }, 60_000);
});

describe("NBD export", () => {
  test("garbage, oversized and truncated options in the handshake close only that connection", async () => {
    const cases: ((socket: RawSocket) => void)[] = [
      (socket) => socket.send(new Uint8Array(randomBytes(512))),
      (socket) => {
        socket.send(new Uint8Array([0, 0, 0, 3])); // client flags
        const option = Buffer.alloc(16);
        option.writeBigUInt64BE(NBD.optMagic, 0);
        option.writeUInt32BE(NBD.opt.go, 8);
        option.writeUInt32BE(0xffff_fff0, 12); // option data far over any limit
        socket.send(option);
      },
      (socket) => {
        socket.send(new Uint8Array([0, 0, 0, 3]));
        const option = Buffer.alloc(16);
        option.writeBigUInt64BE(NBD.optMagic, 0);
        option.writeUInt32BE(NBD.opt.go, 8);
        option.writeUInt32BE(100, 12);
        socket.send(option);
        socket.send(new Uint8Array(10)); // then the client goes away mid-option
        socket.end();
      },
    ];
    for (const send of cases) {
      const socket = await RawSocket.connect(system.exportAddress);
      try {
        expect(await socket.until(() => socket.received.length >= 18, 5_000)).toBe(true); // the greeting
        send(socket);
        expect(await socket.peerClosed()).toBe(true);
      } finally {
        socket.destroy();
      }
    }
    await expectStillReplicates();
  }, 60_000);

  test("unknown export names are refused (nbdinfo), the real export is listed", async () => {
    const socketPath = system.exportAddress.slice("unix:".length);
    for (const name of ["nope", "disk0/../disk0", "x".repeat(300)]) {
      const result = await run(["nbdinfo", `nbd+unix:///${encodeURIComponent(name)}?socket=${socketPath}`], { timeoutMs: 15_000 });
      expect({ name: name.slice(0, 20), exitCode: result.exitCode === 0 ? 0 : "failed" }).toEqual({ name: name.slice(0, 20), exitCode: "failed" });
      expect(result.stderr.toLowerCase()).toMatch(/unknown|not found|no such|invalid|unavailable/);
    }
    const list = await run(["nbdinfo", "--list", `nbd+unix://?socket=${socketPath}`], { timeoutMs: 15_000 });
    expect(list.exitCode).toBe(0);
    expect(list.stdout).toContain("disk0");
    await expectStillReplicates();
  }, 60_000);

  test("requests out of range, oversized, misaligned or of unknown type get errors and touch nothing", async () => {
    const nbd = await connectNbd(system.exportAddress, "disk0");
    const block = nbd.info.minimumBlockSizeBytes;
    await nbd.close();
    expect(block).toBeGreaterThan(1); // else "misaligned" below would be a valid request
    const headBefore = (await system.status("staging")).wrls[0].headLsn;
    const primaryBefore = await sha256File(system.primaryPath("disk0"));
    const raw = await RawClient.connect(system.exportAddress.slice("unix:".length));
    try {
      await raw.start();
      expect((await raw.go("disk0")).sizeBytes).toBe(sizeBytes);
      const fill = (length: number) => new Uint8Array(length).fill(0x5a);
      const refused: [string, number, () => void][] = [
        ["write past the end", NBD.errno.ENOSPC, () => raw.request(NBD.cmd.write, 1, sizeBytes - 4096, 8192, 0, fill(8192))],
        ["write at the end", NBD.errno.ENOSPC, () => raw.request(NBD.cmd.write, 2, sizeBytes, 4096, 0, fill(4096))],
        ["write far past the end (2^53)", NBD.errno.ENOSPC, () => raw.request(NBD.cmd.write, 3, Number.MAX_SAFE_INTEGER - 4095, 4096, 0, fill(4096))],
        ["read past the end", NBD.errno.EINVAL, () => raw.request(NBD.cmd.read, 4, sizeBytes - 512, 4096)],
        ["oversized write (33 MiB)", NBD.errno.EINVAL, () => raw.request(NBD.cmd.write, 5, 0, 33 * MiB, 0, fill(33 * MiB))],
        ["oversized read (64 MiB)", NBD.errno.EINVAL, () => raw.request(NBD.cmd.read, 6, 0, 64 * MiB)],
        ["misaligned write offset", NBD.errno.EINVAL, () => raw.request(NBD.cmd.write, 7, 1, block, 0, fill(block))],
        ["misaligned write length", NBD.errno.EINVAL, () => raw.request(NBD.cmd.write, 8, 0, block + 1, 0, fill(block + 1))],
        ["zero-length write", NBD.errno.EINVAL, () => raw.request(NBD.cmd.write, 9, 0, 0)],
        ["trim past the end", NBD.errno.EINVAL, () => raw.request(NBD.cmd.trim, 10, sizeBytes - 4096, 8192)],
        ["write zeroes past the end", NBD.errno.ENOSPC, () => raw.request(NBD.cmd.writeZeroes, 11, sizeBytes, 4096)],
        ["unknown command", NBD.errno.EINVAL, () => raw.request(42, 12, 0, 4096)],
      ];
      for (const [what, errno, send] of refused) {
        send();
        const reply = await raw.reply();
        expect({ what, error: reply.error }).toEqual({ what, error: errno });
      }
      // The same connection still serves a good write and reads it back.
      const good = fill(4096).fill(0x3c);
      expect(await raw.writeAt(8 * MiB, good)).toBe(0);
      expect(Buffer.from(await raw.readAt(8 * MiB, 4096)).equals(good)).toBe(true);
      // A request with a wrong magic cannot be resynchronised: that connection (only) is closed.
      raw.send(new Uint8Array(28).fill(0xee));
      await raw.untilClosed();
    } finally {
      raw.end();
    }
    // Only the one good write was logged; nothing else reached the primary.
    expect((await system.status("staging")).wrls[0].headLsn).toBe(headBefore + 1);
    const primary = await readRange(system.primaryPath("disk0"), sizeBytes - 8192, 8192);
    expect(primary.every((b) => b === 0)).toBe(true);
    expect(await sha256File(system.primaryPath("disk0"))).not.toBe(primaryBefore); // the good write landed
    await expectStillReplicates();
  }, 60_000);
});

describe("mismatched devices", () => {
  test("a client device bigger than the replica's is refused at attach with a clear DEVICE_TOO_BIG; nothing applied", async () => {
    // Staging checks sizes only once its relay heard them from the replica.
    for (let i = 0; i < 200 && !(await system.status("staging")).wrls[0].replica.connected; i++) await Bun.sleep(50);
    const big = join(system.dir, "big-primary.img");
    await createImage(big, sizeBytes);
    const result = await druvaa([
      "client", "attach", "--device", `small=${big}`, "--staging", system.stagingListen, "--wrl", "wrl0",
      "--export", `unix:${join(system.dir, "big.sock")}`, "--control", "127.0.0.1:0", "--state-dir", join(system.dir, "big-client"), "--node-id", "big-client", "--json",
    ], 30_000);
    expect(result.timedOut).toBe(false);
    expect(result.exitCode).not.toBe(0);
    const error = errorOf(result.stdout);
    expect(error.code).toBe("DEVICE_TOO_BIG");
    // Both sizes named, and what to do about it, also on stderr for a person.
    expect(error.message).toContain(String(sizeBytes));
    expect(error.message).toContain(String(smallBytes));
    expect(error.hint).toMatch(/grow the replica device/);
    expect(result.stderr).toContain("refused to attach device small");
    const wrl = (await system.status("staging")).wrls[0];
    expect((wrl.devices as { name: string; sizeBytes: number }[]).find((d) => d.name === "small" && d.sizeBytes > smallBytes)).toBeUndefined();
    expect(await plainSha256(system.replicaPath("small"))).toBe(zerosSha256(smallBytes));
    await expectStillReplicates();
  }, 60_000);
});

describe("a too-big device the staging server could not check at attach", () => {
  test("the replica refuses it with DEVICE_TOO_SMALL shown in staging status, applies nothing, and converges once its device is grown", async () => {
    // Its own system: this case stalls its WRL (a consistency group never skips a record) until fixed.
    const sys = await startSystem({ sizeBytes, replicaOnly: { small: smallBytes } });
    let bigClient: Awaited<ReturnType<typeof startTracked>> | undefined;
    try {
      // Replica down and staging restarted: staging does not know the replica's sizes now.
      await sys.kill("replica", "SIGTERM");
      await sys.restart("staging");
      const big = join(sys.dir, "big-primary.img");
      await createImage(big, sizeBytes);
      const socket = join(sys.dir, "big.sock");
      bigClient = await startTracked("big-client", [
        "client", "attach", "--device", `small=${big}`, "--staging", sys.stagingListen, "--wrl", "wrl0",
        "--export", `unix:${socket}`, "--control", "127.0.0.1:0", "--state-dir", join(sys.dir, "big-client"), "--node-id", "big-client",
      ]);
      const nbd = await connectNbd(`unix:${socket}`, "small");
      try {
        await nbd.write(0, new Uint8Array(randomBytes(64 * 1024)));
        await nbd.write(20 * MiB, new Uint8Array(randomBytes(64 * 1024))); // past the replica's end
      } finally {
        await nbd.close();
      }
      await sys.restart("replica");
      let lastError: { code: string; message: string } | null = null;
      for (let i = 0; i < 300 && lastError?.code !== "DEVICE_TOO_SMALL"; i++) {
        lastError = (await sys.status("staging")).wrls[0].replica.lastError;
        if (lastError?.code !== "DEVICE_TOO_SMALL") await Bun.sleep(50);
      }
      expect(lastError?.code).toBe("DEVICE_TOO_SMALL");
      expect(lastError?.message).toContain(String(smallBytes));
      expect(await plainSha256(sys.replicaPath("small"))).toBe(zerosSha256(smallBytes));
      sys.assertAlive();
      expect(bigClient.proc.exitCode).toBeNull();

      // The fix the hint names: a big enough replica device (the primary's size plus the header
      // reserve), restart the replica; it all converges. A protected image is not grown in place
      // (its head lives at its end): nothing was applied to it, so a new one replaces it.
      await sys.kill("replica", "SIGTERM");
      rmSync(sys.replicaPath("small"));
      await createReplicaImage(sys.replicaPath("small"), sizeBytes);
      await sys.restart("replica");
      await sys.waitDrained(30);
      const restored = await sys.restore("small");
      expect(await sha256File(restored)).toBe(await sha256File(big));
      const hashes = await sys.verifyAll();
      expect(hashes.disk0!.restored).toBe(hashes.disk0!.primary);
      sys.assertAlive();
    } finally {
      await bigClient?.stop();
      await sys.stop();
    }
  }, 60_000);
});
