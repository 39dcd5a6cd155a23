/**
 * The decoder at the edge: whatever bytes arrive, it yields valid frames or throws a
 * ProtocolError with a stable code — never another exception, never unbounded buffering — and
 * the valid frames that came before a corruption are still delivered.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { frameSizeBytesMax, protocolDevicesMax, protocolMagic, protocolVersion } from "../../src/constants.ts";
import { cbor } from "../../src/protocol/cbor.ts";
import { ProtocolError } from "../../src/protocol/errors.ts";
import { encodeFrameBytes, FrameDecoder, type Frame } from "../../src/protocol/frame.ts";
import { anyMessage, concatBytes, encodeAll, frameOfFields, propertySeed, rawFrame, splitAt, type MessageWithPayload } from "./arbitraries.ts";

const seed = propertySeed();
console.log(`decoder-fuzz.test.ts: fast-check seed ${seed} (replay: FC_SEED=${seed} node_modules/.bin/bun test tests/protocol/decoder-fuzz.test.ts)`);

/** Feeds chunks; returns the frames delivered and the error thrown (failing on any non-ProtocolError). */
function feed(chunks: Uint8Array[]): { frames: Frame[]; error: ProtocolError | undefined; decoder: FrameDecoder } {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  let error: ProtocolError | undefined;
  for (const chunk of chunks) {
    try {
      for (const frame of decoder.push(chunk)) frames.push(frame);
    } catch (caught) {
      if (!(caught instanceof ProtocolError)) throw new Error(`decoder threw a non-ProtocolError: ${String(caught)}`, { cause: caught });
      if (error !== undefined) expect(caught).toBe(error); // poisoned: the same error again
      error = caught;
    }
    // Bounded: never more than one frame (and its length prefix) held.
    expect(decoder.bufferedBytes).toBeLessThanOrEqual(frameSizeBytesMax + 4);
  }
  try {
    decoder.finish();
  } catch (caught) {
    if (!(caught instanceof ProtocolError)) throw caught;
    error ??= caught;
  }
  return { frames, error, decoder };
}

function expectFramesEqual(actual: Frame[], expected: MessageWithPayload[]): void {
  for (const [index, item] of expected.entries()) {
    expect(actual[index]!.message).toEqual(item.message);
    expect(Buffer.from(actual[index]!.payload).equals(Buffer.from(item.payload))).toBe(true);
  }
}

const mutation = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), flips: fc.array(fc.record({ at: fc.nat(), bit: fc.nat({ max: 7 }) }), { minLength: 1, maxLength: 6 }) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("length" as const), frame: fc.nat(), value: fc.oneof(fc.nat({ max: 64 }), fc.nat({ max: 0xffffffff }), fc.integer({ min: -64, max: 64 })) }),
  fc.record({ kind: fc.constant("headerLength" as const), frame: fc.nat(), value: fc.nat({ max: 0xffff }) }),
  fc.record({ kind: fc.constant("extend" as const), extra: fc.uint8Array({ minLength: 1, maxLength: 200 }) }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), extra: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

/** Applies a mutation; returns the bytes and the offset of the first byte that may differ. */
function mutate(bytes: Uint8Array, ends: number[], change: Mutation): { bytes: Uint8Array; firstChanged: number } {
  const starts = [0, ...ends.slice(0, -1)];
  switch (change.kind) {
    case "flip": {
      const copy = bytes.slice();
      let first = copy.length;
      for (const { at, bit } of change.flips) {
        const position = at % copy.length;
        copy[position]! ^= 1 << bit;
        first = Math.min(first, position);
      }
      return { bytes: copy, firstChanged: first };
    }
    case "truncate": {
      const at = change.at % bytes.length;
      return { bytes: bytes.subarray(0, at), firstChanged: at };
    }
    case "length":
    case "headerLength": {
      const start = starts[change.frame % starts.length]!;
      const copy = bytes.slice();
      const view = new DataView(copy.buffer);
      if (change.kind === "length") view.setUint32(start, change.value >= 0 ? change.value : (view.getUint32(start) + change.value) >>> 0);
      else view.setUint16(start + 4, change.value);
      return { bytes: copy, firstChanged: start };
    }
    case "extend":
      return { bytes: concatBytes([bytes, change.extra]), firstChanged: bytes.length };
    case "insert": {
      const at = change.at % (bytes.length + 1);
      return { bytes: concatBytes([bytes.subarray(0, at), change.extra, bytes.subarray(at)]), firstChanged: at };
    }
  }
}

