import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { frameSizeBytesMax, writePayloadSizeBytesMax } from "../../src/constants.ts";
import { ProtocolError } from "../../src/protocol/errors.ts";
import { decodeFrame, encodeFrame, encodeFrameBytes, FrameDecoder, type Frame } from "../../src/protocol/frame.ts";
import { messageTypes, type Message } from "../../src/protocol/messages.ts";
import { anyMessage, encodeAll, messageArbitraries, propertySeed, splitAt } from "./arbitraries.ts";
import { codeOf } from "./helpers.ts";

const seed = propertySeed();
console.log(`frame.test.ts: fast-check seed ${seed} (replay: FC_SEED=${seed} node_modules/.bin/bun test tests/protocol/frame.test.ts)`);

function expectSameFrames(actual: Frame[], expected: { message: Message; payload: Uint8Array }[]): void {
  expect(actual.length).toBe(expected.length);
  for (const [index, frame] of actual.entries()) {
    expect(frame.message).toEqual(expected[index]!.message);
    expect(Buffer.from(frame.payload).equals(Buffer.from(expected[index]!.payload))).toBe(true);
  }
}

describe("frame encode/decode", () => {
  test("every message type has a generator", () => {
    expect(Object.keys(messageArbitraries).sort()).toEqual([...messageTypes].sort());
  });

  for (const type of messageTypes) {
    test(`${type}: round trip keeps message and payload bytes`, () => {
      fc.assert(
        fc.property(messageArbitraries[type], ({ message, payload }) => {
          const frame = decodeFrame(encodeFrameBytes(message, payload));
          expectSameFrames([frame], [{ message, payload }]);
        }),
        { seed, numRuns: 150 },
      );
    });
  }

  test("the payload is a view into the received bytes, not a copy", () => {
    const payload = new Uint8Array(64 * 1024).map((_, index) => index % 251);
    const bytes = encodeFrameBytes({ type: "write", reqId: 1, device: "sda", wrl: "w0", epoch: 3, offset: 4096, length: payload.length }, payload);
    const frame = decodeFrame(bytes);
    expect(frame.payload.buffer).toBe(bytes.buffer);
    expect(frame.payload.byteOffset).toBe(bytes.length - payload.length);
    bytes[bytes.length - 1] = 0xaa; // a write to the input shows through the view
    expect(frame.payload[payload.length - 1]).toBe(0xaa);
  });

  test("encodeFrame does not copy the payload: it is the last chunk as given", () => {
    const payload = new Uint8Array(1000).fill(9);
    const chunks = encodeFrame({ type: "write", reqId: 7, device: "d", wrl: "w", epoch: 0, offset: 0, length: payload.length }, payload);
    expect(chunks.length).toBe(2);
    expect(chunks[1]).toBe(payload);
  });

  test("a largest write (8 MiB) fits a frame, within frameSizeBytesMax", () => {
    const payload = new Uint8Array(writePayloadSizeBytesMax).fill(0x5a);
    const message: Message = { type: "write", reqId: 2 ** 40, device: "d".repeat(256), wrl: "w".repeat(256), epoch: 2 ** 50, offset: 2 ** 52, length: payload.length, fua: true };
    const bytes = encodeFrameBytes(message, payload);
    expect(bytes.length - 4).toBeLessThanOrEqual(frameSizeBytesMax);
    const frame = decodeFrame(bytes);
    expect(frame.message).toEqual(message);
    expect(Buffer.from(frame.payload).equals(Buffer.from(payload))).toBe(true);
  });

  test("encode refuses what the peer would refuse", () => {
    const code = codeOf;
    const write = { type: "write", reqId: 1, device: "d", wrl: "w", epoch: 0, offset: 0, length: 4 } as const;
    expect(code(() => encodeFrame(write, new Uint8Array(3)))).toBe("PROTO_PAYLOAD_LENGTH");
    expect(code(() => encodeFrame({ ...write, offset: -512 }, new Uint8Array(4)))).toBe("PROTO_BAD_FIELD");
    expect(code(() => encodeFrame({ ...write, offset: 1.5 }, new Uint8Array(4)))).toBe("PROTO_BAD_FIELD");
    expect(code(() => encodeFrame({ type: "ping", nonce: Number.NaN }))).toBe("PROTO_BAD_FIELD");
    expect(code(() => encodeFrame({ type: "ping", nonce: 1 }, new Uint8Array(1)))).toBe("PROTO_PAYLOAD_LENGTH");
    expect(code(() => encodeFrame({ type: "statusReply", status: { when: new Date(0) } }))).toBe("PROTO_BAD_CBOR");
    expect(code(() => encodeFrame({ type: "statusReply", status: { blob: "x".repeat(70_000) } }))).toBe("PROTO_HEADER_TOO_LARGE");
    expect(code(() => encodeFrame({ type: "nope" } as unknown as Message))).toBe("PROTO_UNKNOWN_TYPE");
  });

  test("unknown fields from a newer peer are dropped, known ones kept", () => {
    const bytes = encodeFrameBytes({ type: "ping", nonce: 5, extra: "future" } as unknown as Message);
    expect(decodeFrame(bytes).message).toEqual({ type: "ping", nonce: 5 });
  });
});

