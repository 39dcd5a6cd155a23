/** ReplicaCore without sockets: apply order, re-delivery, refusals, persistence, WRL identity. */
import { afterAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SimDisk } from "../../src/io/sim-disk.ts";
import type { ShipNackCode } from "../../src/protocol/messages.ts";
import type { ShipReply } from "../../src/roles/replica/core.ts";
import { ReplicaCore } from "../../src/roles/replica/core.ts";
import { fileStateStore, MemoryStateStore, replicaStateFileName, type ReplicaState } from "../../src/roles/replica/state.ts";
import { applyModel, dataRecord, memoryCore, otherWrlUuid, replicaDevice, shipment, wrlUuid, zeroRecord, type TestRecord } from "./helpers.ts";

const scratch = mkdtempSync(join(tmpdir(), "druvaa-replica-core-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const KiB = 1024;

function expectAck(reply: ShipReply, appliedLsn: number): void {
  expect(reply).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn });
}

function expectNack(reply: ShipReply, code: ShipNackCode): void {
  expect(reply.type).toBe("shipNack");
  if (reply.type === "shipNack") expect(reply.code).toBe(code);
}

describe("applying shipments", () => {
  test("records land in LSN order: the later of two overlapping writes wins, across and within shipments", async () => {
    const { core, memory } = await memoryCore({ disk0: 64 * KiB, disk1: 64 * KiB });
    const first = [dataRecord(1, "disk0", 0, 8 * KiB), dataRecord(2, "disk0", 4 * KiB, 8 * KiB), dataRecord(3, "disk1", 0, 4 * KiB), dataRecord(4, "disk0", 2 * KiB, 1 * KiB)];
    const second = [dataRecord(5, "disk0", 0, 16 * KiB), dataRecord(6, "disk0", 8 * KiB, 512), dataRecord(7, "disk1", 2 * KiB, 4 * KiB)];
    const one = shipment(first);
    expectAck(await core.ship(one.message, one.payload), 4);
    const two = shipment(second);
    expectAck(await core.ship(two.message, two.payload), 7);
    const model = new Map([["disk0", new Uint8Array(64 * KiB)], ["disk1", new Uint8Array(64 * KiB)]]);
    applyModel(model, [...first, ...second]);
    expect(memory("disk0").snapshot()).toEqual(model.get("disk0")!);
    expect(memory("disk1").snapshot()).toEqual(model.get("disk1")!);
    expect(core.appliedLsn(wrlUuid)).toBe(7);
  });

  test("property: any split into shipments, with re-deliveries, gives the image of applying every record in LSN order", async () => {
    const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
    console.log(`replica apply property seed=${seed} (replay: FC_SEED=${seed} bun test tests/replica/core.test.ts)`);
    const sectors = 64; // 32 KiB devices: ranges overlap often
    // Writes complete in a shuffled order (JitterDevice): only the replica's ordering of
    // overlapping records keeps the image right.
    const recordArb = fc.record({ device: fc.constantFrom("disk0", "disk1"), sector: fc.nat(sectors - 1), count: fc.integer({ min: 1, max: 16 }), zero: fc.boolean() });
    await fc.assert(
      fc.asyncProperty(fc.array(recordArb, { minLength: 1, maxLength: 40 }), fc.array(fc.nat(), { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 6 }), fc.nat(), async (specs, cuts, redeliveries, jitterSeed) => {
        const records: TestRecord[] = specs.map((spec, index) => {
          const count = Math.min(spec.count, sectors - spec.sector);
          return spec.zero ? zeroRecord(index + 1, spec.device, spec.sector * 512, count * 512) : dataRecord(index + 1, spec.device, spec.sector * 512, count * 512);
        });
        const boundaries = [...new Set(cuts.map((cut) => 1 + (cut % records.length)))].sort((a, b) => a - b);
        const pieces: TestRecord[][] = [];
        let start = 0;
        for (const boundary of [...boundaries, records.length]) {
          if (boundary > start) pieces.push(records.slice(start, boundary));
          start = Math.max(start, boundary);
        }
        const { core, memory } = await memoryCore({ disk0: sectors * 512, disk1: sectors * 512 }, new MemoryStateStore(), records.length % 2 === 0, jitterSeed);
        for (const [index, piece] of pieces.entries()) {
          const built = shipment(piece);
          expectAck(await core.ship(built.message, built.payload), piece[piece.length - 1]!.lsn);
          // Re-deliver an earlier shipment now and then: it must change nothing.
          for (const pick of redeliveries.filter((value) => value % pieces.length === index)) {
            const again = shipment(pieces[pick % (index + 1)]!);
            expectAck(await core.ship(again.message, again.payload), piece[piece.length - 1]!.lsn);
          }
        }
        const model = new Map([["disk0", new Uint8Array(sectors * 512)], ["disk1", new Uint8Array(sectors * 512)]]);
        applyModel(model, records);
        expect(memory("disk0").snapshot()).toEqual(model.get("disk0")!);
        expect(memory("disk1").snapshot()).toEqual(model.get("disk1")!);
      }),
      { seed, numRuns: 60 },
    );
  });

  test("re-delivery: records at or below appliedLsn are skipped, even where they would overwrite newer data", async () => {
    const { core, memory, store } = await memoryCore({ disk0: 32 * KiB });
    const records = [dataRecord(1, "disk0", 0, 4 * KiB), dataRecord(2, "disk0", 0, 4 * KiB), dataRecord(3, "disk0", 8 * KiB, 4 * KiB)];
    const all = shipment(records);
    expectAck(await core.ship(all.message, all.payload), 3);
    const image = memory("disk0").snapshot();
    const saves = store.saveCount;
    // The same shipment again, and just its first record (older than record 2 at the same place).
    expectAck(await core.ship(all.message, all.payload), 3);
    const old = shipment([records[0]!]);
    expectAck(await core.ship(old.message, old.payload), 3);
    expect(memory("disk0").snapshot()).toEqual(image);
    expect(store.saveCount).toBe(saves);
    // Overlapping re-delivery: 2..4 applies only 4.
    const record4 = dataRecord(4, "disk0", 16 * KiB, 4 * KiB);
    const overlap = shipment([records[1]!, records[2]!, record4]);
    expectAck(await core.ship(overlap.message, overlap.payload), 4);
    const model = new Map([["disk0", new Uint8Array(32 * KiB)]]);
    applyModel(model, [...records, record4]);
    expect(memory("disk0").snapshot()).toEqual(model.get("disk0")!);
  });

  test("a gap is refused with LSN_GAP and nothing written or persisted", async () => {
    const { core, memory, store } = await memoryCore({ disk0: 32 * KiB });
    const first = shipment([dataRecord(1, "disk0", 0, 4 * KiB), dataRecord(2, "disk0", 4 * KiB, 4 * KiB)]);
    expectAck(await core.ship(first.message, first.payload), 2);
    const image = memory("disk0").snapshot();
    const saves = store.saveCount;
    const gap = shipment([dataRecord(4, "disk0", 0, 8 * KiB), dataRecord(5, "disk0", 16 * KiB, 4 * KiB)]);
    const reply = await core.ship(gap.message, gap.payload);
    expectNack(reply, "LSN_GAP");
    if (reply.type === "shipNack") expect(reply.message).toContain("resume from 3");
    expect(memory("disk0").snapshot()).toEqual(image);
    expect(core.appliedLsn(wrlUuid)).toBe(2);
    expect(store.saveCount).toBe(saves);
    // A fresh replica refuses a shipment that does not start at LSN 1, too.
    const fresh = await memoryCore({ disk0: 32 * KiB });
    expectNack(await fresh.core.ship(gap.message, gap.payload), "LSN_GAP");
    expect(fresh.memory("disk0").snapshot()).toEqual(new Uint8Array(32 * KiB));
  });

  test("a record for an unknown device refuses the whole shipment (DEVICE_UNKNOWN), earlier records included", async () => {
    const { core, memory } = await memoryCore({ disk0: 32 * KiB });
    const bad = shipment([dataRecord(1, "disk0", 0, 4 * KiB), dataRecord(2, "nosuch", 0, 4 * KiB)]);
    const reply = await core.ship(bad.message, bad.payload);
    expectNack(reply, "DEVICE_UNKNOWN");
    if (reply.type === "shipNack") expect(reply.message).toContain("--device nosuch=PATH");
    expect(memory("disk0").snapshot()).toEqual(new Uint8Array(32 * KiB));
    expect(core.appliedLsn(wrlUuid)).toBe(0);
    // Declared but unknown (no record for it) is refused as well: the WRL's group does not fit here.
    const declared = shipment([dataRecord(1, "disk0", 0, 4 * KiB)], { devices: [{ name: "disk0", sizeBytes: 32 * KiB }, { name: "disk9", sizeBytes: 4 * KiB }] });
    expectNack(await core.ship(declared.message, declared.payload), "DEVICE_UNKNOWN");
    expect(memory("disk0").snapshot()).toEqual(new Uint8Array(32 * KiB));
  });

  test("a client device declared bigger than the replica's is refused (DEVICE_TOO_SMALL), nothing written", async () => {
    const { core, memory } = await memoryCore({ disk0: 32 * KiB });
    const big = shipment([dataRecord(1, "disk0", 0, 4 * KiB)], { devices: [{ name: "disk0", sizeBytes: 64 * KiB }] });
    const reply = await core.ship(big.message, big.payload);
    expectNack(reply, "DEVICE_TOO_SMALL");
    if (reply.type === "shipNack") expect(reply.message).toContain("65536");
    expect(memory("disk0").snapshot()).toEqual(new Uint8Array(32 * KiB));
    // The same size, or smaller, is fine.
    const fits = shipment([dataRecord(1, "disk0", 0, 4 * KiB)], { devices: [{ name: "disk0", sizeBytes: 16 * KiB }] });
    expectAck(await core.ship(fits.message, fits.payload), 1);
  });

  test("a record outside the device, past the declared size, or misaligned is refused (OUT_OF_RANGE), nothing written", async () => {
    const { core, memory } = await memoryCore({ disk0: 32 * KiB });
    const past = shipment([dataRecord(1, "disk0", 0, 4 * KiB), dataRecord(2, "disk0", 30 * KiB, 4 * KiB)]);
    expectNack(await core.ship(past.message, past.payload), "OUT_OF_RANGE");
    const pastDeclared = shipment([dataRecord(1, "disk0", 0, 4 * KiB), dataRecord(2, "disk0", 16 * KiB, 4 * KiB)], { devices: [{ name: "disk0", sizeBytes: 16 * KiB }] });
    expectNack(await core.ship(pastDeclared.message, pastDeclared.payload), "OUT_OF_RANGE");
    const zeroPast = shipment([dataRecord(1, "disk0", 0, 4 * KiB), zeroRecord(2, "disk0", 16 * KiB, 64 * KiB)]);
    expectNack(await core.ship(zeroPast.message, zeroPast.payload), "OUT_OF_RANGE");
    const misaligned = shipment([dataRecord(1, "disk0", 0, 4 * KiB), { lsn: 2, device: "disk0", offset: 100, data: new Uint8Array(512).fill(7) }]);
    expectNack(await core.ship(misaligned.message, misaligned.payload), "OUT_OF_RANGE");
    expect(memory("disk0").snapshot()).toEqual(new Uint8Array(32 * KiB));
    expect(core.appliedLsn(wrlUuid)).toBe(0);
  });

  for (const discardReadsZeros of [true, false]) {
    test(`ZERO records read back as zeros (${discardReadsZeros ? "discard" : "written zeros"}), and the payload of the records around them lines up`, async () => {
      const { core, memory } = await memoryCore({ disk0: 4096 * KiB }, new MemoryStateStore(), discardReadsZeros);
      const records = [
        dataRecord(1, "disk0", 0, 3072 * KiB),
        zeroRecord(2, "disk0", 512, 2048 * KiB + 512), // bigger than one zero piece
        dataRecord(3, "disk0", 64 * KiB, 4 * KiB),
        zeroRecord(4, "disk0", 4000 * KiB, 96 * KiB),
        dataRecord(5, "disk0", 4092 * KiB, 4 * KiB),
      ];
      const built = shipment(records);
      expectAck(await core.ship(built.message, built.payload), 5);
      const model = new Map([["disk0", new Uint8Array(4096 * KiB)]]);
      applyModel(model, records);
      const image = memory("disk0").snapshot();
      expect(image).toEqual(model.get("disk0")!);
      expect(image.subarray(512, 64 * KiB).every((byte) => byte === 0)).toBe(true);
    });
  }
});

