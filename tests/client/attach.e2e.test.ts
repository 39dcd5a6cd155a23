/**
 * `druvaa client attach` as a real process, driven by real NBD clients (qemu-io, nbdcopy,
 * nbdinfo), against a fake staging server in this test process that acks and records every
 * write. It drops the connection once in the middle of the workload, so the client's reconnect
 * and resend run too. Afterwards the primary images hold exactly what the NBD clients wrote
 * (sha256), and replaying what staging received gives the same images byte for byte: every write
 * was intercepted and nothing reached the primary without staging.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exitCodes } from "../../src/errors.ts";
import { FakeStaging } from "./fake-staging.ts";
import { runClientToEnd, startClient, tool, type ClientProcess } from "./process.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const disk0Bytes = 32 * MiB;
const disk1Bytes = 8 * MiB;

let dir: string;
let staging: FakeStaging;
let client: ClientProcess | undefined;
let socketPath: string;
const model0 = new Uint8Array(disk0Bytes);
const model1 = new Uint8Array(disk1Bytes);

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const uri = (name: string) => `nbd+unix:///${name}?socket=${encodeURIComponent(socketPath)}`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "druvaa-client-"));
  socketPath = join(dir, "nbd.sock");
  writeFileSync(join(dir, "disk0.img"), new Uint8Array(0));
  writeFileSync(join(dir, "disk1.img"), new Uint8Array(0));
  await tool(["truncate", "-s", String(disk0Bytes), join(dir, "disk0.img")]);
  await tool(["truncate", "-s", String(disk1Bytes), join(dir, "disk1.img")]);
  staging = await FakeStaging.start({ dropAfterWrites: 25 });
  client = await startClient([
    "--device", `disk0=${join(dir, "disk0.img")}`,
    "--device", `disk1=${join(dir, "disk1.img")}`,
    "--staging", staging.address,
    "--wrl", "w1",
    "--export", `unix:${socketPath}`,
    "--control", "127.0.0.1:0",
    "--state-dir", join(dir, "state"),
    "--node-id", "e2e-client",
  ]);
});

afterAll(async () => {
  await client?.stop(3_000);
  await staging?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs qemu-io commands against an export; every command must succeed. */
async function qemuIo(exportName: string, commands: string[]): Promise<void> {
  const result = await tool(["qemu-io", "-f", "raw", uri(exportName), ...commands.flatMap((c) => ["-c", c])]);
  expect(`${result.stdout}${result.stderr}`).not.toMatch(/failed|error/i);
  expect(result.exitCode).toBe(0);
}

