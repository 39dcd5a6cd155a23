/**
 * The point-in-time journal on a file system that fills up (a 1 MiB tmpfs, mounted by the test as
 * root): apply never stops (every shipment acknowledged), the dropped history is counted, the
 * points still listed restore exactly, and a snapshot whose before-images found no room fails its
 * reads (SNAPSHOT_LOST) instead of showing newer data.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { ReplicaCore } from "../../src/roles/replica/core.ts";
import { ReplicaHistory } from "../../src/roles/replica/history.ts";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import { applyModel, dataRecord, replicaDevice, shipment } from "./helpers.ts";

const KiB = 1024;
const deviceBytes = 2048 * KiB;
const mounts: string[] = [];

afterEach(async () => {
  for (const dir of mounts.splice(0)) {
    if ((await Bun.spawn(["umount", dir]).exited) !== 0) await Bun.spawn(["umount", "-l", dir]).exited;
    rmdirSync(dir);
  }
});

async function fullableCore() {
  const stateDir = mkdtempSync(join(tmpdir(), "druvaa-journal-full-"));
  const mount = Bun.spawn(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", stateDir], { stderr: "pipe" });
  if ((await mount.exited) !== 0) throw new Error(`mount tmpfs failed (root needed): ${await new Response(mount.stderr).text()}`);
  mounts.push(stateDir);
  const memory = new MemoryDevice(deviceBytes, "disk0");
  const history = await ReplicaHistory.open({ stateDir, retention: { ms: 3600_000, bytes: 2 ** 40, segmentBytes: 256 * KiB } });
  const core = await ReplicaCore.open({ devices: [replicaDevice("disk0", memory)], store: new MemoryStateStore(), history });
  return { core, history };
}

async function image(core: ReplicaCore, at: string): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  await core.restore("disk0", async (message, payload) => {
    if (message.type === "restoreData") chunks.push(payload!.slice());
  }, at);
  return new Uint8Array(Buffer.concat(chunks));
}

describe("a full journal never stops apply", () => {
  test("history is dropped and counted; the points still listed restore exactly; a snapshot without room is lost, not wrong", async () => {
    const { core, history } = await fullableCore();
    try {
    const model = new Map([["disk0", new Uint8Array(deviceBytes)]]);
    const images = new Map<number, Uint8Array>();
    const first = shipment([dataRecord(1, "disk0", 0, 128 * KiB)]);
    await core.ship(first.message, first.payload);
    applyModel(model, [dataRecord(1, "disk0", 0, 128 * KiB)]);
    images.set(1, model.get("disk0")!.slice());
    const snapshot = await core.snapshot("disk0");
    // 24 shipments of 128 KiB before-images each: three times what the 1 MiB file system holds.
    for (let lsn = 2; lsn <= 25; lsn += 1) {
      const record = dataRecord(lsn, "disk0", ((lsn * 128) % 1920) * KiB, 128 * KiB);
      const ship = shipment([record]);
      expect((await core.ship(ship.message, ship.payload)).type).toBe("shipAck");
      applyModel(model, [record]);
      images.set(lsn, model.get("disk0")!.slice());
    }
    expect(history.status().journal!.droppedChunks).toBeGreaterThan(0);
    const points = core.points("disk0");
    expect(points.at(-1)!.lsn).toBe(25);
    for (const point of points.filter((entry) => entry.lsn > 0)) expect(Buffer.compare(await image(core, String(point.lsn)), images.get(point.lsn)!)).toBe(0);
    // The snapshot of LSN 1 held every segment since; with no room left it was ended, never
    // showing newer data; letting its history go made room, so the latest steps are points again.
    await expect(snapshot.read(0, deviceBytes)).rejects.toMatchObject({ code: "SNAPSHOT_LOST" });
    expect(points.length).toBeGreaterThan(2);
    snapshot.release();
    } finally {
      await history.close();
    }
  });
});
