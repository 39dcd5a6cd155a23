/**
 * A whole client → staging → replica system for verify tests, in one process without sockets:
 * the real ClientCore and ProbeChannel, a fake staging that logs every write in arrival order
 * (LSNs) and acks after a random delay, and a fake replica that applies the log strictly in LSN
 * order, some records at a time and lagging behind, holding a device's records from a `resync`
 * record to its `resyncEnd` and applying them together (as the RS-WRL does). At a verify record
 * it hashes its own image at exactly that point of the log and reports the differing blocks back
 * through the ProbeChannel, as staging forwards a `verifyReport`.
 */
import { createHash } from "node:crypto";
import { ChangeMap, changeMapLayoutBytes, type ChangeMapRegion } from "../../src/changemap/index.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import type { NbdExport } from "../../src/nbd/backend.ts";
import { verifyDigestBytes, type ByteRange, type WriteMessage } from "../../src/protocol/messages.ts";
import { ClientCore, type ClientCoreOptions, type StagingSender } from "../../src/roles/client/core.ts";
import { ProbeChannel } from "../../src/roles/client/verify-link.ts";
import { VerifyService } from "../../src/roles/client/verify-runs.ts";
import type { VerifyTuning } from "../../src/roles/client/verify.ts";
import { Random } from "../../src/io/random.ts";

export const KiB = 1024;
export const MiB = 1024 * KiB;

export interface LoggedRecord {
  lsn: number;
  message: WriteMessage;
  payload: Uint8Array | undefined;
}

export interface FakeSystemOptions {
  sizeBytes: number;
  /** Give the device a change map with this block size (disconnected mode, repair). */
  changeMapBlockBytes?: number;
  /** The replica's image at the start (default: zeros, like the primary). */
  replicaImage?: Uint8Array;
  primaryImage?: Uint8Array;
  /** Staging acks each write after 0..ackDelayMsMax ms (random). */
  ackDelayMsMax?: number;
  /** The replica applies this many records per step, one step every applyEveryMs. */
  applyBatch?: number;
  applyEveryMs?: number;
  tuning?: Partial<VerifyTuning>;
  core?: Partial<ClientCoreOptions>;
  /** Seeded randomness (tests log the seed). */
  seed?: number;
}

/** A small deterministic PRNG (mulberry32, src/io/random.ts) giving numbers in [0, 1). */
export function prng(seed: number): () => number {
  const random = new Random(seed);
  return () => random.nextUint32() / 2 ** 32;
}

export class FakeSystem {
  readonly primary: MemoryDevice;
  readonly replica: Uint8Array;
  readonly core: ClientCore;
  readonly probes: ProbeChannel;
  readonly verifier: VerifyService;
  readonly export: NbdExport;
  readonly map: ChangeMap | undefined;
  readonly region: ChangeMapRegion | undefined;
  readonly log: LoggedRecord[] = [];
  /** Records the replica has processed (applied, held or evaluated): an index into `log`. */
  appliedUpTo = 0;
  /** Outcomes the replica computed, whether or not they reached the client. */
  readonly outcomes: { lsn: number; differing: ByteRange[] }[] = [];
  /** Drop every outcome while set (lost on the way back). */
  dropReports = false;
  /** Refuse probes with this code while set. */
  refuseProbes: "WRL_FULL" | "BUSY" | undefined = undefined;
  readonly random: () => number;
  #connection = 0;
  #held = new Map<string, LoggedRecord[]>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #pendingTimers = new Set<ReturnType<typeof setTimeout>>();

  private constructor(readonly options: FakeSystemOptions, map: ChangeMap | undefined) {
    this.random = prng(options.seed ?? 1);
    this.primary = new MemoryDevice(options.sizeBytes, "disk0", 512, options.primaryImage?.slice());
    this.replica = options.replicaImage?.slice() ?? new Uint8Array(options.sizeBytes);
    this.map = map;
    this.region = map?.region("disk0");
    this.core = new ClientCore({ devices: [{ name: "disk0", path: "/mem/disk0", wrl: "wrl0", device: this.primary, discardReadsZeros: true, ...(this.region === undefined ? {} : { changeMap: this.region }) }], ...options.core });
    this.probes = new ProbeChannel(this.core, { ackTimeoutMs: 2000 });
    this.verifier = new VerifyService({ devices: [{ name: "disk0", path: "/mem/disk0", wrl: "wrl0", device: this.primary, discardReadsZeros: true, ...(this.region === undefined ? {} : { changeMap: this.region }) }], core: this.core, probes: this.probes, tuning: { retryMs: 20, reportTimeoutMs: 2000, ...options.tuning } });
    this.export = this.core.exports()[0]!;
  }

  static async start(options: FakeSystemOptions): Promise<FakeSystem> {
    let map: ChangeMap | undefined;
    if (options.changeMapBlockBytes !== undefined) {
      const regions = [{ name: "disk0", volumeSizeBytes: options.sizeBytes }];
      map = await ChangeMap.create(new MemoryDevice(changeMapLayoutBytes(regions, options.changeMapBlockBytes), "map"), { regions, blockSizeBytes: options.changeMapBlockBytes });
    }
    const system = new FakeSystem(options, map);
    system.#timer = setInterval(() => system.applySome(), options.applyEveryMs ?? 2);
    system.connect();
    return system;
  }

