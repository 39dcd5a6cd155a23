/**
 * The wire format of coalescing (docs/pipeline.md "Coalesced shipments"): resumeAck.acceptsCoalesced
 * and ship.coalesced, validated strictly — extents ascend without overlap per device, only data and
 * ZERO records, LSNs inside the span, nothing empty; without the mark, LSNs must still rise; a span
 * part's ship.spanContinues and the replica's shipAck.held.
 */
import { describe, expect, test } from "bun:test";
import { decodeFrame, encodeFrame, encodeFrameBytes } from "../../src/protocol/frame.ts";
import { recordFlags, type Message, type ShipMessage, type ShipRecord } from "../../src/protocol/messages.ts";
import { codeOf } from "./helpers.ts";

const uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
const record = (lsn: number, device: string, offset: number, length: number, flags = 0): ShipRecord => ({ lsn, epoch: lsn, device, offset, length, flags });
const dataBytes = (records: ShipRecord[]) => new Uint8Array(records.reduce((sum, entry) => sum + (entry.flags === 0 ? entry.length : 0), 0));

function span(records: ShipRecord[], extra: Partial<ShipMessage> = {}): ShipMessage {
  return { type: "ship", wrl: "w0", wrlUuid: uuid, firstLsn: 10, lastLsn: 20, records, coalesced: true, ...extra };
}

const encodes = (message: ShipMessage) => codeOf(() => encodeFrame(message, dataBytes(message.records)));

describe("coalesced shipments on the wire", () => {
  test("a valid span round-trips: LSNs in any order, split extents of one record, two devices interleaved", () => {
    const records = [record(20, "a", 0, 512), record(12, "a", 512, 1024), record(12, "b", 0, 4096, recordFlags.zero), record(15, "a", 4096, 512), record(10, "b", 8192, 512)];
    const message = span(records);
    const frame = decodeFrame(encodeFrameBytes(message, dataBytes(records)));
    expect(frame.message).toEqual(message);
  });

  test("overlapping or descending extents of a device, other kinds, LSNs outside the span, empty extents are refused", () => {
    expect(encodes(span([record(11, "a", 0, 1024), record(12, "a", 512, 512)]))).toBe("PROTO_BAD_FIELD");
    expect(encodes(span([record(11, "a", 4096, 512), record(12, "a", 0, 512)]))).toBe("PROTO_BAD_FIELD");
    expect(encodes(span([record(11, "a", 0, 512, recordFlags.resync)]))).toBe("PROTO_BAD_FIELD");
    expect(encodes(span([record(11, "a", 0, 0, recordFlags.resyncEnd)]))).toBe("PROTO_BAD_FIELD");
    expect(encodes(span([record(9, "a", 0, 512)]))).toBe("PROTO_BAD_FIELD");
    expect(encodes(span([record(21, "a", 0, 512)]))).toBe("PROTO_BAD_FIELD");
    expect(encodes(span([record(11, "a", 0, 0, recordFlags.zero)]))).toBe("PROTO_BAD_FIELD");
    // Adjacent extents are fine.
    expect(encodes(span([record(11, "a", 0, 512), record(11, "a", 512, 512)]))).toBe("none");
  });

  test("the mark is `true` or absent; without it LSNs must rise as before", () => {
    expect(encodes({ ...span([record(11, "a", 0, 512)]), coalesced: false as unknown as true })).toBe("PROTO_BAD_FIELD");
    expect(encodes({ ...span([record(11, "a", 0, 512)]), coalesced: 1 as unknown as true })).toBe("PROTO_BAD_FIELD");
    const unmarked = span([record(12, "a", 0, 512), record(11, "a", 4096, 512)]);
    delete unmarked.coalesced;
    expect(encodes(unmarked)).toBe("PROTO_BAD_FIELD");
  });

  test("resumeAck.acceptsCoalesced: a boolean, optional (older replicas leave it out)", () => {
    const ack: Message = { type: "resumeAck", wrl: "w0", wrlUuid: uuid, appliedLsn: 3, devices: [], acceptsCoalesced: true };
    expect(decodeFrame(encodeFrameBytes(ack)).message).toEqual(ack);
    const without: Message = { type: "resumeAck", wrl: "w0", wrlUuid: uuid, appliedLsn: 3, devices: [] };
    expect(decodeFrame(encodeFrameBytes(without)).message).toEqual(without);
    expect(codeOf(() => encodeFrame({ ...ack, acceptsCoalesced: "yes" } as unknown as Message))).toBe("PROTO_BAD_FIELD");
  });

  test("ship.spanContinues only on a coalesced shipment, `true` or absent; shipAck.held `true` or absent", () => {
    const part = span([record(11, "a", 0, 512)], { spanContinues: true });
    expect(decodeFrame(encodeFrameBytes(part, dataBytes(part.records))).message).toEqual(part);
    expect(encodes({ ...part, spanContinues: false as unknown as true })).toBe("PROTO_BAD_FIELD");
    const plain: ShipMessage = { type: "ship", wrl: "w0", wrlUuid: uuid, firstLsn: 11, lastLsn: 11, records: [record(11, "a", 0, 512)], spanContinues: true };
    expect(encodes(plain)).toBe("PROTO_BAD_FIELD");
    const held: Message = { type: "shipAck", wrl: "w0", appliedLsn: 9, held: true };
    expect(decodeFrame(encodeFrameBytes(held)).message).toEqual(held);
    expect(codeOf(() => encodeFrame({ ...held, held: 1 } as unknown as Message))).toBe("PROTO_BAD_FIELD");
  });
});
