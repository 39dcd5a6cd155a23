/**
 * The replica's own write log, the RS-WRL (`druvaa replica apply --wrl PATH`, made with `druvaa
 * wrl create`): where the records of an open resync set wait, durably, until the set is complete
 * and applied as a whole (resync-sets.ts). It is a WriteLog (src/wrl) that only the replica
 * appends to, under its apply lock.
 *
 * Layout: the logged part of one shipment is a *group* of consecutive RS-WRL records:
 *   - a group marker: type marker, device number 0, payload JSON {wrl, wrlUuid, prevLsn, lsns,
 *     throughLsn}: the staging WRL, the staging LSN logged just before this group (a chain),
 *     the staging LSNs of the records that follow, and the LSN the group logs through (the
 *     shipment's lastLsn when the set stays open: its last LSNs may carry no record);
 *   - one record per ship record, named by its device (seq = staging LSN, flags = the ship
 *     record's flags, offset and lengthBytes its range): data and resync records carry their data
 *     (type write / resync), a ZERO record nothing (type zero), a resyncEnd nothing, a verify
 *     probe its digests and a checkpoint its label (type marker).
 * GroupReader accepts a group only when its prevLsn is the last LSN accepted for its WRL, and of
 * its records only those that follow in the order it lists; records outside an accepted group are
 * ignored. A group cut short (an append refused "full" after the marker's, which the free-space
 * check before appending makes all but impossible) counts up to its last record present, exactly
 * what the replica acknowledged. So reading back always yields a prefix of what was acked.
 *
 * A coalesced span (coalesced-apply.ts) is one group whose marker says `coalesced: true`: its
 * records are extents (their LSNs need not rise), it is read back as one `span` event once it
 * ends (complete or cut short, which a crash during its group commit can do), and it does not
 * move the chain: it is applied whole before the replica acks it, so the WRL's applied LSN, not
 * the span, is what the next group chains on. A span too big for one frame comes as parts
 * (ShipMessage.spanContinues), one group each, all chained on the same applied LSN: the marker
 * also names the part's first LSN (`partFirstLsn`) and says whether more parts follow
 * (`continues`); coalesced-apply.ts puts the parts of a span back together.
 */
import { assert } from "../../assert.ts";
import { replicaSetApplyReadBytes, wrlDeviceNameBytesMax } from "../../constants.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import { pathExists } from "../../io/open-device.ts";
import { recordFlags, type ShipRecord } from "../../protocol/messages.ts";
import { openWrlAtPath } from "../../wrl/paths.ts";
import { recordSizeBytes } from "../../wrl/record-format.ts";
import type { WrlAppend, WrlAppendResult, WrlRecord } from "../../wrl/types.ts";
import type { WriteLog } from "../../wrl/write-log.ts";

const noData = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What one group logs: records of the staging WRL `wrlUuid`, after `prevLsn`, through `throughLsn`. */
export interface GroupToLog {
  wrl: string;
  wrlUuid: string;
  prevLsn: number;
  throughLsn: number;
  /** The records, in LSN order, each with its payload (data, digests, or empty). */
  records: readonly { record: ShipRecord; payload: Uint8Array }[];
  /** A coalesced span (see the file comment); its records are in shipment order. */
  coalesced?: true;
  /** With `coalesced`: one part of a span: its first LSN, and whether more parts follow. */
  part?: { firstLsn: number; continues: boolean };
}

/** A logged record and its payload (data, digests, or empty). */
export interface LoggedRecord {
  record: ShipRecord;
  payload: Uint8Array;
}

/** What reading the RS-WRL back yields, in RS-WRL order. */
export type LogEvent =
  | { kind: "group"; rsLsn: number; wrl: string; wrlUuid: string }
  | { kind: "record"; rsLsn: number; wrlUuid: string; record: ShipRecord; payload: Uint8Array }
  /** Every record of the WRL up to `lsn` is logged (a group fully present, or its last record present). */
  | { kind: "through"; wrlUuid: string; lsn: number }
  /** A coalesced span chained on `prevLsn`, through `throughLsn`; complete when every record is present. */
  | { kind: "span"; wrl: string; wrlUuid: string; prevLsn: number; throughLsn: number; complete: boolean; records: LoggedRecord[]; part?: { firstLsn: number; continues: boolean } };

