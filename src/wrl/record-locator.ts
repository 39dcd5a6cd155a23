/**
 * Finding durable records on disk once the in-memory cache no longer holds them: the relay
 * reading old records, advanceTail() needing where a record ends. Walks record headers from the
 * closest known point (the tail, the end of the last walk, a cached neighbour), following the
 * finding rule of geometry.ts.
 */
import { assert } from "../assert.ts";
import { DruvaaError, exitCodes } from "../errors.ts";
import type { LogGeometry } from "./geometry.ts";
import type { LogReader, RecordProbe } from "./log-reader.ts";
import type { RecordCache } from "./record-cache.ts";
import type { WrlRecord } from "./types.ts";

export type FoundRecord = Extract<RecordProbe, { kind: "record" }>;

/** Record `lsn` is at `position` or a following device start; the record before it has `prevIncarnation`. */
interface Cursor {
  lsn: number;
  position: number;
  prevIncarnation: number;
}

/** The live state of the log the locator reads. */
export interface LocatorHost {
  readonly uuid: string;
  readonly geometry: LogGeometry;
  readonly reader: LogReader;
  readonly cache: RecordCache;
  readonly incarnation: number;
  readonly tail: { lsn: number; position: number; incarnation: number };
  readonly durableLsn: number;
}

export class RecordLocator {
  /** Where the last walk ended: sequential reads continue from here without re-walking. */
  private cursor: Cursor | undefined;

  constructor(private readonly host: LocatorHost) {}

  /** The tail moved to `lsn`: a cursor before it points into freed space. */
  forgetThrough(lsn: number): void {
    if (this.cursor !== undefined && this.cursor.lsn <= lsn) this.cursor = undefined;
  }

  /** add-device gave position `from` (the old end of the log, normalised) the meaning `to`. */
  movePosition(lsn: number, from: number, to: number): void {
    if (this.cursor?.lsn === lsn && this.cursor.position === from) this.cursor.position = to;
  }

  /** Durable record `lsn` from disk, with its payload checked. */
  async read(lsn: number): Promise<WrlRecord> {
    const found = await this.walkTo(lsn, true);
    const h = found.header;
    return { lsn: h.lsn, type: h.type, epoch: h.epoch, device: h.device, seq: h.seq, offset: h.offset, lengthBytes: h.lengthBytes, flags: h.flags, data: this.host.reader.plaintextOf(found) };
  }

  /** Log position just past durable record `lsn`, and the record's incarnation. */
  async endOf(lsn: number): Promise<{ position: number; incarnation: number }> {
    const cached = this.host.cache.get(lsn);
    if (cached !== undefined) return { position: cached.end, incarnation: cached.incarnation };
    const found = await this.walkTo(lsn, false);
    return { position: this.host.geometry.normalize(found.start + found.sizeBytes), incarnation: found.header.incarnation };
  }

  private async walkTo(lsn: number, withPayload: boolean): Promise<FoundRecord> {
    const { tail, cache, geometry } = this.host;
    assert(lsn > tail.lsn && lsn <= this.host.durableLsn, "walk inside the durable log");
    let at: Cursor = { lsn: tail.lsn + 1, position: tail.position, prevIncarnation: tail.incarnation };
    if (this.cursor !== undefined && this.cursor.lsn <= lsn && this.cursor.lsn > at.lsn) at = this.cursor;
    const previous = cache.get(lsn - 1);
    if (previous !== undefined && lsn > at.lsn) at = { lsn, position: previous.end, prevIncarnation: previous.incarnation };
    for (;;) {
      const found = await this.find(at, withPayload && at.lsn === lsn);
      const next: Cursor = { lsn: at.lsn + 1, position: geometry.normalize(found.start + found.sizeBytes), prevIncarnation: found.header.incarnation };
      if (at.lsn === lsn) {
        this.cursor = next;
        return found;
      }
      at = next;
    }
  }

  /**
   * Record `at.lsn` at `at.position` or a following device start. Incarnations never decrease
   * along the log, which rules out stale records of a history an earlier recovery discarded.
   */
  private async find(at: Cursor, withPayload: boolean): Promise<FoundRecord> {
    let seen: RecordProbe | undefined;
    for (const candidate of this.host.geometry.candidates(at.position)) {
      const probe = await this.host.reader.probe(candidate, withPayload);
      seen ??= probe;
      if (probe.kind !== "record") continue;
      const { lsn, incarnation } = probe.header;
      if (lsn === at.lsn && incarnation >= at.prevIncarnation && incarnation <= this.host.incarnation) return probe;
    }
    const detail = seen?.kind === "bad-payload" || seen?.kind === "bad-header" ? `: ${seen.detail}` : "";
    throw new DruvaaError(
      "WRL_CORRUPT",
      `write log ${this.host.uuid}: durable record LSN ${at.lsn} not found at log position ${at.position} (found ${seen?.kind ?? "nothing"}${detail})`,
      "The device lost or damaged acknowledged records; copy it for analysis, then recreate the log (druvaa wrl create --force); clients resync from their change maps",
      exitCodes.refused,
    );
  }
}
