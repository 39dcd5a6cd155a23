/**
 * Recovery end to end, with real processes and real NBD peers: a replica with a point-in-time
 * journal (--retention) lists its points (druvaa replica points), restores an earlier one
 * (druvaa restore --at) byte for byte, and serves a fast snapshot over NBD (nbdinfo, nbdcopy)
 * that keeps its point while replication goes on; bad input is refused with nothing changed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { readFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { druvaa, druvaaOk, MiB, qemuIo, run, startSystem, type System } from "./helpers.ts";

const sizeBytes = 16 * MiB;
let sys: System;

beforeAll(async () => {
  sys = await startSystem({ sizeBytes, replicaFlags: ["--retention", "1h"] });
}, 60_000);
afterAll(async () => {
  await sys?.stop();
});

/** Writes `pattern` over [offset, offset+length) through the client's NBD export, then waits until replicated. */
async function writeAndDrain(pattern: number, offset: number, length: number): Promise<void> {
  const result = await qemuIo(sys.exportUri("disk0"), [`write -P ${pattern} ${offset} ${length}`]);
  expect(result.exitCode).toBe(0);
  await sys.waitDrained();
}

async function points(): Promise<{ lsn: number; time: string; current: boolean; label?: string }[]> {
  const out = JSON.parse(await druvaaOk(["replica", "points", "--connect", sys.replicaControl, "--device", "disk0", "--json"]));
  expect(out.ok).toBe(true);
  return out.points;
}

function expectFilled(image: Uint8Array, offset: number, length: number, value: number): void {
  const region = image.subarray(offset, offset + length);
  expect(region.length).toBe(length);
  expect(region.every((byte) => byte === value)).toBe(true);
}

