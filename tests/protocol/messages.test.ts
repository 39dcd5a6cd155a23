/**
 * What the pipeline's messages mean beyond their shape: zero writes and ZERO records travel
 * without payload, a shipment's payload splits back into each record's data, WRL uuids have one
 * form, and the largest messages the bounds allow fit a frame.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { frameSizeBytesMax, protocolDevicesMax, writePayloadSizeBytesMax, zeroRecordBytesMax } from "../../src/constants.ts";
import { ProtocolError } from "../../src/protocol/errors.ts";
import { decodeFrame, encodeFrame, encodeFrameBytes } from "../../src/protocol/frame.ts";
import { recordFlags, shipRecordData, shipRecordPayloadBytes, type Message, type ShipMessage } from "../../src/protocol/messages.ts";
import { messageArbitraries, propertySeed } from "./arbitraries.ts";
import { codeOf } from "./helpers.ts";

const seed = propertySeed();
console.log(`messages.test.ts: fast-check seed ${seed} (replay: FC_SEED=${seed} node_modules/.bin/bun test tests/protocol/messages.test.ts)`);

const uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";


describe("zero writes and ZERO records", () => {
  test("a 1 GiB zero write is a small frame without payload, and decodes as sent", () => {
    const write: Message = { type: "write", reqId: 3, device: "sda", wrl: "w0", epoch: 9, offset: 2 ** 40, length: zeroRecordBytesMax, zero: true };
    const chunks = encodeFrame(write);
    expect(chunks.length).toBe(1);
    expect(chunks[0]!.length).toBeLessThan(200);
    const frame = decodeFrame(chunks[0]!);
    expect(frame.message).toEqual(write);
    expect(frame.payload.length).toBe(0);
  });

  test("a data write still carries exactly `length` bytes and stays within 8 MiB", () => {
    const write = { type: "write", reqId: 1, device: "sda", wrl: "w0", epoch: 0, offset: 0, length: 4, zero: false } as const;
    expect(codeOf(() => encodeFrame(write, new Uint8Array(4)))).toBe("none");
    expect(codeOf(() => encodeFrame(write))).toBe("PROTO_PAYLOAD_LENGTH");
    expect(codeOf(() => encodeFrame({ ...write, length: writePayloadSizeBytesMax + 1 }, new Uint8Array(writePayloadSizeBytesMax + 1)))).toBe("PROTO_BAD_FIELD");
    // The larger bound is for zero writes only.
    expect(codeOf(() => encodeFrame({ ...write, length: writePayloadSizeBytesMax + 1, zero: true }))).toBe("none");
  });

  test("a shipment's payload is its data records' bytes only; shipRecordData gives each record its own", () => {
    const first = new Uint8Array(4096).fill(1);
    const second = new Uint8Array(512).fill(2);
    const ship: ShipMessage = {
      type: "ship", wrl: "w0", wrlUuid: uuid, firstLsn: 10, lastLsn: 13,
      records: [
        { lsn: 10, epoch: 1, device: "sda", offset: 0, length: first.length, flags: 0 },
        { lsn: 11, epoch: 2, device: "sda", offset: 8192, length: zeroRecordBytesMax, flags: recordFlags.zero },
        { lsn: 13, epoch: 2, device: "sdb", offset: 512, length: second.length, flags: 0 },
      ],
      devices: [{ name: "sda", sizeBytes: 2 ** 31 }, { name: "sdb", sizeBytes: 2 ** 20 }],
    };
    const payload = new Uint8Array([...first, ...second]);
    const frame = decodeFrame(encodeFrameBytes(ship, payload));
    expect(frame.message).toEqual(ship);
    const data = shipRecordData(frame.message as ShipMessage, frame.payload);
    expect(data.map((bytes) => Buffer.from(bytes))).toEqual([Buffer.from(first), Buffer.alloc(0), Buffer.from(second)]);
    // Counting the ZERO record's length would ask for a 1 GiB payload.
    expect(codeOf(() => encodeFrame(ship, new Uint8Array(first.length + second.length + 1)))).toBe("PROTO_PAYLOAD_LENGTH");
  });

  test("shipRecordData: the data records, concatenated, are the payload (property)", () => {
    fc.assert(
      fc.property(messageArbitraries.ship, ({ message, payload }) => {
        const ship = message as ShipMessage;
        const data = shipRecordData(ship, payload);
        expect(data.length).toBe(ship.records.length);
        for (const [index, record] of ship.records.entries()) {
          expect(data[index]!.length).toBe(shipRecordPayloadBytes(record));
        }
        expect(Buffer.concat(data.map((bytes) => Buffer.from(bytes))).equals(Buffer.from(payload))).toBe(true);
      }),
      { seed, numRuns: 300 },
    );
  });
});

describe("resync and verify writes and records", () => {
  const write = { type: "write" as const, reqId: 1, device: "sda", wrl: "w0", epoch: 3, offset: 8192 };

  test("a verify probe carries one digest per block; wrong block sizes and lengths are refused", () => {
    const probe = { ...write, kind: "verify" as const, length: 16384, verifyBlockBytes: 4096 };
    expect(codeOf(() => encodeFrame(probe, new Uint8Array(4 * 32)))).toBe("none");
    expect(codeOf(() => encodeFrame(probe, new Uint8Array(16384)))).toBe("PROTO_PAYLOAD_LENGTH");
    expect(codeOf(() => encodeFrame({ ...probe, verifyBlockBytes: 3000 }, new Uint8Array(4 * 32)))).toBe("PROTO_BAD_FIELD");
    expect(codeOf(() => encodeFrame({ ...probe, length: 5000 }, new Uint8Array(32)))).toBe("PROTO_BAD_FIELD");
    expect(codeOf(() => encodeFrame({ ...write, length: 4, verifyBlockBytes: 4096 }, new Uint8Array(4)))).toBe("PROTO_BAD_FIELD");
  });

  test("resyncEnd is empty; a kind never comes with zero", () => {
    expect(codeOf(() => encodeFrame({ ...write, offset: 0, length: 0, kind: "resyncEnd" }))).toBe("none");
    expect(codeOf(() => encodeFrame({ ...write, length: 512, kind: "resyncEnd" }))).toBe("PROTO_BAD_FIELD");
    expect(codeOf(() => encodeFrame({ ...write, length: 512, kind: "resync", zero: true }))).toBe("PROTO_BAD_FIELD");
  });

  test("a ship record with two kinds, or a verify record with an impossible block size, is refused", () => {
    const ship = { type: "ship" as const, wrl: "w0", wrlUuid: "5a1f0c3e-7b2d-4e8f-9a6b-1c0d2e3f4a5b", firstLsn: 1, lastLsn: 1 };
    const record = { lsn: 1, epoch: 1, device: "sda", offset: 0, length: 4096 };
    expect(codeOf(() => encodeFrame({ ...ship, records: [{ ...record, flags: recordFlags.zero | recordFlags.resync }] }))).toBe("PROTO_BAD_FIELD");
    expect(codeOf(() => encodeFrame({ ...ship, records: [{ ...record, flags: recordFlags.verify }] }, new Uint8Array(4096 * 32)))).toBe("PROTO_BAD_FIELD");
    expect(codeOf(() => encodeFrame({ ...ship, records: [{ ...record, flags: recordFlags.resyncEnd }] }))).toBe("PROTO_BAD_FIELD");
  });
});

describe("WRL uuids", () => {
  test("an upper-case uuid decodes lower-case, the one form peers compare", () => {
    const upper = uuid.toUpperCase();
    const resume = decodeFrame(encodeFrameBytes({ type: "resume", wrl: "w0", wrlUuid: upper })).message;
    expect(resume).toEqual({ type: "resume", wrl: "w0", wrlUuid: uuid });
    const ack = decodeFrame(encodeFrameBytes({ type: "attachAck", device: "sda", wrl: "w0", accepted: true, wrlUuid: upper })).message;
    expect(ack).toEqual({ type: "attachAck", device: "sda", wrl: "w0", accepted: true, wrlUuid: uuid });
  });

  test("a refused attach carries its reason, with the new staging codes", () => {
    const refusal: Message = { type: "attachAck", device: "sda", wrl: "w0", accepted: false, error: { code: "DEVICE_BUSY", message: "client n2 holds sda in w0", hint: "Detach it there first" } };
    expect(decodeFrame(encodeFrameBytes(refusal)).message).toEqual(refusal);
    expect(codeOf(() => encodeFrame({ type: "writeNack", reqId: 1, code: "DEVICE_TOO_BIG", message: "" }))).toBe("none");
    expect(codeOf(() => encodeFrame({ type: "shipNack", wrl: "w0", code: "WRL_MISMATCH", message: "" }))).toBe("none");
    expect(codeOf(() => encodeFrame({ type: "shipNack", wrl: "w0", code: "DEVICE_TOO_SMALL", message: "" }))).toBe("none");
  });
});

describe("largest messages the bounds allow", () => {
  test("a resumeAck listing protocolDevicesMax devices with 64-character names fits a header", () => {
    const devices = Array.from({ length: protocolDevicesMax }, (_, index) => ({ name: `${String(index).padStart(4, "0")}${"d".repeat(60)}`, sizeBytes: 2 ** 52 }));
    const ack: Message = { type: "resumeAck", wrl: "w0", wrlUuid: uuid, appliedLsn: 2 ** 50, devices };
    expect(decodeFrame(encodeFrameBytes(ack)).message).toEqual(ack);
  });

  test("an 8 MiB restoreData fits a frame and its payload arrives byte-equal", () => {
    const payload = new Uint8Array(writePayloadSizeBytesMax).map((_, index) => (index * 31) & 255);
    const message: Message = { type: "restoreData", device: "d".repeat(256), offset: 2 ** 52, length: payload.length };
    const bytes = encodeFrameBytes(message, payload);
    expect(bytes.length - 4).toBeLessThanOrEqual(frameSizeBytesMax);
    const frame = decodeFrame(bytes);
    expect(frame.message).toEqual(message);
    expect(Buffer.from(frame.payload).equals(Buffer.from(payload))).toBe(true);
  });

  test("restoreEnd keeps the CRC32C as sent; one above 32 bits or negative is refused", () => {
    expect(decodeFrame(encodeFrameBytes({ type: "restoreEnd", device: "sda", sizeBytes: 0, crc32c: 0xe3069283 })).message).toEqual({ type: "restoreEnd", device: "sda", sizeBytes: 0, crc32c: 0xe3069283 });
    expect(codeOf(() => encodeFrame({ type: "restoreEnd", device: "sda", sizeBytes: 0, crc32c: 2 ** 32 }))).toBe("PROTO_BAD_FIELD");
    expect(codeOf(() => encodeFrame({ type: "restoreEnd", device: "sda", sizeBytes: 0, crc32c: -1 }))).toBe("PROTO_BAD_FIELD");
  });
});
