import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { WriteLog } from "../../src/wrl/write-log.ts";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { setLogLevel } from "../../src/log.ts";
import { wrlGroupCommitAppendsMax, wrlPendingAppendsMax, wrlWriteChunkBytes } from "../../src/constants.ts";
import { probeHeader } from "../../src/wrl/record-format.ts";
import { MemoryDisks, codeOf, payloadFor, primaryDataStartBytes as dataStart } from "./helpers.ts";

// Quiet while this file runs (injected I/O failures are logged as errors by design); restored
// afterwards, because every test file shares this process and its log level.
beforeAll(() => setLogLevel(-1));
afterAll(() => setLogLevel(3));

const MiB = 1024 * 1024;
const block = 4096;

function append(wrl: WriteLog, id: number, payloadBytes = 1000) {
  return wrl.append({ epoch: 1, device: 0, seq: id, offset: id * block, data: payloadFor(id, payloadBytes) });
}

describe("append and group commit", () => {
  test("an append resolves only once its record is durable on the disk", async () => {
    const disk = new SimDisk({ sizeBytes: MiB, seed: 1 });
    const wrl = await WriteLog.create([disk]);
    const durableAtResolve: boolean[] = [];
    await Promise.all([1, 2, 3].map((id) => append(wrl, id).then((result) => {
      expect(result).toEqual({ ok: true, lsn: id });
      // What a power loss right now would leave: the record must be in it.
      const offset = dataStart + (id - 1) * block;
      const probe = probeHeader(disk.durableSnapshot().subarray(offset, offset + block));
      durableAtResolve.push(probe.kind === "header" && probe.header.lsn === id);
    })));
    expect(durableAtResolve).toEqual([true, true, true]);
  });

  test("appends issued together share flushes: one per written chunk at most, not one per append", async () => {
    const disk = new MemoryDevice(64 * MiB); // large enough that no periodic checkpoint adds a flush
    const wrl = await WriteLog.create([disk]);
    const flushesBefore = disk.flushCount;
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => append(wrl, i + 1)));
    expect(results.map((r) => r.ok && r.lsn)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(disk.flushCount - flushesBefore).toBeLessThanOrEqual(Math.ceil((100 * block) / wrlWriteChunkBytes));

    // Small records: the append-count bound, not the byte bound, splits the batch.
    const before = disk.flushCount;
    await Promise.all(Array.from({ length: 2 * wrlGroupCommitAppendsMax }, (_, i) => append(wrl, 1000 + i, 100)));
    expect(disk.flushCount - before).toBeGreaterThanOrEqual(2);
    expect(disk.flushCount - before).toBeLessThanOrEqual(Math.ceil((2 * wrlGroupCommitAppendsMax * block) / wrlWriteChunkBytes));
  });

  test("a full log answers 'full' without writing; freeing the tail makes room again", async () => {
    const disks = new MemoryDisks([MiB]);
    const wrl = await WriteLog.create(disks.devices());
    const capacityRecords = (MiB - dataStart) / block; // 240 records of one block
    const results = await Promise.all(Array.from({ length: capacityRecords + 5 }, (_, i) => append(wrl, i + 1)));
    expect(results.filter((r) => r.ok)).toHaveLength(capacityRecords);
    expect(results.at(-1)).toEqual({ ok: false, reason: "full", neededBytes: block, freeBytes: 0 });
    const snapshot = disks.copies();
    expect(await append(wrl, 9999)).toMatchObject({ ok: false, reason: "full" });
    expect(Buffer.compare(disks.contents[0]!, snapshot[0]!)).toBe(0);
    expect(wrl.info()).toMatchObject({ usedBytes: MiB - dataStart, freeBytes: 0, recordCount: capacityRecords });

    await wrl.advanceTail(10);
    expect(wrl.info().freeBytes).toBe(10 * block);
    expect(await append(wrl, 500)).toEqual({ ok: true, lsn: capacityRecords + 1 });
    // Record 11, the oldest still held, was not touched by the wrap.
    const [oldest] = await wrl.read(11, 1);
    expect(oldest!.seq).toBe(11);
    expect(Buffer.compare(oldest!.data, payloadFor(11, 1000))).toBe(0);
  });

  test("a payload no device can hold is 'too-large'; bad input is WRL_BAD_APPEND", async () => {
    const wrl = await WriteLog.create([new MemoryDevice(MiB), new MemoryDevice(MiB, "second")]);
    const result = await append(wrl, 1, MiB);
    expect(result).toMatchObject({ ok: false, reason: "too-large", payloadBytes: MiB });
    expect(result.ok === false && result.reason === "too-large" && result.maxPayloadBytes).toBe(wrl.info().maxPayloadBytes);
    expect(await codeOf(wrl.append({ epoch: -1, device: 0, seq: 1, offset: 0, data: new Uint8Array(1) }))).toBe("WRL_BAD_APPEND");
    expect(await codeOf(wrl.append({ epoch: 1, device: "x".repeat(65), seq: 1, offset: 0, data: new Uint8Array(1) }))).toBe("WRL_BAD_APPEND");
    expect(await codeOf(wrl.append({ type: "zero", epoch: 1, device: 0, seq: 1, offset: 0, data: new Uint8Array(1) }))).toBe("WRL_BAD_APPEND");
  });

  test("every field comes back as appended, from memory and from disk", async () => {
    const disks = new MemoryDisks([MiB]);
    const wrl = await WriteLog.create(disks.devices());
    const appended = [
      { type: "write" as const, epoch: 2 ** 40, device: "vol/äé", seq: 2 ** 50, offset: 2 ** 52, data: payloadFor(1, 700), flags: 0xffff_ffff },
      { type: "trim" as const, epoch: 3, device: 7, seq: 4, offset: 8192, data: new Uint8Array(0), lengthBytes: 2 ** 40 },
      { type: "marker" as const, epoch: 4, device: 0, seq: 5, offset: 0, data: new Uint8Array([1, 2, 3]), lengthBytes: 0 },
    ];
    for (const record of appended) expect((await wrl.append(record)).ok).toBe(true);
    const expected = appended.map((r, i) => ({ lsn: i + 1, flags: 0, lengthBytes: r.data.length, ...r }));
    expect(await wrl.read(1)).toEqual(expected);
    const reopened = await WriteLog.open(disks.devices(), { readOnly: true });
    expect(await reopened.read(1)).toEqual(expected);
  });
});

