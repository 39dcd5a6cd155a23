/**
 * Resync sets across crashes (SimDisk: unsynced sectors dropped, kept or torn): records logged in
 * the RS-WRL survive and are acknowledged again after a restart; a crash at any device operation
 * of the shipment that completes a set leaves the replica at a consistent point (before the set,
 * or after it: a set being applied is redone), and the set completes once staging re-delivers.
 */
import { describe, expect, test } from "bun:test";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { ReplicaCore, type ShipReply } from "../../src/roles/replica/core.ts";
import { ResyncLog } from "../../src/roles/replica/resync-log.ts";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import { WriteLog } from "../../src/wrl/write-log.ts";
import { CrashPlan } from "../wrl/helpers.ts";
import { applyModel, dataRecord, replicaDevice, wrlUuid, zeroRecord, type TestRecord } from "./helpers.ts";
import { ackedLsn, KiB, MiB, resyncEnd, resyncRecord, send } from "./resync-helpers.ts";

const diskBytes = 256 * KiB;

function imageOf(records: TestRecord[], throughLsn: number): Uint8Array {
  const images = new Map([["disk0", new Uint8Array(diskBytes)]]);
  applyModel(images, records.filter((record) => record.lsn <= throughLsn));
  return images.get("disk0")!;
}

describe("resync sets across crashes", () => {
  test("power loss while a set is open: the logged records survive, resume reports the LSN logged, the set completes later", async () => {
    const rsDisk = new SimDisk({ sizeBytes: 2 * MiB, seed: 5, name: "rswrl" });
    const disk = new SimDisk({ sizeBytes: diskBytes, seed: 6, name: "disk0" });
    const store = new MemoryStateStore();
    const first = await ReplicaCore.open({ devices: [replicaDevice("disk0", disk)], store, rsWrl: ResyncLog.over(await WriteLog.create([rsDisk])) });
    const records = [dataRecord(1, "disk0", 0, 16 * KiB), resyncRecord(2, "disk0", 8 * KiB, 16 * KiB), dataRecord(3, "disk0", 64 * KiB, 8 * KiB), resyncRecord(4, "disk0", 128 * KiB, 32 * KiB)];
    expect(ackedLsn(await send(first, records.slice(0, 3)))).toBe(3);
    // LSNs 5 and 6 carry no ship record (markers staging does not ship): logged through 6 all the same.
    expect(ackedLsn(await send(first, records.slice(3), { lastLsn: 6 }))).toBe(6);
    disk.crash();
    rsDisk.crash();

    const second = await ReplicaCore.open({ devices: [replicaDevice("disk0", disk)], store, rsWrl: ResyncLog.over(await WriteLog.open([rsDisk])) });
    expect(second.resume({ type: "resume", wrl: "wrl0", wrlUuid })).toMatchObject({ type: "resumeAck", appliedLsn: 6 });
    expect(second.appliedLsn(wrlUuid)).toBe(1);
    expect(second.status().wrls[0]!.resync).toMatchObject({ state: "open", firstLsn: 2, loggedLsn: 6, records: 3 });
    expect(disk.snapshot()).toEqual(imageOf(records, 1));
    // Staging re-delivers from 7 on.
    const end = [resyncEnd(7, "disk0")];
    expect(ackedLsn(await send(second, end))).toBe(7);
    expect(disk.snapshot()).toEqual(imageOf([...records, ...end], 7));
    disk.crash();
    expect(disk.snapshot()).toEqual(imageOf([...records, ...end], 7));
  });

  test("a failed set apply answers IO_ERROR, leaves the device unrestorable, and is done again when staging re-delivers", async () => {
    const disk = new SimDisk({ sizeBytes: diskBytes, seed: 8, name: "disk0" });
    const core = await ReplicaCore.open({ devices: [replicaDevice("disk0", disk)], store: new MemoryStateStore(), rsWrl: ResyncLog.over(await WriteLog.create([new SimDisk({ sizeBytes: 2 * MiB, seed: 9, name: "rswrl" })])) });
    const records = [resyncRecord(1, "disk0", 0, 16 * KiB), dataRecord(2, "disk0", 8 * KiB, 16 * KiB)];
    expect(ackedLsn(await send(core, records))).toBe(2);
    disk.failNextWrites(1);
    const failed = await send(core, [resyncEnd(3, "disk0")]);
    expect(failed.type === "shipNack" && failed.code).toBe("IO_ERROR");
    const refused = await core.restore("disk0", async () => undefined).then(() => undefined, (error: unknown) => (error as { code?: string }).code);
    expect(refused).toBe("REPLICA_INCONSISTENT");
    expect(core.appliedLsn(wrlUuid)).toBe(0);
    // The end was logged: the re-delivery is acknowledged, and the set applied with it.
    expect(ackedLsn(await send(core, [resyncEnd(3, "disk0")]))).toBe(3);
    expect(core.appliedLsn(wrlUuid)).toBe(3);
    expect(disk.snapshot()).toEqual(imageOf(records, 3));
    expect((await core.restore("disk0", async () => undefined)).appliedLsn).toBe(3);
  });

  test("a crash at every device operation of the shipment that completes a set: the replica is before or after the whole set, then converges", async () => {
    const setup = [dataRecord(1, "disk0", 0, 64 * KiB), dataRecord(2, "disk0", 128 * KiB, 32 * KiB)];
    const logged = [resyncRecord(3, "disk0", 0, 32 * KiB), dataRecord(4, "disk0", 16 * KiB, 32 * KiB), zeroRecord(5, "disk0", 100 * KiB, 8 * KiB)];
    const last = [resyncRecord(6, "disk0", 64 * KiB, 64 * KiB), dataRecord(7, "disk0", 120 * KiB, 16 * KiB), resyncEnd(8, "disk0"), dataRecord(9, "disk0", 200 * KiB, 8 * KiB)];
    const all = [...setup, ...logged, ...last];
    const seen = new Set<string>();
    let completedAt: number | undefined;
    for (let crashAfter = 0; crashAfter < 400 && completedAt === undefined; crashAfter += 1) {
      const plan = new CrashPlan([new SimDisk({ sizeBytes: 2 * MiB, seed: 100 + crashAfter, name: "rswrl" }), new SimDisk({ sizeBytes: diskBytes, seed: 900 + crashAfter, name: "disk0" })]);
      const store = new MemoryStateStore();
      const [rsDevice, device] = plan.devices();
      const core = await ReplicaCore.open({ devices: [replicaDevice("disk0", device!)], store, rsWrl: ResyncLog.over(await WriteLog.create([rsDevice!])) });
      expect(ackedLsn(await send(core, setup))).toBe(2);
      expect(ackedLsn(await send(core, logged))).toBe(5);
      plan.arm(crashAfter, "drop");
      const reply: ShipReply | "threw" = await send(core, last).catch(() => "threw" as const);
      if (!plan.crashed) {
        expect(ackedLsn(reply as ShipReply)).toBe(9);
        expect(plan.disks[1]!.snapshot()).toEqual(imageOf(all, 9));
        completedAt = crashAfter;
        break;
      }
      expect(reply === "threw" || reply.type === "shipNack").toBe(true);

      const [rsAgain, deviceAgain] = plan.devices();
      const recovered = await ReplicaCore.open({ devices: [replicaDevice("disk0", deviceAgain!)], store, rsWrl: ResyncLog.over(await WriteLog.open([rsAgain!])) });
      const appliedLsn = recovered.appliedLsn(wrlUuid);
      const resumed = recovered.resume({ type: "resume", wrl: "wrl0", wrlUuid });
      const durableLsn = resumed.type === "resumeAck" ? resumed.appliedLsn : -1;
      // Either the set is still open (logged through 5, device before the set), or applied whole.
      expect([[2, 5], [8, 8], [9, 9]]).toContainEqual([appliedLsn, durableLsn]);
      // Record 9 is an ordinary write after the set: a crash while it is written may leave part of
      // it (the documented limit of ordinary apply; staging re-delivers it), so its range is not
      // compared until it is applied.
      const actual = plan.disks[1]!.snapshot();
      const expected = imageOf(all, appliedLsn);
      if (appliedLsn < 9) for (const image of [actual, expected]) image.fill(0, 200 * KiB, 208 * KiB);
      expect(actual).toEqual(expected);
      seen.add(`${appliedLsn}/${durableLsn}`);
      // Staging re-delivers the shipment it has no ack for: everything converges.
      expect(ackedLsn(await send(recovered, last))).toBe(9);
      expect(plan.disks[1]!.snapshot()).toEqual(imageOf(all, 9));
      expect(recovered.status().rsWrl!.usedBytes).toBe(0);
    }
    console.log(`crash points tried: ${completedAt}; outcomes seen (applied/acked LSN): ${[...seen].join(", ")}`);
    expect(completedAt).toBeGreaterThan(3);
    // Crashes hit both sides of the set's commit point.
    expect(seen).toContain("2/5");
    expect(seen).toContain("8/8");
  });
});
