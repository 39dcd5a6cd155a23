/**
 * Reads records back from the log devices: recovery's scan, and the relay's reads of records the
 * in-memory cache no longer holds. Reads ahead in pieces of wrlReadAheadBytes so walking many
 * small records costs few device reads.
 *
 * The read-ahead piece can go stale when the writer later fills the free space it covered, so
 * the owner calls invalidate() after every commit; a read that was already in flight when that
 * happened is used for its own request (whose bytes were durable when it started) but not kept.
 *
 * In an encrypted WRL, probe() checks payloads as stored (ciphertext: no key needed, so recovery
 * runs without it) and plaintextOf() decrypts what the relay reads.
 */
import { assert } from "../assert.ts";
import type { BlockDevice } from "../io/block-device.ts";
import { wrlAlignmentBytes, wrlReadAheadBytes, wrlRecordHeaderBytes } from "../constants.ts";
import { DruvaaError, exitCodes } from "../errors.ts";
import { crc32c } from "./crc32c.ts";
import type { PayloadCipher } from "./payload-cipher.ts";
import type { LogGeometry } from "./geometry.ts";
import { probeHeader, recordSizeBytes, sameBytes, type RecordHeader } from "./record-format.ts";

/** What lies at a log position, from the reader's point of view. */
export type RecordProbe =
  /** A record of this WRL whose header (and payload, if asked for) checks out. */
  | { kind: "record"; header: RecordHeader; start: number; sizeBytes: number; payload?: Uint8Array }
  | { kind: "zeroed" }
  | { kind: "no-record" }
  /** A record header of another WRL (one that used this device before). */
  | { kind: "foreign" }
  /** Record magic but a bad header checksum, or a record too large for where it sits: torn or damaged. */
  | { kind: "bad-header"; detail: string }
  /** A good header whose payload does not match its checksum: a torn write or damage. */
  | { kind: "bad-payload"; header: RecordHeader; detail: string };

interface Chunk {
  segmentIndex: number;
  /** Log position of chunk[0]. */
  start: number;
  bytes: Uint8Array;
}

export class LogReader {
  private chunk: Chunk | undefined;
  private generation = 0;

  constructor(
    private geometry: LogGeometry,
    private devices: readonly BlockDevice[],
    private readonly uuid: Uint8Array,
    /** For encrypted WRLs: whether payloads are encrypted, and the cipher if the key was given. */
    private readonly encryption: { cipher: PayloadCipher | undefined } | undefined = undefined,
  ) {}

  /** The payload of a record probe() returned, as plaintext in an array of its own. */
  plaintextOf(found: { header: RecordHeader; payload?: Uint8Array }): Uint8Array {
    assert(found.payload !== undefined, "record read with its payload");
    if (this.encryption === undefined) return found.payload.slice();
    const cipher = this.encryption.cipher;
    if (cipher === undefined) {
      throw new DruvaaError("WRL_KEY_REQUIRED", "the write log's payloads are encrypted and it was opened without the key", "Open it with --encrypt-at-rest KEYFILE", exitCodes.refused);
    }
    return cipher.decrypt(found.payload, found.header.incarnation, found.header.lsn);
  }

  /** The log grew (add-device): later reads use the new layout. */
  reshape(geometry: LogGeometry, devices: readonly BlockDevice[]): void {
    this.geometry = geometry;
    this.devices = devices;
    this.invalidate();
  }

  /** Forgets read-ahead data; called whenever the writer may have changed the log. */
  invalidate(): void {
    this.chunk = undefined;
    this.generation += 1;
  }

  /**
   * `lengthBytes` of log starting at `position`, all inside one segment. The result may be a view
   * into a read-ahead buffer: copy what you keep.
   */
  async bytesAt(position: number, lengthBytes: number): Promise<Uint8Array> {
    const { segment, deviceOffsetBytes, bytesToSegmentEnd } = this.geometry.locate(position);
    assert(lengthBytes > 0 && lengthBytes <= bytesToSegmentEnd, "read stays inside one segment");
    const segmentIndex = this.geometry.segmentIndexAt(position);
    const chunk = this.chunk;
    if (chunk !== undefined && chunk.segmentIndex === segmentIndex && position >= chunk.start && position + lengthBytes <= chunk.start + chunk.bytes.length) {
      const from = position - chunk.start;
      return chunk.bytes.subarray(from, from + lengthBytes);
    }
    const readBytes = Math.min(bytesToSegmentEnd, Math.max(lengthBytes, wrlReadAheadBytes));
    assert(readBytes % wrlAlignmentBytes === 0, "log reads are whole blocks");
    const generation = this.generation;
    const device = this.devices[segment.deviceIndex];
    assert(device !== undefined, "every segment has its device");
    const bytes = await device.read(deviceOffsetBytes, readBytes);
    if (generation === this.generation) this.chunk = { segmentIndex, start: position, bytes };
    return bytes.subarray(0, lengthBytes);
  }

  /**
   * What is at `position`: checks the header, that the record fits its segment, and with
   * `withPayload` the payload checksum too (the payload is then returned as a view).
   */
  async probe(position: number, withPayload: boolean): Promise<RecordProbe> {
    const block = await this.bytesAt(position, wrlAlignmentBytes);
    const found = probeHeader(block);
    if (found.kind !== "header") return found;
    const header = found.header;
    if (!sameBytes(header.uuid, this.uuid)) return { kind: "foreign" };
    const sizeBytes = recordSizeBytes(header.payloadBytes);
    if (sizeBytes > this.geometry.locate(position).bytesToSegmentEnd) {
      return { kind: "bad-header", detail: `record of ${sizeBytes} bytes runs past the end of its device` };
    }
    if (!withPayload) return { kind: "record", header, start: position, sizeBytes };
    const whole = await this.bytesAt(position, sizeBytes);
    const payload = whole.subarray(wrlRecordHeaderBytes, wrlRecordHeaderBytes + header.payloadBytes);
    if (crc32c(payload) !== header.payloadCrc) return { kind: "bad-payload", header, detail: "payload checksum mismatch" };
    return { kind: "record", header, start: position, sizeBytes, payload };
  }
}
