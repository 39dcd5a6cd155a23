/**
 * Resync sets with a replica WRL (src/roles/replica/resync-sets.ts): held back until complete,
 * ordinary writes held with them, applied whole, restore meanwhile at the last consistent point;
 * the RS-WRL full; and the behaviour without an RS-WRL (applied as it comes, marked inconsistent).
 */
import { describe, expect, test } from "bun:test";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { ReplicaCore, type RestoreMessage, type ShipReply } from "../../src/roles/replica/core.ts";
import { ResyncLog } from "../../src/roles/replica/resync-log.ts";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import { WriteLog } from "../../src/wrl/write-log.ts";
import { applyModel, dataRecord, memoryCore, otherWrlUuid, replicaDevice, shipment, wrlUuid, zeroRecord, type TestRecord } from "./helpers.ts";
import { ackedLsn, createRsWrl, KiB, MiB, resyncEnd, resyncRecord, rsWrlCore, send } from "./resync-helpers.ts";

function model(sizes: Record<string, number>, records: TestRecord[]): Map<string, Uint8Array> {
  const images = new Map(Object.entries(sizes).map(([name, size]) => [name, new Uint8Array(size)]));
  applyModel(images, records);
  return images;
}

async function restoreImage(core: ReplicaCore, device: string): Promise<{ image: Uint8Array; appliedLsn: number }> {
  const chunks: Uint8Array[] = [];
  const result = await core.restore(device, async (message: RestoreMessage, payload?: Uint8Array) => {
    if (message.type === "restoreData") chunks.push(payload!.slice());
  });
  return { image: new Uint8Array(Buffer.concat(chunks)), appliedLsn: result.appliedLsn };
}