  /** A new staging connection: brings the link up. */
  connect(): void {
    this.#connection += 1;
    const connection = this.#connection;
    const sender: StagingSender = { send: (message, payload) => this.#receive(connection, message, payload) };
    this.probes.linkUp(sender);
  }

  /** The connection drops: acks and outcomes not yet delivered are lost. */
  disconnect(): void {
    this.#connection += 1;
    this.probes.linkDown();
  }

  #receive(connection: number, message: WriteMessage, payload: Uint8Array | undefined): void {
    if (connection !== this.#connection) return; // sent on a dead connection: never arrives
    if (message.kind === "verify" && this.refuseProbes !== undefined) {
      const code = this.refuseProbes;
      this.#later(() => connection === this.#connection && this.probes.handleReply({ type: "writeNack", reqId: message.reqId, code, message: "refused by the fake" }));
      return;
    }
    const lsn = this.log.length + 1;
    this.log.push({ lsn, message, payload: payload?.slice() });
    this.#later(() => {
      if (connection === this.#connection) this.probes.handleReply({ type: "writeAck", reqId: message.reqId, lsn });
    });
  }

  #later(fn: () => void): void {
    const delay = Math.floor(this.random() * ((this.options.ackDelayMsMax ?? 2) + 1));
    const timer = setTimeout(() => {
      this.#pendingTimers.delete(timer);
      fn();
    }, delay);
    this.#pendingTimers.add(timer);
  }

  /** One replica step: processes up to applyBatch records in LSN order. */
  applySome(): void {
    const batch = this.options.applyBatch ?? 8;
    for (let count = 0; count < batch && this.appliedUpTo < this.log.length; count += 1) {
      const record = this.log[this.appliedUpTo]!;
      this.appliedUpTo += 1;
      holdForSets(record, this.#held, (each) => this.#process(each));
    }
  }

  #process(record: LoggedRecord): void {
    const { message, payload } = record;
    if (message.kind === "resyncEnd") return;
    if (message.kind === "verify") {
      const differing = compareDigests(this.replica, message.offset, message.length, message.verifyBlockBytes!, payload!);
      this.outcomes.push({ lsn: record.lsn, differing });
      const connection = this.#connection;
      if (!this.dropReports) {
        this.#later(() => connection === this.#connection && this.probes.handleVerifyReport({ type: "verifyReport", wrl: message.wrl, device: message.device, lsn: record.lsn, offset: message.offset, length: message.length, differing }));
      }
      return;
    }
    if (message.zero === true) this.replica.fill(0, message.offset, message.offset + message.length);
    else if (message.length > 0) this.replica.set(payload!, message.offset); // an empty resync record only opens a set
  }

  /** Waits until the replica processed everything staging logged so far. */
  async drained(): Promise<void> {
    while (this.appliedUpTo < this.log.length || this.#held.size > 0) await Bun.sleep(2);
  }

  /** Log records of kind verify. */
  probeRecords(): LoggedRecord[] {
    return this.log.filter((record) => record.message.kind === "verify");
  }

  /** Records carrying data (ordered writes and resync). */
  dataRecords(): LoggedRecord[] {
    // Empty resync records only open a set: no data travels with them.
    return this.log.filter((record) => record.message.kind === undefined || (record.message.kind === "resync" && record.message.length > 0));
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.verifier.stop();
    this.probes.stop();
    this.core.abort();
    for (const timer of this.#pendingTimers) clearTimeout(timer);
    this.#pendingTimers.clear();
    await this.map?.close().catch(() => undefined);
  }
}

/** What a replica reports for a probe: the blocks whose sha256 differs from the digest, merged. */
export function compareDigests(image: Uint8Array, offset: number, length: number, blockBytes: number, digests: Uint8Array): ByteRange[] {
  const differing: ByteRange[] = [];
  for (let at = offset, index = 0; at < offset + length; at += blockBytes, index += 1) {
    const actual = createHash("sha256").update(image.subarray(at, at + blockBytes)).digest();
    if (actual.equals(digests.subarray(index * verifyDigestBytes, (index + 1) * verifyDigestBytes))) continue;
    const last = differing.at(-1);
    if (last !== undefined && last.offset + last.length === at) last.length += blockBytes;
    else differing.push({ offset: at, length: blockBytes });
  }
  return differing;
}

/**
 * A fake replica's resync sets: a device's records from its first resync record to its
 * resyncEnd are held, then processed together, in order (as the replica WRL does).
 */
export function holdForSets<R extends { message: WriteMessage }>(record: R, held: Map<string, R[]>, process: (record: R) => void): void {
  const { device, kind } = record.message;
  const waiting = held.get(device);
  if (kind === "resync" && waiting === undefined) held.set(device, [record]);
  else if (kind === "resyncEnd" && waiting !== undefined) {
    held.delete(device);
    for (const each of waiting) process(each);
  } else if (waiting !== undefined) waiting.push(record);
  else process(record);
}
