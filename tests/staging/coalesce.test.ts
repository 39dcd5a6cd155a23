/**
 * Coalescing (src/roles/staging/coalesce.ts, relay-coalesce.ts): for any run of WRL records, the
 * coalesced shipment applied to any image gives what the records applied one by one in LSN order
 * give, and it is a frame the protocol accepts; the span policy's table row by row.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { decodeFrame, encodeFrameBytes } from "../../src/protocol/frame.ts";
import { recordFlags, type ShipMessage } from "../../src/protocol/messages.ts";
import { shipRecordData } from "../../src/protocol/specs-ship.ts";
import { Coalescer } from "../../src/roles/staging/coalesce.ts";
import { coalesceSpanBytes, parseCoalesce } from "../../src/roles/staging/relay-coalesce.ts";
import { defaultShipmentLimits, type ShipmentLimits } from "../../src/roles/staging/shipment.ts";
import type { WrlRecord } from "../../src/wrl/types.ts";

const block = 512;
const deviceBlocks = 64;
const target = { wrl: "w0", wrlUuid: "6f1c2a4e-0b5d-4c1e-9a7b-3d2e1f0a9b8c", deviceSizes: new Map([["d0", deviceBlocks * block], ["d1", deviceBlocks * block]]) };

type Spec = { kind: "write" | "zero" | "trim" | "marker"; device: "d0" | "d1"; startBlock: number; blocks: number; fill: number };

const specArb: fc.Arbitrary<Spec> = fc.record({
  kind: fc.constantFrom("write", "write", "write", "zero", "trim", "marker"),
  device: fc.constantFrom("d0", "d1"),
  startBlock: fc.integer({ min: 0, max: deviceBlocks - 1 }),
  blocks: fc.integer({ min: 1, max: 16 }),
  fill: fc.integer({ min: 1, max: 255 }),
}) as fc.Arbitrary<Spec>;

function recordsOf(specs: readonly Spec[], firstLsn = 1): WrlRecord[] {
  return specs.map((spec, index) => {
    const lsn = firstLsn + index;
    const blocks = Math.min(spec.blocks, deviceBlocks - spec.startBlock);
    const offset = spec.startBlock * block;
    const lengthBytes = blocks * block;
    if (spec.kind === "marker") return { lsn, type: "marker", epoch: lsn, device: spec.device, seq: lsn, offset: 0, lengthBytes: 0, flags: 0, data: new Uint8Array(0) };
    if (spec.kind !== "write") return { lsn, type: spec.kind, epoch: lsn, device: spec.device, seq: lsn, offset, lengthBytes, flags: 0, data: new Uint8Array(0) };
    // Distinct bytes per record and position, so a wrong piece shows.
    const data = new Uint8Array(lengthBytes).map((_, at) => (spec.fill + lsn * 31 + at + (at >> 9) * 17) & 0xff);
    return { lsn, type: "write", epoch: lsn, device: spec.device, seq: lsn, offset, lengthBytes, flags: 0, data };
  });
}

function blankImages(seed: number): Map<string, Uint8Array> {
  return new Map(["d0", "d1"].map((name, index) => [name, new Uint8Array(deviceBlocks * block).map((_, at) => (seed + at * (index + 3)) & 0xff)]));
}

/** The reference: each record in LSN order. */
function applyRecords(images: Map<string, Uint8Array>, records: readonly WrlRecord[]): void {
  for (const record of records) {
    const image = images.get(record.device as string)!;
    if (record.type === "write") image.set(record.data, record.offset);
    else if (record.type === "zero" || record.type === "trim") image.fill(0, record.offset, record.offset + record.lengthBytes);
  }
}

/** Applies a shipment's records in REVERSE order (any order must do: extents never overlap). */
function applyShipment(images: Map<string, Uint8Array>, message: ShipMessage, payload: Uint8Array): void {
  const data = shipRecordData(message, payload);
  for (let index = message.records.length - 1; index >= 0; index -= 1) {
    const record = message.records[index]!;
    const image = images.get(record.device)!;
    if (record.flags === recordFlags.zero) image.fill(0, record.offset, record.offset + record.length);
    else image.set(data[index]!, record.offset);
  }
}

/** Through the real frame codec: the decoder validates it (throws if not). */
function roundTrip(message: ShipMessage, payload: Uint8Array): { message: ShipMessage; payload: Uint8Array } {
  const frame = decodeFrame(encodeFrameBytes(message, payload));
  return { message: frame.message as ShipMessage, payload: frame.payload };
}

