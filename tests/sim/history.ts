/**
 * What the application saw, and the check of a replica state against it.
 *
 * The simulation is the application: it issues every write through a client's NBD export and
 * notes, on one logical event counter, when each write was issued and when it completed (the
 * NBD promise settled). Write B depends on write A when A completed before B was issued — across
 * clients too, since one application drives them all.
 *
 * Mapping the replica's applied LSNs back to those writes: the client's `write` messages are
 * seen as they are sent (reqId -> write; the overlap gate means at most one write of a device
 * range is being sent at a time, so the range identifies it and the payload must match), and
 * every record the relay reads from the WRL is seen with its device name and seq (= the
 * client's reqId). Device names are unique across clients (staging refuses a name another
 * client holds), so (device, seq) names one write. A write logged twice (resent after a staging
 * crash lost its ack) simply has two LSNs.
 *
 * The property (DESIGN.md "Partial write order"), checked at every consistent point the replica
 * claims: the writes S behind LSNs 1..appliedLsn are
 *   (1) dependency-closed: if B is in S and A -> B then A is in S;
 *   (2) such that applying S in the primary's order for overlapping writes (the order they
 *       completed; the overlap gate serialises overlapping writes, so that is the order the
 *       primary wrote them) gives exactly the replica's devices.
 */
import { recordFlags, type WriteMessage } from "../../src/protocol/messages.ts";
import type { WrlRecord } from "../../src/wrl/types.ts";

export interface SimWrite {
  id: number;
  client: number;
  device: string;
  offset: number;
  length: number;
  /** The bytes written (zeros for a WRITE_ZEROES). */
  data: Uint8Array;
  zero: boolean;
  /** Logical event time of the NBD request. */
  issuedAt: number;
  /** Logical event time its promise settled (undefined: still in flight). */
  completedAt?: number;
  /** The error code the application got, if it failed. */
  failed?: string;
  reqId?: number;
  epoch?: number;
}

export interface DeviceSpec {
  name: string;
  client: number;
  sizeBytes: number;
}

export class History {
  readonly writes: SimWrite[] = [];
  /** device -> reqId -> write. */
  readonly #byRequest = new Map<string, Map<number, SimWrite>>();
  /** LSN -> the record's (device, seq, kind), as the relay read it. */
  readonly #records = new Map<number, { device: string; seq: number; kind: RecordKind }>();
  /** "device#reqId" of every resyncEnd sent -> when it was sent. */
  readonly #resyncEnds = new Map<string, { device: string; sentAt: number }>();
  #time = 0;
  /** Problems found while recording (a record that changed identity, an unknown request). */
  readonly anomalies: string[] = [];

  constructor(readonly devices: readonly DeviceSpec[]) {}

  /** resyncEnd messages the clients sent (a resync set each, or a resend). */
  get resyncEndsSent(): number {
    return this.#resyncEnds.size;
  }

  /** Advances the logical clock; returns the new time. */
  tick(): number {
    this.#time += 1;
    return this.#time;
  }

  issued(write: Omit<SimWrite, "id" | "issuedAt">): SimWrite {
    const entry: SimWrite = { ...write, id: this.writes.length, issuedAt: this.tick() };
    this.writes.push(entry);
    return entry;
  }

  /** A client sends a write message (first send or a resend). */
  noteSend(client: number, message: WriteMessage, payload: Uint8Array | undefined): void {
    if (message.kind !== undefined) {
      // Resync data and verify probes carry no write of their own; the end of a resync set
      // stands for every write of its device completed before it was sent (noteResyncEnd).
      if (message.kind === "resyncEnd") this.#resyncEnds.set(`${message.device}#${message.reqId}`, { device: message.device, sentAt: this.tick() });
      return;
    }
    let requests = this.#byRequest.get(message.device);
    if (requests === undefined) this.#byRequest.set(message.device, (requests = new Map()));
    if (requests.has(message.reqId)) return;
    // Concurrent writes of the same range may reach the client in either order (the activity log
    // lets each through when its extent is durable): the request is the write whose bytes it carries.
    const zero = message.zero === true;
    const carries = (w: SimWrite) => zero === w.zero && (zero || (payload !== undefined && sameBytes(payload, w.data)));
    const candidates = this.writes.filter((w) => w.client === client && w.device === message.device && w.reqId === undefined && w.completedAt === undefined && w.offset === message.offset && w.length === message.length);
    const write = candidates.find(carries) ?? candidates[0];
    if (write === undefined) {
      this.anomalies.push(`client ${client} sent request ${message.reqId} (${message.device}@${message.offset}+${message.length}) that matches no write in flight`);
      return;
    }
    if (!carries(write)) this.anomalies.push(`request ${message.reqId} of ${message.device} does not carry the bytes of write ${write.id}`);
    write.reqId = message.reqId;
    write.epoch = message.epoch;
    requests.set(message.reqId, write);
  }

