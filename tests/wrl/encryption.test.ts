/**
 * Encryption at rest of WRL payloads (payload-cipher.ts): what a key changes on disk, how an
 * encrypted WRL reads back, recovers after a power loss, and refuses a missing or wrong key;
 * and that WRLs without encryption keep their format (version 1) and refuse a key.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DruvaaError } from "../../src/errors.ts";
import { setLogLevel } from "../../src/log.ts";
import { wrlSuperblockCopyBytes } from "../../src/constants.ts";
import { WriteLog } from "../../src/wrl/write-log.ts";
import { inspectWrlAtPath, openWrlAtPath } from "../../src/wrl/paths.ts";
import type { WrlRecord } from "../../src/wrl/types.ts";
import { CrashPlan, codeOf, makeDisks, MemoryDisks, repoRoot } from "./helpers.ts";

const MiB = 1024 * 1024;
const key = new Uint8Array(randomBytes(32));
const otherKey = new Uint8Array(randomBytes(32));
const marker = new TextEncoder().encode("PLAINTEXT-MARKER-druvaa-encryption-test;");

beforeAll(() => setLogLevel(-1)); // the simulated power loss logs WRL_IO_FAILED by design
afterAll(() => setLogLevel(3));

/** `sizeBytes` of the marker repeated, with `id` in the first bytes so payloads differ. */
function markedPayload(id: number, sizeBytes: number): Uint8Array {
  const data = new Uint8Array(sizeBytes);
  for (let at = 0; at < sizeBytes; at += marker.length) data.set(marker.subarray(0, Math.min(marker.length, sizeBytes - at)), at);
  new DataView(data.buffer).setUint32(0, id, true);
  return data;
}

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.length).indexOf(Buffer.from(needle)) >= 0;
}

async function appendMarked(wrl: WriteLog, ids: number[], sizeBytes = 8192): Promise<void> {
  const results = await Promise.all(ids.map((id) => wrl.append({ epoch: 1, device: 0, seq: id, offset: id * sizeBytes, data: markedPayload(id, sizeBytes) })));
  for (const result of results) expect(result.ok).toBe(true);
}

async function readAll(wrl: WriteLog): Promise<WrlRecord[]> {
  const info = wrl.info();
  return info.headLsn === info.tailLsn ? [] : wrl.read(info.tailLsn + 1, 1 << 30);
}

async function errorOf(promise: Promise<unknown>): Promise<DruvaaError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(DruvaaError);
  return error as DruvaaError;
}