describe("FrameDecoder", () => {
  test("frames split at random chunk boundaries come out whole, in order, byte-equal", () => {
    fc.assert(
      fc.property(fc.array(anyMessage, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 40 }), (items, cuts) => {
        const { bytes } = encodeAll(items);
        const decoder = new FrameDecoder();
        const frames: Frame[] = [];
        for (const chunk of splitAt(bytes, cuts)) frames.push(...decoder.push(chunk));
        decoder.finish();
        expectSameFrames(frames, items);
        expect(decoder.bufferedBytes).toBe(0);
      }),
      { seed, numRuns: 300 },
    );
  });

  test("byte-at-a-time delivery works and buffers no more than the frame", () => {
    const payload = new Uint8Array(3000).map((_, index) => index * 7);
    const items = [
      { message: { type: "write", reqId: 9, device: "sdb", wrl: "fast", epoch: 4, offset: 8192, length: payload.length } as Message, payload },
      { message: { type: "pong", nonce: 12 } as Message, payload: new Uint8Array(0) },
    ];
    const { bytes, ends } = encodeAll(items);
    const decoder = new FrameDecoder();
    const frames: Frame[] = [];
    for (let index = 0; index < bytes.length; index += 1) {
      frames.push(...decoder.push(bytes.subarray(index, index + 1)));
      expect(decoder.bufferedBytes).toBeLessThanOrEqual(ends[0]!);
    }
    expectSameFrames(frames, items);
  });

  test("a frame inside one chunk is a view of that chunk; a frame across chunks is reassembled once", () => {
    const payload = new Uint8Array(5000).fill(3);
    const { bytes } = encodeAll([
      { message: { type: "write", reqId: 1, device: "d", wrl: "w", epoch: 0, offset: 0, length: payload.length }, payload },
      { message: { type: "write", reqId: 2, device: "d", wrl: "w", epoch: 0, offset: 0, length: payload.length }, payload },
    ]);
    const decoder = new FrameDecoder();
    const half = bytes.length / 2 + 100; // the second frame spans the two chunks
    const first = [...decoder.push(bytes.subarray(0, half))];
    const second = [...decoder.push(bytes.subarray(half))];
    expect(first.length).toBe(1);
    expect(first[0]!.payload.buffer).toBe(bytes.buffer);
    expect(second.length).toBe(1);
    expect(second[0]!.payload.buffer).not.toBe(bytes.buffer);
    expect(Buffer.from(second[0]!.payload).equals(Buffer.from(payload))).toBe(true);
  });

  test("a stream that ends inside a frame is PROTO_TRUNCATED", () => {
    const bytes = encodeFrameBytes({ type: "ping", nonce: 1 });
    const decoder = new FrameDecoder();
    expect([...decoder.push(bytes.subarray(0, bytes.length - 1))]).toEqual([]);
    expect(() => decoder.finish()).toThrow(expect.objectContaining({ code: "PROTO_TRUNCATED" }));
  });
});