describe("client attach with real NBD clients", () => {
  test("ready line names one export per device on one listener, and staging saw both attaches", () => {
    expect(client!.ready.exports).toEqual({ disk0: uri("disk0"), disk1: uri("disk1") });
    expect(staging.attaches.map((a) => [a.device, a.wrl, a.sizeBytes, a.logicalBlockSizeBytes])).toEqual([["disk0", "w1", disk0Bytes, 512], ["disk1", "w1", disk1Bytes, 512]]);
  });

  test("nbdcopy of a random 8 MiB file into disk0", async () => {
    const random = new Uint8Array(8 * MiB);
    for (let at = 0; at < random.length; at += 65536) crypto.getRandomValues(random.subarray(at, at + 65536));
    const source = join(dir, "random.bin");
    writeFileSync(source, random);
    const result = await tool(["nbdcopy", "--flush", source, uri("disk0")]);
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    model0.set(random, 0);
  });

  test("qemu-io: overlapping writes, write-zeroes and discard on disk0, a write on disk1", async () => {
    await qemuIo("disk0", [
      "write -P 0x5a 8M 1M",
      "write -P 0xa5 8704k 1M", // overlaps the previous one by 512 KiB
      "write -P 0x11 12M 1M",
      "write -z 12M 512k",
      "write -P 0x22 14M 1M",
      "discard 14M 512k",
      "flush",
    ]);
    model0.fill(0x5a, 8 * MiB, 9 * MiB);
    model0.fill(0xa5, 8.5 * MiB, 9.5 * MiB);
    model0.fill(0x11, 12 * MiB, 13 * MiB);
    model0.fill(0, 12 * MiB, 12.5 * MiB);
    model0.fill(0x22, 14 * MiB, 15 * MiB);
    model0.fill(0, 14 * MiB, 14.5 * MiB);
    await qemuIo("disk1", ["write -P 0x33 1M 2M"]);
    model1.fill(0x33, 1 * MiB, 3 * MiB);
    // qemu-io reads back through the export what it wrote.
    await qemuIo("disk0", ["read -P 0xa5 8704k 1M", "read -P 0 12M 512k", "read -P 0x11 12800k 512k"]);
  });

  test("an unknown export name is refused cleanly and the client keeps serving", async () => {
    const bad = await tool(["nbdinfo", uri("no-such-disk")]);
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr.toLowerCase()).toMatch(/unknown|export|no-such-disk/);
    const list = await tool(["nbdinfo", "--list", "--json", uri("")]);
    expect(list.exitCode).toBe(0);
    const names = (JSON.parse(list.stdout).exports as { "export-name": string }[]).map((e) => e["export-name"]).sort();
    expect(names).toEqual(["disk0", "disk1"]);
    const good = await tool(["nbdinfo", "--json", uri("disk1")]);
    expect(good.exitCode).toBe(0);
    expect(JSON.parse(good.stdout).exports[0]["export-size"]).toBe(disk1Bytes);
  });

  test("the primaries hold exactly what was written, and staging received exactly those bytes", () => {
    const primary0 = readFileSync(join(dir, "disk0.img"));
    const primary1 = readFileSync(join(dir, "disk1.img"));
    expect(sha256(primary0)).toBe(sha256(model0));
    expect(sha256(primary1)).toBe(sha256(model1));
    expect(sha256(staging.replay("disk0", disk0Bytes))).toBe(sha256(model0));
    expect(sha256(staging.replay("disk1", disk1Bytes))).toBe(sha256(model1));
    expect(staging.records.some((r) => r.zero)).toBe(true);
    // The fake dropped the connection once mid-workload; the client came back.
    expect(staging.dropped.length).toBe(1);
    expect(staging.sessions).toBe(2);
  });

  test("GET /status on the control port", async () => {
    const status = (await (await fetch(`http://${client!.ready.control}/status`)).json()) as any;
    expect(status).toMatchObject({ role: "client", nodeId: "e2e-client", staging: { address: staging.address, connected: true } });
    expect(status.staging.lastError.code).toBeString();
    const lastLsn = (device: string) => Math.max(...staging.records.filter((r) => r.device === device).map((r) => r.lsn));
    expect(status.devices).toMatchObject([
      { name: "disk0", path: join(dir, "disk0.img"), sizeBytes: disk0Bytes, wrl: "w1", export: uri("disk0"), ackedLsn: lastLsn("disk0"), inflightWrites: 0 },
      { name: "disk1", path: join(dir, "disk1.img"), sizeBytes: disk1Bytes, wrl: "w1", export: uri("disk1"), ackedLsn: lastLsn("disk1"), writes: 1, bytesWritten: 2 * MiB, inflightWrites: 0 },
    ]);
    expect(status.devices[0].bytesWritten).toBeGreaterThanOrEqual(8 * MiB + 4 * MiB);
  });

  test("SIGTERM: exits 0, removes the NBD socket, leaves its state file", async () => {
    const code = await client!.stop();
    expect(code).toBe(0);
    expect(existsSync(socketPath)).toBe(false);
    const state = JSON.parse(readFileSync(join(dir, "state", "client-state.json"), "utf8"));
    expect(state).toMatchObject({ nodeId: "e2e-client", devices: [{ name: "disk0", wrl: "w1" }, { name: "disk1", wrl: "w1" }] });
    expect(state.epochReservedUpTo).toBeGreaterThan(0);
    client = undefined;
  });
});

describe("client attach with one device", () => {
  test("the default export works, and a 16 MiB NBD write reaches staging as 8 MiB records", async () => {
    const single = await FakeStaging.start();
    const image = join(dir, "single.img");
    const sock = join(dir, "single.sock");
    writeFileSync(image, new Uint8Array(0));
    await tool(["truncate", "-s", String(24 * MiB), image]);
    let proc: ClientProcess | undefined;
    try {
      proc = await startClient(["--device", `only=${image}`, "--staging", single.address, "--wrl", "w1", "--export", `unix:${sock}`, "--control", "127.0.0.1:0", "--state-dir", join(dir, "state-single")]);
      const result = await tool(["qemu-io", "-f", "raw", `nbd+unix:///?socket=${encodeURIComponent(sock)}`, "-c", "write -P 0x44 4M 16M", "-c", "write -z 20M 4M"]);
      expect(`${result.stdout}${result.stderr}`).not.toMatch(/failed|error/i);
      expect(result.exitCode).toBe(0);
      expect(await proc.stop()).toBe(0);
      proc = undefined;
      const expected = new Uint8Array(24 * MiB);
      expected.fill(0x44, 4 * MiB, 20 * MiB);
      expect(sha256(readFileSync(image))).toBe(sha256(expected));
      expect(sha256(single.replay("only", 24 * MiB))).toBe(sha256(expected));
      expect(single.records.filter((r) => !r.zero).map((r) => [r.offset, r.length])).toEqual([[4 * MiB, 8 * MiB], [12 * MiB, 8 * MiB]]);
    } finally {
      await proc?.stop(3_000);
      await single.stop();
    }
  });
});

