/**
 * Coalesced spans too big for one frame, sent as parts (coalesced-apply.ts, ShipMessage.spanContinues):
 * each part but the last is logged and held (shipAck held, appliedLsn unchanged, the device
 * untouched); the last applies the whole span; a part out of turn is refused; a new start drops
 * what was held; a crash anywhere leaves the replica before the span or (redone from the RS-WRL at
 * restart) at its end; parts join an open resync set like any span.
 */
import { describe, expect, test } from "bun:test";
import type { SpanEvent } from "../../src/roles/replica/coalesced-apply.ts";
import { wholeSpans } from "../../src/roles/replica/coalesced-apply.ts";
import type { ReplicaCore } from "../../src/roles/replica/core.ts";
import type { Shipment } from "../../src/roles/staging/shipment.ts";
import { dataRecord, wrlUuid } from "./helpers.ts";
import { all, crashEveryOperation, diskBytes, imageOf, nackCode, setup, span } from "./span-fixture.ts";
import { ackedLsn, coalescedParts, KiB, resyncRecord, resyncEnd, rsWrlCore, send } from "./resync-helpers.ts";

/** Parts of at most 16 KiB and 2 extents: the span above takes several. */
const partLimits = { payloadBytesMax: 16 * KiB, recordsMax: 2, headerBytesMax: 60_000 };


const shipPart = (core: ReplicaCore, part: Shipment) => core.ship(part.message, part.payload);

describe("coalesced spans in parts at the replica", () => {
  const parts = coalescedParts(span, partLimits);

  test("the span takes several parts; each but the last is held (appliedLsn and device unchanged), the last applies the whole span and frees the RS-WRL", async () => {
    expect(parts.length).toBeGreaterThanOrEqual(3);
    const { core, memory, rsWrl } = await rsWrlCore({ disk0: diskBytes });
    expect(ackedLsn(await send(core, setup))).toBe(2);
    for (const part of parts.slice(0, -1)) {
      expect(await shipPart(core, part)).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: 2, held: true });
      expect(memory("disk0").snapshot()).toEqual(imageOf(all, 2));
    }
    expect(rsWrl.info().usedBytes).toBeGreaterThan(0);
    expect(await shipPart(core, parts.at(-1)!)).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: 9 });
    expect(core.appliedLsn(wrlUuid)).toBe(9);
    expect(memory("disk0").snapshot()).toEqual(imageOf(all, 9));
    expect(rsWrl.info().usedBytes).toBe(0);
  });

  test("a part with nothing held to continue is refused LSN_GAP; the span sent again from its first part drops what was held and ends at the end image", async () => {
    const { core, memory } = await rsWrlCore({ disk0: diskBytes });
    expect(ackedLsn(await send(core, setup))).toBe(2);
    expect(nackCode(await shipPart(core, parts[1]!))).toBe("LSN_GAP");
    expect(await shipPart(core, parts[0]!)).toMatchObject({ held: true });
    // A new session: staging resumes at 3 and builds the span anew (here: the same parts again).
    for (const part of parts.slice(0, -1)) expect(await shipPart(core, part)).toMatchObject({ appliedLsn: 2, held: true });
    expect(ackedLsn(await shipPart(core, parts.at(-1)!))).toBe(9);
    expect(memory("disk0").snapshot()).toEqual(imageOf(all, 9));
    // Re-delivery of any part once applied: acked as applied.
    expect(await shipPart(core, parts[0]!)).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: 9 });
  });

  test("records shipped as they are after held parts (staging dropped the span) are applied; the held parts are dropped and never applied", async () => {
    const { core, memory, rsWrl } = await rsWrlCore({ disk0: diskBytes });
    expect(ackedLsn(await send(core, setup))).toBe(2);
    expect(await shipPart(core, parts[0]!)).toMatchObject({ held: true });
    expect(ackedLsn(await send(core, span))).toBe(9);
    expect(memory("disk0").snapshot()).toEqual(imageOf(all, 9));
    const later = [dataRecord(10, "disk0", 0, 4 * KiB), dataRecord(11, "disk0", 2 * KiB, 4 * KiB)];
    const next = coalescedParts(later);
    expect(ackedLsn(await shipPart(core, next[0]!))).toBe(11);
    expect(memory("disk0").snapshot()).toEqual(imageOf([...all, ...later], 11));
    expect(rsWrl.info().usedBytes).toBe(0);
  });

  test("a crash at every device operation while the parts arrive: before the span or at its end, never in between; staging's re-delivery converges", async () => {
    const { completedAt, seen } = await crashEveryOperation(parts, 900);
    console.log(`span-part crash points tried: ${completedAt}; applied LSNs seen after restart: ${[...seen].join(", ")}`);
    expect(completedAt).toBeGreaterThan(parts.length);
    expect(seen).toContain(2);
    expect(seen).toContain(9);
  });

  test("parts arriving while a resync set is open join the set: each acked as logged (not held), applied when the set ends", async () => {
    const { core, memory } = await rsWrlCore({ disk0: diskBytes });
    const before = [dataRecord(1, "disk0", 0, 64 * KiB), resyncRecord(2, "disk0", 128 * KiB, 16 * KiB)];
    expect(ackedLsn(await send(core, before))).toBe(2);
    const spanned = span.map((record) => ({ ...record }));
    for (const part of parts) expect(await shipPart(core, part)).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: part.message.lastLsn });
    expect(core.appliedLsn(wrlUuid)).toBe(1);
    expect(ackedLsn(await send(core, [resyncEnd(10, "disk0")]))).toBe(10);
    expect(memory("disk0").snapshot()).toEqual(imageOf([...before, ...spanned], 10));
  });

  test("wholeSpans: parts chained in RS-WRL order make one span; a missing or incomplete part, or a last part never logged, makes it incomplete or drops it", () => {
    const event = (firstLsn: number, throughLsn: number, continues: boolean | undefined, complete = true, prevLsn = 2): SpanEvent => ({
      kind: "span", wrl: "wrl0", wrlUuid, prevLsn, throughLsn, complete, records: [{ record: { lsn: throughLsn, epoch: 1, device: "disk0", offset: throughLsn * 512, length: 512, flags: 0 }, payload: new Uint8Array(512) }],
      ...(continues === undefined ? {} : { part: { firstLsn, continues } }),
    });
    const whole = wholeSpans([event(3, 4, true), event(5, 7, true), event(8, 9, false)]);
    expect(whole).toHaveLength(1);
    expect(whole[0]).toMatchObject({ prevLsn: 2, throughLsn: 9, complete: true });
    expect(whole[0]!.records.map((entry) => entry.record.lsn)).toEqual([4, 7, 9]);
    expect(wholeSpans([event(3, 4, true), event(8, 9, false)])).toEqual([]); // the middle part is gone
    expect(wholeSpans([event(3, 4, true), event(5, 7, true, false), event(8, 9, false)])[0]).toMatchObject({ complete: false });
    expect(wholeSpans([event(3, 4, true), event(5, 7, true)])[0]).toMatchObject({ throughLsn: 7, complete: false });
    // A span sent again from its start replaces the parts before it; a one-group span stays as it is.
    const again = wholeSpans([event(3, 4, true), event(3, 5, true), event(6, 9, false), event(3, 9, undefined)]);
    expect(again.map((entry) => [entry.throughLsn, entry.complete, entry.records.length])).toEqual([
      [9, true, 2],
      [9, true, 1],
    ]);
  });
});
