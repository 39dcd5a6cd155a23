/**
 * Failover, drills and failback end to end, with real processes and real NBD peers (qemu-io):
 * a drill leaves replication running; a failover serves the DR device read-write while staging
 * holds the WRL's records; failback sends only what differs and replication resumes in the
 * original direction; a split brain is refused until the operator chooses, and the chosen side
 * loses no block.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { druvaa, druvaaOk, MiB, qemuIo, startSystem, type System } from "./helpers.ts";

const sizeBytes = 16 * MiB;
const systems: System[] = [];
afterEach(async () => {
  for (const sys of systems.splice(0)) await sys.stop();
});

async function system(): Promise<System> {
  const sys = await startSystem({ sizeBytes, changeMap: true, replicaFlags: ["--retention", "1h"] });
  systems.push(sys);
  return sys;
}

async function write(uri: string, pattern: number, offset: number, length: number): Promise<void> {
  const result = await qemuIo(uri, [`write -P ${pattern} ${offset} ${length}`]);
  expect(result.exitCode).toBe(0);
}

async function expectPattern(uri: string, pattern: number, offset: number, length: number): Promise<void> {
  const result = await qemuIo(uri, [`read -P ${pattern} ${offset} ${length}`]);
  expect(result.exitCode).toBe(0);
  expect(result.stdout).not.toContain("Pattern verification failed");
}

function filled(image: Uint8Array, offset: number, length: number, value: number): boolean {
  return image.subarray(offset, offset + length).every((byte) => byte === value);
}

describe("failover and failback", () => {
  test("a drill leaves replication running; failover, DR writes, failback: the primary gets them, sending ~1% of the volume, and replication resumes", async () => {
    const sys = await system();
    const client = sys.exportUri("disk0");
    await write(client, 0xa1, 0, 4 * MiB);
    await sys.waitDrained();

    // Drill: a writable snapshot; replication goes on meanwhile.
    const drillSocket = join(sys.dir, "drill.sock");
    const drill = JSON.parse(await druvaaOk(["failover", "--connect", sys.replicaControl, "--device", "disk0", "--test", "--export", `unix:${drillSocket}`, "--json"]));
    expect(drill.test).toBe(true);
    const drillUri = `nbd+unix:///?socket=${drillSocket}`;
    await expectPattern(drillUri, 0xa1, 0, 4 * MiB);
    await write(drillUri, 0x77, 0, 64 * 1024);
    await write(client, 0xb2, 4 * MiB, 1 * MiB);
    await sys.waitDrained();
    await druvaaOk(["restore", "--control", sys.replicaControl, "--release", String(drill.id)]);
    const afterDrill = new Uint8Array(await readFile(await sys.restore("disk0")));
    expect(filled(afterDrill, 0, 64 * 1024, 0xa1)).toBe(true); // the drill's write stayed in the drill
    expect(filled(afterDrill, 4 * MiB, 1 * MiB, 0xb2)).toBe(true); // replication went on

    // Real failover: the DR device is served read-write; a restore of it is refused now.
    const drSocket = join(sys.dir, "dr.sock");
    const record = JSON.parse(await druvaaOk(["failover", "--connect", sys.replicaControl, "--device", "disk0", "--export", `unix:${drSocket}`, "--json"]));
    expect(record.generation).toMatch(/^[0-9a-f-]{36}$/);
    expect(record.parentGeneration).not.toBe(record.generation);
    const drUri = `nbd+unix:///disk0?socket=${drSocket}`;
    await expectPattern(drUri, 0xb2, 4 * MiB, 1 * MiB);
    const refused = await druvaa(["restore", "--replica", sys.replicaRestore, "--device", "disk0", "--to", join(sys.dir, "no.img")]);
    expect(refused.exitCode).toBe(4);
    expect(refused.stderr).toContain("failed over");
    const shown = await druvaaOk(["status", "--connect", sys.replicaControl]);
    expect(shown).toContain(`FAILED OVER: WRL wrl0 at LSN ${record.atLsn}, generation ${record.generation}, served read-write`);
    expect(shown).toContain("journal ");
    const twice = await druvaa(["failover", "--connect", sys.replicaControl, "--device", "disk0", "--export", `unix:${join(sys.dir, "dr-twice.sock")}`]);
    expect(twice.exitCode).toBe(4);

    // The original site is down; the application runs at the DR site and changes 1% of the volume.
    await sys.kill("client", "SIGTERM");
    await write(drUri, 0xd4, 8 * MiB, 160 * 1024);
    // The replica crashes and comes back: still failed over, served again, the DR writes kept.
    await sys.kill("replica", "SIGKILL");
    await sys.restart("replica");
    await expectPattern(drUri, 0xd4, 8 * MiB, 160 * 1024);
    await expectPattern(drUri, 0xb2, 4 * MiB, 1 * MiB);
    // A failback that began freezes the DR side (its export turns read-only); --abort thaws it.
    const begin = await fetch(`http://${sys.replicaControl}/failback/begin`, { method: "POST", body: JSON.stringify({ wrl: "wrl0", keep: "dr", explicit: false, stagingHeadLsn: 0 }) });
    expect(begin.status).toBe(200);
    expect((await qemuIo(drUri, ["write -P 0x66 12M 4k"])).exitCode).not.toBe(0);
    const aborted = JSON.parse(await druvaaOk(["failback", "--connect", sys.replicaControl, "--device", "disk0", "--abort", "--json"]));
    expect(aborted.aborted).toBe(true);
    await write(drUri, 0xd4, 8 * MiB + 160 * 1024, 4096);
    const failbackArgs = ["failback", "--connect", sys.replicaControl, "--device", "disk0", "--primary", sys.primaryPath("disk0"), "--staging", sys.stagingControl, "--changemap", join(sys.dir, "changemap.img"), "--client-state", join(sys.dir, "client-state"), "--json"];
    // A primary of another history (its generation file says so) is refused, nothing changed.
    const generationFile = join(sys.dir, "client-state", "generation.json");
    writeFileSync(generationFile, JSON.stringify({ [record.wrlUuid]: { generation: "some-other-history" } }));
    const wrongPrimary = await druvaa(failbackArgs);
    expect(wrongPrimary.exitCode).toBe(4);
    expect(wrongPrimary.stdout).toContain("GENERATION_MISMATCH");
    rmSync(generationFile);
    const back = JSON.parse(await druvaaOk(failbackArgs));
    expect(back.primaryGeneration).toBeNull(); // no generation recorded for this primary yet: not checked
    expect(back.generation).toBe(record.generation);
    expect(JSON.parse(readFileSync(generationFile, "utf8"))).toEqual({ [record.wrlUuid]: { generation: record.generation } });
    expect(back.keep).toBe("dr");
    expect(back.splitBrain).toBe(false);
    expect(back.sentBytes).toBeGreaterThanOrEqual(164 * 1024);
    expect(back.sentBytes).toBeLessThanOrEqual(0.015 * sizeBytes);
    console.log(`failback sent ${back.sentBytes} bytes of ${back.volumeBytes} (${back.sentPercent.toFixed(2)} % of the volume)`);
    const primary = new Uint8Array(await readFile(sys.primaryPath("disk0")));
    expect(filled(primary, 8 * MiB, 164 * 1024, 0xd4)).toBe(true);

    // Roles swapped back: the client starts again and replication resumes in the original direction.
    await sys.restart("client");
    await write(sys.exportUri("disk0"), 0xe5, 12 * MiB, 1 * MiB);
    await sys.waitDrained();
    const hashes = await sys.verifyAll();
    expect(hashes.disk0!.restored).toBe(hashes.disk0!.primary);
    // Both sides are at the DR side's generation now: the next failover forks from it.
    const again = JSON.parse(await druvaaOk(["failover", "--connect", sys.replicaControl, "--device", "disk0", "--export", `unix:${join(sys.dir, "dr-again.sock")}`, "--json"]));
    expect(again.parentGeneration).toBe(record.generation);
    sys.assertAlive();
  }, 180_000);

  test("split brain: both sides written after a failover → refused with both commands; --keep primary keeps every primary block", async () => {
    const sys = await system();
    const client = sys.exportUri("disk0");
    await write(client, 0x11, 0, 2 * MiB);
    await sys.waitDrained();
    const drSocket = join(sys.dir, "dr.sock");
    await druvaaOk(["failover", "--connect", sys.replicaControl, "--device", "disk0", "--export", `unix:${drSocket}`]);
    const drUri = `nbd+unix:///disk0?socket=${drSocket}`;
    // The original primary keeps running (its records wait in staging) while the DR side is written too.
    await write(client, 0x22, 6 * MiB, 512 * 1024);
    await write(drUri, 0x33, 1 * MiB, 256 * 1024);
    await sys.kill("client", "SIGTERM");
    const primaryBefore = new Uint8Array(await readFile(sys.primaryPath("disk0")));
    const args = ["failback", "--connect", sys.replicaControl, "--device", "disk0", "--primary", sys.primaryPath("disk0"), "--staging", sys.stagingControl, "--changemap", join(sys.dir, "changemap.img")];
    const refused = await druvaa(args);
    if (refused.exitCode !== 4) console.log(refused.stderr, refused.stdout);
    expect(refused.exitCode).toBe(4);
    expect(refused.stderr).toContain("both sides were written since the failover");
    expect(refused.stderr).toContain("--keep dr");
    expect(refused.stderr).toContain("--keep primary");
    // Nothing changed: the primary is as it was, the DR side still has its write.
    expect(Buffer.compare(new Uint8Array(await readFile(sys.primaryPath("disk0"))), primaryBefore)).toBe(0);
    await expectPattern(drUri, 0x33, 1 * MiB, 256 * 1024);

    const kept = JSON.parse(await druvaaOk([...args, "--keep", "primary", "--json"]));
    expect(kept.splitBrain).toBe(true);
    expect(kept.direction).toBe("primary-to-dr");
    // Every block of the primary survives, and the replica (protected again) equals it.
    expect(Buffer.compare(new Uint8Array(await readFile(sys.primaryPath("disk0"))), primaryBefore)).toBe(0);
    await sys.restart("client");
    await sys.waitDrained();
    const hashes = await sys.verifyAll();
    expect(hashes.disk0!.restored).toBe(hashes.disk0!.primary);
    const restored = new Uint8Array(await readFile(await sys.restore("disk0")));
    expect(filled(restored, 6 * MiB, 512 * 1024, 0x22)).toBe(true);
    expect(filled(restored, 1 * MiB, 256 * 1024, 0x11)).toBe(true);
  }, 180_000);
});
