/** The span both coalesced-span test files ship: overlapping writes and zeros on one 256 KiB device. */
import { expect } from "bun:test";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { ReplicaCore, type ShipReply } from "../../src/roles/replica/core.ts";
import { ResyncLog } from "../../src/roles/replica/resync-log.ts";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import type { Shipment } from "../../src/roles/staging/shipment.ts";
import { WriteLog } from "../../src/wrl/write-log.ts";
import { CrashPlan } from "../wrl/helpers.ts";
import { applyModel, dataRecord, replicaDevice, wrlUuid, zeroRecord, type TestRecord } from "./helpers.ts";
import { ackedLsn, KiB, MiB, send } from "./resync-helpers.ts";

export const diskBytes = 256 * KiB;

/** LSNs 1..2, shipped as they are before the span. */
export const setup = [dataRecord(1, "disk0", 0, 64 * KiB), dataRecord(2, "disk0", 128 * KiB, 32 * KiB)];
/** LSNs 3..9: overlapping writes and zeros. */
export const span = [
  dataRecord(3, "disk0", 16 * KiB, 32 * KiB),
  dataRecord(4, "disk0", 24 * KiB, 8 * KiB),
  zeroRecord(5, "disk0", 40 * KiB, 16 * KiB),
  dataRecord(6, "disk0", 120 * KiB, 16 * KiB),
  dataRecord(7, "disk0", 20 * KiB, 4 * KiB),
  zeroRecord(8, "disk0", 132 * KiB, 4 * KiB),
  dataRecord(9, "disk0", 200 * KiB, 8 * KiB),
];
export const all = [...setup, ...span];

/** disk0's image after `records` up to `throughLsn`, from zeros. */
export function imageOf(records: TestRecord[], throughLsn: number): Uint8Array {
  const images = new Map([["disk0", new Uint8Array(diskBytes)]]);
  applyModel(images, records.filter((record) => record.lsn <= throughLsn));
  return images.get("disk0")!;
}

export const nackCode = (reply: ShipReply) => (reply.type === "shipNack" ? reply.code : "ack");

/**
 * Ships `setup`, then the span as `shipments` (one coalesced shipment, or its parts) with a crash
 * armed after 0, 1, 2, … device operations until one run completes. After each crash the replica
 * restarts on what the disks kept: it must stand at LSN 2 or 9 with exactly that image (never in
 * between), and staging's re-delivery of every shipment must end at 9 with the RS-WRL empty.
 * Returns the first crash point that no longer crashed and the applied LSNs seen after restarts.
 */
export async function crashEveryOperation(shipments: readonly Pick<Shipment, "message" | "payload">[], seedBase: number): Promise<{ completedAt: number | undefined; seen: Set<number> }> {
  const seen = new Set<number>();
  for (let crashAfter = 0; crashAfter < 600; crashAfter += 1) {
    const plan = new CrashPlan([new SimDisk({ sizeBytes: 2 * MiB, seed: seedBase + crashAfter, name: "rswrl" }), new SimDisk({ sizeBytes: diskBytes, seed: seedBase + 400 + crashAfter, name: "disk0" })]);
    const store = new MemoryStateStore();
    const [rsDevice, device] = plan.devices();
    const core = await ReplicaCore.open({ devices: [replicaDevice("disk0", device!)], store, rsWrl: ResyncLog.over(await WriteLog.create([rsDevice!])) });
    expect(ackedLsn(await send(core, setup))).toBe(2);
    plan.arm(crashAfter, (["drop", "land", "skip-first-sector"] as const)[crashAfter % 3]!);
    let last: ShipReply | "threw" = "threw";
    for (const shipment of shipments) {
      last = await core.ship(shipment.message, shipment.payload).catch(() => "threw" as const);
      if (plan.crashed) break;
    }
    if (!plan.crashed) {
      expect(ackedLsn(last as ShipReply)).toBe(9);
      expect(plan.disks[1]!.snapshot()).toEqual(imageOf(all, 9));
      return { completedAt: crashAfter, seen };
    }
    const [rsAgain, deviceAgain] = plan.devices();
    const recovered = await ReplicaCore.open({ devices: [replicaDevice("disk0", deviceAgain!)], store, rsWrl: ResyncLog.over(await WriteLog.open([rsAgain!])) });
    const appliedLsn = recovered.appliedLsn(wrlUuid);
    expect([2, 9]).toContain(appliedLsn);
    expect(recovered.resume({ type: "resume", wrl: "wrl0", wrlUuid })).toMatchObject({ appliedLsn });
    expect(plan.disks[1]!.snapshot()).toEqual(imageOf(all, appliedLsn));
    seen.add(appliedLsn);
    // Staging re-delivers what it has no ack for (acked at once when already applied).
    for (const shipment of shipments) last = await recovered.ship(shipment.message, shipment.payload);
    expect(ackedLsn(last as ShipReply)).toBe(9);
    expect(plan.disks[1]!.snapshot()).toEqual(imageOf(all, 9));
    expect(recovered.status().rsWrl!.usedBytes).toBe(0);
  }
  return { completedAt: undefined, seen };
}
