/** fast-check generators for protocol messages with their payloads, and helpers to build raw frames. */
import fc from "fast-check";
import { protocolMagic, protocolVersion, zeroRecordBytesMax } from "../../src/constants.ts";
import { cbor } from "../../src/protocol/cbor.ts";
import { encodeFrameBytes } from "../../src/protocol/frame.ts";
import { recordFlags, roles, shipNackCodes, shipRecordPayloadBytes, verifyDigestBytes, verifyFlags, writeNackCodes, type DeviceSize, type Message, type MessageType, type ShipRecord } from "../../src/protocol/messages.ts";

export interface MessageWithPayload {
  message: Message;
  payload: Uint8Array;
}

/** The seed for this file's properties: FC_SEED to replay, printed by the caller. */
export function propertySeed(): number {
  return Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
}

const uint = fc.oneof(fc.nat({ max: 1000 }), fc.nat(), fc.maxSafeNat());
const name = fc.oneof(
  fc.string({ minLength: 1, maxLength: 40 }),
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 8 }),
).filter((text) => text.length >= 1 && text.length <= 256 && !/[\u0000-\u001f\u007f]/.test(text));
const text = fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: "grapheme", maxLength: 20 }));
const code = fc.stringMatching(/^[A-Z][A-Z0-9_]{0,20}$/);
const errorInfo = fc.record({ code, message: text, hint: text }, { requiredKeys: ["code", "message"] });
const payloadBytes = (maxLength: number) => fc.uint8Array({ maxLength });
const uuid = fc.uuid().map((text) => text.toLowerCase());
const sha256Hex = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((bytes) => Buffer.from(bytes).toString("hex"));
const deviceSizes = (names: fc.Arbitrary<string>, maxLength: number): fc.Arbitrary<DeviceSize[]> =>
  fc.uniqueArray(fc.record({ name: names, sizeBytes: uint }), { selector: (device) => device.name, maxLength });
/** Zero-range lengths: mostly small, sometimes up to the 1 GiB bound (nothing is allocated for them). */
const zeroLength = fc.oneof(fc.nat({ max: 1 << 20 }), fc.constant(zeroRecordBytesMax), fc.nat({ max: zeroRecordBytesMax }));
/** Verify probes: a block size and a few blocks (their digests are the payload). */
const verifyShape = fc.record({ blockShift: fc.integer({ min: 9, max: 20 }), blocks: fc.integer({ min: 1, max: 4 }) });
const byteRanges = fc.array(fc.record({ offset: fc.nat({ max: 2 ** 50 }), length: fc.nat({ max: 1 << 26 }) }), { maxLength: 5 });
const verifyOutcome = fc.record({ device: name, lsn: uint, offset: fc.nat({ max: 2 ** 50 }), length: fc.nat({ max: 1 << 26 }), differing: byteRanges });

const helloFields = {
  magic: fc.constant(protocolMagic),
  version: fc.oneof(fc.constant(protocolVersion), fc.nat({ max: 65535 })),
  role: fc.constantFrom(...roles),
  nodeId: name,
  features: fc.array(name, { maxLength: 5 }),
};

// Status values: what a status reply may carry (no -0: CBOR sends it as the integer 0).
const statusValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.integer(),
    fc.double({ noNaN: true }).filter((number) => !Object.is(number, -0)),
    text,
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 10 }).filter((key) => key !== "__proto__"), tie("value"), { maxKeys: 4 }),
  ),
})).value;

const withoutPayload = (message: fc.Arbitrary<Message>): fc.Arbitrary<MessageWithPayload> =>
  message.map((built) => ({ message: built, payload: new Uint8Array(0) }));