describe("restore --at, replica points, fast snapshots over NBD", () => {
  test("an earlier point restores as it was; a snapshot exported over NBD keeps its point while apply goes on", async () => {
    await writeAndDrain(0xa1, 0, 4 * MiB);
    const afterA = (await points()).at(-1)!;
    expect(afterA.current).toBe(true);
    await writeAndDrain(0xb2, 2 * MiB, 4 * MiB);
    const listed = await points();
    expect(listed.at(-1)!.lsn).toBeGreaterThan(afterA.lsn);
    expect(listed.map((point) => point.lsn)).toContain(afterA.lsn);
    // The human listing names the journal and the points.
    const text = await druvaaOk(["replica", "points", "--connect", sys.replicaControl, "--device", "disk0"]);
    expect(text).toContain("(current)");
    expect(text).toContain("journal ");

    // restore --at the earlier LSN: the second write is not in it.
    const earlier = join(sys.dir, "at-a.img");
    const restored = JSON.parse(await druvaaOk(["restore", "--replica", sys.replicaRestore, "--device", "disk0", "--at", String(afterA.lsn), "--to", earlier, "--json"]));
    expect(restored.appliedLsn).toBe(afterA.lsn);
    const image = new Uint8Array(await readFile(earlier));
    expectFilled(image, 0, 4 * MiB, 0xa1);
    expectFilled(image, 4 * MiB, 2 * MiB, 0);

    // A fast snapshot of that point, exported over NBD by the replica.
    const socket = join(sys.dir, "snap.sock");
    const created = JSON.parse(await druvaaOk(["restore", "--control", sys.replicaControl, "--device", "disk0", "--snapshot", "--export", `unix:${socket}`, "--at", String(afterA.lsn), "--json"]));
    expect(created.lsn).toBe(afterA.lsn);
    const uri = `nbd+unix:///?socket=${socket}`;
    const info = await run(["nbdinfo", "--json", uri]);
    expect(info.exitCode).toBe(0);
    expect(JSON.parse(info.stdout).exports[0]["export-size"]).toBe(sizeBytes);
    // Replication goes on meanwhile and overwrites what the snapshot shows.
    await writeAndDrain(0xc3, 0, 8 * MiB);
    const copy = join(sys.dir, "snap-copy.img");
    expect((await run(["nbdcopy", uri, copy])).exitCode).toBe(0);
    expect(Buffer.compare(new Uint8Array(await readFile(copy)), image)).toBe(0);
    // Read-only: a write through NBD is refused.
    expect((await qemuIo(uri, ["write -P 1 0 4096"])).exitCode).not.toBe(0);
    const listedSnapshots = JSON.parse(await druvaaOk(["restore", "--control", sys.replicaControl, "--list", "--json"]));
    expect(listedSnapshots.snapshots.map((entry: { id: number }) => entry.id)).toEqual([created.id]);
    await druvaaOk(["restore", "--control", sys.replicaControl, "--release", String(created.id)]);
    expect(existsSync(socket)).toBe(false);
    // The latest point restores the newest data.
    const latest = new Uint8Array(await readFile(await sys.restore("disk0")));
    expectFilled(latest, 0, 8 * MiB, 0xc3);
    sys.assertAlive();
  }, 120_000);

  test("a writable snapshot takes writes without touching the replica", async () => {
    const socket = join(sys.dir, "drill.sock");
    const created = JSON.parse(await druvaaOk(["restore", "--control", sys.replicaControl, "--device", "disk0", "--snapshot", "--export", `unix:${socket}`, "--writable", "--json"]));
    const uri = `nbd+unix:///?socket=${socket}`;
    expect((await qemuIo(uri, ["write -P 0x5e 1M 64k"])).exitCode).toBe(0);
    const read = await qemuIo(uri, ["read -P 0x5e 1M 64k"]);
    expect(read.exitCode).toBe(0);
    expect(read.stdout).not.toContain("Pattern verification failed");
    await druvaaOk(["restore", "--control", sys.replicaControl, "--release", String(created.id)]);
    const replica = new Uint8Array(await readFile(await sys.restore("disk0")));
    expectFilled(replica, 1 * MiB, 64 * 1024, 0xc3);
  }, 60_000);

  test("bad input: a point in the future, before retention or an unknown label, a target too small, a bad address: refused, nothing written", async () => {
    const future = await druvaa(["restore", "--replica", sys.replicaRestore, "--device", "disk0", "--at", "99999999", "--to", join(sys.dir, "never.img")]);
    expect(future.exitCode).toBe(4);
    expect(future.stderr).toContain("LSN 99999999 has not been applied yet");
    expect(existsSync(join(sys.dir, "never.img"))).toBe(false);
    const label = await druvaa(["restore", "--replica", sys.replicaRestore, "--device", "disk0", "--at", "no-such-label", "--to", join(sys.dir, "never.img")]);
    expect(label.exitCode).toBe(3);
    expect(label.stderr).toContain('no point labelled "no-such-label"');
    expect(existsSync(join(sys.dir, "never.img"))).toBe(false);
    const old = await druvaa(["restore", "--control", sys.replicaControl, "--device", "disk0", "--snapshot", "--export", `unix:${join(sys.dir, "old.sock")}`, "--at", "2001-01-01T00:00:00Z"]);
    expect(old.exitCode).toBe(4);
    expect(old.stderr).toContain("is before the oldest point kept");
    const small = join(sys.dir, "small.img");
    await writeFile(small, new Uint8Array(4096).fill(7));
    await truncate(small, 1 * MiB);
    const tooSmall = await druvaa(["restore", "--replica", sys.replicaRestore, "--device", "disk0", "--to", small, "--force"]);
    expect(tooSmall.exitCode).toBe(4);
    expect(tooSmall.stderr).toContain("but the image of disk0 has");
    expect(new Uint8Array(await readFile(small)).subarray(0, 4096).every((byte) => byte === 7)).toBe(true);
    const badAddress = await druvaa(["restore", "--control", sys.replicaControl, "--device", "disk0", "--snapshot", "--export", "nowhere:99999"]);
    expect(badAddress.exitCode).not.toBe(0);
    const unknown = await druvaa(["restore", "--control", sys.replicaControl, "--release", "4242"]);
    expect(unknown.exitCode).toBe(3);
    expect(unknown.stderr).toContain("no exported snapshot 4242");
    sys.assertAlive();
  }, 60_000);
});