  /** The relay read this record from the WRL. */
  noteRecord(record: WrlRecord): void {
    const device = String(record.device);
    const known = this.#records.get(record.lsn);
    if (known !== undefined && (known.device !== device || known.seq !== record.seq)) {
      this.anomalies.push(`LSN ${record.lsn} was ${known.device}#${known.seq}, now reads as ${device}#${record.seq}: a durable record changed`);
    }
    this.#records.set(record.lsn, { device, seq: record.seq, kind: recordKind(record) });
  }

  /** The write logged at `lsn`, if known. */
  writeAt(lsn: number): SimWrite | undefined {
    const record = this.#records.get(lsn);
    return record === undefined ? undefined : this.#byRequest.get(record.device)?.get(record.seq);
  }

  /** The writes behind LSNs 1..appliedLsn, or why they cannot be named. */
  appliedSet(appliedLsn: number): Set<SimWrite> | string {
    const set = new Set<SimWrite>();
    for (let lsn = 1; lsn <= appliedLsn; lsn += 1) {
      const record = this.#records.get(lsn);
      if (record === undefined) return `LSN ${lsn} is applied at the replica but was never read from the WRL`;
      if (record.kind === "resync" || record.kind === "other") continue;
      if (record.kind === "resyncEnd") {
        // The set this ends brought every write of the device completed before it was sent
        // (logged, or completed locally and marked in the change map), as resync data.
        const end = this.#resyncEnds.get(`${record.device}#${record.seq}`);
        if (end === undefined) return `LSN ${lsn} ends a resync set of ${record.device} (#${record.seq}) that no client sent`;
        for (const write of this.writes) if (write.device === end.device && write.failed === undefined && write.completedAt !== undefined && write.completedAt < end.sentAt) set.add(write);
        continue;
      }
      const write = this.#byRequest.get(record.device)?.get(record.seq);
      if (write === undefined) return `LSN ${lsn} (${record.device}#${record.seq}) matches no write the clients sent`;
      set.add(write);
    }
    return set;
  }

  /** Checks a replica state (see the file comment); undefined when it holds, else what is wrong. */
  check(appliedLsn: number, replicaImage: (device: string) => Uint8Array): string | undefined {
    const applied = this.appliedSet(appliedLsn);
    if (typeof applied === "string") return applied;
    for (const write of applied) {
      if (write.failed !== undefined) return `write ${describe(write)} failed to the application (${write.failed}) but is applied at the replica (LSN <= ${appliedLsn})`;
    }
    for (const b of applied) {
      for (const a of this.writes) {
        if (a.failed !== undefined || a.completedAt === undefined || a.completedAt >= b.issuedAt) continue;
        if (!applied.has(a)) {
          return `not dependency-closed at appliedLsn ${appliedLsn}: ${describe(b)} is applied, but ${describe(a)}, which completed before it was issued, is not`;
        }
      }
    }
    for (const spec of this.devices) {
      const expected = imageOf(spec, [...applied]);
      const actual = replicaImage(spec.name).subarray(0, spec.sizeBytes);
      const at = firstDifference(expected, actual);
      if (at !== undefined) {
        const covering = [...applied].filter((w) => w.device === spec.name && w.offset <= at && at < w.offset + w.length).map(describe);
        return `replica ${spec.name} at appliedLsn ${appliedLsn} differs from the image of the applied writes in primary order at byte ${at} (expected ${expected[at]}, found ${actual[at]}; applied writes covering it: ${covering.join(", ") || "none"})`;
      }
    }
    return undefined;
  }
}

type RecordKind = "write" | "resync" | "resyncEnd" | "other";

function recordKind(record: WrlRecord): RecordKind {
  if (record.type === "resync") return "resync";
  if (record.type === "marker") return (record.flags & recordFlags.resyncEnd) !== 0 ? "resyncEnd" : "other";
  return "write";
}

/** Primary order for overlapping writes: completion order; writes still in flight last, by issue. */
export function primaryOrder(a: SimWrite, b: SimWrite): number {
  const ca = a.completedAt ?? Number.MAX_SAFE_INTEGER;
  const cb = b.completedAt ?? Number.MAX_SAFE_INTEGER;
  return ca !== cb ? ca - cb : a.issuedAt - b.issuedAt;
}

/** The device as `writes` leave it when applied in primary order over zeros. */
export function imageOf(spec: DeviceSpec, writes: readonly SimWrite[]): Uint8Array {
  const image = new Uint8Array(spec.sizeBytes);
  for (const write of writes.filter((w) => w.device === spec.name).sort(primaryOrder)) image.set(write.data, write.offset);
  return image;
}

export function firstDifference(a: Uint8Array, b: Uint8Array): number | undefined {
  const length = Math.min(a.length, b.length);
  for (let index = 0; index < length; index += 1) if (a[index] !== b[index]) return index;
  return a.length === b.length ? undefined : length;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && firstDifference(a, b) === undefined;
}

export function describe(write: SimWrite): string {
  const state = write.failed !== undefined ? `failed ${write.failed}` : write.completedAt === undefined ? "in flight" : `completed t${write.completedAt}`;
  return `w${write.id}(client ${write.client} ${write.zero ? "zero " : ""}${write.device}@${write.offset}+${write.length} epoch ${write.epoch ?? "?"} issued t${write.issuedAt}, ${state})`;
}
