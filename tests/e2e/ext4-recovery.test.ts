/**
 * Recovery of a real filesystem: ext4 on nbdfuse + a loop device through the client, a file
 * workload with application-consistent checkpoints (fsfreeze, druvaa checkpoint, unfreeze):
 *   - a fast snapshot of a label, exported over NBD while apply goes on, mounts read-only and
 *     passes e2fsck -fn while the replica keeps changing, with the files of that label;
 *   - restore --at the label returns the files as they were then;
 *   - a failover drill leaves replication running;
 *   - a real failover, files written on the DR side (ext4 on its export), failback: the original
 *     primary holds the DR side's files, replication resumes in the original direction, and
 *     failback sent far less than the volume (the figure is printed).
 * Needs root, /dev/fuse, fuse3, libnbd-bin, e2fsprogs (scripts/setup.sh installs them in CI).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmdirSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { attachLoop, hashTree, mountFs, runFileWorkload, sh, startNbdfuse, Teardown } from "./ext4-helpers.ts";
import { mountExt4OnExport, withTeardown } from "./ext4-flow.ts";
import { druvaa, druvaaOk, MiB, startSystem, type System } from "./helpers.ts";

const teardown = new Teardown();
afterAll(async () => {
  const failures = await teardown.run();
  if (failures.length > 0) throw new Error(`cleanup failed:\n${failures.join("\n")}`);
});

/** A directory for mount points outside the system dir (removed with rmdir only). */
function mountDirs(names: string[]): Record<string, string> {
  const root = mkdtempSync(join(tmpdir(), "druvaa-recovery-"));
  const dirs = Object.fromEntries(names.map((name) => [name, join(root, name)]));
  for (const dir of Object.values(dirs)) mkdirSync(dir);
  teardown.add(`remove ${root}`, async () => {
    for (const dir of [...Object.values(dirs), root]) if (existsSync(dir)) rmdirSync(dir);
  });
  return dirs;
}

/** nbdfuse + loop + mount of an NBD export holding ext4; returns the undo (unmount, detach, stop). */
async function mountExport(sys: System, fuseDir: string, fsDir: string, uri: string, options: { readOnly?: boolean } = {}): Promise<() => Promise<void>> {
  const fuse = await startNbdfuse(teardown, fuseDir, "dev", uri, join(sys.dir, `nbdfuse-${Date.now()}.pid`));
  const loop = await attachLoop(teardown, fuse.file, ["--direct-io=off", ...(options.readOnly === true ? ["--read-only"] : [])]);
  const unmount = await mountFs(teardown, loop.device, fsDir, options.readOnly === true ? ["ro"] : []);
  return async () => {
    if (options.readOnly !== true) await sh(["sync", "-f", fsDir]);
    await unmount();
    await loop.detach();
    await fuse.stop();
  };
}

/** fsfreeze, druvaa checkpoint --label, unfreeze: the files as of the label. */
async function checkpoint(sys: System, fsDir: string, label: string): Promise<Map<string, string>> {
  await sh(["fsfreeze", "-f", fsDir]);
  try {
    const out = JSON.parse(await druvaaOk(["checkpoint", "--client", sys.clientControl, "--label", label, "--json"]));
    expect(out.ok).toBe(true);
    return hashTree(fsDir);
  } finally {
    await sh(["fsfreeze", "-u", fsDir]);
  }
}

