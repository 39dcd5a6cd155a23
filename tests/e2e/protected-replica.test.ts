/**
 * The protected replica device with real tools: an ext4 file system made by mkfs.ext4 is copied
 * into the client's export with nbdcopy and replicated; on the replica image blkid and file -s
 * find no file system (its head is kept swapped at its end), while `druvaa restore` gives an
 * image blkid calls ext4 and e2fsck passes. unprotect (the failover step) turns the replica
 * image itself into a plain ext4 image. `druvaa replica apply` refuses an image too small for the
 * reserve (with the truncate command), one that holds a file system, and one smaller than its
 * primary declared (with the size it needs); `druvaa sizing` tells
 * the size a replica device needs.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { FileDevice } from "../../src/io/file-device.ts";
import { unprotect } from "../../src/roles/replica/protected-device.ts";
import { createImage, druvaa, druvaaOk, expectReplicaEqualsPrimary, MiB, plainSha256, readRange, replicaReserveBytes, run, sha256File, startSystem, type System } from "./helpers.ts";
import { errorOf } from "./raw-socket.ts";

const sizeBytes = 64 * MiB;
const tools = ["mkfs.ext4", "blkid", "file", "e2fsck", "nbdcopy"];
const missing = tools.filter((tool) => Bun.which(tool) === null && Bun.which(tool, { PATH: "/usr/sbin:/sbin:/usr/bin" }) === null);
const which = (tool: string) => Bun.which(tool) ?? Bun.which(tool, { PATH: "/usr/sbin:/sbin:/usr/bin" }) ?? tool;

let system: System;
let ext4Image: string;

beforeAll(async () => {
  if (missing.length > 0) return;
  system = await startSystem({ sizeBytes });
  ext4Image = join(system.dir, "ext4-source.img");
  await createImage(ext4Image, sizeBytes);
  const mkfs = await run([which("mkfs.ext4"), "-F", "-q", "-L", "protected", ext4Image]);
  expect(mkfs.exitCode).toBe(0);
  const copy = await run(["nbdcopy", ext4Image, system.exportUri("disk0")], { timeoutMs: 60_000 });
  expect({ exit: copy.exitCode, stderr: copy.stderr }).toEqual({ exit: 0, stderr: "" });
  await expectReplicaEqualsPrimary(system);
}, 120_000);

afterAll(async () => {
  await system?.stop();
});

describe.skipIf(missing.length > 0)(`protected replica device (needs ${tools.join(", ")})`, () => {
  test("the replica image holds ext4 but blkid -p and file -s do not recognise it; its ready line shows the reserve", async () => {
    expect((await run([which("blkid"), "-p", ext4Image])).stdout).toContain('TYPE="ext4"'); // the tools do see ext4
    const replicaImage = system.replicaPath("disk0");
    const probe = await run([which("blkid"), "-p", replicaImage]);
    expect(probe.stdout).not.toContain("ext4");
    expect(probe.exitCode).not.toBe(0); // blkid -p: 2 = nothing recognised
    const file = await run([which("file"), "-s", replicaImage]);
    expect(file.stdout).not.toMatch(/ext[234]|filesystem|partition|boot sector/i);
    expect(system.replica.ready.devices).toEqual([{ name: "disk0", path: replicaImage, sizeBytes, protectedHeaderBytes: replicaReserveBytes }]);
  });

  test("druvaa restore un-swaps the head: blkid says ext4 and e2fsck -fn passes", async () => {
    const restored = await system.restore("disk0");
    expect(await sha256File(restored)).toBe(await sha256File(ext4Image));
    const probe = await run([which("blkid"), "-p", restored]);
    expect(probe.stdout).toContain('TYPE="ext4"');
    expect(probe.stdout).toContain('LABEL="protected"');
    const fsck = await run([which("e2fsck"), "-fn", restored]);
    expect({ exit: fsck.exitCode, out: fsck.stdout + fsck.stderr }).toMatchObject({ exit: 0 });
  });

  test("unprotect (failover) turns a copy of the replica image into a plain ext4 image of the logical size", async () => {
    await system.waitDrained(30);
    const copy = join(system.dir, "failover.img");
    copyFileSync(system.replicaPath("disk0"), copy);
    expect(await plainSha256(copy)).toBe(await sha256File(ext4Image));
    const physical = await FileDevice.open(copy);
    try {
      expect(await unprotect(physical)).toBe(sizeBytes);
    } finally {
      await physical.close();
    }
    expect(await sha256File(copy, sizeBytes)).toBe(await sha256File(ext4Image));
    expect((await run([which("blkid"), "-p", copy])).stdout).toContain('TYPE="ext4"');
    expect((await run([which("e2fsck"), "-fn", copy])).exitCode).toBe(0);
  });

  test("replica apply refuses an image too small for the reserve (exit 4, the truncate command) and one holding a file system", async () => {
    const small = join(system.dir, "small.img");
    await createImage(small, 1 * MiB);
    const tooSmall = await druvaa(["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `d0=${small}`, "--state-dir", join(system.dir, "small-state"), "--json"]);
    expect(tooSmall.exitCode).toBe(4);
    const error = errorOf(tooSmall.stdout);
    expect(error.code).toBe("REPLICA_DEVICE_TOO_SMALL");
    expect(error.message).toContain("--device d0=");
    expect(error.hint).toContain(`truncate -s ${2 * replicaReserveBytes} ${small}`);
    expect((await readRange(small, 0, 1 * MiB)).every((byte) => byte === 0)).toBe(true); // untouched

    const holding = await druvaa(["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `d0=${ext4Image}`, "--state-dir", join(system.dir, "ext4-state")]);
    expect(holding.exitCode).toBe(4);
    expect(holding.stderr).toContain("it looks like it holds data");
    expect(holding.stderr).toContain("--protect-headers 0");
    expect((await run([which("e2fsck"), "-fn", ext4Image])).exitCode).toBe(0); // not written
  });

  test("a restart on a replica device smaller than its primary declared is refused at start with the size it needs", async () => {
    await system.waitDrained(30);
    await system.kill("replica", "SIGTERM");
    const smaller = join(system.dir, "smaller.img");
    await createImage(smaller, sizeBytes); // the primary's size, without the reserve
    const args = ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `disk0=${smaller}`, "--state-dir", join(system.dir, "replica-state"), "--json"];
    const refused = await druvaa(args);
    expect(refused.exitCode).toBe(4);
    const error = errorOf(refused.stdout);
    expect(error.code).toBe("REPLICA_DEVICE_TOO_SMALL");
    expect(error.message).toContain("header reserve");
    expect(error.hint).toContain(`truncate -s ${sizeBytes + replicaReserveBytes} ${smaller}`);
    await system.restart("replica");
    await expectReplicaEqualsPrimary(system);
  });

  test("druvaa sizing --primary-size gives the replica device size: primary + reserve", async () => {
    const json = JSON.parse(await druvaaOk(["sizing", "--primary-size", "64MiB", "--json"]));
    expect(json).toMatchObject({ primarySizeBytes: sizeBytes, protectedHeaderBytes: replicaReserveBytes, replicaDeviceSizeBytes: sizeBytes + replicaReserveBytes });
    const text = await druvaaOk(["sizing", "--primary-size", "64MiB"]);
    expect(text).toContain(`truncate -s ${sizeBytes + replicaReserveBytes}`);
    const unprotected = JSON.parse(await druvaaOk(["sizing", "--primary-size", "64MiB", "--protect-headers", "0", "--json"]));
    expect(unprotected.replicaDeviceSizeBytes).toBe(sizeBytes);
  });
});
