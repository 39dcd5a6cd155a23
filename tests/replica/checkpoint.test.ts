/**
 * Checkpoint records at the replica (src/roles/replica/checkpoints.ts, apply.ts): planned at
 * their place in the shipment with their label and LSN, never written, never range-checked (a
 * device only checkpoints name is accepted), kept in the RS-WRL with their label inside a resync
 * set and applied there as nothing.
 */
import { describe, expect, test } from "bun:test";
import { DruvaaError } from "../../src/errors.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { checkpointLabelPayload } from "../../src/protocol/checkpoint-label.ts";
import { checkpointFlags, recordFlags } from "../../src/protocol/messages.ts";
import { applyWrites, checkpointsOf, loggedPayloadOf, planShipment, type ReplicaDevice } from "../../src/roles/replica/apply.ts";
import { plannedOf } from "../../src/roles/replica/resync-apply.ts";
import { GroupReader, type LogEvent } from "../../src/roles/replica/resync-log.ts";
import { applyModel, dataRecord, memoryCore, replicaDevice, shipment, wrlUuid, type TestRecord } from "./helpers.ts";
import { ackedLsn, createRsWrl, KiB, MiB, resyncEnd, resyncRecord, rsWrlCore, send } from "./resync-helpers.ts";

/** A checkpoint record as a test ships it: offset 0, length 0, the label as its payload. */
function checkpoint(lsn: number, device: string, label: string): TestRecord {
  const labelBytes = checkpointLabelPayload(label);
  return { lsn, device, offset: 0, length: 0, flags: checkpointFlags(labelBytes.length), digests: labelBytes };
}

function imageAfter(sizeBytes: number, records: TestRecord[]): Uint8Array {
  const images = new Map([["disk0", new Uint8Array(sizeBytes)]]);
  applyModel(images, records.filter((record) => record.flags === undefined || record.flags === recordFlags.resync));
  return images.get("disk0")!;
}

describe("planning checkpoint records", () => {
  test("each checkpoint is a PlannedWrite with its label and LSN, no data, no probe; applying writes nothing for it", async () => {
    const memory = new MemoryDevice(64 * KiB, "disk0");
    const devices = new Map<string, ReplicaDevice>([["disk0", replicaDevice("disk0", memory)]]);
    const records = [dataRecord(10, "disk0", 0, 8 * KiB), checkpoint(11, "disk0", "before-x"), dataRecord(12, "disk0", 4 * KiB, 4 * KiB), checkpoint(14, "disk0", "after-y")];
    const built = shipment(records, { lastLsn: 15 });
    const plan = planShipment(built.message, built.payload, 9, devices);
    if (!("writes" in plan)) throw new Error(`refused: ${plan.code}: ${plan.message}`);
    expect(plan.writes.map((write) => write.record.lsn)).toEqual([10, 11, 12, 14]);
    const marks = plan.writes.filter((write) => write.checkpoint !== undefined);
    for (const write of marks) {
      expect(write.data).toBeUndefined();
      expect(write.probe).toBeUndefined();
      expect(write.target.name).toBe("disk0");
    }
    expect(checkpointsOf(plan.writes)).toEqual([{ label: "before-x", lsn: 11 }, { label: "after-y", lsn: 14 }]);
    expect(new TextDecoder().decode(loggedPayloadOf(marks[0]!))).toBe("before-x");
    expect((plan.flags & recordFlags.checkpoint) !== 0).toBe(true);
    const touched = await applyWrites(plan.writes);
    expect([...touched].map((device) => device.name)).toEqual(["disk0"]);
    expect(memory.snapshot()).toEqual(imageAfter(64 * KiB, records));
  });

  test("a checkpoint at or below the applied LSN is re-delivery: skipped like any record", () => {
    const devices = new Map<string, ReplicaDevice>([["disk0", replicaDevice("disk0", new MemoryDevice(64 * KiB, "disk0"))]]);
    const built = shipment([checkpoint(3, "disk0", "old"), dataRecord(4, "disk0", 0, 4 * KiB), checkpoint(5, "disk0", "new")]);
    const plan = planShipment(built.message, built.payload, 3, devices);
    if (!("writes" in plan)) throw new Error(plan.message);
    expect(checkpointsOf(plan.writes)).toEqual([{ label: "new", lsn: 5 }]);
  });

  test("a device only checkpoints name (declared or not) is accepted with a stand-in that is never written; data for it is still refused", async () => {
    const memory = new MemoryDevice(64 * KiB, "disk0");
    const devices = new Map<string, ReplicaDevice>([["disk0", replicaDevice("disk0", memory)]]);
    const declared = [{ name: "disk0", sizeBytes: 64 * KiB }, { name: "logs", sizeBytes: 1 * MiB }];
    const built = shipment([dataRecord(1, "disk0", 0, 4 * KiB), checkpoint(2, "logs", "both"), checkpoint(3, "disk0", "both")], { devices: declared });
    const plan = planShipment(built.message, built.payload, 0, devices);
    if (!("writes" in plan)) throw new Error(plan.message);
    expect(checkpointsOf(plan.writes)).toEqual([{ label: "both", lsn: 2 }, { label: "both", lsn: 3 }]);
    expect(plan.writes[1]!.target.name).toBe("logs");
    const touched = await applyWrites(plan.writes);
    expect([...touched].map((device) => device.name)).toEqual(["disk0"]);
    const withData = shipment([dataRecord(1, "logs", 0, 4 * KiB), checkpoint(2, "logs", "x")], { devices: declared });
    expect(planShipment(withData.message, withData.payload, 0, devices)).toMatchObject({ code: "DEVICE_UNKNOWN" });
  });

  test("a declared device the replica lacks, named only by a checkpoint, is not recorded in the replica's state", async () => {
    const { core, store, memory } = await memoryCore({ disk0: 64 * KiB });
    const declared = [{ name: "disk0", sizeBytes: 64 * KiB }, { name: "disk1", sizeBytes: 1 * MiB }];
    const records = [dataRecord(1, "disk0", 0, 8 * KiB), checkpoint(2, "disk1", "both")];
    expect(ackedLsn(await send(core, records, { devices: declared }))).toBe(2);
    expect(ackedLsn(await send(core, [checkpoint(3, "disk1", "only-disk1")], { devices: declared }))).toBe(3);
    expect(store.saved?.devices.map((device) => device.name)).toEqual(["disk0"]);
    expect(store.saved?.devices[0]).toMatchObject({ name: "disk0", declaredSizeBytes: 64 * KiB, wrlUuid });
    expect(memory("disk0").snapshot()).toEqual(imageAfter(64 * KiB, records));
  });

  test("the same through an RS-WRL (a shipment that opens a resync set)", async () => {
    const { core, store } = await rsWrlCore({ disk0: 64 * KiB });
    const declared = [{ name: "disk0", sizeBytes: 64 * KiB }, { name: "disk1", sizeBytes: 1 * MiB }];
    const records = [dataRecord(1, "disk0", 0, 8 * KiB), checkpoint(2, "disk1", "before-set"), resyncRecord(3, "disk0", 0, 4 * KiB), checkpoint(4, "disk1", "in-set"), resyncEnd(5, "disk0")];
    expect(ackedLsn(await send(core, records, { devices: declared }))).toBe(5);
    expect(store.saved?.devices.map((device) => device.name)).toEqual(["disk0"]);
  });

  test("through the core: acknowledged, applied LSN past it, the device holds the data only", async () => {
    const { core, memory } = await memoryCore({ disk0: 64 * KiB });
    const records = [dataRecord(1, "disk0", 0, 16 * KiB), checkpoint(2, "disk0", "before-x"), checkpoint(3, "other", "before-x"), dataRecord(4, "disk0", 8 * KiB, 4 * KiB)];
    expect(ackedLsn(await send(core, records))).toBe(4);
    expect(core.appliedLsn(wrlUuid)).toBe(4);
    expect(memory("disk0").snapshot()).toEqual(imageAfter(64 * KiB, records));
  });
});