export interface LogOutcome {
  /** The events of what became durable (as GroupReader would read them back). */
  events: LogEvent[];
  /** A coalesced group: the RS-WRL LSN of its marker (its first record in the RS-WRL). */
  firstRsLsn?: number;
  /** Set when not everything was logged: why, and the bytes needed against those free. */
  refused?: { reason: "full" | "too-large"; neededBytes: number; freeBytes: number; maxPayloadBytes: number };
}

interface GroupHeader {
  wrl: string;
  wrlUuid: string;
  prevLsn: number;
  lsns: number[];
  throughLsn: number;
  coalesced?: true;
  partFirstLsn?: number;
  continues?: true;
}

/**
 * The RS-WRL record of a ship record. The payload is copied: the WriteLog keeps appended bytes in
 * its record cache, and the shipment's buffer goes back to the server's pool once answered.
 */
function shipKindAppend(record: ShipRecord, shipPayload: Uint8Array): WrlAppend {
  const payload = shipPayload.slice();
  const base = { epoch: record.epoch, device: record.device, seq: record.lsn, offset: record.offset, flags: record.flags };
  if ((record.flags & recordFlags.zero) !== 0) return { ...base, type: "zero", data: noData, lengthBytes: record.length };
  if ((record.flags & (recordFlags.resyncEnd | recordFlags.verify | recordFlags.checkpoint)) !== 0) return { ...base, type: "marker", data: payload, lengthBytes: record.length };
  return { ...base, type: (record.flags & recordFlags.resync) !== 0 ? "resync" : "write", data: payload };
}

function groupAppend(group: GroupToLog): WrlAppend {
  const header: GroupHeader = { wrl: group.wrl, wrlUuid: group.wrlUuid, prevLsn: group.prevLsn, lsns: group.records.map((entry) => entry.record.lsn), throughLsn: group.throughLsn };
  if (group.coalesced === true) header.coalesced = true;
  if (group.part !== undefined) header.partFirstLsn = group.part.firstLsn;
  if (group.part?.continues === true) header.continues = true;
  return { type: "marker", epoch: 0, device: 0, seq: group.prevLsn, offset: 0, data: encoder.encode(JSON.stringify(header)) };
}

function isGroupMarker(record: WrlRecord): boolean {
  return record.type === "marker" && typeof record.device === "number";
}

function parseGroup(record: WrlRecord): GroupHeader | undefined {
  try {
    const header = JSON.parse(decoder.decode(record.data)) as Partial<GroupHeader>;
    const lsn = (value: unknown) => Number.isSafeInteger(value) && (value as number) >= 0;
    if (typeof header.wrl !== "string" || typeof header.wrlUuid !== "string" || !lsn(header.prevLsn) || !lsn(header.throughLsn) || !Array.isArray(header.lsns) || !header.lsns.every(lsn)) return undefined;
    if (header.coalesced !== undefined && header.coalesced !== true) return undefined;
    if ((header.partFirstLsn !== undefined && (header.coalesced !== true || !lsn(header.partFirstLsn))) || (header.continues !== undefined && (header.continues !== true || header.partFirstLsn === undefined))) return undefined;
    return header as GroupHeader;
  } catch {
    return undefined; // its CRC held, so some other writer's marker: not ours
  }
}

/**
 * Reads RS-WRL records back into events (see the file comment). `accepted` holds, per staging WRL
 * uuid, the last LSN accepted so far (the applied LSN to start with); groups of a WRL it does not
 * list are skipped.
 */
export class GroupReader {
  #group: { header: GroupHeader; next: number; lastLsn: number; span: LoggedRecord[] | undefined } | undefined;

  constructor(private readonly accepted: Map<string, number>) {}

  /** The events one record gives, in order. */
  next(record: WrlRecord): LogEvent[] {
    const events: LogEvent[] = [];
    const group = this.#group;
    if (group !== undefined && !isGroupMarker(record) && group.next < group.header.lsns.length && record.seq === group.header.lsns[group.next] && typeof record.device === "string") {
      group.next += 1;
      group.lastLsn = record.seq;
      const logged = { record: { lsn: record.seq, epoch: record.epoch, device: record.device, offset: record.offset, length: record.lengthBytes, flags: record.flags }, payload: record.data };
      if (group.span !== undefined) group.span.push(logged);
      else events.push({ kind: "record", rsLsn: record.lsn, wrlUuid: group.header.wrlUuid, ...logged });
      if (group.next === group.header.lsns.length) this.#end(events);
      return events;
    }
    this.#end(events);
    if (!isGroupMarker(record)) return events; // outside any accepted group
    const header = parseGroup(record);
    if (header === undefined) return events;
    // A span may be a WRL's first: chained on 0 before the state knew the WRL.
    if ((header.coalesced === true ? this.accepted.get(header.wrlUuid) ?? 0 : this.accepted.get(header.wrlUuid)) !== header.prevLsn) return events;
    this.#group = { header, next: 0, lastLsn: header.prevLsn, span: header.coalesced === true ? [] : undefined };
    if (header.coalesced !== true) events.push({ kind: "group", rsLsn: record.lsn, wrl: header.wrl, wrlUuid: header.wrlUuid });
    if (header.lsns.length === 0) this.#end(events);
    return events;
  }

