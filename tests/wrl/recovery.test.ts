/**
 * One test per row of the recovery decision table in src/wrl/recovery.ts (S = superblock,
 * D = secondary device, R = record scan). Damage is done directly to the device bytes.
 */
import { describe, expect, test } from "bun:test";
import { WriteLog } from "../../src/wrl/write-log.ts";
import { crc32c } from "../../src/wrl/crc32c.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { DruvaaError } from "../../src/errors.ts";
import { wrlSecondaryHeaderAreaBytes, wrlSuperblockCopyBytes } from "../../src/constants.ts";
import { MemoryDisks, codeOf, payloadFor, primaryDataStartBytes as dataStart, rewriteRecord } from "./helpers.ts";

const MiB = 1024 * 1024;
const copyB = 32 * 1024;
const block = 4096;

function append(wrl: WriteLog, id: number, payloadBytes = 1000) {
  return wrl.append({ epoch: 1, device: 0, seq: id, offset: id * block, data: payloadFor(id, payloadBytes) });
}

async function appendAll(wrl: WriteLog, ids: number[], payloadBytes = 1000): Promise<void> {
  const results = await Promise.all(ids.map((id) => append(wrl, id, payloadBytes)));
  expect(results.every((r) => r.ok)).toBe(true);
}

async function heldSeqs(wrl: WriteLog): Promise<number[]> {
  const out: number[] = [];
  let next = wrl.info().tailLsn + 1;
  while (next <= wrl.info().headLsn) {
    const records = await wrl.read(next);
    for (const r of records) {
      expect(Buffer.compare(r.data, payloadFor(r.seq, r.data.length))).toBe(0);
      out.push(r.seq);
    }
    next = records[records.length - 1]!.lsn + 1;
  }
  return out;
}

function garble(bytes: Uint8Array, from: number, length: number): void {
  for (let i = from; i < from + length; i += 1) bytes[i] = (bytes[i]! ^ 0xa5) & 0xff;
}

function equalAll(a: Uint8Array[], b: Uint8Array[]): boolean {
  return a.length === b.length && a.every((bytes, i) => Buffer.compare(bytes, b[i]!) === 0);
}

describe("superblock rows", () => {
  test("S1: both copies valid -> the higher sequence wins", async () => {
    const disks = new MemoryDisks([MiB]);
    const wrl = await WriteLog.create(disks.devices());
    await appendAll(wrl, [1, 2, 3]);
    await wrl.advanceTail(1); // sequence 3, written to copy B
    const reopened = await WriteLog.open(disks.devices(), { readOnly: true });
    expect(reopened.recovery).toMatchObject({ superblockCopy: 1, otherCopy: "valid-older" });
    expect(reopened.info().tailLsn).toBe(1);
    expect(await heldSeqs(reopened)).toEqual([2, 3]);
  });

  test("S2: the newest copy torn -> the older copy is used, nothing acknowledged is lost", async () => {
    const disks = new MemoryDisks([MiB]);
    const wrl = await WriteLog.create(disks.devices());
    await appendAll(wrl, [1, 2, 3]);
    await wrl.advanceTail(1); // copy B now holds the newest checkpoint
    garble(disks.contents[0]!, copyB + 1000, 512);
    const reopened = await WriteLog.open(disks.devices());
    expect(reopened.recovery).toMatchObject({ superblockCopy: 0, otherCopy: "invalid" });
    // The tail advance was lost with its copy: record 1 is held again, which is safe (re-shipped).
    expect(reopened.info().tailLsn).toBe(0);
    expect(await heldSeqs(reopened)).toEqual([1, 2, 3]);
  });

  test("S3: one copy zeroed -> the other is used", async () => {
    const disks = new MemoryDisks([MiB]);
    const wrl = await WriteLog.create(disks.devices());
    await appendAll(wrl, [1, 2]);
    disks.contents[0]!.fill(0, copyB, copyB + wrlSuperblockCopyBytes);
    const reopened = await WriteLog.open(disks.devices(), { readOnly: true });
    expect(reopened.recovery).toMatchObject({ superblockCopy: 0, otherCopy: "zeroed" });
    expect(await heldSeqs(reopened)).toEqual([1, 2]);
  });

  test("S4: a copy of an unknown format version -> WRL_VERSION_UNSUPPORTED, nothing written", async () => {
    const disks = new MemoryDisks([MiB]);
    await WriteLog.create(disks.devices());
    const bytes = disks.contents[0]!;
    const view = new DataView(bytes.buffer);
    view.setUint32(copyB + 8, 2, true);
    view.setUint32(copyB + wrlSuperblockCopyBytes - 4, crc32c(bytes.subarray(copyB, copyB + wrlSuperblockCopyBytes - 4)), true);
    const before = disks.copies();
    expect(await codeOf(WriteLog.open(disks.devices()))).toBe("WRL_VERSION_UNSUPPORTED");
    expect(equalAll(disks.contents, before)).toBe(true);
  });

  test("S5: both copies damaged -> WRL_SUPERBLOCK_CORRUPT, nothing written", async () => {
    const disks = new MemoryDisks([MiB]);
    await WriteLog.create(disks.devices());
    garble(disks.contents[0]!, 100, 8);
    garble(disks.contents[0]!, copyB + 100, 8);
    const before = disks.copies();
    expect(await codeOf(WriteLog.open(disks.devices()))).toBe("WRL_SUPERBLOCK_CORRUPT");
    expect(equalAll(disks.contents, before)).toBe(true);
  });

  test("S6: no superblock magic -> WRL_NOT_FOUND", async () => {
    expect(await codeOf(WriteLog.open([new MemoryDevice(MiB)]))).toBe("WRL_NOT_FOUND");
    const noise = new Uint8Array(MiB).map((_, i) => (i * 7919) & 0xff);
    expect(await codeOf(WriteLog.open([new MemoryDevice(MiB, "noise", 512, noise)]))).toBe("WRL_NOT_FOUND");
  });
});