describe("WRL payload encryption at rest", () => {
  test("without a key the payload is on disk as written (the search below can fail)", async () => {
    const disks = new MemoryDisks([2 * MiB]);
    const wrl = await WriteLog.create(disks.devices());
    await appendMarked(wrl, [1, 2, 3]);
    await wrl.close();
    expect(contains(disks.contents[0]!, marker)).toBe(true);
    expect(wrl.info().payloadEncryption).toBe("none");
  });

  test("with a key no plaintext reaches the disk; records read back equal, from the cache and from disk", async () => {
    const disks = new MemoryDisks([2 * MiB]);
    const wrl = await WriteLog.create(disks.devices(), { payloadKey: key });
    // The same payload twice: its two ciphertexts must differ (per-record counter blocks).
    const same = markedPayload(7, 8192);
    await appendMarked(wrl, [1, 2, 3]);
    expect((await wrl.append({ epoch: 1, device: 0, seq: 4, offset: 0, data: same.slice() })).ok).toBe(true);
    expect((await wrl.append({ epoch: 1, device: 0, seq: 5, offset: 0, data: same.slice() })).ok).toBe(true);
    const cached = await readAll(wrl);
    expect(cached.map((r) => r.data)).toEqual([markedPayload(1, 8192), markedPayload(2, 8192), markedPayload(3, 8192), same, same]);
    await wrl.close();
    const image = disks.contents[0]!;
    expect(contains(image, marker)).toBe(false);
    expect(contains(image, same.subarray(64, 128))).toBe(false);
    expect(contains(image, new TextEncoder().encode("WRLR"))).toBe(true); // records are there, headers in the clear

    const reopened = await WriteLog.open(disks.devices(), { payloadKey: key });
    try {
      expect(reopened.info()).toMatchObject({ headLsn: 5, payloadEncryption: "aes-256-ctr", formatVersion: 2 });
      const fromDisk = await readAll(reopened);
      expect(fromDisk.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
      expect(fromDisk.map((r) => r.data)).toEqual(cached.map((r) => r.data));
      // Appends of the new incarnation read back too.
      await appendMarked(reopened, [6]);
    } finally {
      await reopened.close();
    }
    const third = await WriteLog.open(disks.devices(), { payloadKey: key });
    expect((await readAll(third)).map((r) => r.data[0])).toEqual([1, 2, 3, 7, 7, 6]);
    await third.close();
  });

  test("a missing key, a wrong key and a key for a WRL without encryption are refused (exit 4), nothing written", async () => {
    const disks = new MemoryDisks([2 * MiB]);
    const wrl = await WriteLog.create(disks.devices(), { payloadKey: key });
    await appendMarked(wrl, [1, 2]);
    await wrl.close();
    const before = disks.copies();
    const missing = await errorOf(WriteLog.open(disks.devices()));
    expect([missing.code, missing.exitCode]).toEqual(["WRL_KEY_REQUIRED", 4]);
    expect(missing.hint).toContain("--encrypt-at-rest KEYFILE");
    const wrong = await errorOf(WriteLog.open(disks.devices(), { payloadKey: otherKey }));
    expect([wrong.code, wrong.exitCode]).toEqual(["WRL_KEY_MISMATCH", 4]);
    expect(await codeOf(WriteLog.open(disks.devices(), { payloadKey: otherKey, readOnly: true }))).toBe("WRL_KEY_MISMATCH");
    expect(disks.contents).toEqual(before);

    // Read-only without the key: recovery checks payloads as stored; reading them needs the key.
    const inspected = await WriteLog.open(disks.devices(), { readOnly: true });
    expect(inspected.info()).toMatchObject({ headLsn: 2, payloadEncryption: "aes-256-ctr" });
    expect(await codeOf(inspected.read(1))).toBe("WRL_KEY_REQUIRED");
    await inspected.close();
    // Metadata work without the key (add-device): appends refuse, nothing is written in the clear.
    const keyless = await WriteLog.open(disks.devices(), { keyless: true });
    expect(await codeOf(keyless.append({ epoch: 1, device: 0, seq: 3, offset: 0, data: markedPayload(3, 4096) }))).toBe("WRL_KEY_REQUIRED");
    await keyless.close();
    expect(contains(disks.contents[0]!, marker)).toBe(false);

    const plain = new MemoryDisks([2 * MiB]);
    await (await WriteLog.create(plain.devices())).close();
    const notEncrypted = await errorOf(WriteLog.open(plain.devices(), { payloadKey: key }));
    expect([notEncrypted.code, notEncrypted.exitCode]).toEqual(["WRL_NOT_ENCRYPTED", 4]);
    expect(notEncrypted.hint).toContain("druvaa wrl create --force --encrypt-at-rest");
  });

  test("the superblock of a WRL without encryption keeps format 1 and zeros where the key check goes", async () => {
    const plain = new MemoryDisks([2 * MiB]);
    await (await WriteLog.create(plain.devices())).close();
    const copy = plain.contents[0]!.subarray(0, wrlSuperblockCopyBytes);
    expect(new DataView(copy.buffer, copy.byteOffset).getUint32(8, true)).toBe(1);
    expect([...copy.subarray(96, 128)].every((b) => b === 0)).toBe(true);
  });

  test("a power loss in the middle of appends: recovery keeps every acknowledged record, with the key and without it", async () => {
    const outcomes = new Set<string>();
    for (const [seed, operations] of [[11, 0], [12, 1], [13, 3], [14, 6]] as const) {
      const plan = new CrashPlan(makeDisks(seed, [MiB, MiB]));
      const wrl = await WriteLog.create(plan.devices(), { payloadKey: key, uuid: "00000000-0000-4000-8000-0000000000e1" });
      await appendMarked(wrl, [1, 2, 3], 20_000);
      plan.arm(operations, "land");
      const later = await Promise.allSettled([4, 5, 6, 7].map((id) => wrl.append({ epoch: 1, device: 0, seq: id, offset: 0, data: markedPayload(id, 20_000) })));
      const acked = later.filter((r) => r.status === "fulfilled" && r.value.ok).length;
      plan.crashNow();
      // Without the key, read-only: the scan checks stored payloads and finds the same head.
      const inspected = await WriteLog.open(plan.devices(), { readOnly: true });
      const headWithoutKey = inspected.info().headLsn;
      await inspected.close();
      const recovered = await WriteLog.open(plan.devices(), { payloadKey: key });
      const records = await readAll(recovered);
      expect(recovered.info().headLsn).toBe(headWithoutKey);
      expect(records.length).toBeGreaterThanOrEqual(3 + acked);
      outcomes.add(records.length === 7 ? (acked < 4 ? "unacknowledged kept" : "all acknowledged") : "tail discarded");
      for (const record of records) expect(record.data).toEqual(markedPayload(record.seq, 20_000));
      // New records at LSNs a discarded tail may have used read back under the new incarnation.
      await appendMarked(recovered, [8, 9], 20_000);
      await recovered.close();
      const again = await WriteLog.open(plan.devices(), { payloadKey: key });
      const all = await readAll(again);
      expect(all.slice(-2).map((r) => r.data)).toEqual([markedPayload(8, 20_000), markedPayload(9, 20_000)]);
      await again.close();
      for (const disk of plan.disks) expect(contains(await disk.read(0, disk.sizeBytes), marker)).toBe(false);
    }
    // The crash points cover a discarded tail (new records then reuse its LSNs) and kept ones.
    expect([...outcomes].sort()).toEqual(["all acknowledged", "tail discarded", "unacknowledged kept"]);
  });
});

describe("unencrypted WRL images written before encryption existed", () => {
  const workDir = mkdtempSync(join(tmpdir(), "druvaa-wrl-enc-"));
  afterAll(() => rmSync(workDir, { recursive: true, force: true }));

  test("the good fixture opens as before, says it is not encrypted, and refuses a key", async () => {
    const path = join(workDir, "good.img");
    writeFileSync(path, Bun.gunzipSync(readFileSync(join(repoRoot, "tests/fixtures/wrl/good/primary.img.gz"))));
    const report = await inspectWrlAtPath(path);
    expect(report).toMatchObject({ formatVersion: 1, payloadEncryption: "none" });
    expect(await codeOf(openWrlAtPath(path, { payloadKey: key }))).toBe("WRL_NOT_ENCRYPTED");
    const wrl = await openWrlAtPath(path);
    expect((await readAll(wrl)).length).toBe(report.recordCount);
    await wrl.close();
  });
});
