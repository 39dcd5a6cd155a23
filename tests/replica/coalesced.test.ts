/**
 * Coalesced shipments at the replica (coalesced-apply.ts): only a replica with an RS-WRL says it
 * takes them; a span is logged whole, applied, and only then acked; a crash at any device
 * operation leaves the replica before the span or (after the redo at restart) at its end, never
 * in between; a span arriving while a resync set is open joins the set.
 */
import { describe, expect, test } from "bun:test";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { recordFlags, type ShipMessage } from "../../src/protocol/messages.ts";
import { ReplicaCore, type ShipReply } from "../../src/roles/replica/core.ts";
import { ResyncLog } from "../../src/roles/replica/resync-log.ts";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import { Coalescer } from "../../src/roles/staging/coalesce.ts";
import { defaultShipmentLimits } from "../../src/roles/staging/shipment.ts";
import { WriteLog } from "../../src/wrl/write-log.ts";
import type { WrlRecord } from "../../src/wrl/types.ts";
import { CrashPlan } from "../wrl/helpers.ts";
import { applyModel, dataRecord, memoryCore, replicaDevice, wrlUuid, zeroRecord, type TestRecord } from "./helpers.ts";
import { ackedLsn, KiB, MiB, resyncEnd, resyncRecord, rsWrlCore, send } from "./resync-helpers.ts";

const diskBytes = 256 * KiB;

/** The coalesced shipment of `records` (plain data and zero records, consecutive LSNs), as the relay builds it. */
function coalesced(records: TestRecord[]): { message: ShipMessage; payload: Uint8Array } {
  const coalescer = new Coalescer({ wrl: "wrl0", wrlUuid, deviceSizes: new Map() }, defaultShipmentLimits);
  for (const record of records) {
    const wrlRecord: WrlRecord = record.data !== undefined
      ? { lsn: record.lsn, type: "write", epoch: record.lsn, device: record.device, seq: record.lsn, offset: record.offset, lengthBytes: record.data.length, flags: 0, data: record.data }
      : { lsn: record.lsn, type: "zero", epoch: record.lsn, device: record.device, seq: record.lsn, offset: record.offset, lengthBytes: record.zeroLength!, flags: 0, data: new Uint8Array(0) };
    expect(coalescer.add(wrlRecord)).toBe("added");
  }
  const { message, payload } = coalescer.build();
  return { message, payload };
}

function imageOf(records: TestRecord[], throughLsn: number): Uint8Array {
  const images = new Map([["disk0", new Uint8Array(diskBytes)]]);
  applyModel(images, records.filter((record) => record.lsn <= throughLsn));
  return images.get("disk0")!;
}

const nackCode = (reply: ShipReply) => (reply.type === "shipNack" ? reply.code : "ack");

/** Overlapping writes and zeros: LSNs 3..9, after 1..2 shipped as they are. */
const setup = [dataRecord(1, "disk0", 0, 64 * KiB), dataRecord(2, "disk0", 128 * KiB, 32 * KiB)];
const span = [
  dataRecord(3, "disk0", 16 * KiB, 32 * KiB),
  dataRecord(4, "disk0", 24 * KiB, 8 * KiB),
  zeroRecord(5, "disk0", 40 * KiB, 16 * KiB),
  dataRecord(6, "disk0", 120 * KiB, 16 * KiB),
  dataRecord(7, "disk0", 20 * KiB, 4 * KiB),
  zeroRecord(8, "disk0", 132 * KiB, 4 * KiB),
  dataRecord(9, "disk0", 200 * KiB, 8 * KiB),
];
const all = [...setup, ...span];