function coalesce(records: readonly WrlRecord[], limits: ShipmentLimits = defaultShipmentLimits) {
  const coalescer = new Coalescer(target, limits);
  let taken = 0;
  for (const record of records) {
    if (coalescer.add(record) !== "added") break;
    taken += 1;
  }
  return { coalescer, taken, shipment: coalescer.build() };
}

describe("Coalescer", () => {
  test("property: applying the coalesced shipment (decoded, in any order) to any image equals applying the records in LSN order", () => {
    const seed = Number(process.env.STAGING_PROPERTY_SEED ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`[coalesce] fast-check seed=${seed}; replay with: STAGING_PROPERTY_SEED=${seed} node_modules/.bin/bun test tests/staging/coalesce.test.ts`);
    fc.assert(
      fc.property(fc.array(specArb, { minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 1000 }), (specs, imageSeed, firstLsn) => {
        const records = recordsOf(specs, firstLsn);
        const { taken, shipment, coalescer } = coalesce(records);
        expect(taken).toBe(records.length);
        const decoded = roundTrip(shipment.message, shipment.payload);
        expect(decoded.message.coalesced).toBe(true);
        expect(decoded.message.firstLsn).toBe(firstLsn);
        expect(decoded.message.lastLsn).toBe(firstLsn + records.length - 1);
        const expected = blankImages(imageSeed);
        applyRecords(expected, records);
        const actual = blankImages(imageSeed);
        applyShipment(actual, decoded.message, decoded.payload);
        expect(actual).toEqual(expected);
        // Never more bytes than the records carried.
        expect(shipment.payload.length).toBe(coalescer.bytesOut);
        expect(coalescer.bytesOut).toBeLessThanOrEqual(coalescer.bytesIn);
      }),
      { seed, numRuns: 300 },
    );
  });

  test("property: a span cut into parts of one frame each: ranges chain from first to last LSN, every extent in its part's range, each part a valid frame within the limits, all parts (any order) = the records", () => {
    const seed = Number(process.env.STAGING_PROPERTY_SEED ?? Math.floor(Math.random() * 2 ** 31));
    let multiPart = 0;
    console.log(`[coalesce parts] fast-check seed=${seed}; replay with: STAGING_PROPERTY_SEED=${seed} node_modules/.bin/bun test tests/staging/coalesce.test.ts`);
    fc.assert(
      fc.property(fc.array(specArb, { minLength: 1, maxLength: 60 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 16, max: 40 }), fc.integer({ min: 3, max: 12 }), (specs, imageSeed, firstLsn, partBlocks, recordsMax) => {
        const records = recordsOf(specs, firstLsn);
        const limits = { payloadBytesMax: partBlocks * block, recordsMax, headerBytesMax: 60_000 };
        const coalescer = new Coalescer(target, limits, 64 * deviceBlocks * block);
        for (const record of records) expect(coalescer.add(record)).toBe("added");
        const parts = coalescer.buildParts();
        if (parts === undefined) {
          // Only when one record's pieces alone overflow a part: more pieces of one LSN than recordsMax.
          const pieces = new Map<number, number>();
          for (const record of coalescer.build().message.records) pieces.set(record.lsn, (pieces.get(record.lsn) ?? 0) + 1);
          expect(Math.max(...pieces.values())).toBeGreaterThan(recordsMax);
          return;
        }
        if (parts.length > 1) multiPart += 1;
        let expectedFirst = firstLsn;
        const actual = blankImages(imageSeed);
        for (const [index, part] of [...parts.entries()].reverse()) {
          const decoded = roundTrip(part.message, part.payload);
          expect(decoded.message.spanContinues).toBe(index + 1 < parts.length ? true : undefined);
          expect(part.payload.length).toBeLessThanOrEqual(limits.payloadBytesMax);
          expect(part.message.records.length).toBeLessThanOrEqual(recordsMax);
          applyShipment(actual, decoded.message, decoded.payload);
        }
        for (const part of parts) {
          expect(part.message.firstLsn).toBe(expectedFirst);
          for (const record of part.message.records) expect(record.lsn >= part.message.firstLsn && record.lsn <= part.message.lastLsn).toBe(true);
          expectedFirst = part.message.lastLsn + 1;
        }
        expect(expectedFirst).toBe(firstLsn + records.length);
        const expected = blankImages(imageSeed);
        applyRecords(expected, records);
        expect(actual).toEqual(expected);
      }),
      { seed, numRuns: 300 },
    );
    expect(multiPart).toBeGreaterThan(30);
  });

  test("parts: a span that fits one frame is one part (no spanContinues); one record cut into more pieces than a part takes gives no parts (shipped as it is)", () => {
    const small = new Coalescer(target, defaultShipmentLimits, 1 << 20);
    for (const record of recordsOf([{ kind: "write", device: "d0", startBlock: 0, blocks: 8, fill: 1 }, { kind: "write", device: "d0", startBlock: 2, blocks: 2, fill: 2 }])) small.add(record);
    const one = small.buildParts()!;
    expect(one).toHaveLength(1);
    expect(one[0]!.message.spanContinues).toBeUndefined();
    // LSN 1 writes 16 blocks; LSNs 2..6 punch holes in it: LSN 1 ends in 6 pieces, a part takes 4 records.
    const holes: Spec[] = [{ kind: "write", device: "d0", startBlock: 0, blocks: 16, fill: 1 }, ...[1, 4, 7, 10, 13].map((startBlock): Spec => ({ kind: "write", device: "d0", startBlock, blocks: 1, fill: 9 }))];
    const punched = new Coalescer(target, { payloadBytesMax: 64 * block, recordsMax: 4, headerBytesMax: 60_000 }, 1 << 20);
    for (const record of recordsOf(holes)) expect(punched.add(record)).toBe("added");
    expect(punched.buildParts()).toBeUndefined();
  });

  test("overwrites shrink the shipment: a write split by a later one keeps both ends, zeros carry no bytes", () => {
    const records = recordsOf([
      { kind: "write", device: "d0", startBlock: 0, blocks: 8, fill: 1 },
      { kind: "write", device: "d0", startBlock: 2, blocks: 2, fill: 2 },
      { kind: "zero", device: "d0", startBlock: 6, blocks: 4, fill: 0 },
      { kind: "write", device: "d0", startBlock: 0, blocks: 1, fill: 3 },
    ]);
    const { shipment } = coalesce(records);
    expect(shipment.message.records.map((record) => [record.lsn, record.offset / block, record.length / block, record.flags])).toEqual([
      [4, 0, 1, 0],
      [1, 1, 1, 0],
      [2, 2, 2, 0],
      [1, 4, 2, 0],
      [3, 6, 4, recordFlags.zero],
    ]);
    expect(shipment.payload.length).toBe(6 * block);
    expect(shipment.message.devices).toEqual([{ name: "d0", sizeBytes: deviceBlocks * block }]);
  });

  test("resync data, a resyncEnd and a verify probe end the span before them", () => {
    for (const [type, flags] of [["resync", 0], ["marker", recordFlags.resyncEnd], ["marker", recordFlags.verify | (12 << 16)]] as const) {
      const coalescer = new Coalescer(target, defaultShipmentLimits);
      expect(coalescer.add(recordsOf([{ kind: "write", device: "d0", startBlock: 0, blocks: 1, fill: 1 }])[0]!)).toBe("added");
      const stop: WrlRecord = { lsn: 2, type, epoch: 2, device: "d0", seq: 2, offset: 0, lengthBytes: type === "resync" ? block : 4096, flags, data: new Uint8Array(type === "resync" ? block : 32) };
      expect(coalescer.add(stop)).toBe("stop");
      expect(coalescer.build().message.lastLsn).toBe(1);
    }
  });

  test("the shipment bounds hold: payload, records and header", () => {
    const specs: Spec[] = Array.from({ length: 30 }, (_, index) => ({ kind: "write", device: "d0", startBlock: index * 2, blocks: 1, fill: index + 1 }));
    const records = recordsOf(specs);
    const { taken, shipment } = coalesce(records, { payloadBytesMax: 10 * block, recordsMax: 1000, headerBytesMax: 60_000 });
    expect(taken).toBe(10);
    expect(shipment.payload.length).toBe(10 * block);
    const few = coalesce(records, { payloadBytesMax: 1 << 20, recordsMax: 7, headerBytesMax: 60_000 });
    expect(few.shipment.message.records.length).toBeLessThanOrEqual(7);
    // Rewriting the same block again and again never fills the shipment.
    const same = recordsOf(Array.from({ length: 50 }, (_, index) => ({ kind: "write", device: "d1", startBlock: 3, blocks: 1, fill: index + 1 })));
    const rewrites = coalesce(same, { payloadBytesMax: 2 * block, recordsMax: 4, headerBytesMax: 60_000 });
    expect(rewrites.taken).toBe(50);
    expect(rewrites.shipment.message.records).toHaveLength(1);
    expect(rewrites.shipment.message.records[0]!.lsn).toBe(50);
  });
});

