/**
 * Compressed shipments (src/protocol/ship-codec.ts): the payload round-trips through a real
 * frame, incompressible data travels as it is, and a compressed payload that is corrupted,
 * truncated, a decompression bomb or paired with wrong sizes is refused with a ProtocolError —
 * by the validator (codec fields) or by openShipment (the bytes) — never a crash.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { randomBytes } from "node:crypto";
import { frameSizeBytesMax } from "../../src/constants.ts";
import { ProtocolError } from "../../src/protocol/errors.ts";
import { decodeFrame, encodeFrame, encodeFrameBytes } from "../../src/protocol/frame.ts";
import { recordFlags, shipRecordData, validateMessage, type ShipMessage } from "../../src/protocol/messages.ts";
import { compressShipment, openShipment, type ShipmentFrame } from "../../src/protocol/ship-codec.ts";
import { messageArbitraries, propertySeed } from "./arbitraries.ts";
import { codeOf } from "./helpers.ts";

const seed = propertySeed();
console.log(`ship-codec.test.ts: fast-check seed ${seed} (replay: FC_SEED=${seed} node_modules/.bin/bun test tests/protocol/ship-codec.test.ts)`);

const uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
const KiB = 1024;

/** Blocks of text, zeros and a counter: what file systems write, compressible about 3-50x. */
function compressible(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  const text = new TextEncoder().encode(`block replication line ${seed}: the quick brown fox jumps over the lazy dog\n`);
  for (let position = 0; position < length; position += 1) {
    const block = Math.floor(position / 4096);
    out[position] = block % 3 === 0 ? 0 : block % 3 === 1 ? text[position % text.length]! : (position * 31 + seed) & 0xff;
  }
  return out;
}

/** A shipment of three records: two with data (split as given), a ZERO one between them. */
function shipmentOf(first: Uint8Array, second: Uint8Array): ShipmentFrame {
  const message: ShipMessage = {
    type: "ship", wrl: "w0", wrlUuid: uuid, firstLsn: 5, lastLsn: 7,
    records: [
      { lsn: 5, epoch: 1, device: "d0", offset: 0, length: first.length, flags: 0 },
      { lsn: 6, epoch: 1, device: "d0", offset: 1 << 20, length: 1 << 20, flags: recordFlags.zero },
      { lsn: 7, epoch: 2, device: "d0", offset: 64 * KiB, length: second.length, flags: 0 },
    ],
  };
  return { message, payload: Buffer.concat([first, second]) };
}


/** Through a real frame: encode on the relay's side, decode on the replica's. */
function overTheWire(shipment: ShipmentFrame): ShipmentFrame {
  const frame = decodeFrame(encodeFrameBytes(shipment.message, shipment.payload));
  return { message: frame.message as ShipMessage, payload: frame.payload };
}