describe("secondary device rows", () => {
  test("D1: all devices in order -> opens", async () => {
    const disks = new MemoryDisks([MiB, MiB, MiB]);
    const wrl = await WriteLog.create(disks.devices());
    await appendAll(wrl, [1, 2]);
    const reopened = await WriteLog.open(disks.devices(), { readOnly: true });
    expect(reopened.info().devices.map((d) => d.index)).toEqual([0, 1, 2]);
  });

  test("D2: secondaries swapped, or of another log -> WRL_DEVICE_NOT_MEMBER", async () => {
    const disks = new MemoryDisks([MiB, MiB, MiB]);
    await WriteLog.create(disks.devices());
    const [p, s1, s2] = disks.devices();
    expect(await codeOf(WriteLog.open([p!, s2!, s1!]))).toBe("WRL_DEVICE_NOT_MEMBER");
    const other = new MemoryDisks([MiB, MiB]);
    await WriteLog.create(other.devices());
    expect(await codeOf(WriteLog.open([disks.devices()[0]!, other.devices()[1]!, disks.devices()[2]!]))).toBe("WRL_DEVICE_NOT_MEMBER");
    // A secondary whose header was wiped.
    disks.contents[1]!.fill(0, 0, wrlSecondaryHeaderAreaBytes);
    expect(await codeOf(WriteLog.open(disks.devices()))).toBe("WRL_DEVICE_NOT_MEMBER");
  });

  test("D3: a secondary smaller than its log area -> WRL_DEVICE_TOO_SMALL", async () => {
    const disks = new MemoryDisks([MiB, 2 * MiB]);
    await WriteLog.create(disks.devices());
    const shrunk = new MemoryDevice(MiB, "shrunk", 512, disks.contents[1]!.slice(0, MiB));
    expect(await codeOf(WriteLog.open([disks.devices()[0]!, shrunk]))).toBe("WRL_DEVICE_TOO_SMALL");
  });

  test("D4: a secondary not given or not found -> WRL_DEVICE_MISSING", async () => {
    const disks = new MemoryDisks([MiB, MiB]);
    await WriteLog.create(disks.devices());
    expect(await codeOf(WriteLog.open([disks.devices()[0]!]))).toBe("WRL_DEVICE_MISSING");
    const resolve = async () => {
      throw new DruvaaError("NOT_FOUND", "mem1: no such file or device");
    };
    expect(await codeOf(WriteLog.open({ primary: disks.devices()[0]!, resolve }))).toBe("WRL_DEVICE_MISSING");
  });
});