describe("FrameDecoder under corruption (property)", () => {
  test("mutated valid streams: only ProtocolError, bounded, frames before the corruption delivered", () => {
    fc.assert(
      fc.property(fc.array(anyMessage, { minLength: 1, maxLength: 8 }), mutation, fc.array(fc.nat(), { maxLength: 30 }), (items, change, cuts) => {
        const { bytes, ends } = encodeAll(items);
        const mutated = mutate(bytes, ends, change);
        const { frames, error } = feed(splitAt(mutated.bytes, cuts));
        const intact = ends.filter((end) => end <= mutated.firstChanged).length;
        expect(frames.length).toBeGreaterThanOrEqual(intact);
        expectFramesEqual(frames, items.slice(0, intact));
        // Nothing is invented: without an error, every frame delivered is a decodable frame of
        // what was sent (a flipped payload bit is not detectable here — the WRL's CRC does that).
        if (error !== undefined) expect(error.code).toMatch(/^PROTO_[A-Z_]+$/);
      }),
      { seed, numRuns: 1500 },
    );
  });

  test("random bytes, alone or after valid frames: only ProtocolError, bounded", () => {
    fc.assert(
      fc.property(fc.array(anyMessage, { maxLength: 3 }), fc.uint8Array({ maxLength: 3000 }), fc.array(fc.nat(), { maxLength: 20 }), (items, garbage, cuts) => {
        const { bytes, ends } = encodeAll(items);
        const { frames } = feed(splitAt(concatBytes([bytes, garbage]), cuts));
        expect(frames.length).toBeGreaterThanOrEqual(ends.length);
        expectFramesEqual(frames, items);
      }),
      { seed, numRuns: 1500 },
    );
  });

  test("random CBOR-ish headers (valid length fields, random header bytes): only ProtocolError", () => {
    const header = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 200 }),
      // Mostly-valid CBOR: a real header with a few bytes replaced.
      fc.tuple(anyMessage, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 })).map(([item, edits]) => {
        const bytes = new Uint8Array(cbor.encode(item.message));
        for (const [at, value] of edits) bytes[at % bytes.length] = value;
        return bytes;
      }),
    );
    fc.assert(
      fc.property(header, fc.uint8Array({ maxLength: 100 }), (headerBytes, payload) => {
        feed([rawFrame(headerBytes, payload)]);
      }),
      { seed, numRuns: 2000 },
    );
  });
});