test("ext4: snapshot of a label while apply goes on, restore --at, a drill, failover and failback", async () => {
  const seed = Number(process.env.DRUVAA_EXT4_SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`ext4 recovery workload seed ${seed} (replay: DRUVAA_EXT4_SEED=${seed})`);
  await withTeardown(teardown, async () => {
    const volumeBytes = 192 * MiB;
    const sys = await startSystem({ sizeBytes: volumeBytes, changeMap: true, replicaFlags: ["--retention", "1h"] });
    teardown.add("stop the druvaa processes", () => sys.stop());
    const dirs = mountDirs(["snapFuse", "snapFs", "drillFuse", "drillFs", "drFuse", "drFs", "againFuse", "againFs", "restoredFs"]);
    const fs = await mountExt4OnExport(sys, teardown);

    mkdirSync(join(fs.fsDir, "round1"));
    runFileWorkload(join(fs.fsDir, "round1"), seed);
    const atLabel = await checkpoint(sys, fs.fsDir, "round1");
    mkdirSync(join(fs.fsDir, "round2"));
    runFileWorkload(join(fs.fsDir, "round2"), seed + 1);
    await sys.waitDrained();
    const points = JSON.parse(await druvaaOk(["replica", "points", "--connect", sys.replicaControl, "--device", "disk0", "--json"])).points as { label?: string }[];
    expect(points.some((point) => point.label === "round1")).toBe(true);

    // A fast snapshot of round1, mounted read-only while replication changes the replica.
    const socket = join(sys.dir, "snap.sock");
    const snapshot = JSON.parse(await druvaaOk(["restore", "--control", sys.replicaControl, "--device", "disk0", "--snapshot", "--export", `unix:${socket}`, "--at", "round1", "--json"]));
    const snapUri = `nbd+unix:///?socket=${socket}`;
    const unmountSnap = await mountExport(sys, dirs.snapFuse!, dirs.snapFs!, snapUri, { readOnly: true });
    writeFileSync(join(fs.fsDir, "during-snapshot.bin"), new Uint8Array(4 * MiB).fill(9));
    await sh(["sync", "-f", fs.fsDir]);
    await sys.waitDrained();
    expect(Object.fromEntries(hashTree(dirs.snapFs!))).toEqual(Object.fromEntries(atLabel));
    await unmountSnap();
    const snapFuse = await startNbdfuse(teardown, dirs.snapFuse!, "dev", snapUri, join(sys.dir, "snap-fsck.pid"));
    const check = await sh(["e2fsck", "-fn", snapFuse.file], { check: false, timeoutMs: 60_000 });
    if (check.code !== 0) console.error(check.stdout, check.stderr);
    expect(check.code).toBe(0);
    await snapFuse.stop();
    await druvaaOk(["restore", "--control", sys.replicaControl, "--release", String(snapshot.id)]);

    // restore --at round1: the files as they were at the label.
    const restored = join(sys.dir, "round1.img");
    await druvaaOk(["restore", "--replica", sys.replicaRestore, "--device", "disk0", "--at", "round1", "--to", restored]);
    expect((await sh(["e2fsck", "-fn", restored], { check: false, timeoutMs: 60_000 })).code).toBe(0);
    const restoredLoop = await attachLoop(teardown, restored, ["--read-only"]);
    const unmountRestored = await mountFs(teardown, restoredLoop.device, dirs.restoredFs!, ["ro"]);
    expect(Object.fromEntries(hashTree(dirs.restoredFs!))).toEqual(Object.fromEntries(atLabel));
    // Restoring over a mounted target is refused, even with --force, and changes nothing.
    const before = await sh(["sha256sum", restored]);
    const overMounted = await druvaa(["restore", "--replica", sys.replicaRestore, "--device", "disk0", "--to", restored, "--force"]);
    expect(overMounted.exitCode).toBe(4);
    expect(overMounted.stderr).toContain(`attached to ${restoredLoop.device}, mounted at ${dirs.restoredFs}`);
    expect((await sh(["sha256sum", restored])).stdout).toBe(before.stdout);
    await unmountRestored();
    await restoredLoop.detach();

    // A drill on the latest point (writable: ext4 replays its journal there) leaves replication running.
    const drillSocket = join(sys.dir, "drill.sock");
    const drill = JSON.parse(await druvaaOk(["failover", "--connect", sys.replicaControl, "--device", "disk0", "--test", "--export", `unix:${drillSocket}`, "--json"]));
    const unmountDrill = await mountExport(sys, dirs.drillFuse!, dirs.drillFs!, `nbd+unix:///?socket=${drillSocket}`);
    expect(existsSync(join(dirs.drillFs!, "during-snapshot.bin"))).toBe(true);
    writeFileSync(join(dirs.drillFs!, "drill-only.txt"), "a drill write");
    writeFileSync(join(fs.fsDir, "after-drill.bin"), new Uint8Array(1 * MiB).fill(3));
    await sh(["sync", "-f", fs.fsDir]);
    await sys.waitDrained();
    await unmountDrill();
    await druvaaOk(["restore", "--control", sys.replicaControl, "--release", String(drill.id)]);

    // The original site goes down cleanly; failover; the application writes at the DR site.
    const beforeFailover = hashTree(fs.fsDir);
    await fs.unmount();
    await sys.waitDrained();
    await sys.kill("client", "SIGTERM");
    const drSocket = join(sys.dir, "dr.sock");
    await druvaaOk(["failover", "--connect", sys.replicaControl, "--device", "disk0", "--export", `unix:${drSocket}`]);
    const unmountDr = await mountExport(sys, dirs.drFuse!, dirs.drFs!, `nbd+unix:///disk0?socket=${drSocket}`);
    expect(Object.fromEntries(hashTree(dirs.drFs!))).toEqual(Object.fromEntries(beforeFailover));
    mkdirSync(join(dirs.drFs!, "dr-site"));
    for (let index = 0; index < 8; index += 1) writeFileSync(join(dirs.drFs!, "dr-site", `file-${index}.bin`), new Uint8Array(64 * 1024).fill(index + 1));
    const drFiles = hashTree(dirs.drFs!);
    await unmountDr();

    const back = JSON.parse(await druvaaOk(["failback", "--connect", sys.replicaControl, "--device", "disk0", "--primary", sys.primaryPath("disk0"), "--staging", sys.stagingControl, "--changemap", join(sys.dir, "changemap.img"), "--json"]));
    console.log(`failback sent ${back.sentBytes} bytes of a ${back.volumeBytes}-byte volume (${back.sentPercent.toFixed(2)} %)`);
    expect(back.keep).toBe("dr");
    expect(back.sentBytes).toBeLessThan(volumeBytes / 10);

    // Roles swapped back: the client serves the original primary, which holds the DR side's files.
    await sys.restart("client");
    const unmountAgain = await mountExport(sys, dirs.againFuse!, dirs.againFs!, sys.exportUri("disk0"));
    expect(Object.fromEntries(hashTree(dirs.againFs!))).toEqual(Object.fromEntries(drFiles));
    writeFileSync(join(dirs.againFs!, "home-again.txt"), "replication resumed");
    await unmountAgain();
    await sys.waitDrained();
    const hashes = await sys.verifyAll();
    expect(hashes.disk0!.restored).toBe(hashes.disk0!.primary);
    sys.assertAlive();
  });
}, 240_000);