describe("compressed shipments", () => {
  test("round trip through a frame: smaller on the wire, the same records and bytes after openShipment", async () => {
    const first = compressible(192 * KiB, 1);
    const second = compressible(40 * KiB, 2);
    const plain = shipmentOf(first, second);
    for (const level of [1, 3, 19]) {
      const packed = (await compressShipment(plain, level))!;
      expect(packed).toBeDefined();
      expect(packed.message).toMatchObject({ codec: "zstd", rawBytes: plain.payload.length, wireBytes: packed.payload.length });
      expect(packed.payload.length * 3).toBeLessThan(plain.payload.length);
      const received = overTheWire(packed);
      const opened = openShipment(received);
      expect(opened.message).toEqual(plain.message); // the codec fields are gone
      expect(Buffer.from(opened.payload).equals(Buffer.from(plain.payload))).toBe(true);
      const [one, zero, two] = shipRecordData(opened.message, opened.payload);
      expect(Buffer.from(one!).equals(Buffer.from(first))).toBe(true);
      expect(zero!.length).toBe(0);
      expect(Buffer.from(two!).equals(Buffer.from(second))).toBe(true);
    }
  });

  test("property: any shipment the protocol allows, compressed when that pays, opens to the same message and bytes", async () => {
    await fc.assert(
      fc.asyncProperty(messageArbitraries.ship, fc.integer({ min: 1, max: 6 }), async ({ message, payload }, level) => {
        const plain = { message: message as ShipMessage, payload };
        const packed = await compressShipment(plain, level);
        if (packed === undefined) {
          // Only when zstd's frame would not be smaller: never for a payload of repeated bytes.
          expect(payload.length === 0 || Bun.zstdCompressSync(payload, { level }).length >= payload.length).toBe(true);
          return;
        }
        const opened = openShipment(overTheWire(packed));
        expect(opened.message).toEqual(overTheWire(plain).message);
        expect(Buffer.from(opened.payload).equals(Buffer.from(payload))).toBe(true);
      }),
      { seed, numRuns: 200 },
    );
  });

  test("random data is not compressed (the shipment travels as it is); a plain shipment opens to itself without a copy", async () => {
    const plain = shipmentOf(new Uint8Array(randomBytes(64 * KiB)), new Uint8Array(randomBytes(8 * KiB)));
    expect(await compressShipment(plain, 1)).toBeUndefined();
    expect(await compressShipment(plain, 19)).toBeUndefined();
    const received = overTheWire(plain);
    const opened = openShipment(received);
    expect(opened).toBe(received);
    expect(opened.payload).toBe(received.payload);
  });

  test("the view of a larger buffer is compressed, not the buffer around it", async () => {
    const buffer = new Uint8Array(256 * KiB).fill(0xee);
    const data = buffer.subarray(64 * KiB, 96 * KiB);
    data.set(compressible(data.length, 5));
    const plain = shipmentOf(data.subarray(0, 16 * KiB), data.subarray(16 * KiB));
    const opened = openShipment(overTheWire((await compressShipment({ message: plain.message, payload: data }, 1))!));
    expect(Buffer.from(opened.payload).equals(Buffer.from(data))).toBe(true);
  });

  test("a corrupted, truncated or extended compressed payload is refused with ProtocolError, never applied", async () => {
    const plain = shipmentOf(compressible(128 * KiB, 3), compressible(16 * KiB, 4));
    const packed = (await compressShipment(plain, 1))!;
    const wire = packed.payload;
    const withPayload = (payload: Uint8Array): ShipmentFrame => ({ message: { ...packed.message, wireBytes: payload.length }, payload });
    // Every single flipped byte: either zstd notices, or the CRC does.
    const flipped: string[] = [];
    for (let index = 0; index < wire.length; index += Math.max(1, Math.floor(wire.length / 97))) {
      const bad = Uint8Array.from(wire);
      bad[index] = bad[index]! ^ 0x5a;
      flipped.push(codeOf(() => openShipment(withPayload(bad))));
    }
    expect(flipped.every((code) => code === "PROTO_BAD_PAYLOAD" || code === "PROTO_PAYLOAD_LENGTH")).toBe(true);
    // Truncated (a frame cut short decodes to fewer bytes, or not at all).
    for (const keep of [wire.length - 1, wire.length >> 1, 9, 1]) {
      expect(["PROTO_PAYLOAD_LENGTH", "PROTO_BAD_PAYLOAD"]).toContain(codeOf(() => openShipment(withPayload(wire.subarray(0, keep)))));
    }
    // Two frames back to back decode to twice the bytes: refused while decoding.
    expect(codeOf(() => openShipment(withPayload(Buffer.concat([wire, wire]))))).toBe("PROTO_PAYLOAD_LENGTH");
    // Not zstd at all.
    expect(codeOf(() => openShipment(withPayload(new Uint8Array(randomBytes(4 * KiB)))))).toBe("PROTO_BAD_PAYLOAD");
    // The right bytes with another CRC.
    expect(codeOf(() => openShipment({ ...packed, message: { ...packed.message, rawCrc32: (packed.message.rawCrc32! + 1) >>> 0 } }))).toBe("PROTO_BAD_PAYLOAD");
  });

  test("a decompression bomb (64 MiB of zeros in a few KiB) is refused without decompressing it all", async () => {
    const bomb = Bun.zstdCompressSync(new Uint8Array(64 * 1024 * KiB), { level: 1 });
    expect(bomb.length).toBeLessThan(16 * KiB);
    const plain = shipmentOf(new Uint8Array(4 * KiB), new Uint8Array(4 * KiB));
    const message: ShipMessage = { ...plain.message, codec: "zstd", rawBytes: 8 * KiB, rawCrc32: 0, wireBytes: bomb.length };
    const received = overTheWire({ message, payload: bomb });
    const rssBefore = process.memoryUsage().rss;
    expect(codeOf(() => openShipment(received))).toBe("PROTO_PAYLOAD_LENGTH");
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(48 * 1024 * KiB);
  });
});

