/**
 * Failover refusals through a real ReplicaCore (memory devices, journal in a temp dir): a device
 * in the middle of a resync, a device sharing its WRL, an unknown device, a point outside the
 * journal: each refused with a clear error, and nothing changed (no failover record, shipments
 * still applied, the device untouched).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { recordFlags } from "../../src/protocol/messages.ts";
import { ReplicaCore } from "../../src/roles/replica/core.ts";
import { Failovers } from "../../src/roles/replica/failover.ts";
import { ReplicaHistory } from "../../src/roles/replica/history.ts";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import { dataRecord, replicaDevice, shipment } from "./helpers.ts";

const KiB = 1024;
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function setup(names: string[]) {
  const stateDir = mkdtempSync(join(tmpdir(), "druvaa-failover-"));
  dirs.push(stateDir);
  const memories = new Map(names.map((name) => [name, new MemoryDevice(256 * KiB, name)]));
  const history = await ReplicaHistory.open({ stateDir, retention: { ms: 3600_000, bytes: 1 << 30 } });
  const failovers = await Failovers.load(stateDir);
  const core = await ReplicaCore.open({ devices: [...memories].map(([name, memory]) => replicaDevice(name, memory)), store: new MemoryStateStore(), history, failedOver: failovers.failedOver });
  await failovers.resume(core.recoveryHost);
  return { core, failovers, history, memories, stateDir };
}

describe("failover refusals", () => {
  test("a device in the middle of a resync is refused (DEVICE_RESYNCING); nothing changes and apply goes on", async () => {
    const { core, failovers, history, memories, stateDir } = await setup(["disk0"]);
    const first = shipment([dataRecord(1, "disk0", 0, 8 * KiB)]);
    await core.ship(first.message, first.payload);
    // Resync data without a replica WRL: applied as it comes, the device is mid-resync until its end.
    const resync = shipment([{ ...dataRecord(2, "disk0", 16 * KiB, 8 * KiB), flags: recordFlags.resync }]);
    expect((await core.ship(resync.message, resync.payload)).type).toBe("shipAck");
    const before = memories.get("disk0")!.snapshot().slice();
    await expect(failovers.failover({ device: "disk0" })).rejects.toMatchObject({ code: "DEVICE_RESYNCING", message: expect.stringContaining("not at a consistent point") });
    expect(readdirSync(join(stateDir, "failover"))).toEqual([]); // no failover record
    expect(failovers.failedOver.size).toBe(0);
    expect(Buffer.compare(memories.get("disk0")!.snapshot(), before)).toBe(0);
    const next = shipment([{ lsn: 3, device: "disk0", offset: 0, length: 0, flags: recordFlags.resyncEnd }, dataRecord(4, "disk0", 32 * KiB, 4 * KiB)]);
    expect((await core.ship(next.message, next.payload)).type).toBe("shipAck");
    await history.close();
  });

  test("a device sharing its WRL needs --wrl; an unknown device or WRL and a point before the journal are refused", async () => {
    const { core, failovers, history } = await setup(["disk0", "disk1"]);
    const ship = shipment([dataRecord(1, "disk0", 0, 8 * KiB), dataRecord(2, "disk1", 0, 8 * KiB)]);
    await core.ship(ship.message, ship.payload);
    await expect(failovers.failover({ device: "disk0" })).rejects.toMatchObject({ code: "FAILOVER_REFUSED", hint: expect.stringContaining("--wrl wrl0") });
    await expect(failovers.failover({ device: "disk9" })).rejects.toMatchObject({ code: "DEVICE_UNKNOWN" });
    await expect(failovers.failover({ wrl: "nope" })).rejects.toMatchObject({ code: "WRL_UNKNOWN" });
    await expect(failovers.failover({ wrl: "wrl0", at: "1999-01-01T00:00:00Z" })).rejects.toMatchObject({ code: "POINT_OUTSIDE_RETENTION" });
    expect(failovers.failedOver.size).toBe(0);
    const later = shipment([dataRecord(3, "disk0", 8 * KiB, 8 * KiB)]);
    expect((await core.ship(later.message, later.payload)).type).toBe("shipAck");
    await history.close();
  });
});