/** One generator per message type: the property tests check that none is missing. */
export const messageArbitraries: { [T in MessageType]: fc.Arbitrary<MessageWithPayload> } = {
  hello: withoutPayload(fc.record({ type: fc.constant("hello" as const), ...helloFields }, { requiredKeys: ["type", "magic", "version", "role", "nodeId"] })),
  helloAck: withoutPayload(
    fc.record({ type: fc.constant("helloAck" as const), ...helloFields, accepted: fc.boolean(), error: errorInfo }, { requiredKeys: ["type", "magic", "version", "role", "nodeId", "accepted"] }),
  ),
  attach: withoutPayload(
    fc
      .record({ device: name, wrl: name, blockShift: fc.integer({ min: 9, max: 16 }), blockCount: fc.oneof(fc.nat({ max: 1000 }), fc.nat({ max: 2 ** 36 })) })
      .map(({ device, wrl, blockShift, blockCount }) => ({ type: "attach" as const, device, wrl, sizeBytes: blockCount * 2 ** blockShift, logicalBlockSizeBytes: 2 ** blockShift })),
  ),
  attachAck: withoutPayload(
    fc.oneof(
      fc.record({ type: fc.constant("attachAck" as const), device: name, wrl: name, accepted: fc.constant(true), wrlUuid: uuid, error: errorInfo }, { requiredKeys: ["type", "device", "wrl", "accepted", "wrlUuid"] }),
      fc.record({ type: fc.constant("attachAck" as const), device: name, wrl: name, accepted: fc.constant(false), wrlUuid: uuid, error: errorInfo }, { requiredKeys: ["type", "device", "wrl", "accepted", "error"] }),
    ),
  ),
  write: fc.oneof(
    fc
      .record({ reqId: uint, device: name, wrl: name, epoch: uint, offset: fc.nat({ max: 2 ** 50 }), fua: fc.boolean(), zero: fc.constant(false), payload: payloadBytes(5000) }, { requiredKeys: ["reqId", "device", "wrl", "epoch", "offset", "payload"] })
      .map(({ payload, ...fields }) => ({ message: { type: "write" as const, ...fields, length: payload.length }, payload })),
    fc
      .record({ reqId: uint, device: name, wrl: name, epoch: uint, offset: fc.nat({ max: 2 ** 50 }), fua: fc.boolean(), length: zeroLength }, { requiredKeys: ["reqId", "device", "wrl", "epoch", "offset", "length"] })
      .map((fields) => ({ message: { type: "write" as const, ...fields, zero: true }, payload: new Uint8Array(0) })),
    fc
      .record({ reqId: uint, device: name, wrl: name, epoch: uint, offset: fc.nat({ max: 2 ** 50 }), payload: payloadBytes(3000) })
      .map(({ payload, ...fields }) => ({ message: { type: "write" as const, ...fields, kind: "resync" as const, length: payload.length }, payload })),
    fc
      .record({ reqId: uint, device: name, wrl: name, epoch: uint })
      .map((fields) => ({ message: { type: "write" as const, ...fields, kind: "resyncEnd" as const, offset: 0, length: 0 }, payload: new Uint8Array(0) })),
    fc
      .record({ reqId: uint, device: name, wrl: name, epoch: uint, offset: fc.nat({ max: 2 ** 50 }), shape: verifyShape, seed: fc.nat({ max: 255 }) })
      .map(({ shape, seed, ...fields }) => ({
        message: { type: "write" as const, ...fields, kind: "verify" as const, length: shape.blocks * 2 ** shape.blockShift, verifyBlockBytes: 2 ** shape.blockShift },
        payload: new Uint8Array(shape.blocks * verifyDigestBytes).fill(seed),
      })),
  ),
  verifyReport: withoutPayload(fc.record({ type: fc.constant("verifyReport" as const), wrl: name, device: name, lsn: uint, offset: fc.nat({ max: 2 ** 50 }), length: fc.nat({ max: 1 << 26 }), differing: byteRanges })),
  writeAck: withoutPayload(fc.record({ type: fc.constant("writeAck" as const), reqId: uint, lsn: uint })),
  writeNack: withoutPayload(fc.record({ type: fc.constant("writeNack" as const), reqId: uint, code: fc.constantFrom(...writeNackCodes), message: text })),
  resume: withoutPayload(fc.record({ type: fc.constant("resume" as const), wrl: name, wrlUuid: uuid })),
  resumeAck: withoutPayload(fc.record({ type: fc.constant("resumeAck" as const), wrl: name, wrlUuid: uuid, appliedLsn: uint, devices: deviceSizes(name, 8) })),
  ship: fc
    .record({
      wrl: name,
      wrlUuid: uuid,
      firstLsn: fc.nat({ max: 2 ** 40 }),
      // Few device names, so records share them (as a consistency group's records do).
      deviceNames: fc.uniqueArray(name, { minLength: 1, maxLength: 4 }),
      records: fc.array(
        fc.record({
          lsnStep: fc.integer({ min: 1, max: 5 }),
          epoch: uint,
          deviceIndex: fc.nat(),
          offset: fc.nat({ max: 2 ** 40 }),
          // One kind (plain, zero, resync, resyncEnd, verify) and unknown high bits, carried as given.
          kind: fc.constantFrom(0, recordFlags.zero, recordFlags.resync, recordFlags.resyncEnd, recordFlags.verify),
          highBits: fc.nat({ max: 0xff }),
          verify: verifyShape,
          zeroLength,
          data: payloadBytes(700),
        }),
        { maxLength: 12 },
      ),
      tailLsns: fc.nat({ max: 3 }),
      declare: fc.boolean(),
      sizes: fc.array(uint, { minLength: 4, maxLength: 4 }),
    })
    .map(({ wrl, wrlUuid, firstLsn, deviceNames, records, tailLsns, declare, sizes }) => {
      let lsn = firstLsn - 1;
      const shipRecords: ShipRecord[] = [];
      const data: Uint8Array[] = [];
      for (const record of records) {
        lsn += record.lsnStep;
        const device = deviceNames[record.deviceIndex % deviceNames.length]!;
        // A ZERO record has a length but no bytes in the payload; resyncEnd neither; verify its digests.
        const high = (record.highBits << 24) >>> 0;
        let shipRecord: ShipRecord;
        if (record.kind === recordFlags.zero) shipRecord = { lsn, epoch: record.epoch, device, offset: record.offset, length: record.zeroLength, flags: (high | recordFlags.zero) >>> 0 };
        else if (record.kind === recordFlags.resyncEnd) shipRecord = { lsn, epoch: record.epoch, device, offset: record.offset, length: 0, flags: (high | recordFlags.resyncEnd) >>> 0 };
        else if (record.kind === recordFlags.verify) {
          shipRecord = { lsn, epoch: record.epoch, device, offset: record.offset, length: record.verify.blocks * 2 ** record.verify.blockShift, flags: (high | verifyFlags(2 ** record.verify.blockShift)) >>> 0 };
        } else shipRecord = { lsn, epoch: record.epoch, device, offset: record.offset, length: record.data.length, flags: (high | record.kind) >>> 0 };
        shipRecords.push(shipRecord);
        const bytes = shipRecordPayloadBytes(shipRecord);
        if (bytes > 0) data.push(shipRecord.length === bytes ? record.data : new Uint8Array(bytes).fill(7));
      }
      const lastLsn = Math.max(firstLsn, lsn) + tailLsns;
      const message: Message = { type: "ship", wrl, wrlUuid, firstLsn, lastLsn, records: shipRecords };
      if (declare) message.devices = deviceNames.map((deviceName, index) => ({ name: deviceName, sizeBytes: sizes[index]! }));
      return { message, payload: concatBytes(data) };
    }),
  shipAck: withoutPayload(fc.record({ type: fc.constant("shipAck" as const), wrl: name, appliedLsn: uint, verified: fc.array(verifyOutcome, { maxLength: 3 }), held: fc.constant(true as const) }, { requiredKeys: ["type", "wrl", "appliedLsn"] })),
  shipNack: withoutPayload(fc.record({ type: fc.constant("shipNack" as const), wrl: name, code: fc.constantFrom(...shipNackCodes), message: text })),
  statusRequest: withoutPayload(fc.constant({ type: "statusRequest" as const })),
  statusReply: withoutPayload(
    fc.record({ type: fc.constant("statusReply" as const), status: fc.dictionary(fc.string({ maxLength: 12 }).filter((key) => key !== "__proto__"), statusValue, { maxKeys: 6 }) }),
  ),
  error: withoutPayload(fc.record({ type: fc.constant("error" as const), code, message: text, hint: text }, { requiredKeys: ["type", "code", "message"] })),
  ping: withoutPayload(fc.record({ type: fc.constant("ping" as const), nonce: uint })),
  pong: withoutPayload(fc.record({ type: fc.constant("pong" as const), nonce: uint })),
  restoreRequest: withoutPayload(fc.record({ type: fc.constant("restoreRequest" as const), device: name })),
  restoreBegin: withoutPayload(fc.record({ type: fc.constant("restoreBegin" as const), device: name, sizeBytes: uint, appliedLsn: uint })),
  restoreData: fc
    .record({ device: name, offset: fc.nat({ max: 2 ** 50 }), payload: payloadBytes(5000) })
    .map(({ payload, ...fields }) => ({ message: { type: "restoreData" as const, ...fields, length: payload.length }, payload })),
  restoreEnd: withoutPayload(fc.record({ type: fc.constant("restoreEnd" as const), device: name, sizeBytes: uint, crc32c: fc.nat({ max: 0xffffffff }) })),
};