describe("record scan rows", () => {
  test("R1 + R3: records after the checkpoint are accepted up to zeroed space", async () => {
    const disks = new MemoryDisks([MiB]);
    const wrl = await WriteLog.create(disks.devices());
    await appendAll(wrl, [1, 2, 3, 4]);
    const reopened = await WriteLog.open(disks.devices());
    expect(reopened.recovery?.scannedRecordCount).toBe(4);
    expect(reopened.recovery?.stopReason).toContain("zeroed");
    expect(await heldSeqs(reopened)).toEqual([1, 2, 3, 4]);
  });

  test("R2: a record that did not fit at the end of a device is found at the next device's start", async () => {
    // A large secondary keeps the periodic checkpoint (a quarter of the log) away, so the scan
    // starts at the log's beginning and has to cross the skip.
    const disks = new MemoryDisks([MiB, 8 * MiB]);
    const wrl = await WriteLog.create(disks.devices());
    const primaryBlocks = (MiB - dataStart) / block; // 240
    const small = Array.from({ length: primaryBlocks - 10 }, (_, i) => i + 1);
    await appendAll(wrl, small);
    const big = await append(wrl, 9999, 60_000); // 15 blocks: does not fit the 10 left
    expect(big.ok).toBe(true);
    // The skipped blocks at the end of the primary were left alone, the record is on the secondary.
    expect(disks.contents[0]!.subarray(MiB - 10 * block).every((b) => b === 0)).toBe(true);
    expect(disks.contents[1]!.subarray(4096, 8192).some((b) => b !== 0)).toBe(true);
    const reopened = await WriteLog.open(disks.devices());
    expect(reopened.recovery?.scannedRecordCount).toBe(small.length + 1);
    expect(await heldSeqs(reopened)).toEqual([...small, 9999]);
  });

  test("R4: a record of an earlier lap ends the scan", async () => {
    const disks = new MemoryDisks([MiB]);
    const wrl = await WriteLog.create(disks.devices());
    const first = Array.from({ length: 200 }, (_, i) => i + 1);
    await appendAll(wrl, first);
    await wrl.advanceTail(200); // checkpoint: head at LSN 200
    const second = Array.from({ length: 100 }, (_, i) => 201 + i);
    await appendAll(wrl, second); // wraps: 40 at the end of the log, 60 from its start
    const reopened = await WriteLog.open(disks.devices());
    expect(reopened.recovery?.stopReason).toContain("earlier lap or history (LSN 61, incarnation 1)");
    expect(await heldSeqs(reopened)).toEqual(second);
  });

  test("R4: a record of a history discarded by an earlier recovery is never resurrected", async () => {
    const disks = new MemoryDisks([MiB]);
    const wrl = await WriteLog.create(disks.devices());
    await appendAll(wrl, [1]);
    await appendAll(wrl, [2, 3]); // one batch
    // Power loss tore LSN 2; LSN 3 (same batch, never acknowledged in this story) survived.
    garble(disks.contents[0]!, dataStart + block + 200, 16);
    const second = await WriteLog.open(disks.devices());
    expect(second.info().headLsn).toBe(1);
    // The new history reuses LSN 2 with a record of the same size: it ends where old LSN 3 starts.
    await appendAll(second, [20]);
    const third = await WriteLog.open(disks.devices());
    expect(await heldSeqs(third)).toEqual([1, 20]);
    expect(third.recovery?.stopReason).toContain("incarnation 1");
  });

  test("R5 + R9: a torn record in the last batch ends the log there (unacknowledged tail)", async () => {
    const disks = new MemoryDisks([MiB]);
    const wrl = await WriteLog.create(disks.devices());
    await appendAll(wrl, [1, 2]);
    await appendAll(wrl, [3, 4]);
    garble(disks.contents[0]!, dataStart + 3 * block + 500, 4); // LSN 4's payload
    const reopened = await WriteLog.open(disks.devices());
    expect(reopened.recovery?.stopReason).toContain("payload checksum mismatch");
    expect(await heldSeqs(reopened)).toEqual([1, 2, 3]);
    // Appending continues after the torn record; it is overwritten.
    await appendAll(reopened, [5]);
    expect(await heldSeqs(await WriteLog.open(disks.devices(), { readOnly: true }))).toEqual([1, 2, 3, 5]);
  });

  test("R6: a record of this incarnation with a higher LSN where the next belongs -> WRL_CORRUPT", async () => {
    const disks = new MemoryDisks([MiB]);
    const wrl = await WriteLog.create(disks.devices());
    await appendAll(wrl, [1, 2, 3]);
    rewriteRecord(disks.contents[0]!, dataStart + 2 * block, () => ({ lsn: 9 }));
    const before = disks.copies();
    const error = await WriteLog.open(disks.devices()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DruvaaError);
    expect((error as DruvaaError).code).toBe("WRL_CORRUPT");
    expect((error as DruvaaError).message).toContain("LSN gap");
    expect(equalAll(disks.contents, before)).toBe(true);
  });

  test("R7: a record from an incarnation newer than the superblock -> WRL_CORRUPT", async () => {
    const disks = new MemoryDisks([MiB]);
    const wrl = await WriteLog.create(disks.devices());
    await appendAll(wrl, [1, 2, 3]);
    rewriteRecord(disks.contents[0]!, dataStart + 2 * block, () => ({ incarnation: 7 }));
    expect(await codeOf(WriteLog.open(disks.devices()))).toBe("WRL_CORRUPT");
  });

  test("R8: damage to an acknowledged record followed by a later batch -> WRL_CORRUPT, nothing written", async () => {
    for (const damageAt of [500, 20]) { // payload, then header
      const disks = new MemoryDisks([MiB]);
      const wrl = await WriteLog.create(disks.devices());
      await appendAll(wrl, [1, 2]);
      await appendAll(wrl, [3]);
      garble(disks.contents[0]!, dataStart + block + damageAt, 2);
      const before = disks.copies();
      const error = await WriteLog.open(disks.devices()).catch((e: unknown) => e);
      expect((error as DruvaaError).code).toBe("WRL_CORRUPT");
      expect((error as DruvaaError).message).toContain("later batch");
      expect((error as DruvaaError).hint).toContain("wrl create --force");
      expect(equalAll(disks.contents, before)).toBe(true);
    }
  });
});
