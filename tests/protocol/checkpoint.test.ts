/**
 * Checkpoint records on the wire: a checkpoint write carries its label in the header, a ship
 * record carries it as its payload (size in flags bits 16..23), and a bad label is a typed
 * protocol error at decode, never a crash further in.
 */
import { describe, expect, test } from "bun:test";
import { checkpointLabelOf, checkpointLabelPayload, isCheckpointLabel } from "../../src/protocol/checkpoint-label.ts";
import { decodeFrame, encodeFrameBytes } from "../../src/protocol/frame.ts";
import { checkpointFlags, checkpointLabelBytesOf, recordFlags, shipRecordData, shipRecordPayloadBytes, type Message, type ShipMessage } from "../../src/protocol/messages.ts";
import { compressShipment, openShipment } from "../../src/protocol/ship-codec.ts";
import { frameOfFields } from "./arbitraries.ts";
import { codeOf } from "./helpers.ts";

const uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
const checkpointWrite = { type: "write", kind: "checkpoint", label: "before-x", reqId: 7, device: "disk0", wrl: "w0", epoch: 3, offset: 0, length: 0 } as const;

const rawFrame = (fields: object) => frameOfFields(fields);

describe("checkpoint flags", () => {
  test("the label's byte count travels in bits 16..23 and is the record's payload size", () => {
    const flags = checkpointFlags(8);
    expect(flags & 0xffff).toBe(recordFlags.checkpoint);
    expect(checkpointLabelBytesOf(flags)).toBe(8);
    expect(shipRecordPayloadBytes({ flags, length: 0 })).toBe(8);
    expect(checkpointLabelBytesOf(checkpointFlags(64))).toBe(64);
  });

  test("labels follow the name rules: 1..64 letters, digits, . _ -, starting with a letter or digit", () => {
    for (const good of ["a", "before-x", "nightly_2026.01.31", "x".repeat(64)]) expect(isCheckpointLabel(good)).toBe(true);
    for (const bad of ["", "-x", ".x", "a b", "x".repeat(65), "é", "a/b", "a\u0000"]) expect(isCheckpointLabel(bad)).toBe(false);
    expect(checkpointLabelOf(checkpointLabelPayload("before-x"))).toBe("before-x");
    expect(checkpointLabelOf(new Uint8Array([0xff, 0xfe]))).toBeUndefined(); // not UTF-8
  });
});

describe("checkpoint writes (client -> staging)", () => {
  test("round-trip: kind checkpoint with its label, no payload", () => {
    const frame = decodeFrame(encodeFrameBytes(checkpointWrite));
    expect(frame.message).toEqual(checkpointWrite);
    expect(frame.payload.length).toBe(0);
  });

  test("a bad label, a missing label, a range or a stray label is PROTO_BAD_FIELD", () => {
    expect(codeOf(() => encodeFrameBytes({ ...checkpointWrite, label: "has space" }))).toBe("PROTO_BAD_FIELD");
    expect(codeOf(() => encodeFrameBytes({ ...checkpointWrite, label: "x".repeat(65) }))).toBe("PROTO_BAD_FIELD");
    const { label: _label, ...unlabelled } = checkpointWrite;
    expect(codeOf(() => encodeFrameBytes(unlabelled as Message))).toBe("PROTO_BAD_FIELD");
    expect(codeOf(() => encodeFrameBytes({ ...checkpointWrite, offset: 4096 }))).toBe("PROTO_BAD_FIELD");
    expect(codeOf(() => encodeFrameBytes({ ...checkpointWrite, length: 4096 }, new Uint8Array(4096)))).toBe("PROTO_BAD_FIELD");
    expect(codeOf(() => encodeFrameBytes({ type: "write", reqId: 1, device: "d", wrl: "w", epoch: 1, offset: 0, length: 4, label: "x" } as Message, new Uint8Array(4)))).toBe("PROTO_BAD_FIELD");
  });

  test("decoding a frame whose label breaks the rules throws a ProtocolError, not a crash", () => {
    const frame = rawFrame({ ...checkpointWrite, label: "../../etc" });
    expect(codeOf(() => decodeFrame(frame))).toBe("PROTO_BAD_FIELD");
    expect(codeOf(() => decodeFrame(rawFrame({ ...checkpointWrite, label: 42 })))).toBe("PROTO_BAD_FIELD");
  });
});