describe("durability and identity", () => {
  test("devices are flushed before appliedLsn is saved, and saved before the ack (SimDisk: nothing unsynced at save)", async () => {
    const disk = new SimDisk({ sizeBytes: 64 * KiB, seed: 7, name: "disk0" });
    const unsyncedAtSave: number[] = [];
    const store = new MemoryStateStore();
    const save = store.save.bind(store);
    store.save = async (state: ReplicaState) => {
      unsyncedAtSave.push(disk.unsyncedSectorCount());
      await save(state);
    };
    const core = await ReplicaCore.open({ devices: [replicaDevice("disk0", disk)], store });
    const records = [dataRecord(1, "disk0", 0, 16 * KiB), zeroRecord(2, "disk0", 4 * KiB, 4 * KiB), dataRecord(3, "disk0", 32 * KiB, 8 * KiB)];
    const built = shipment(records);
    expectAck(await core.ship(built.message, built.payload), 3);
    expect(unsyncedAtSave).toEqual([0]);
    expect(store.saved?.wrls).toEqual([{ name: "wrl0", uuid: wrlUuid, appliedLsn: 3, lastAppliedAt: expect.any(String) }]);
    // Power loss right after the ack: everything acked survives.
    disk.crash();
    const model = new Map([["disk0", new Uint8Array(64 * KiB)]]);
    applyModel(model, records);
    expect(disk.snapshot()).toEqual(model.get("disk0")!);
  });

  test("a restart resumes from the persisted appliedLsn (state file in the state dir)", async () => {
    const stateDir = join(scratch, "restart");
    const disk = new SimDisk({ sizeBytes: 64 * KiB, seed: 11, name: "disk0" });
    const first = await ReplicaCore.open({ devices: [replicaDevice("disk0", disk)], store: fileStateStore(stateDir) });
    const early = [dataRecord(1, "disk0", 0, 4 * KiB), dataRecord(2, "disk0", 4 * KiB, 4 * KiB), dataRecord(3, "disk0", 0, 8 * KiB), dataRecord(4, "disk0", 12 * KiB, 4 * KiB)];
    const built = shipment(early, { devices: [{ name: "disk0", sizeBytes: 48 * KiB }] });
    expectAck(await first.ship(built.message, built.payload), 4);
    const onDisk = JSON.parse(readFileSync(join(stateDir, replicaStateFileName), "utf8")) as ReplicaState;
    expect(onDisk.wrls.map((wrl) => [wrl.uuid, wrl.appliedLsn])).toEqual([[wrlUuid, 4]]);
    disk.crash(); // the process dies; the disk keeps what was flushed
    const second = await ReplicaCore.open({ devices: [replicaDevice("disk0", disk)], store: fileStateStore(stateDir) });
    expect(second.resume({ type: "resume", wrl: "wrl0", wrlUuid })).toEqual({ type: "resumeAck", wrl: "wrl0", wrlUuid, appliedLsn: 4, devices: [{ name: "disk0", sizeBytes: 64 * KiB }] });
    // Staging re-sends from its tail (3..6): only 5 and 6 are applied.
    const later = [early[2]!, early[3]!, dataRecord(5, "disk0", 2 * KiB, 2 * KiB), dataRecord(6, "disk0", 40 * KiB, 4 * KiB)];
    const again = shipment(later);
    expectAck(await second.ship(again.message, again.payload), 6);
    const model = new Map([["disk0", new Uint8Array(64 * KiB)]]);
    applyModel(model, [...early, later[2]!, later[3]!]);
    expect(disk.snapshot()).toEqual(model.get("disk0")!);
    expect(second.status().devices[0]!.declaredSizeBytes).toBe(48 * KiB);
  });

  test("a corrupt state file is a STATE_CORRUPT error, not a crash or a silent reset", async () => {
    const stateDir = join(scratch, "corrupt");
    const store = fileStateStore(stateDir);
    await store.save({ version: 1, wrls: [{ name: "wrl0", uuid: wrlUuid, appliedLsn: -3, lastAppliedAt: null }], devices: [] });
    const error = await ReplicaCore.open({ devices: [], store }).catch((caught: unknown) => caught);
    expect((error as { code?: string }).code).toBe("STATE_CORRUPT");
  });

  test("a re-created WRL (same name, new uuid) is refused with WRL_MISMATCH on resume and ship; nothing written", async () => {
    const { core, memory } = await memoryCore({ disk0: 32 * KiB });
    // Seen but never applied under another uuid: no history to protect, the new uuid is taken.
    expect(core.resume({ type: "resume", wrl: "wrl0", wrlUuid: otherWrlUuid }).type).toBe("resumeAck");
    const first = shipment([dataRecord(1, "disk0", 0, 4 * KiB)]);
    expectAck(await core.ship(first.message, first.payload), 1);
    const image = memory("disk0").snapshot();
    const resumed = core.resume({ type: "resume", wrl: "wrl0", wrlUuid: otherWrlUuid });
    expect(resumed.type).toBe("shipNack");
    if (resumed.type === "shipNack") {
      expect(resumed.code).toBe("WRL_MISMATCH");
      expect(resumed.message).toContain("initial sync");
    }
    const other = shipment([dataRecord(1, "disk0", 0, 8 * KiB), dataRecord(2, "disk0", 8 * KiB, 4 * KiB)], { uuid: otherWrlUuid });
    expectNack(await core.ship(other.message, other.payload), "WRL_MISMATCH");
    expect(memory("disk0").snapshot()).toEqual(image);
    expect(core.appliedLsn(wrlUuid)).toBe(1);
    // Another WRL name with its own uuid is independent.
    const second = shipment([dataRecord(1, "disk0", 16 * KiB, 4 * KiB)], { wrl: "wrl1", uuid: otherWrlUuid });
    expect(await core.ship(second.message, second.payload)).toEqual({ type: "shipAck", wrl: "wrl1", appliedLsn: 1 });
  });

  test("resume of an unknown WRL answers appliedLsn 0 and the replica's devices", async () => {
    const { core } = await memoryCore({ disk0: 32 * KiB, disk1: 64 * KiB });
    expect(core.resume({ type: "resume", wrl: "wrl7", wrlUuid })).toEqual({
      type: "resumeAck", wrl: "wrl7", wrlUuid, appliedLsn: 0, devices: [{ name: "disk0", sizeBytes: 32 * KiB }, { name: "disk1", sizeBytes: 64 * KiB }],
    });
    expect(core.status().wrls).toEqual([{ name: "wrl7", uuid: wrlUuid, appliedLsn: 0, lastAppliedAt: null }]);
  });

  test("a failed write is IO_ERROR; the device is not restorable until staging re-delivers, then it is", async () => {
    const disk = new SimDisk({ sizeBytes: 64 * KiB, seed: 3, name: "disk0" });
    const core = await ReplicaCore.open({ devices: [replicaDevice("disk0", disk)], store: new MemoryStateStore() });
    const records = [dataRecord(1, "disk0", 0, 4 * KiB), dataRecord(2, "disk0", 8 * KiB, 4 * KiB)];
    const built = shipment(records);
    disk.failNextWrites(1);
    expectNack(await core.ship(built.message, built.payload), "IO_ERROR");
    expect(core.appliedLsn(wrlUuid)).toBe(0);
    const refused = await core.restore("disk0", async () => undefined).catch((error: unknown) => error);
    expect((refused as { code?: string }).code).toBe("REPLICA_INCONSISTENT");
    expectAck(await core.ship(built.message, built.payload), 2);
    const model = new Map([["disk0", new Uint8Array(64 * KiB)]]);
    applyModel(model, records);
    expect(disk.snapshot()).toEqual(model.get("disk0")!);
    expect((await core.restore("disk0", async () => undefined)).appliedLsn).toBe(2);
  });
});
