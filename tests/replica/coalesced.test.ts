/**
 * Coalesced shipments at the replica (coalesced-apply.ts): only a replica with an RS-WRL says it
 * takes them; a span is logged whole, applied, and only then acked; a crash at any device
 * operation leaves the replica before the span or (after the redo at restart) at its end, never
 * in between; a span arriving while a resync set is open joins the set.
 */
import { describe, expect, test } from "bun:test";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { recordFlags, type ShipMessage } from "../../src/protocol/messages.ts";
import { dataRecord, memoryCore, wrlUuid, zeroRecord, type TestRecord } from "./helpers.ts";
import { all, crashEveryOperation, diskBytes, imageOf, nackCode, setup, span } from "./span-fixture.ts";
import { ackedLsn, coalescedParts, KiB, resyncEnd, resyncRecord, rsWrlCore, send } from "./resync-helpers.ts";


/** The coalesced shipment of `records` (plain data and zero records, consecutive LSNs), as the relay builds it. */
function coalesced(records: TestRecord[]): { message: ShipMessage; payload: Uint8Array } {
  const parts = coalescedParts(records);
  expect(parts).toHaveLength(1);
  return parts[0]!;
}




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
    const { completedAt, seen } = await crashEveryOperation([coalesced(span)], 300);
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