describe("checkpoint ship records (relay -> replica)", () => {
  const label = checkpointLabelPayload("before-x");
  const data = new Uint8Array(4096).fill(9);
  const ship: ShipMessage = {
    type: "ship", wrl: "w0", wrlUuid: uuid, firstLsn: 5, lastLsn: 6,
    records: [
      { lsn: 5, epoch: 1, device: "disk0", offset: 0, length: 4096, flags: 0 },
      { lsn: 6, epoch: 2, device: "disk0", offset: 0, length: 0, flags: checkpointFlags(label.length) },
    ],
  };
  const payload = new Uint8Array([...data, ...label]);

  test("round-trip: the label is the record's payload, shipRecordData hands it back", () => {
    const frame = decodeFrame(encodeFrameBytes(ship, payload));
    expect(frame.message).toEqual(ship);
    const opened = openShipment({ message: frame.message as ShipMessage, payload: frame.payload });
    const parts = shipRecordData(opened.message, opened.payload);
    expect(checkpointLabelOf(parts[1]!)).toBe("before-x");
    expect(Buffer.from(parts[0]!)).toEqual(Buffer.from(data));
  });

  test("compressed, the label survives and is checked once opened", async () => {
    const compressed = await compressShipment({ message: ship, payload: new Uint8Array([...new Uint8Array(4096), ...label]) }, 1);
    expect(compressed).toBeDefined();
    const opened = openShipment(compressed!);
    expect(checkpointLabelOf(shipRecordData(opened.message, opened.payload)[1]!)).toBe("before-x");
  });

  test("a checkpoint record with a range, no label size or one over 64 bytes is PROTO_BAD_FIELD", () => {
    const withRecord = (record: Partial<ShipMessage["records"][number]>, bytes = payload) => () => encodeFrameBytes({ ...ship, records: [ship.records[0]!, { ...ship.records[1]!, ...record }] }, bytes);
    expect(codeOf(withRecord({ length: 512 }))).toBe("PROTO_BAD_FIELD");
    expect(codeOf(withRecord({ offset: 512 }))).toBe("PROTO_BAD_FIELD");
    expect(codeOf(withRecord({ flags: recordFlags.checkpoint }, data))).toBe("PROTO_BAD_FIELD");
    expect(codeOf(withRecord({ flags: checkpointFlags(65) }, new Uint8Array(4096 + 65)))).toBe("PROTO_BAD_FIELD");
    // Two kinds at once.
    expect(codeOf(withRecord({ flags: checkpointFlags(8) | recordFlags.resyncEnd }))).toBe("PROTO_BAD_FIELD");
  });

  test("a coalesced shipment never carries a checkpoint", () => {
    const coalesced: ShipMessage = { ...ship, coalesced: true };
    expect(codeOf(() => encodeFrameBytes(coalesced, payload))).toBe("PROTO_BAD_FIELD");
  });

  test("a label that is not a valid label (bytes in the payload) is refused when the shipment is opened", async () => {
    const bad = new Uint8Array([...data, ...new TextEncoder().encode("bad labe")]);
    const frame = decodeFrame(encodeFrameBytes(ship, bad)); // sizes are right: the frame decodes
    expect(codeOf(() => openShipment({ message: frame.message as ShipMessage, payload: frame.payload }))).toBe("PROTO_BAD_PAYLOAD");
    const notUtf8 = new Uint8Array([...data, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    expect(codeOf(() => openShipment({ message: ship, payload: notUtf8 }))).toBe("PROTO_BAD_PAYLOAD");
    const compressed = await compressShipment({ message: ship, payload: new Uint8Array([...new Uint8Array(4096), ...new TextEncoder().encode("bad/labe")]) }, 1);
    expect(codeOf(() => openShipment(compressed!))).toBe("PROTO_BAD_PAYLOAD");
  });
});