describe("checkpoints and the RS-WRL", () => {
  test("stored with its label and length 0, read back and planned as a checkpoint even for a device the replica lacks", async () => {
    const rsLog = await createRsWrl(new MemoryDevice(1 * MiB, "rswrl"));
    const label = checkpointLabelPayload("in-set");
    const record = { lsn: 7, epoch: 7, device: "logs", offset: 0, length: 0, flags: checkpointFlags(label.length) };
    const outcome = await rsLog.append({ wrl: "w0", wrlUuid, prevLsn: 6, throughLsn: 7, records: [{ record, payload: label }] });
    expect(outcome.refused).toBeUndefined();
    const events: LogEvent[] = [];
    for await (const piece of rsLog.readAll(new GroupReader(new Map([[wrlUuid, 6]])))) events.push(...piece);
    const read = events.find((event) => event.kind === "record");
    if (read?.kind !== "record") throw new Error("the record was not read back");
    expect(read.record).toEqual(record);
    expect(new TextDecoder().decode(read.payload)).toBe("in-set");
    const planned = plannedOf(new Map(), "w0", read.record, read.payload);
    expect(planned.checkpoint).toEqual({ label: "in-set", lsn: 7 });
    expect(planned.data).toBeUndefined();
    expect(await applyWrites([planned])).toEqual(new Set());
  });

  test("a label read back that is not a label (the log's CRC held) is RS_WRL_CORRUPT, not an assert", async () => {
    const rsLog = await createRsWrl(new MemoryDevice(1 * MiB, "rswrl"));
    const label = new TextEncoder().encode("-not a label");
    const record = { lsn: 7, epoch: 7, device: "disk0", offset: 0, length: 0, flags: checkpointFlags(label.length) };
    expect((await rsLog.append({ wrl: "w0", wrlUuid, prevLsn: 6, throughLsn: 7, records: [{ record, payload: label }] })).refused).toBeUndefined();
    const events: LogEvent[] = [];
    for await (const piece of rsLog.readAll(new GroupReader(new Map([[wrlUuid, 6]])))) events.push(...piece);
    const read = events.find((event) => event.kind === "record");
    if (read?.kind !== "record") throw new Error("the record was not read back");
    let thrown: unknown;
    try {
      plannedOf(new Map(), "w0", read.record, read.payload);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(DruvaaError);
    expect((thrown as DruvaaError).code).toBe("RS_WRL_CORRUPT");
    expect((thrown as DruvaaError).message).toContain("checkpoint record at LSN 7");
  });

  test("inside a resync set: held with the set, applied as nothing when the set completes", async () => {
    const { core, memory } = await rsWrlCore({ disk0: 64 * KiB });
    const base = [dataRecord(1, "disk0", 0, 16 * KiB)];
    expect(ackedLsn(await send(core, base))).toBe(1);
    const set = [resyncRecord(2, "disk0", 0, 8 * KiB), checkpoint(3, "disk0", "mid-resync"), dataRecord(4, "disk0", 32 * KiB, 4 * KiB)];
    await send(core, set);
    expect(memory("disk0").snapshot()).toEqual(imageAfter(64 * KiB, base));
    expect(ackedLsn(await send(core, [checkpoint(5, "disk0", "before-end"), resyncEnd(6, "disk0")]))).toBe(6);
    expect(core.appliedLsn(wrlUuid)).toBe(6);
    expect(memory("disk0").snapshot()).toEqual(imageAfter(64 * KiB, [...base, ...set]));
  });
});