describe("ship codec fields (validator)", () => {
  const plain = shipmentOf(compressible(8 * KiB), compressible(4 * KiB));
  const packedFields = { codec: "zstd", rawBytes: 12 * KiB, rawCrc32: 7, wireBytes: 100 };
  const validate = (extra: Record<string, unknown>) => codeOf(() => validateMessage({ ...plain.message, ...extra }));

  test("a compressed shipment declares its wire bytes as the payload; a plain one its records' data", () => {
    expect(validateMessage({ ...plain.message }).payloadBytes).toBe(12 * KiB);
    const { message, payloadBytes } = validateMessage({ ...plain.message, ...packedFields });
    expect(payloadBytes).toBe(100);
    expect(message).toMatchObject(packedFields);
    // The frame must carry exactly wireBytes.
    expect(codeOf(() => encodeFrame(message, new Uint8Array(99)))).toBe("PROTO_PAYLOAD_LENGTH");
    expect(codeOf(() => encodeFrame(message, new Uint8Array(100)))).toBe("none");
  });

  test("wrong or partial codec fields are PROTO_BAD_FIELD", () => {
    expect(validate({ ...packedFields, codec: "lz4" })).toBe("PROTO_BAD_FIELD");
    expect(validate({ ...packedFields, rawBytes: 12 * KiB + 1 })).toBe("PROTO_BAD_FIELD"); // not the records' data
    expect(validate({ ...packedFields, rawBytes: undefined })).toBe("PROTO_BAD_FIELD");
    expect(validate({ ...packedFields, rawCrc32: 2 ** 32 })).toBe("PROTO_BAD_FIELD");
    expect(validate({ ...packedFields, rawCrc32: -1 })).toBe("PROTO_BAD_FIELD");
    expect(validate({ ...packedFields, wireBytes: 0 })).toBe("PROTO_BAD_FIELD");
    expect(validate({ ...packedFields, wireBytes: frameSizeBytesMax + 1 })).toBe("PROTO_BAD_FIELD");
    expect(validate({ rawBytes: 12 * KiB })).toBe("PROTO_BAD_FIELD"); // sizes without a codec
    expect(validate({ wireBytes: 100 })).toBe("PROTO_BAD_FIELD");
  });

  test("rawBytes is bounded like a plain payload: records claiming more than a frame cannot come compressed", () => {
    const huge: ShipMessage = {
      ...plain.message,
      records: Array.from({ length: 3 }, (_, index) => ({ lsn: 5 + index, epoch: 1, device: "d0", offset: index * 8 * 1024 * KiB, length: 8 * 1024 * KiB, flags: 0 })),
    };
    expect(codeOf(() => validateMessage({ ...huge, codec: "zstd", rawBytes: 24 * 1024 * KiB, rawCrc32: 0, wireBytes: 100 }))).toBe("PROTO_BAD_FIELD");
  });
});