  /** No more records: a group still open ends where its records did. */
  finish(): LogEvent[] {
    const events: LogEvent[] = [];
    this.#end(events);
    return events;
  }

  #end(events: LogEvent[]): void {
    const group = this.#group;
    if (group === undefined) return;
    this.#group = undefined;
    const complete = group.next === group.header.lsns.length;
    if (group.span !== undefined) {
      const { wrl, wrlUuid, prevLsn, throughLsn, partFirstLsn, continues } = group.header;
      const part = partFirstLsn === undefined ? {} : { part: { firstLsn: partFirstLsn, continues: continues === true } };
      events.push({ kind: "span", wrl, wrlUuid, prevLsn, throughLsn, complete, records: group.span, ...part });
      return;
    }
    const lsn = complete ? Math.max(group.header.throughLsn, group.lastLsn) : group.lastLsn;
    this.accepted.set(group.header.wrlUuid, lsn);
    events.push({ kind: "through", wrlUuid: group.header.wrlUuid, lsn });
  }
}

export interface ResyncLogInfo {
  path: string;
  uuid: string;
  sizeBytes: number;
  usedBytes: number;
  freeBytes: number;
  /** Largest record payload it takes (bounded by its smallest device). */
  maxPayloadBytes: number;
}

export class ResyncLog {
  private constructor(
    readonly path: string,
    private readonly wrl: WriteLog,
  ) {}

  /**
   * Opens the RS-WRL at `path` (recovery runs). A missing path is refused with the command that
   * creates one: the replica never makes it on its own, its size is the operator's decision.
   */
  static async open(path: string): Promise<ResyncLog> {
    if (!(await pathExists(path))) {
      throw new DruvaaError(
        "RS_WRL_NOT_FOUND",
        `--wrl ${path}: no such file or device (the replica WRL keeps resync sets until they are complete)`,
        `Create it first, big enough for the largest resync set: druvaa wrl create --primary ${path} --size 10G`,
        exitCodes.notFound,
      );
    }
    return new ResyncLog(path, await openWrlAtPath(path));
  }

  /** Over a WriteLog already open (tests, the simulation). The ResyncLog owns it from then on. */
  static over(wrl: WriteLog, path = "memory"): ResyncLog {
    return new ResyncLog(path, wrl);
  }

  get uuid(): string {
    return this.wrl.info().uuid;
  }

  info(): ResyncLogInfo {
    const info = this.wrl.info();
    return { path: this.path, uuid: info.uuid, sizeBytes: info.sizeBytes, usedBytes: info.usedBytes, freeBytes: info.freeBytes, maxPayloadBytes: info.maxPayloadBytes };
  }

  /** Last RS-WRL LSN durable (0: none). */
  get headLsn(): number {
    return this.wrl.info().headLsn;
  }

  /** Log bytes a group of these records takes (without the bytes skipped at a device's end). */
  static bytesFor(group: GroupToLog): number {
    let bytes = recordSizeBytes(groupAppend(group).data.length);
    for (const { payload } of group.records) bytes += recordSizeBytes(payload.length);
    return bytes;
  }

