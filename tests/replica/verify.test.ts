/**
 * Verify probes on the replica (src/roles/replica/verify.ts): compared at their place in the
 * write order, never written, the differing blocks reported in shipAck.verified (carried over to
 * the next ack past verifyOutcomesPerAckMax), the same refusals as a write.
 */
import { describe, expect, test } from "bun:test";
import { replicaVerifyRangesMax, verifyOutcomesPerAckMax } from "../../src/constants.ts";
import { encodeFrameBytes } from "../../src/protocol/frame.ts";
import type { ShipReply } from "../../src/roles/replica/core.ts";
import { applyModel, dataRecord, memoryCore, type TestRecord } from "./helpers.ts";
import { ackedLsn, KiB, MiB, probe, resyncEnd, resyncRecord, rsWrlCore, send } from "./resync-helpers.ts";

function imageAfter(sizeBytes: number, records: TestRecord[]): Uint8Array {
  const images = new Map([["disk0", new Uint8Array(sizeBytes)]]);
  applyModel(images, records);
  return images.get("disk0")!;
}

function verified(reply: ShipReply) {
  if (reply.type !== "shipAck") throw new Error(`expected a shipAck, got ${reply.code}: ${reply.message}`);
  return reply.verified;
}

describe("verify probes", () => {
  test("an equal range reports nothing differing; a block changed behind the replica's back is reported exactly; the probe writes nothing", async () => {
    const { core, memory } = await memoryCore({ disk0: 64 * KiB });
    const writes = [dataRecord(1, "disk0", 0, 32 * KiB), dataRecord(2, "disk0", 40 * KiB, 8 * KiB)];
    expect(verified(await send(core, writes))).toBeUndefined();
    const image = imageAfter(64 * KiB, writes);
    expect(verified(await send(core, [probe(3, "disk0", image, 0, 64 * KiB)]))).toEqual([{ device: "disk0", lsn: 3, offset: 0, length: 64 * KiB, differing: [] }]);
    // Someone writes the replica device directly: block 5 (20..24 KiB), and two adjacent blocks (48..56 KiB).
    await memory("disk0").write(20 * KiB + 512, new Uint8Array(512).fill(0xee));
    await memory("disk0").write(48 * KiB, new Uint8Array(8 * KiB).fill(0x11));
    const before = memory("disk0").snapshot();
    expect(verified(await send(core, [probe(4, "disk0", image, 0, 64 * KiB)]))).toEqual([
      { device: "disk0", lsn: 4, offset: 0, length: 64 * KiB, differing: [{ offset: 20 * KiB, length: 4 * KiB }, { offset: 48 * KiB, length: 8 * KiB }] },
    ]);
    // Blocks of 512 bytes narrow it down further, over part of the device.
    expect(verified(await send(core, [probe(5, "disk0", image, 16 * KiB, 8 * KiB, 512)]))).toEqual([
      { device: "disk0", lsn: 5, offset: 16 * KiB, length: 8 * KiB, differing: [{ offset: 20 * KiB + 512, length: 512 }] },
    ]);
    expect(memory("disk0").snapshot()).toEqual(before);
    expect(core.appliedLsn("6f1c2a4e-0b5d-4c1e-9a7b-3d2e1f0a9b8c")).toBe(5);
  });

  test("a probe is compared after the records before it and before the overlapping records after it (writes completing out of order)", async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const { core } = await memoryCore({ disk0: 64 * KiB }, undefined, true, seed);
      const first = dataRecord(1, "disk0", 0, 16 * KiB);
      const second = dataRecord(2, "disk0", 4 * KiB, 8 * KiB);
      const at2 = imageAfter(64 * KiB, [first, second]);
      const records = [first, second, probe(3, "disk0", at2, 0, 16 * KiB), dataRecord(4, "disk0", 0, 16 * KiB), probe(5, "disk0", imageAfter(64 * KiB, [first, second, dataRecord(4, "disk0", 0, 16 * KiB)]), 0, 16 * KiB)];
      const outcomes = verified(await send(core, records));
      expect(outcomes?.map((outcome) => [outcome.lsn, outcome.differing])).toEqual([[3, []], [5, []]]);
    }
  });

  test("inside a resync set the probe is evaluated when the set is applied, after the set's earlier records, and answered with the ack that completed it", async () => {
    const { core, memory } = await rsWrlCore({ disk0: 64 * KiB });
    const base = [dataRecord(1, "disk0", 0, 16 * KiB)];
    expect(ackedLsn(await send(core, base))).toBe(1);
    const set = [resyncRecord(2, "disk0", 0, 8 * KiB), dataRecord(3, "disk0", 32 * KiB, 4 * KiB)];
    const atProbe = imageAfter(64 * KiB, [...base, ...set]);
    // The replica device does not hold this yet (the set is held back): only the set's apply can match it.
    const inSet = [probe(4, "disk0", atProbe, 0, 64 * KiB), dataRecord(5, "disk0", 0, 4 * KiB)];
    expect(verified(await send(core, set))).toBeUndefined();
    expect(verified(await send(core, inSet))).toBeUndefined();
    expect(memory("disk0").snapshot()).toEqual(imageAfter(64 * KiB, base));
    const outcomes = verified(await send(core, [resyncEnd(6, "disk0")]));
    expect(outcomes).toEqual([{ device: "disk0", lsn: 4, offset: 0, length: 64 * KiB, differing: [] }]);
    expect(memory("disk0").snapshot()).toEqual(imageAfter(64 * KiB, [...base, ...set, ...inSet]));
  });

  test("outcomes past what one ack carries go with the next acks, each ack fitting one frame; more differing ranges than replicaVerifyRangesMax report the whole range", async () => {
    const blocks = 2 * replicaVerifyRangesMax + 2; // every other 512-byte block differs: replicaVerifyRangesMax + 1 ranges
    const sizeBytes = Math.ceil((blocks * 512) / MiB) * MiB;
    const { core, memory } = await memoryCore({ disk0: sizeBytes });
    const image = new Uint8Array(sizeBytes);
    for (let block = 1; block < blocks; block += 2) image[block * 512] = 1;
    const many = probe(1, "disk0", image, 0, blocks * 512, 512);
    expect(verified(await send(core, [many]))).toEqual([{ device: "disk0", lsn: 1, offset: 0, length: blocks * 512, differing: [{ offset: 0, length: blocks * 512 }] }]);
    // Exactly replicaVerifyRangesMax ranges are listed one by one.
    const listed = probe(2, "disk0", image, 0, (blocks - 2) * 512, 512);
    const [outcome] = verified(await send(core, [listed]))!;
    expect(outcome!.differing.length).toBe(replicaVerifyRangesMax);
    expect(outcome!.differing[0]).toEqual({ offset: 512, length: 512 });

    // A largest outcome, then more small ones than one ack may carry.
    const zeros = new Uint8Array(sizeBytes);
    const probes = [probe(3, "disk0", image, 0, (blocks - 2) * 512, 512), ...Array.from({ length: verifyOutcomesPerAckMax + 10 }, (_, index) => probe(4 + index, "disk0", zeros, (index % 16) * 4 * KiB, 4 * KiB))];
    const delivered: number[] = [];
    let nextLsn = 3 + probes.length;
    for (let reply = await send(core, probes); ; reply = await send(core, [dataRecord(nextLsn, "disk0", sizeBytes - 4 * KiB, 4 * KiB)]), nextLsn += 1) {
      const outcomes = verified(reply);
      if (outcomes === undefined) break;
      expect(outcomes.length).toBeLessThanOrEqual(verifyOutcomesPerAckMax);
      expect(() => encodeFrameBytes(reply)).not.toThrow(); // one frame header (64 KiB) holds it
      delivered.push(...outcomes.map((entry) => entry.lsn));
      expect(nextLsn).toBeLessThan(3 + probes.length + 50);
    }
    expect(delivered).toEqual(probes.map((entry) => entry.lsn));
    expect(memory("disk0").snapshot().subarray(0, blocks * 512)).toEqual(zeros.subarray(0, blocks * 512));
  });

  test("a probe for an unknown device or outside the device is refused like a write", async () => {
    const { core } = await memoryCore({ disk0: 64 * KiB });
    const image = new Uint8Array(128 * KiB);
    const unknown = await send(core, [probe(1, "disk9", image, 0, 4 * KiB)]);
    expect(unknown.type === "shipNack" && unknown.code).toBe("DEVICE_UNKNOWN");
    const outside = await send(core, [probe(1, "disk0", image, 60 * KiB, 8 * KiB)]);
    expect(outside.type === "shipNack" && outside.code).toBe("OUT_OF_RANGE");
  });
});