describe("FrameDecoder: each kind of malformed input has its code", () => {
  const write = { type: "write", reqId: 1, device: "sda", wrl: "w0", epoch: 2, offset: 4096, length: 4 };
  const hello = { type: "hello", magic: protocolMagic, version: protocolVersion, role: "client", nodeId: "n1" };
  const u32 = (value: number) => new Uint8Array([value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255]);
  const uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
  const record = { lsn: 1, epoch: 1, device: "d", offset: 0, length: 0, flags: 0 };
  const ship = { type: "ship", wrl: "w", wrlUuid: uuid, firstLsn: 1, lastLsn: 1, records: [record] };
  const attach = { type: "attach", device: "sda", wrl: "w0", sizeBytes: 1 << 20, logicalBlockSizeBytes: 4096 };
  const resumeAck = { type: "resumeAck", wrl: "w0", wrlUuid: uuid, appliedLsn: 7, devices: [{ name: "sda", sizeBytes: 1 << 20 }] };
  const restoreData = { type: "restoreData", device: "sda", offset: 0, length: 4 };
  const GiB = 1024 * 1024 * 1024;
  // [what, bytes, code, the field the error must name (so a case cannot pass for another reason)]
  const cases: [string, Uint8Array, string, string?][] = [
    ["length above frameSizeBytesMax (only the 4 length bytes sent)", u32(frameSizeBytesMax + 1), "PROTO_FRAME_TOO_LARGE"],
    ["an HTTP request on the port", new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "PROTO_FRAME_TOO_LARGE"],
    ["frame too short for a header", concatBytes([u32(2), new Uint8Array([0, 0])]), "PROTO_BAD_FRAME"],
    ["header length 0", rawFrame(new Uint8Array([0xa0]), undefined, undefined, 0), "PROTO_BAD_FRAME"],
    ["header length beyond the frame", rawFrame(new Uint8Array([0xa0]), undefined, 3, 200), "PROTO_BAD_FRAME"],
    ["invalid CBOR (break byte)", rawFrame(new Uint8Array([0xff])), "PROTO_BAD_CBOR"],
    ["truncated CBOR string", rawFrame(new Uint8Array([0xa1, 0x64, 0x74])), "PROTO_BAD_CBOR"],
    ["CBOR with trailing bytes in the header", rawFrame(concatBytes([new Uint8Array(cbor.encode({ type: "ping", nonce: 1 })), new Uint8Array([0x00])])), "PROTO_BAD_CBOR"],
    ["a CBOR tag (date)", rawFrame(new Uint8Array([0xa1, 0x61, 0x74, 0xc1, 0x00])), "PROTO_BAD_CBOR"],
    ["a CBOR tag 27 (generic object)", rawFrame(new Uint8Array([0xd8, 27, 0x82, 0x65, 0x45, 0x72, 0x72, 0x6f, 0x72, 0x61, 0x78])), "PROTO_BAD_CBOR"],
    ["indefinite-length map", rawFrame(new Uint8Array([0xbf, 0x61, 0x74, 0x00, 0xff])), "PROTO_BAD_CBOR"],
    ["a map with a non-string key", rawFrame(new Uint8Array([0xa1, 0x01, 0x02])), "PROTO_BAD_CBOR"],
    ["an array announcing 2^32 items", rawFrame(new Uint8Array([0x9a, 0xff, 0xff, 0xff, 0xff])), "PROTO_BAD_CBOR"],
    ["nesting deeper than the bound", rawFrame(new Uint8Array([...Array(40).fill(0x81), 0x00])), "PROTO_BAD_CBOR"],
    ["CBOR that is not a map", rawFrame(new Uint8Array(cbor.encode(["ping", 1]))), "PROTO_NOT_A_MAP"],
    ["a map without type", frameOfFields({ nonce: 1 }), "PROTO_BAD_FIELD"],
    ["unknown message type", frameOfFields({ type: "format-disk" }), "PROTO_UNKNOWN_TYPE"],
    ["inherited property as type", frameOfFields({ type: "constructor" }), "PROTO_UNKNOWN_TYPE"],
    ["offset as a string", frameOfFields({ ...write, offset: "4096" }, new Uint8Array(4)), "PROTO_BAD_FIELD"],
    ["negative offset", frameOfFields({ ...write, offset: -4096 }, new Uint8Array(4)), "PROTO_BAD_FIELD"],
    ["NaN offset", frameOfFields({ ...write, offset: Number.NaN }, new Uint8Array(4)), "PROTO_BAD_FIELD"],
    ["non-integer offset", frameOfFields({ ...write, offset: 4096.5 }, new Uint8Array(4)), "PROTO_BAD_FIELD"],
    ["infinite epoch", frameOfFields({ ...write, epoch: Number.POSITIVE_INFINITY }, new Uint8Array(4)), "PROTO_BAD_FIELD"],
    ["offset beyond 2^53 (a 64-bit integer)", frameOfFields({ ...write, offset: 2n ** 60n }, new Uint8Array(4)), "PROTO_BAD_FIELD"],
    ["offset + length beyond 2^53", frameOfFields({ ...write, offset: Number.MAX_SAFE_INTEGER - 1 }, new Uint8Array(4)), "PROTO_BAD_FIELD"],
    ["write longer than 8 MiB", frameOfFields({ ...write, length: 8 * 1024 * 1024 + 1 }), "PROTO_BAD_FIELD"],
    ["fua not a boolean", frameOfFields({ ...write, fua: 1 }, new Uint8Array(4)), "PROTO_BAD_FIELD"],
    ["empty device name", frameOfFields({ ...write, device: "" }, new Uint8Array(4)), "PROTO_BAD_FIELD"],
    ["device name with a control character", frameOfFields({ ...write, device: "sd\na" }, new Uint8Array(4)), "PROTO_BAD_FIELD"],
    ["payload shorter than the write's length", frameOfFields(write, new Uint8Array(3)), "PROTO_PAYLOAD_LENGTH"],
    ["payload longer than the write's length (trailing garbage)", frameOfFields(write, new Uint8Array(5)), "PROTO_PAYLOAD_LENGTH"],
    ["a payload on a ping", frameOfFields({ type: "ping", nonce: 1 }, new Uint8Array(1)), "PROTO_PAYLOAD_LENGTH"],
    ["unknown writeNack code", frameOfFields({ type: "writeNack", reqId: 1, code: "LOL", message: "" }), "PROTO_BAD_FIELD"],
    ["ship records out of LSN order", frameOfFields({ ...ship, lastLsn: 9, records: [{ ...record, lsn: 5 }, { ...record, lsn: 4 }] }), "PROTO_BAD_FIELD", "ship.records[1].lsn"],
    ["ship record outside firstLsn..lastLsn", frameOfFields({ ...ship, lastLsn: 3, records: [{ ...record, lsn: 4 }] }), "PROTO_BAD_FIELD", "ship.records[0].lsn"],
    ["ship payload not the sum of its records", frameOfFields({ ...ship, records: [{ ...record, length: 8 }] }, new Uint8Array(7)), "PROTO_PAYLOAD_LENGTH", "8 payload bytes"],
    ["ship record that is not a map", frameOfFields({ ...ship, records: [7] }), "PROTO_BAD_FIELD", "ship.records[0]"],
    ["ship without wrlUuid", frameOfFields({ ...ship, wrlUuid: undefined }), "PROTO_BAD_FIELD", "ship.wrlUuid"],
    ["ship with a wrlUuid that is not a uuid", frameOfFields({ ...ship, wrlUuid: "w0" }), "PROTO_BAD_FIELD", "ship.wrlUuid"],
    ["ZERO ship record carrying payload bytes", frameOfFields({ ...ship, records: [{ ...record, length: 4096, flags: 1 }] }, new Uint8Array(4096)), "PROTO_PAYLOAD_LENGTH", "0 payload bytes"],
    ["ZERO ship record longer than 1 GiB", frameOfFields({ ...ship, records: [{ ...record, length: GiB + 512, flags: 1 }] }), "PROTO_BAD_FIELD", "ship.records[0].length"],
    ["data ship record longer than 8 MiB", frameOfFields({ ...ship, records: [{ ...record, length: 8 * 1024 * 1024 + 1, flags: 2 }] }), "PROTO_BAD_FIELD", "ship.records[0].length"],
    ["ship record for a device its devices list leaves out", frameOfFields({ ...ship, devices: [{ name: "other", sizeBytes: 4096 }] }), "PROTO_BAD_FIELD", "ship.records[0].device"],
    ["ship declaring one device twice", frameOfFields({ ...ship, devices: [{ name: "d", sizeBytes: 4096 }, { name: "d", sizeBytes: 8192 }] }), "PROTO_BAD_FIELD", "ship.devices[1].name"],
    ["zero write carrying payload bytes", frameOfFields({ ...write, zero: true }, new Uint8Array(4)), "PROTO_PAYLOAD_LENGTH", "0 payload bytes"],
    ["zero write longer than 1 GiB", frameOfFields({ ...write, zero: true, length: GiB + 512 }), "PROTO_BAD_FIELD", "write.length"],
    ["zero not a boolean", frameOfFields({ ...write, zero: "yes" }, new Uint8Array(4)), "PROTO_BAD_FIELD", "write.zero"],
    ["attach with a logical block size that is not a power of two", frameOfFields({ ...attach, logicalBlockSizeBytes: 3000 }), "PROTO_BAD_FIELD", "attach.logicalBlockSizeBytes"],
    ["attach with a logical block size below a sector", frameOfFields({ ...attach, logicalBlockSizeBytes: 256 }), "PROTO_BAD_FIELD", "attach.logicalBlockSizeBytes"],
    ["attach with a size that is not whole blocks", frameOfFields({ ...attach, sizeBytes: (1 << 20) + 512 }), "PROTO_BAD_FIELD", "attach.sizeBytes"],
    ["accepted attachAck without wrlUuid", frameOfFields({ type: "attachAck", device: "sda", wrl: "w0", accepted: true }), "PROTO_BAD_FIELD", "attachAck.wrlUuid"],
    ["refused attachAck without a reason", frameOfFields({ type: "attachAck", device: "sda", wrl: "w0", accepted: false }), "PROTO_BAD_FIELD", "attachAck.error"],
    ["resume without wrlUuid", frameOfFields({ type: "resume", wrl: "w0" }), "PROTO_BAD_FIELD", "resume.wrlUuid"],
    ["resumeAck without devices", frameOfFields({ ...resumeAck, devices: undefined }), "PROTO_BAD_FIELD", "resumeAck.devices"],
    ["resumeAck listing more devices than the bound", frameOfFields({ ...resumeAck, devices: Array.from({ length: protocolDevicesMax + 1 }, (_, index) => ({ name: `d${index}`, sizeBytes: 0 })) }), "PROTO_BAD_FIELD", "resumeAck.devices"],
    ["resumeAck device with a negative size", frameOfFields({ ...resumeAck, devices: [{ name: "sda", sizeBytes: -1 }] }), "PROTO_BAD_FIELD", "resumeAck.devices[0].sizeBytes"],
    ["restoreData payload shorter than its length", frameOfFields(restoreData, new Uint8Array(3)), "PROTO_PAYLOAD_LENGTH", "4 payload bytes"],
    ["restoreData longer than 8 MiB", frameOfFields({ ...restoreData, length: 8 * 1024 * 1024 + 1 }), "PROTO_BAD_FIELD", "restoreData.length"],
    ["restoreEnd with a CRC past 32 bits", frameOfFields({ type: "restoreEnd", device: "sda", sizeBytes: 4096, crc32c: 2 ** 32 }), "PROTO_BAD_FIELD", "restoreEnd.crc32c"],
    ["restoreEnd with a CRC that is not a number", frameOfFields({ type: "restoreEnd", device: "sda", sizeBytes: 4096, crc32c: "ab".repeat(4) }), "PROTO_BAD_FIELD", "restoreEnd.crc32c"],
    ["restoreRequest without a device", frameOfFields({ type: "restoreRequest" }), "PROTO_BAD_FIELD", "restoreRequest.device"],
    ["status that is not a map", frameOfFields({ type: "statusReply", status: [1, 2] }), "PROTO_BAD_FIELD"],
    ["hello with another protocol's magic", frameOfFields({ ...hello, magic: 0x12345678 }), "PROTO_BAD_MAGIC"],
    ["hello with an unknown role", frameOfFields({ ...hello, role: "root" }), "PROTO_BAD_FIELD"],
    ["helloAck without accepted", frameOfFields({ ...hello, type: "helloAck" }), "PROTO_BAD_FIELD"],
    ["error with a lower-case code", frameOfFields({ type: "error", code: "oops", message: "m" }), "PROTO_BAD_FIELD"],
  ];

  for (const [what, bytes, code, blamed] of cases) {
    test(`${what} -> ${code}`, () => {
      const { frames, error } = feed([bytes]);
      expect(frames).toEqual([]);
      expect(error).toBeInstanceOf(ProtocolError);
      expect(error!.code as string).toBe(code);
      expect(error!.message.length).toBeGreaterThan(0);
      if (blamed !== undefined) expect(error!.message).toContain(blamed);
    });
  }

  test("frames before a malformed one are delivered, and the decoder stays poisoned", () => {
    const good = encodeFrameBytes({ type: "ping", nonce: 1 });
    const decoder = new FrameDecoder();
    const delivered: Frame[] = [];
    let thrown: unknown;
    try {
      for (const frame of decoder.push(concatBytes([good, good, frameOfFields({ type: "format-disk" })]))) delivered.push(frame);
    } catch (error) {
      thrown = error;
    }
    expect(delivered.map((frame) => frame.message)).toEqual([{ type: "ping", nonce: 1 }, { type: "ping", nonce: 1 }]);
    expect((thrown as ProtocolError).code).toBe("PROTO_UNKNOWN_TYPE");
    expect(() => [...decoder.push(good)]).toThrow(thrown as Error);
    expect(decoder.error).toBe(thrown as ProtocolError);
  });

  test("a header announcing a huge payload is refused before the payload is buffered", () => {
    // The write claims 4 bytes but the frame length claims 8 MiB: refused at the header.
    const header = new Uint8Array(cbor.encode(write));
    const bytes = rawFrame(header, new Uint8Array(0), 2 + header.length + 8 * 1024 * 1024);
    const { error, decoder } = feed([bytes]);
    expect(error!.code).toBe("PROTO_PAYLOAD_LENGTH");
    expect(decoder.bufferedBytes).toBe(0);
  });
});