  /**
   * Appends one group and waits until it is durable. Refuses at once, appending nothing, when the
   * free space is short of what the group needs (refused "full"); otherwise every append is
   * issued together (one group commit). Returns the events of what became durable; when an
   * append was refused after all, those events stop at the last record before it, and `refused`
   * says why. Rejects on an I/O error of the log (nothing more can be said of the group then).
   */
  async append(group: GroupToLog): Promise<LogOutcome> {
    const info = this.wrl.info();
    const neededBytes = ResyncLog.bytesFor(group);
    const largest = group.records.reduce((most, entry) => Math.max(most, entry.payload.length), 0);
    if (largest > info.maxPayloadBytes) return { events: [], refused: { reason: "too-large", neededBytes, freeBytes: info.freeBytes, maxPayloadBytes: info.maxPayloadBytes } };
    if (neededBytes > info.freeBytes) return { events: [], refused: { reason: "full", neededBytes, freeBytes: info.freeBytes, maxPayloadBytes: info.maxPayloadBytes } };
    const appends: Promise<WrlAppendResult>[] = [this.wrl.append(groupAppend(group))];
    for (const { record, payload } of group.records) appends.push(this.wrl.append(shipKindAppend(record, payload)));
    const results = await Promise.all(appends);
    const failedAt = results.findIndex((result) => !result.ok);
    const events: LogEvent[] = [];
    if (group.coalesced === true) {
      const firstRsLsn = results[0]!.ok ? { firstRsLsn: results[0]!.lsn } : {};
      return failedAt < 0 ? { events, ...firstRsLsn } : { events, ...firstRsLsn, refused: refusal(results[failedAt]!, info.freeBytes, info.maxPayloadBytes) };
    }
    const first = results[0]!;
    if (!first.ok) return { events, refused: refusal(first, info.freeBytes, info.maxPayloadBytes) };
    events.push({ kind: "group", rsLsn: first.lsn, wrl: group.wrl, wrlUuid: group.wrlUuid });
    const presentCount = failedAt < 0 ? group.records.length : failedAt - 1;
    let lastLsn = group.prevLsn;
    for (let index = 0; index < presentCount; index += 1) {
      const result = results[index + 1]!;
      assert(result.ok && result.lsn === first.lsn + 1 + index, "the replica is the RS-WRL's only appender: a group's records take consecutive LSNs");
      const { record, payload } = group.records[index]!;
      events.push({ kind: "record", rsLsn: result.lsn, wrlUuid: group.wrlUuid, record, payload });
      lastLsn = record.lsn;
    }
    events.push({ kind: "through", wrlUuid: group.wrlUuid, lsn: failedAt < 0 ? Math.max(group.throughLsn, lastLsn) : lastLsn });
    if (failedAt < 0) return { events };
    return { events, refused: refusal(results[failedAt]!, info.freeBytes, info.maxPayloadBytes) };
  }

  /**
   * The records firstRsLsn..lastRsLsn, in pieces of about replicaSetApplyReadBytes, read back
   * through `reader` (from memory for recent records, from the log's devices otherwise).
   */
  async *read(firstRsLsn: number, lastRsLsn: number, reader: GroupReader): AsyncGenerator<LogEvent[]> {
    for (let next = firstRsLsn; next <= lastRsLsn; ) {
      const records = await this.wrl.read(next, replicaSetApplyReadBytes);
      assert(records.length > 0, "the range read is durable");
      const events: LogEvent[] = [];
      for (const record of records) {
        if (record.lsn > lastRsLsn) break;
        events.push(...reader.next(record));
        next = record.lsn + 1;
      }
      if (next > lastRsLsn) events.push(...reader.finish());
      yield events;
    }
  }

  /** Everything held (tail + 1 .. head), for recovery. */
  readAll(reader: GroupReader): AsyncGenerator<LogEvent[]> {
    const info = this.wrl.info();
    return this.read(info.tailLsn + 1, info.headLsn, reader);
  }

  /** Frees the RS-WRL's records up to `rsLsn` (their sets are applied); durable when it resolves. */
  freeThrough(rsLsn: number): Promise<void> {
    return this.wrl.advanceTail(Math.min(rsLsn, this.headLsn));
  }

  close(): Promise<void> {
    return this.wrl.close();
  }
}

function refusal(result: WrlAppendResult, freeBytes: number, maxPayloadBytes: number): NonNullable<LogOutcome["refused"]> {
  assert(!result.ok, "a refusal");
  if (result.reason === "too-large") return { reason: "too-large", neededBytes: result.payloadBytes, freeBytes, maxPayloadBytes };
  return { reason: "full", neededBytes: result.neededBytes, freeBytes: result.freeBytes, maxPayloadBytes };
}

/** Device names an RS-WRL record can carry: those of at most wrlDeviceNameBytesMax UTF-8 bytes. */
export function checkRsWrlDeviceName(name: string): void {
  const bytes = encoder.encode(name).length;
  if (bytes > wrlDeviceNameBytesMax) {
    throw new DruvaaError("DEVICE_NAME_INVALID", `--device ${name.slice(0, 80)}: ${bytes} bytes, but a replica WRL record holds names of at most ${wrlDeviceNameBytesMax} bytes`, "Use a shorter device name (staging allows no longer ones either)", exitCodes.usage);
  }
}
