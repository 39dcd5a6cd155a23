/**
 * Initial synchronisation by media, with real processes: the primary holds data the replica never
 * got; replication runs (`replica apply --await-seed disk0` records every block it writes); a
 * backup of the primary is taken after replication started, and the primary keeps changing; the
 * replica refuses restores until `druvaa replica seed` imports the backup — which copies only the
 * blocks replication never wrote, so the newer ones survive — and then equals the primary. Bad
 * input: an image of the wrong size, a missing image, a device that does not await a seed, are
 * refused with nothing written.
 */
import { afterEach, expect, test } from "bun:test";
import { copyFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { createImage, druvaa, expectReplicaEqualsPrimary, MiB, qemuIo, sha256File, startSystem, type System } from "./helpers.ts";

const sizeBytes = 32 * MiB;
let system: System | undefined;

afterEach(async () => {
  await system?.stop();
  system = undefined;
});

/** Writes random bytes straight into an image file (data replication never sees). */
async function scribble(path: string, offset: number, length: number): Promise<void> {
  const file = await open(path, "r+");
  try {
    const data = new Uint8Array(length);
    for (let at = 0; at < length; at += 65536) crypto.getRandomValues(data.subarray(at, Math.min(length, at + 65536)));
    await file.write(data, 0, length, offset);
  } finally {
    await file.close();
  }
}

test("media seed: the backup fills in what replication never wrote, never a newer block; then replica == primary", async () => {
  const sys = (system = await startSystem({ sizeBytes, replicaFlags: ["--await-seed", "disk0"] }));
  // Data the primary had before replication started.
  await sys.kill("client", "SIGTERM");
  await scribble(sys.primaryPath("disk0"), 0, 8 * MiB);
  await scribble(sys.primaryPath("disk0"), 20 * MiB, 4 * MiB);
  await sys.restart("client");

  expect((await qemuIo(sys.exportUri("disk0"), ["write -P 0x41 1M 64k", "write -P 0x42 21M 128k"])).exitCode).toBe(0);
  await sys.waitDrained(30);
  // The backup, taken after replication started; then the primary changes again.
  const backup = join(sys.dir, "backup.img");
  copyFileSync(sys.primaryPath("disk0"), backup);
  expect((await qemuIo(sys.exportUri("disk0"), ["write -P 0x43 1M 64k", "write -P 0x44 2M 64k", "write -P 0x45 30M 64k"])).exitCode).toBe(0);
  await sys.waitDrained(30);

  const status = await sys.status("replica");
  expect(status.seeds).toEqual([{ device: "disk0", state: "awaiting", copiedBytes: 0, skippedBytes: 0, totalBytes: sizeBytes }]);
  // A restore now would hand out a device without its seeded blocks.
  const early = await druvaa(["restore", "--replica", sys.replicaRestore, "--device", "disk0", "--to", join(sys.dir, "early.img")]);
  expect(early.exitCode).not.toBe(0);
  expect(early.stderr).toContain("awaits its seed from media");
  expect(early.stderr).toContain("druvaa replica seed --device disk0");

  // Bad input first: nothing may be written.
  const before = await sha256File(sys.replicaPath("disk0"));
  const wrongSize = join(sys.dir, "wrong.img");
  await createImage(wrongSize, sizeBytes - 1 * MiB);
  const wrong = await druvaa(["replica", "seed", "--device", "disk0", "--from", wrongSize, "--connect", sys.replicaControl]);
  expect(wrong.exitCode).toBe(4);
  expect(wrong.stderr).toContain("but volume disk0 is 33554432 bytes");
  expect(wrong.stderr).toContain("nothing was written");
  const missing = await druvaa(["replica", "seed", "--device", "disk0", "--from", join(sys.dir, "nope.img"), "--connect", sys.replicaControl]);
  expect(missing.exitCode).toBe(3);
  const unknown = await druvaa(["replica", "seed", "--device", "disk9", "--from", backup, "--connect", sys.replicaControl]);
  expect(unknown.exitCode).toBe(3);
  expect(unknown.stderr).toContain("has no device disk9");
  expect(await sha256File(sys.replicaPath("disk0"))).toBe(before);

  const seeded = await druvaa(["replica", "seed", "--device", "disk0", "--from", backup, "--connect", sys.replicaControl, "--json"], 120_000);
  expect(seeded.exitCode).toBe(0);
  const report = JSON.parse(seeded.stdout) as { copiedBytes: number; skippedBytes: number; totalBytes: number };
  // The five 64 KiB-aligned ranges replication wrote (one twice) were kept, everything else copied.
  expect(report.skippedBytes).toBe(5 * 64 * 1024);
  expect(report.copiedBytes + report.skippedBytes).toBe(sizeBytes);
  await expectReplicaEqualsPrimary(sys);

  // Seeded once and for all: after a restart nothing awaits a seed, and a second seed is refused.
  await sys.restart("replica");
  expect((await sys.status("replica")).seeds).toEqual([]);
  const again = await druvaa(["replica", "seed", "--device", "disk0", "--from", backup, "--connect", sys.replicaControl]);
  expect(again.exitCode).toBe(4);
  expect(again.stderr).toContain("does not await a seed (it was seeded already)");
}, 120_000);