export const anyMessage: fc.Arbitrary<MessageWithPayload> = fc.oneof(...Object.values(messageArbitraries));

/** Cuts `bytes` into consecutive chunks at the given (unsorted, possibly repeated) positions. */
export function splitAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const positions = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const position of positions) {
    chunks.push(bytes.subarray(start, position));
    start = position;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let position = 0;
  for (const part of parts) {
    bytes.set(part, position);
    position += part.length;
  }
  return bytes;
}

/** A frame around arbitrary header bytes (no validation): for malformed-input tests. */
export function rawFrame(header: Uint8Array, payload: Uint8Array = new Uint8Array(0), frameLength = 2 + header.length + payload.length, headerLength = header.length): Uint8Array {
  const bytes = new Uint8Array(6 + header.length + payload.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, frameLength >>> 0);
  view.setUint16(4, headerLength & 0xffff);
  bytes.set(header, 6);
  bytes.set(payload, 6 + header.length);
  return bytes;
}

/** A frame whose header is `fields` encoded as CBOR as-is (bypassing the message validator). */
export function frameOfFields(fields: object, payload?: Uint8Array): Uint8Array {
  return rawFrame(new Uint8Array(cbor.encode(fields)), payload);
}

export function encodeAll(items: MessageWithPayload[]): { bytes: Uint8Array; ends: number[] } {
  const frames = items.map((item) => encodeFrameBytes(item.message, item.payload));
  const ends: number[] = [];
  let end = 0;
  for (const frame of frames) {
    end += frame.length;
    ends.push(end);
  }
  return { bytes: concatBytes(frames), ends };
}