/** The error `promise` rejects with (the test fails if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<{ code?: string; message?: string; hint?: string }> {
  const outcome = await promise.then(() => undefined, (error: unknown) => error as { code?: string });
  if (outcome === undefined) throw new Error("expected a rejection");
  return outcome;
}

function nackCode(reply: ShipReply): string | undefined {
  return reply.type === "shipNack" ? reply.code : undefined;
}

describe("resync sets (with an RS-WRL)", () => {
  test("a set, and the ordinary writes that arrive while it is open, stay off the device until its resyncEnd; a restore meanwhile gets the pre-set image", async () => {
    const sizes = { disk0: 64 * KiB };
    const { core, memory, rsWrl } = await rsWrlCore(sizes);
    const before = [dataRecord(1, "disk0", 0, 16 * KiB), dataRecord(2, "disk0", 32 * KiB, 8 * KiB)];
    expect(ackedLsn(await send(core, before))).toBe(2);
    const preSet = memory("disk0").snapshot();
    expect(preSet).toEqual(model(sizes, before).get("disk0")!);

    // The set opens at LSN 3; an ordinary write (4) and more resync data (5) come with it.
    const during = [resyncRecord(3, "disk0", 0, 8 * KiB), dataRecord(4, "disk0", 16 * KiB, 8 * KiB), resyncRecord(5, "disk0", 40 * KiB, 4 * KiB)];
    expect(ackedLsn(await send(core, during))).toBe(5);
    const more = [zeroRecord(6, "disk0", 4 * KiB, 8 * KiB), dataRecord(7, "disk0", 0, 4 * KiB)];
    expect(ackedLsn(await send(core, more))).toBe(7);
    expect(memory("disk0").snapshot()).toEqual(preSet);
    expect(core.appliedLsn(wrlUuid)).toBe(2);
    // Staging is told what is logged, also after a reconnect.
    expect(core.resume({ type: "resume", wrl: "wrl0", wrlUuid })).toMatchObject({ type: "resumeAck", appliedLsn: 7 });
    expect(core.status().wrls[0]!.resync).toMatchObject({ state: "open", firstLsn: 3, loggedLsn: 7, openDevices: ["disk0"], endedDevices: [], records: 5 });
    expect(core.status().rsWrl!.usedBytes).toBeGreaterThan(0);
    // A restore now is the last consistent point: LSN 2.
    const restored = await restoreImage(core, "disk0");
    expect(restored).toEqual({ image: preSet, appliedLsn: 2 });

    // Its end (8), and an ordinary write after it (9) in the same shipment.
    const after = [resyncEnd(8, "disk0"), dataRecord(9, "disk0", 2 * KiB, 4 * KiB)];
    expect(ackedLsn(await send(core, after))).toBe(9);
    const expected = model(sizes, [...before, ...during, ...more, ...after]).get("disk0")!;
    expect(memory("disk0").snapshot()).toEqual(expected);
    expect(core.appliedLsn(wrlUuid)).toBe(9);
    expect(core.status().wrls[0]!.resync).toBeUndefined();
    expect(rsWrl.info().usedBytes).toBe(0);
    expect(await restoreImage(core, "disk0")).toEqual({ image: expected, appliedLsn: 9 });
  });

  test("two devices in one WRL: the set completes only after both resyncEnds", async () => {
    const sizes = { disk0: 32 * KiB, disk1: 32 * KiB };
    const { core, memory } = await rsWrlCore(sizes);
    const records = [resyncRecord(1, "disk0", 0, 4 * KiB), resyncRecord(2, "disk1", 8 * KiB, 4 * KiB), resyncEnd(3, "disk0"), dataRecord(4, "disk0", 16 * KiB, 4 * KiB)];
    expect(ackedLsn(await send(core, records))).toBe(4);
    expect(memory("disk0").snapshot()).toEqual(new Uint8Array(32 * KiB));
    expect(memory("disk1").snapshot()).toEqual(new Uint8Array(32 * KiB));
    expect(core.status().wrls[0]!.resync).toMatchObject({ openDevices: ["disk1"], endedDevices: ["disk0"] });
    // Its own resync data again for disk0 keeps that device in the set too.
    const last = [resyncRecord(5, "disk0", 4 * KiB, 4 * KiB), resyncEnd(6, "disk1")];
    expect(ackedLsn(await send(core, last))).toBe(6);
    expect(memory("disk0").snapshot()).toEqual(new Uint8Array(32 * KiB));
    const end = [resyncEnd(7, "disk0")];
    expect(ackedLsn(await send(core, end))).toBe(7);
    const expected = model(sizes, [...records, ...last]);
    expect(memory("disk0").snapshot()).toEqual(expected.get("disk0")!);
    expect(memory("disk1").snapshot()).toEqual(expected.get("disk1")!);
    expect(core.appliedLsn(wrlUuid)).toBe(7);
  });

  test("re-delivery and gaps are judged against what is logged; a bad record is refused before anything is logged", async () => {
    const { core, memory } = await rsWrlCore({ disk0: 32 * KiB });
    const first = [resyncRecord(1, "disk0", 0, 4 * KiB), dataRecord(2, "disk0", 8 * KiB, 4 * KiB)];
    expect(ackedLsn(await send(core, first))).toBe(2);
    expect(ackedLsn(await send(core, first))).toBe(2);
    const gap = await send(core, [dataRecord(4, "disk0", 0, 4 * KiB)]);
    expect(nackCode(gap)).toBe("LSN_GAP");
    expect(gap.type === "shipNack" && gap.message).toContain("resume from 3");
    expect(nackCode(await send(core, [dataRecord(3, "disk0", 0, 4 * KiB), dataRecord(4, "nosuch", 0, 4 * KiB)]))).toBe("DEVICE_UNKNOWN");
    expect(nackCode(await send(core, [dataRecord(3, "disk0", 30 * KiB, 4 * KiB)]))).toBe("OUT_OF_RANGE");
    expect(core.resume({ type: "resume", wrl: "wrl0", wrlUuid })).toMatchObject({ appliedLsn: 2 });
    // Overlapping re-delivery: 2..4 logs only 3 and 4.
    const rest = [first[1]!, dataRecord(3, "disk0", 0, 4 * KiB), resyncEnd(4, "disk0")];
    expect(ackedLsn(await send(core, rest))).toBe(4);
    const expected = model({ disk0: 32 * KiB }, [...first, ...rest.slice(1)]).get("disk0")!;
    expect(memory("disk0").snapshot()).toEqual(expected);
  });

  test("records logged are the RS-WRL's own copy: the shipment's buffer may be reused once answered", async () => {
    const { core, memory } = await rsWrlCore({ disk0: 64 * KiB });
    const records = [resyncRecord(1, "disk0", 0, 16 * KiB), dataRecord(2, "disk0", 8 * KiB, 16 * KiB), resyncRecord(3, "disk0", 32 * KiB, 8 * KiB)];
    for (const record of records) {
      const built = shipment([record]);
      expect(ackedLsn(await core.ship(built.message, built.payload))).toBe(record.lsn);
      built.payload.fill(0xbd); // the server gives the buffer back to its pool, which reuses it
    }
    expect(ackedLsn(await send(core, [resyncEnd(4, "disk0")]))).toBe(4);
    expect(memory("disk0").snapshot()).toEqual(model({ disk0: 64 * KiB }, records).get("disk0")!);
  });

  test("shipments whose last LSNs carry no record: acked through lastLsn whether the set stays open, completes, or only waits", async () => {
    const { core, memory } = await rsWrlCore({ disk0: 64 * KiB });
    const records = [resyncRecord(1, "disk0", 0, 8 * KiB)];
    expect(ackedLsn(await send(core, records, { lastLsn: 3 }))).toBe(3);
    // Only markers staging does not ship (no record at all) while the set is open.
    expect(ackedLsn(await send(core, [], { firstLsn: 4, lastLsn: 6 }))).toBe(6);
    expect(core.resume({ type: "resume", wrl: "wrl0", wrlUuid })).toMatchObject({ appliedLsn: 6 });
    // The set completes at 7; 8 and 9 carry nothing.
    expect(ackedLsn(await send(core, [resyncEnd(7, "disk0")], { lastLsn: 9 }))).toBe(9);
    expect(core.appliedLsn(wrlUuid)).toBe(9);
    expect(memory("disk0").snapshot()).toEqual(model({ disk0: 64 * KiB }, records).get("disk0")!);
    expect(ackedLsn(await send(core, [dataRecord(10, "disk0", 0, 4 * KiB)]))).toBe(10);
  });

  test("a restore asked for while a set is being applied waits for the apply, and gets the set's end", async () => {
    const inner = new MemoryDevice(64 * KiB, "disk0");
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let gatedWrites = 0;
    const gated: BlockDevice = Object.assign(Object.create(inner) as MemoryDevice, {
      write: async (offset: number, data: Uint8Array) => {
        gatedWrites += 1;
        await gate;
        await inner.write(offset, data);
      },
    });
    const rsWrl = await createRsWrl(new MemoryDevice(4 * MiB, "rswrl"));
    const core = await ReplicaCore.open({ devices: [replicaDevice("disk0", gated)], store: new MemoryStateStore(), rsWrl });
    const set = [resyncRecord(1, "disk0", 0, 8 * KiB), dataRecord(2, "disk0", 4 * KiB, 8 * KiB)];
    expect(ackedLsn(await send(core, set))).toBe(2);
    expect(gatedWrites).toBe(0);
    const ending = send(core, [resyncEnd(3, "disk0")]);
    while (gatedWrites === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    expect(core.status().setApply).toEqual({ wrl: "wrl0", firstLsn: 1, lastLsn: 3, restoresWaiting: 0 });
    const restoring = restoreImage(core, "disk0");
    expect(core.status().setApply!.restoresWaiting).toBe(1);
    release();
    expect(ackedLsn(await ending)).toBe(3);
    const expected = model({ disk0: 64 * KiB }, set).get("disk0")!;
    expect(await restoring).toEqual({ image: expected, appliedLsn: 3 });
    expect(core.status().setApply).toBeNull();
  });

  test("an RS-WRL too small answers RS_WRL_FULL with the size needed; nothing is lost, and it goes on once space is freed", async () => {
    const sizes = { disk0: 1 * MiB, disk1: 1 * MiB };
    // 1 MiB: 960 KiB of log; each 200 KiB record takes 204 KiB with its header.
    const { core, memory, rsWrl } = await rsWrlCore(sizes, 1 * MiB);
    const first = [resyncRecord(1, "disk0", 0, 200 * KiB), resyncRecord(2, "disk0", 200 * KiB, 200 * KiB)];
    expect(ackedLsn(await send(core, first))).toBe(2);
    // Another WRL's set does not fit beside it.
    const other = [resyncRecord(1, "disk1", 0, 200 * KiB), resyncRecord(2, "disk1", 200 * KiB, 200 * KiB), dataRecord(3, "disk1", 600 * KiB, 200 * KiB)];
    const full = await send(core, other, { wrl: "wrl1", uuid: otherWrlUuid });
    expect(nackCode(full)).toBe("RS_WRL_FULL");
    if (full.type === "shipNack") {
      expect(full.message).toContain("needs");
      expect(full.message).toContain("druvaa wrl create");
    }
    expect(core.resume({ type: "resume", wrl: "wrl1", wrlUuid: otherWrlUuid })).toMatchObject({ appliedLsn: 0 });
    expect(memory("disk1").snapshot()).toEqual(new Uint8Array(1 * MiB));
    // The first set ends: applied and freed; the refused shipment now fits.
    expect(ackedLsn(await send(core, [resyncEnd(3, "disk0")]))).toBe(3);
    expect(rsWrl.info().usedBytes).toBe(0);
    expect(ackedLsn(await send(core, other, { wrl: "wrl1", uuid: otherWrlUuid }))).toBe(3);
    expect(ackedLsn(await send(core, [resyncEnd(4, "disk1")], { wrl: "wrl1", uuid: otherWrlUuid }))).toBe(4);
    const expected = model(sizes, [...first, ...other]);
    expect(memory("disk0").snapshot()).toEqual(expected.get("disk0")!);
    expect(memory("disk1").snapshot()).toEqual(expected.get("disk1")!);
  });

  test("a WRL without a set keeps applying in groups while another WRL's set is open", async () => {
    const sizes = { disk0: 64 * KiB, disk1: 64 * KiB };
    const { core, memory } = await rsWrlCore(sizes);
    expect(ackedLsn(await send(core, [resyncRecord(1, "disk0", 0, 4 * KiB)]))).toBe(1);
    const others = [dataRecord(1, "disk1", 0, 8 * KiB), dataRecord(2, "disk1", 4 * KiB, 8 * KiB)];
    const replies = await Promise.all(others.map((record) => send(core, [record], { wrl: "wrl1", uuid: otherWrlUuid })));
    expect(replies.map(ackedLsn)).toEqual([1, 2]);
    expect(memory("disk1").snapshot()).toEqual(model(sizes, others).get("disk1")!);
    expect(memory("disk0").snapshot()).toEqual(new Uint8Array(64 * KiB));
  });
});

describe("resync without an RS-WRL", () => {
  test("resync data is applied as it comes; the devices are marked inconsistent (status, restore refused) until the resyncEnd", async () => {
    const { core, memory } = await memoryCore({ disk0: 32 * KiB });
    const records = [resyncRecord(1, "disk0", 0, 4 * KiB), dataRecord(2, "disk0", 8 * KiB, 4 * KiB)];
    expect(ackedLsn(await send(core, records))).toBe(2);
    expect(memory("disk0").snapshot()).toEqual(model({ disk0: 32 * KiB }, records).get("disk0")!);
    expect(core.status().devices[0]!.consistent).toBe(false);
    expect(core.status().wrls[0]!.resync).toEqual({ state: "unbuffered", devices: ["disk0"] });
    expect(core.status().rsWrl).toBeNull();
    const refused = await rejection(core.restore("disk0", async () => undefined));
    expect(refused.code).toBe("REPLICA_INCONSISTENT");
    expect(refused.message).toContain("without a replica WRL");
    const image = memory("disk0").snapshot();
    expect(ackedLsn(await send(core, [resyncEnd(3, "disk0")]))).toBe(3);
    expect(memory("disk0").snapshot()).toEqual(image); // a resyncEnd writes nothing
    expect(core.status().devices[0]!.consistent).toBe(true);
    expect(core.status().wrls[0]!.resync).toBeUndefined();
    expect((await restoreImage(core, "disk0")).appliedLsn).toBe(3);
  });

  test("a replica whose state says a set is open in an RS-WRL refuses to start without it, or with another one", async () => {
    const store = new MemoryStateStore();
    const { core } = await rsWrlCore({ disk0: 32 * KiB }, 4 * MiB, store);
    expect(ackedLsn(await send(core, [resyncRecord(1, "disk0", 0, 4 * KiB)]))).toBe(1);
    const devices = [replicaDevice("disk0", new MemoryDevice(32 * KiB, "disk0"))];
    const without = await rejection(ReplicaCore.open({ devices, store }));
    expect(without.code).toBe("RS_WRL_NEEDED");
    expect(without.hint).toContain("--wrl");
    const otherLog = ResyncLog.over(await WriteLog.create([new MemoryDevice(2 * MiB, "other")]));
    const mismatch = await rejection(ReplicaCore.open({ devices, store, rsWrl: otherLog }));
    expect(mismatch.code).toBe("RS_WRL_MISMATCH");
  });

  test("a re-created WRL is refused (WRL_MISMATCH) while the old one has a set open, even with nothing applied", async () => {
    const { core } = await rsWrlCore({ disk0: 32 * KiB });
    expect(ackedLsn(await send(core, [resyncRecord(1, "disk0", 0, 4 * KiB)]))).toBe(1);
    const built = shipment([dataRecord(1, "disk0", 0, 4 * KiB)], { uuid: otherWrlUuid });
    expect(nackCode(await core.ship(built.message, built.payload))).toBe("WRL_MISMATCH");
  });
});