describe("client attach shutdown", () => {
  test("SIGTERM with a write waiting for staging: the write finishes (NBD client succeeds), then exit 0", async () => {
    const slow = await FakeStaging.start({ holdAcks: true });
    const image = join(dir, "slow.img");
    const sock = join(dir, "slow.sock");
    writeFileSync(image, new Uint8Array(0));
    await tool(["truncate", "-s", String(4 * MiB), image]);
    let proc: ClientProcess | undefined;
    try {
      proc = await startClient(["--device", `slow=${image}`, "--staging", slow.address, "--wrl", "w1", "--export", `unix:${sock}`, "--control", "127.0.0.1:0", "--state-dir", join(dir, "state-slow")]);
      const writing = tool(["qemu-io", "-f", "raw", `nbd+unix:///slow?socket=${encodeURIComponent(sock)}`, "-c", "write -P 0x66 1M 64k"]);
      for (let i = 0; i < 500 && slow.heldAcks === 0; i += 1) await Bun.sleep(10);
      expect(slow.heldAcks).toBe(1);
      proc.proc.kill("SIGTERM");
      await Bun.sleep(100);
      expect(proc.proc.exitCode).toBeNull(); // still waiting for the write
      expect(new Uint8Array(readFileSync(image).subarray(1 * MiB, 1 * MiB + 64 * KiB))).toEqual(new Uint8Array(64 * KiB)); // not written before the ack
      slow.releaseAcks();
      const result = await writing;
      expect(`${result.stdout}${result.stderr}`).not.toMatch(/failed|error/i);
      expect(result.exitCode).toBe(0);
      expect(await proc.proc.exited).toBe(0); // the SIGTERM sent above, not a second one
      proc = undefined;
      expect(new Uint8Array(readFileSync(image).subarray(1 * MiB, 1 * MiB + 64 * KiB))).toEqual(new Uint8Array(64 * KiB).fill(0x66));
    } finally {
      await proc?.stop(3_000);
      await slow.stop();
    }
  });
});

describe("client attach refusals", () => {
  test("attach refused by staging: exits non-zero with staging's message, exports nothing", async () => {
    const refusing = await FakeStaging.start({ refuseAttach: { code: "WRL_UNKNOWN", message: "no WRL named nope here" } });
    try {
      const sock = join(dir, "refused.sock");
      const result = await runClientToEnd(["--device", `disk0=${join(dir, "disk0.img")}`, "--staging", refusing.address, "--wrl", "nope", "--export", `unix:${sock}`, "--control", "127.0.0.1:0", "--state-dir", join(dir, "state2")]);
      expect(result.exitCode).toBe(exitCodes.refused);
      expect(result.stderr).toContain("no WRL named nope here");
      expect(JSON.parse(result.stdout.trim())).toMatchObject({ ok: false, error: { code: "WRL_UNKNOWN" } });
      expect(existsSync(sock)).toBe(false);
    } finally {
      await refusing.stop();
    }
  });

  test("staging unreachable: exits non-zero with a hint", async () => {
    const gone = await FakeStaging.start();
    const address = gone.address;
    await gone.stop();
    const result = await runClientToEnd(["--device", `disk0=${join(dir, "disk0.img")}`, "--staging", address, "--wrl", "w1", "--export", `unix:${join(dir, "x.sock")}`, "--control", "127.0.0.1:0", "--state-dir", join(dir, "state3")]);
    expect(result.exitCode).toBe(exitCodes.refused);
    expect(result.stderr).toContain(`cannot reach staging ${address}`);
    expect(result.stderr).toContain("without --changemap the client cannot serve writes until staging takes them");
    expect(result.stderr).toContain("hint:");
    expect(result.stderr).toContain("--changemap PATH");
    expect(existsSync(join(dir, "x.sock"))).toBe(false);
  });
});