describe("back-pressure", () => {
  test("past wrlPendingAppendsMax appends wait unreserved, then get their LSNs in call order", async () => {
    const inner = new MemoryDevice(64 * MiB);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let gated = false;
    const device = {
      name: inner.name, sizeBytes: inner.sizeBytes, logicalBlockSizeBytes: inner.logicalBlockSizeBytes,
      read: (o: number, l: number) => inner.read(o, l),
      write: async (o: number, d: Uint8Array) => {
        if (gated) await gate;
        return inner.write(o, d);
      },
      flush: () => inner.flush(), discard: (o: number, l: number) => inner.discard(o, l), close: () => inner.close(),
    };
    const wrl = await WriteLog.create([device]);
    gated = true;
    const total = wrlPendingAppendsMax + 10;
    const results = Array.from({ length: total }, (_, i) => wrl.append({ epoch: 1, device: 0, seq: i, offset: 0, data: new Uint8Array(16) }));
    // Reservation is synchronous: the first wrlPendingAppendsMax are reserved, the rest wait.
    expect(wrl.info().pendingAppendCount).toBe(wrlPendingAppendsMax);
    await new Promise((resolve) => setImmediate(resolve));
    expect(wrl.info().pendingAppendCount).toBe(wrlPendingAppendsMax);
    release();
    const settled = await Promise.all(results);
    expect(settled.map((r) => r.ok && r.lsn)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(wrl.info()).toMatchObject({ headLsn: total, pendingAppendCount: 0 });
  });
});

describe("tail, reads and failures", () => {
  test("read and advanceTail refuse LSNs outside the log", async () => {
    const wrl = await WriteLog.create([new MemoryDevice(MiB)]);
    await Promise.all([1, 2, 3].map((id) => append(wrl, id)));
    await wrl.advanceTail(2);
    expect(await codeOf(wrl.read(2))).toBe("WRL_LSN_FREED");
    expect(await codeOf(wrl.read(5))).toBe("WRL_LSN_AHEAD");
    expect(await wrl.read(4)).toEqual([]);
    expect(await codeOf(wrl.advanceTail(4))).toBe("WRL_LSN_AHEAD");
    await wrl.advanceTail(1); // already freed: no-op
    expect(wrl.info().tailLsn).toBe(2);
  });

  test("tail advances asked for while a checkpoint is being written share the next one; each resolves once its records are freed durably", async () => {
    const disk = new MemoryDevice(64 * MiB);
    const wrl = await WriteLog.create([disk]);
    await Promise.all(Array.from({ length: 50 }, (_, i) => append(wrl, i + 1)));
    const flushesBefore = disk.flushCount;
    const freedAt: number[] = [];
    await Promise.all(Array.from({ length: 50 }, (_, i) => wrl.advanceTail(i + 1).then(() => freedAt.push(wrl.info().tailLsn))));
    // Every caller saw at least its own LSN freed, and 50 calls did not cost 50 checkpoints.
    expect(freedAt.every((tail, i) => tail >= 1 && tail <= 50 && (i === 0 || tail >= freedAt[i - 1]!))).toBe(true);
    expect(wrl.info()).toMatchObject({ tailLsn: 50, recordCount: 0 });
    expect(disk.flushCount - flushesBefore).toBeLessThanOrEqual(4);
    expect(await codeOf(wrl.read(50))).toBe("WRL_LSN_FREED");
  });

  test("read() budgets bytes but always returns at least one record", async () => {
    const wrl = await WriteLog.create([new MemoryDevice(MiB)]);
    await Promise.all([1, 2, 3, 4].map((id) => append(wrl, id, 3000)));
    expect((await wrl.read(1, 1)).map((r) => r.lsn)).toEqual([1]);
    expect((await wrl.read(1, 6000)).map((r) => r.lsn)).toEqual([1, 2]);
    expect((await wrl.read(2)).map((r) => r.lsn)).toEqual([2, 3, 4]);
  });

  test("an I/O error stops the log (WRL_IO_FAILED); reopening keeps every acknowledged record", async () => {
    const disk = new SimDisk({ sizeBytes: MiB, seed: 7 });
    const wrl = await WriteLog.create([disk]);
    expect((await append(wrl, 1)).ok).toBe(true);
    disk.failNextWrites(1, "EIO");
    expect(await codeOf(append(wrl, 2))).toBe("WRL_IO_FAILED");
    expect(await codeOf(append(wrl, 3))).toBe("WRL_IO_FAILED");
    disk.crash();
    const reopened = await WriteLog.open([disk]);
    expect((await reopened.read(1)).map((r) => r.seq)).toEqual([1]);
    expect(await append(reopened, 4)).toEqual({ ok: true, lsn: 2 });
  });

  test("close() waits for pending appends and checkpoints; later appends are refused", async () => {
    const disks = new MemoryDisks([MiB]);
    const wrl = await WriteLog.create(disks.devices());
    const pending = [1, 2, 3].map((id) => append(wrl, id));
    await wrl.close();
    expect((await Promise.all(pending)).every((r) => r.ok)).toBe(true);
    expect(await codeOf(append(wrl, 4))).toBe("WRL_CLOSED");
    const reopened = await WriteLog.open(disks.devices(), { readOnly: true });
    expect(reopened.recovery?.scannedRecordCount).toBe(0); // the checkpoint already covered them
    expect(reopened.info().headLsn).toBe(3);
  });

  test("a read-only open writes nothing and refuses appends", async () => {
    const disks = new MemoryDisks([MiB, MiB]);
    const wrl = await WriteLog.create(disks.devices());
    await Promise.all([1, 2].map((id) => append(wrl, id)));
    const before = disks.copies();
    const readOnly = await WriteLog.open(disks.devices(), { readOnly: true });
    expect(await codeOf(append(readOnly, 3))).toBe("WRL_READ_ONLY");
    expect(await codeOf(readOnly.advanceTail(1))).toBe("WRL_READ_ONLY");
    await readOnly.close();
    expect(disks.contents.every((bytes, i) => Buffer.compare(bytes, before[i]!) === 0)).toBe(true);
  });
});

describe("create and add-device", () => {
  test("create refuses small devices and existing logs, leaving their bytes alone; --force overrides", async () => {
    expect(await codeOf(WriteLog.create([new MemoryDevice(MiB - 4096)]))).toBe("WRL_TOO_SMALL");
    expect(await codeOf(WriteLog.create([new MemoryDevice(2 * MiB)], { deviceBytesMax: MiB / 2 }))).toBe("WRL_TOO_SMALL");
    const disks = new MemoryDisks([MiB, MiB]);
    const first = await WriteLog.create(disks.devices());
    await append(first, 1);
    const before = disks.copies();
    expect(await codeOf(WriteLog.create(disks.devices()))).toBe("WRL_EXISTS");
    // The secondary alone is recognised as a member too.
    expect(await codeOf(WriteLog.create([new MemoryDevice(MiB, "fresh"), disks.devices()[1]!]))).toBe("WRL_EXISTS");
    expect(disks.contents.every((bytes, i) => Buffer.compare(bytes, before[i]!) === 0)).toBe(true);
    const second = await WriteLog.create(disks.devices(), { force: true });
    expect(second.info().uuid).not.toBe(first.info().uuid);
    expect(second.info().headLsn).toBe(0);
    // The old log's records are not mistaken for the new log's.
    const reopened = await WriteLog.open(disks.devices());
    expect(reopened.info().headLsn).toBe(0);
  });

  test("add-device grows the log; records land on the new device and survive a reopen", async () => {
    const disks = new MemoryDisks([MiB, 2 * MiB]);
    const [primary, secondary] = disks.devices();
    const wrl = await WriteLog.create([primary!]);
    const capacityRecords = (MiB - dataStart) / block;
    await Promise.all(Array.from({ length: capacityRecords }, (_, i) => append(wrl, i + 1)));
    expect(await append(wrl, 9000)).toMatchObject({ ok: false, reason: "full" });
    const entry = await wrl.addDevice(secondary!, { pathHint: "/dev/fake-second" });
    expect(entry).toMatchObject({ index: 1, pathHint: "/dev/fake-second", dataStartBytes: 4096, dataBytes: 2 * MiB - 4096 });
    expect(wrl.info().sizeBytes).toBe(MiB - dataStart + 2 * MiB - 4096);
    const more = await Promise.all(Array.from({ length: 20 }, (_, i) => append(wrl, 10_000 + i)));
    expect(more.every((r) => r.ok)).toBe(true);
    const reopened = await WriteLog.open(disks.devices());
    const seqs = (await reopened.read(1, 64 * MiB)).map((r) => r.seq);
    expect(seqs).toEqual([...Array.from({ length: capacityRecords }, (_, i) => i + 1), ...Array.from({ length: 20 }, (_, i) => 10_000 + i)]);
    expect(await codeOf(WriteLog.open([disks.devices()[0]!]))).toBe("WRL_DEVICE_MISSING");
  });

  test("a device added while the live records wrap is used once the tail passes the end", async () => {
    const disks = new MemoryDisks([MiB, MiB]);
    const [primary, secondary] = disks.devices();
    const wrl = await WriteLog.create([primary!]);
    const capacityRecords = (MiB - dataStart) / block;
    await Promise.all(Array.from({ length: capacityRecords }, (_, i) => append(wrl, i + 1)));
    await wrl.advanceTail(100);
    await Promise.all(Array.from({ length: 50 }, (_, i) => append(wrl, 1000 + i))); // wraps to the start
    await wrl.addDevice(secondary!);
    const info = wrl.info();
    expect(info.freeBytes).toBe(50 * block); // unchanged: the new space is behind the tail
    await wrl.advanceTail(capacityRecords + 10); // the tail passes the old end of the log
    expect(wrl.info().freeBytes).toBe(info.sizeBytes - 40 * block);
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => append(wrl, 5000 + i)));
    expect(results.every((r) => r.ok)).toBe(true);
    const reopened = await WriteLog.open(disks.devices(), { readOnly: true });
    const seqs = (await reopened.read(capacityRecords + 11, 64 * MiB)).map((r) => r.seq);
    expect(seqs).toEqual([...Array.from({ length: 40 }, (_, i) => 1010 + i), ...Array.from({ length: 300 }, (_, i) => 5000 + i)]);
  });
});