describe("coalesced shipments at the replica", () => {
  test("a replica says it takes them only with an RS-WRL; one without refuses them RS_WRL_NEEDED and writes nothing", async () => {
    const plain = await memoryCore({ disk0: diskBytes });
    const resumed = plain.core.resume({ type: "resume", wrl: "wrl0", wrlUuid });
    expect(resumed.type === "resumeAck" && resumed.acceptsCoalesced).toBeUndefined();
    expect(ackedLsn(await send(plain.core, setup))).toBe(2);
    const built = coalesced(span);
    expect(nackCode(await plain.core.ship(built.message, built.payload))).toBe("RS_WRL_NEEDED");
    expect(plain.core.appliedLsn(wrlUuid)).toBe(2);
    expect(plain.memory("disk0").snapshot()).toEqual(imageOf(all, 2));

    const withLog = await rsWrlCore({ disk0: diskBytes });
    expect(withLog.core.resume({ type: "resume", wrl: "wrl0", wrlUuid })).toMatchObject({ type: "resumeAck", acceptsCoalesced: true });
  });

  test("a span is applied whole: the end image, appliedLsn = lastLsn, the RS-WRL freed; re-delivery and a straddling span are fine; a gap is refused", async () => {
    const { core, memory, rsWrl } = await rsWrlCore({ disk0: diskBytes });
    expect(ackedLsn(await send(core, setup))).toBe(2);
    const gap = coalesced(span.slice(1));
    expect(nackCode(await core.ship(gap.message, gap.payload))).toBe("LSN_GAP");
    const built = coalesced(span);
    expect(built.message.records.length).toBeLessThan(span.length + 2);
    expect(ackedLsn(await core.ship(built.message, built.payload))).toBe(9);
    expect(core.appliedLsn(wrlUuid)).toBe(9);
    expect(memory("disk0").snapshot()).toEqual(imageOf(all, 9));
    expect(rsWrl.info().usedBytes).toBe(0);
    expect(ackedLsn(await core.ship(built.message, built.payload))).toBe(9);
    // 10..11 plain, then a span 10..13 re-delivered across it: the end image of 13.
    const more = [dataRecord(10, "disk0", 0, 8 * KiB), dataRecord(11, "disk0", 4 * KiB, 8 * KiB), zeroRecord(12, "disk0", 0, 4 * KiB), dataRecord(13, "disk0", 6 * KiB, 4 * KiB)];
    expect(ackedLsn(await send(core, more.slice(0, 2)))).toBe(11);
    const straddling = coalesced(more);
    expect(ackedLsn(await core.ship(straddling.message, straddling.payload))).toBe(13);
    expect(memory("disk0").snapshot()).toEqual(imageOf([...all, ...more], 13));
  });

  test("a crash at every device operation of a coalesced shipment: before the span or at its end, never in between; then it converges", async () => {
    const seen = new Set<number>();
    let completedAt: number | undefined;
    for (let crashAfter = 0; crashAfter < 400 && completedAt === undefined; crashAfter += 1) {
      const plan = new CrashPlan([new SimDisk({ sizeBytes: 2 * MiB, seed: 300 + crashAfter, name: "rswrl" }), new SimDisk({ sizeBytes: diskBytes, seed: 700 + crashAfter, name: "disk0" })]);
      const store = new MemoryStateStore();
      const [rsDevice, device] = plan.devices();
      const core = await ReplicaCore.open({ devices: [replicaDevice("disk0", device!)], store, rsWrl: ResyncLog.over(await WriteLog.create([rsDevice!])) });
      expect(ackedLsn(await send(core, setup))).toBe(2);
      const built = coalesced(span);
      plan.arm(crashAfter, (["drop", "land", "skip-first-sector"] as const)[crashAfter % 3]!);
      const reply: ShipReply | "threw" = await core.ship(built.message, built.payload).catch(() => "threw" as const);
      if (!plan.crashed) {
        expect(ackedLsn(reply as ShipReply)).toBe(9);
        expect(plan.disks[1]!.snapshot()).toEqual(imageOf(all, 9));
        completedAt = crashAfter;
        break;
      }
      const [rsAgain, deviceAgain] = plan.devices();
      const recovered = await ReplicaCore.open({ devices: [replicaDevice("disk0", deviceAgain!)], store, rsWrl: ResyncLog.over(await WriteLog.open([rsAgain!])) });
      const appliedLsn = recovered.appliedLsn(wrlUuid);
      expect([2, 9]).toContain(appliedLsn);
      expect(recovered.resume({ type: "resume", wrl: "wrl0", wrlUuid })).toMatchObject({ appliedLsn });
      expect(plan.disks[1]!.snapshot()).toEqual(imageOf(all, appliedLsn));
      seen.add(appliedLsn);
      // Staging re-delivers what it has no ack for.
      expect(ackedLsn(await recovered.ship(built.message, built.payload))).toBe(9);
      expect(plan.disks[1]!.snapshot()).toEqual(imageOf(all, 9));
      expect(recovered.status().rsWrl!.usedBytes).toBe(0);
    }
    console.log(`coalesced crash points tried: ${completedAt}; applied LSNs seen after restart: ${[...seen].join(", ")}`);
    expect(completedAt).toBeGreaterThan(3);
    // Crashes hit both sides of the span's commit point (logged in the RS-WRL): redo happened.
    expect(seen).toContain(2);
    expect(seen).toContain(9);
  });

  test("without the RS-WRL's redo (the broken variant) a crash mid-apply is caught: the device is between points", async () => {
    // Writes the span's extents straight to the device, as a replica without an RS-WRL would, and crashes halfway.
    const disk = new SimDisk({ sizeBytes: diskBytes, seed: 41, name: "disk0" });
    const { message, payload } = coalesced(span);
    for (const record of setup) await disk.write(record.offset, record.data!);
    await disk.flush();
    let position = 0;
    const half = Math.ceil(message.records.length / 2);
    for (const record of message.records.slice(0, half)) {
      if ((record.flags & recordFlags.zero) !== 0) await disk.write(record.offset, new Uint8Array(record.length));
      else await disk.write(record.offset, payload.subarray(position, (position += record.length)));
    }
    await disk.flush();
    const image = disk.snapshot();
    const consistent = all.map((_, index) => index).filter((index) => index >= 1).map((index) => imageOf(all, all[index]!.lsn));
    expect(consistent.some((candidate) => Buffer.from(candidate).equals(Buffer.from(image)))).toBe(false);
  });

  test("a span arriving while a resync set is open joins the set: nothing applied until the set ends, then the end image", async () => {
    const { core, memory } = await rsWrlCore({ disk0: diskBytes });
    const before = [dataRecord(1, "disk0", 0, 64 * KiB), resyncRecord(2, "disk0", 128 * KiB, 16 * KiB)];
    expect(ackedLsn(await send(core, before))).toBe(2);
    const spanned = [dataRecord(3, "disk0", 8 * KiB, 16 * KiB), zeroRecord(4, "disk0", 12 * KiB, 4 * KiB), dataRecord(5, "disk0", 130 * KiB, 4 * KiB)];
    const built = coalesced(spanned);
    expect(ackedLsn(await core.ship(built.message, built.payload))).toBe(5);
    expect(core.appliedLsn(wrlUuid)).toBe(1);
    expect(core.status().wrls[0]!.resync).toMatchObject({ state: "open", loggedLsn: 5 });
    const end = [resyncEnd(6, "disk0")];
    expect(ackedLsn(await send(core, end))).toBe(6);
    expect(core.appliedLsn(wrlUuid)).toBe(6);
    expect(memory("disk0").snapshot()).toEqual(imageOf([...before, ...spanned], 6));
  });
});