describe("coalescing span policy", () => {
  const base = { mode: "auto" as const, replicaAccepts: true, lagBytes: 0, lagSeconds: 0, rpoState: "ok" as const, shipmentBytesMax: 2 << 20, lagBytesMin: 16 << 20, spanBytesMax: 64 << 20 };

  test("off, or a replica that does not take them: never", () => {
    expect(coalesceSpanBytes({ ...base, mode: "off", lagBytes: 1 << 30, rpoState: "missed" })).toBe(0);
    expect(coalesceSpanBytes({ ...base, replicaAccepts: false, lagBytes: 1 << 30, rpoState: "missed" })).toBe(0);
  });

  test("the link keeps up (lag under the threshold, RPO ok): records go as they are", () => {
    expect(coalesceSpanBytes({ ...base, lagBytes: 0 })).toBe(0);
    expect(coalesceSpanBytes({ ...base, lagBytes: (16 << 20) - 1 })).toBe(0);
    expect(coalesceSpanBytes({ ...base, lagBytes: (16 << 20) - 1, lagSeconds: 0.99 })).toBe(0);
  });

  test("the link does not keep up (the oldest record waited a second): coalesce below the byte threshold", () => {
    expect(coalesceSpanBytes({ ...base, lagBytes: 1 << 20, lagSeconds: 1 })).toBe(4 << 20);
    expect(coalesceSpanBytes({ ...base, lagBytes: 12 << 20, lagSeconds: 3 })).toBe(12 << 20);
    expect(coalesceSpanBytes({ ...base, lagBytes: 12 << 20, lagSeconds: 0.5, lagSecondsMin: 0.5 })).toBe(12 << 20);
    // Nothing left to ship: nothing to coalesce, however old the last answer.
    expect(coalesceSpanBytes({ ...base, lagBytes: 0, lagSeconds: 5 })).toBe(0);
    fc.assert(fc.property(fc.nat(2 ** 40), fc.double({ min: 0, max: 1e4, noNaN: true }), fc.double({ min: 0, max: 1e4, noNaN: true }), (lagBytes, a, b) => coalesceSpanBytes({ ...base, lagBytes, lagSeconds: Math.min(a, b) }) <= coalesceSpanBytes({ ...base, lagBytes, lagSeconds: Math.max(a, b) })));
  });

  test("a relay window full in the last second: behind, coalesce below both thresholds (a burst from its first shipments on)", () => {
    expect(coalesceSpanBytes({ ...base, lagBytes: 1 << 20, windowFullRecently: true })).toBe(4 << 20);
    expect(coalesceSpanBytes({ ...base, lagBytes: 1 << 20, windowFullRecently: false })).toBe(0);
    expect(coalesceSpanBytes({ ...base, lagBytes: 0, windowFullRecently: true })).toBe(0);
    expect(coalesceSpanBytes({ ...base, mode: "off", lagBytes: 1 << 20, windowFullRecently: true })).toBe(0);
  });

  test("behind: the span grows with the lag, between two shipments and the maximum", () => {
    expect(coalesceSpanBytes({ ...base, lagBytes: 16 << 20 })).toBe(16 << 20);
    expect(coalesceSpanBytes({ ...base, lagBytes: 40 << 20 })).toBe(40 << 20);
    expect(coalesceSpanBytes({ ...base, lagBytes: 1 << 30 })).toBe(64 << 20);
    expect(coalesceSpanBytes({ ...base, lagBytesMin: 1, lagBytes: 10 })).toBe(4 << 20);
    fc.assert(fc.property(fc.nat(2 ** 40), fc.nat(2 ** 40), (a, b) => coalesceSpanBytes({ ...base, lagBytes: Math.min(a, b) }) <= coalesceSpanBytes({ ...base, lagBytes: Math.max(a, b) })));
  });

  test("the RPO target at risk or missed: the largest span, whatever the lag", () => {
    expect(coalesceSpanBytes({ ...base, rpoState: "at-risk" })).toBe(64 << 20);
    expect(coalesceSpanBytes({ ...base, rpoState: "missed" })).toBe(64 << 20);
  });

  test("--coalesce off|auto; anything else is a usage error with a hint", () => {
    expect(parseCoalesce("auto")).toEqual({ mode: "auto" });
    expect(parseCoalesce("OFF")).toEqual({ mode: "off" });
    expect(() => parseCoalesce("always")).toThrow(/--coalesce always/);
  });
});
