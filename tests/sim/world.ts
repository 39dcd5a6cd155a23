/**
 * A whole druvaa system in one process: 1–2 clients, one staging server with one WRL (a
 * cross-client consistency group) and its relay, one replica — the real cores, wired with
 * simulated disks, a simulated network and a manual clock (see processes.ts, network.ts,
 * disk.ts, clock.ts). The test drives it step by step: issue writes, deliver frames, let time
 * pass, drop connections, kill or power off staging, power off the replica, inject I/O errors;
 * the world records what the application saw (history.ts) and checks the replica at every
 * consistent point it claims:
 *   - at every save of the replica's applied LSN (after the writes of a shipment, or of a group
 *     of queued shipments, were flushed, under the apply lock: docs/pipeline.md "Consistent
 *     points are shipment boundaries");
 *   - right after a replica crash and restart, when the crashed process had not started applying
 *     anything past what it had saved.
 * After a mid-apply replica crash or a failed apply, devices without a replica WRL may be torn
 * until re-delivery: checks until then are deferred (stats.deferredChecks), not skipped.
 */
import { Random } from "../../src/io/random.ts";
import type { ReplicaState } from "../../src/roles/replica/state.ts";
import type { CompressionSetting } from "../../src/roles/staging/compression.ts";
import type { CoalesceSetting } from "../../src/roles/staging/relay-coalesce.ts";
import type { ShipmentLimits } from "../../src/roles/staging/shipment.ts";
import { MemoryDeviceStateStore } from "../../src/roles/staging/state.ts";
import { ManualClock, turn } from "./clock.ts";
import { Activity, FencedDisk } from "./disk.ts";
import { History, describe, type DeviceSpec, type SimWrite } from "./history.ts";
import { SimNetwork, type SimConnection } from "./network.ts";
import { memoryClientDisks, newClientDisks } from "./client-disks.ts";
import { clientInSync, finalProblem } from "./final-check.ts";
import { ReplicaProcess, SimClient, StagingProcess, wrlUuid } from "./processes.ts";

/** Deliberately broken variants the properties must catch; "no-rs-wrl": resync sets applied as they come. */
export type Broken = "reverse-apply" | "early-complete" | "no-rs-wrl" | "no-data-flush";

export interface WorldOptions {
  seed: number;
  /** 1 or 2; device i belongs to client i % clients. */
  clients: number;
  /** One size per device (1–3 devices), multiples of 512. */
  deviceSizesBytes: number[];
  wrlSizeBytes?: number;
  shipmentLimits?: ShipmentLimits;
  relayWindowMax?: number;
  broken?: Broken;
  /** Give the replica a replica WRL (RS-WRL) of this size: resync sets are applied as a whole. */
  rsWrlSizeBytes?: number;
  /** Give every client a change map: disconnected mode (ack timeout, WRL full, lost link) and resync. */
  changeMap?: boolean;
  /** The relays' coalescing and compression; WRL payloads encrypted at rest with payloadKey. */
  coalesce?: CoalesceSetting;
  compression?: CompressionSetting;
  payloadKey?: Uint8Array;
}

type Optional = "broken" | "rsWrlSizeBytes" | "changeMap" | "coalesce" | "compression" | "payloadKey";
const KiB = 1024;
const MiB = 1024 * KiB;

export const defaultShipmentLimits: ShipmentLimits = { payloadBytesMax: 64 * KiB, recordsMax: 4, headerBytesMax: 60 * KiB };

export interface WorldStats {
  checks: number;
  deferredChecks: number;
  /** Deferred points whose devices did not match (a crash mid-apply, before re-delivery). */
  inconsistentUntilRedelivery: number;
  /** Power losses; restarts: killed without one (also after a WRL I/O error); recovery: during the restart. */
  stagingCrashes: number;
  stagingRestarts: number;
  injectedIoErrors: number;
  recoveryCrashes: number;
  replicaCrashes: number;
  droppedLinks: number;
  appendedBytes: number;
  failedWrites: number;
  appliedLsnMax: number;
  clientCrashes: number;
  clientPowerLosses: number;
  /** Coalesced, and zstd-compressed, shipments the replica was sent. */
  coalescedSpans: number;
  spanParts: number;
  compressedShipments: number;
}

export class World {
  readonly clock = new ManualClock();
  readonly activity = new Activity();
  readonly net = new SimNetwork(this.activity);
  readonly history: History;
  readonly wrlDisk: FencedDisk;
  readonly replicaDisks = new Map<string, FencedDisk>();
  /** The replica WRL's disk (with options.rsWrlSizeBytes), and whether it was made yet. */
  readonly rsWrlDisk: FencedDisk | undefined; rsWrlMade = false;
  readonly stagingDevices = new MemoryDeviceStateStore();
  readonly clients: SimClient[] = [];
  readonly violations: string[] = [];
  /** Every consistent point checked: the applied LSN and the ids of the writes applied, in id order. */
  readonly consistentPoints: { appliedLsn: number; writeIds: number[] }[] = [];
  readonly stats: WorldStats = { checks: 0, deferredChecks: 0, inconsistentUntilRedelivery: 0, stagingCrashes: 0, stagingRestarts: 0, injectedIoErrors: 0, recoveryCrashes: 0, replicaCrashes: 0, droppedLinks: 0, appendedBytes: 0, failedWrites: 0, appliedLsnMax: 0, clientCrashes: 0, clientPowerLosses: 0, coalescedSpans: 0, spanParts: 0, compressedShipments: 0 };
  readonly options: Required<Omit<WorldOptions, Optional>> & Pick<WorldOptions, Optional>;
  /** After a client crash the model no longer knows which in-flight writes took effect: save-point checks are deferred (counted). */
  checksOff = false;
  readonly #data: Random;
  /** Persisted replica state (survives replica crashes). */
  replicaState: ReplicaState | undefined;
  staging!: StagingProcess;
  replica!: ReplicaProcess;
  /** Checks wait until the replica has applied past every LSN a crashed replica may have half-written. */
  #replicaHorizonLsn = 0;
  readonly #pending = new Set<Promise<void>>();
  readonly #pendingByWrite = new Map<SimWrite, Promise<void>>();

  private constructor(options: WorldOptions) {
    this.options = { wrlSizeBytes: 1 * MiB, shipmentLimits: defaultShipmentLimits, relayWindowMax: 2, ...options };
    const devices: DeviceSpec[] = options.deviceSizesBytes.map((sizeBytes, index) => ({ name: `d${index}`, client: index % options.clients, sizeBytes }));
    this.history = new History(devices);
    this.#data = new Random(options.seed);
    this.wrlDisk = new FencedDisk("wrl", this.options.wrlSizeBytes, options.seed + 1, this.activity);
    this.rsWrlDisk = options.rsWrlSizeBytes === undefined ? undefined : new FencedDisk("rs-wrl", options.rsWrlSizeBytes, options.seed + 97, this.activity);
    for (const [index, spec] of devices.entries()) this.replicaDisks.set(spec.name, new FencedDisk(`replica-${spec.name}`, spec.sizeBytes, options.seed + 2 + index, this.activity));
  }

  static async create(options: WorldOptions): Promise<World> {
    if (options.clients < 1 || options.clients > options.deviceSizesBytes.length) throw new RangeError("every client needs a device of its own");
    const world = new World(options);
    world.replica = await ReplicaProcess.start(world);
    world.staging = await StagingProcess.create(world).boot(true);
    for (let index = 0; index < options.clients; index += 1) {
      const sizes = world.clientDeviceSizes(index);
      world.clients.push(await SimClient.start(world, index, options.changeMap === true ? await newClientDisks(world, index, sizes) : memoryClientDisks(sizes)));
    }
    for (const client of world.clients) client.connect(world.staging);
    // As `druvaa client attach` does before it serves NBD: attached, and the relay has resumed.
    await world.pump();
    return world;
  }

  /** The devices of client `index` and their sizes. */
  clientDeviceSizes(index: number): Map<string, number> {
    return new Map(this.history.devices.filter((spec) => spec.client === index).map((spec) => [spec.name, spec.sizeBytes]));
  }

  get broken(): Broken | undefined { return this.options.broken; }

  violation(text: string): void {
    this.violations.push(text);
  }

  // ---- the application ------------------------------------------------------------------------

  /** Issues a write (or WRITE_ZEROES) of `device` through its client's NBD export; returns its record. */
  issue(device: string, offset: number, length: number, zero = false): SimWrite {
    const spec = this.history.devices.find((d) => d.name === device)!;
    const data = new Uint8Array(length);
    const view = new DataView(data.buffer);
    if (!zero) // half of each 512-byte sector random, half a constant: unique per write, and compressible
      for (let index = 0; index + 4 <= length; index += 4) view.setUint32(index, index % 512 < 256 ? this.#data.nextUint32() : 0x64727661);
    const write = this.history.issued({ client: spec.client, device, offset, length, data, zero });
    const exp = this.clients[spec.client]!.exports.get(device)!;
    this.activity.bump();
    const done = (zero ? exp.writeZeroes(offset, length, false, false) : exp.write(offset, data, false)).then(
      () => {
        write.completedAt = this.history.tick();
      },
      (error: unknown) => {
        write.completedAt = this.history.tick();
        write.failed = String((error as { code?: unknown }).code ?? error);
        this.stats.failedWrites += 1;
      },
    );
    const tracked = done.finally(() => {
      this.activity.bump();
      this.#pending.delete(tracked);
      this.#pendingByWrite.delete(write);
    });
    this.#pending.add(tracked);
    this.#pendingByWrite.set(write, tracked);
    return write;
  }

  /** Client `index` died: the writes it had in flight never answer (the application died with it). */
  abandonWritesOf(index: number): void {
    for (const [write, tracked] of this.#pendingByWrite) {
      if (write.client !== index) continue;
      write.completedAt = this.history.tick();
      write.failed = "CLIENT_CRASHED";
      this.#pending.delete(tracked);
      this.#pendingByWrite.delete(write);
    }
  }

  // ---- the scheduler --------------------------------------------------------------------------

  /** Runs event-loop turns until nothing has happened for a few of them (no disk I/O pending). */
  async settle(): Promise<void> {
    let quiet = 0;
    for (let turns = 0; turns < 10_000; turns += 1) {
      const before = this.activity.events;
      await turn();
      if (this.activity.events === before && this.activity.pendingOps === 0) {
        quiet += 1;
        if (quiet >= 3) return;
      } else {
        quiet = 0;
      }
    }
    throw new Error("the simulated system never came to rest (a busy loop?)");
  }

  /** Delivers up to `count` frames, each from a queue `random` picks, with `turnsAfter` turns after each. */
  async deliver(count: number, random: Random, turnsAfter: number): Promise<number> {
    let delivered = 0;
    for (; delivered < count; delivered += 1) {
      if (!this.net.deliverOne(random)) break;
      for (let index = 0; index < turnsAfter; index += 1) await turn();
    }
    return delivered;
  }

  /** Delivers every frame `only` accepts (by label, e.g. "relay->replica", and direction), settling after each, until none is left (or `framesMax`). */
  async pump(only: (label: string, toB: boolean) => boolean = () => true, framesMax = Number.POSITIVE_INFINITY): Promise<number> {
    const random = new Random(this.options.seed ^ 0x9e3779b9);
    let delivered = 0;
    await this.settle();
    while (delivered < framesMax && this.net.deliverOne(random, only)) {
      delivered += 1;
      if (delivered > 100_000) throw new Error("more than 100000 frames: a message loop?");
      await this.settle();
    }
    return delivered;
  }

  /** Lets `ms` of simulated time pass (relay backoff and idle polls, resume timeouts, client retries). */
  async tick(ms: number): Promise<void> {
    await this.clock.advance(ms, () => this.settle());
  }

  // ---- faults ---------------------------------------------------------------------------------

  /**
   * Power loss at staging: the WRL disk drops/keeps/tears unsynced sectors; restart with recovery;
   * clients reconnect. With `againAfterTurns`, the power goes again that many turns into the
   * restart (during recovery's own writes), and staging restarts once more.
   */
  async crashStaging(againAfterTurns?: number): Promise<void> {
    this.stats.stagingCrashes += 1;
    await this.#restartStaging(() => this.wrlDisk.crash(), againAfterTurns);
  }

  /** Staging dies without a power loss (SIGKILL, or restarted after its WRL failed): unflushed writes stay in the page cache. */
  async restartStaging(): Promise<void> {
    this.stats.stagingRestarts += 1;
    await this.#restartStaging(() => this.wrlDisk.restart());
  }

  async #restartStaging(fault: () => void, againAfterTurns?: number): Promise<void> {
    this.staging.kill();
    for (const client of this.clients) client.lost();
    fault();
    if (againAfterTurns !== undefined) {
      const booting = StagingProcess.create(this);
      void booting.boot(false).catch((error: unknown) => this.violation(`staging recovery failed: ${String(error)}`));
      for (let index = 0; index < againAfterTurns; index += 1) await turn();
      booting.kill();
      this.wrlDisk.crash();
      this.stats.recoveryCrashes += 1;
    }
    this.staging = await StagingProcess.create(this).boot(false);
    for (const client of this.clients) client.connect(this.staging);
  }

  /** The network drops one connection (a client's link to staging, or the relay's to the replica). */
  dropLink(which: number): void {
    const links = [...this.clients.map((client) => client.connection), this.replica.relayConnection()].filter((link): link is SimConnection => link !== undefined);
    if (links.length === 0) return;
    this.stats.droppedLinks += 1;
    links[which % links.length]!.abort();
  }

  /** Power loss at the replica: its disks drop/keep/tear unsynced sectors; restart from its saved state. */
  async crashReplica(): Promise<void> {
    this.stats.replicaCrashes += 1;
    this.replica.kill();
    this.#replicaHorizonLsn = Math.max(this.#replicaHorizonLsn, this.replica.startedLsnMax);
    for (const disk of this.replicaDisks.values()) disk.crash();
    this.rsWrlDisk?.crash();
    this.replica = await ReplicaProcess.start(this);
    const appliedLsn = this.replica.core.appliedLsn(wrlUuid);
    if (appliedLsn >= this.#replicaHorizonLsn && !this.checksOff) {
      this.#checkPoint(appliedLsn, "right after a replica crash and restart");
      return;
    }
    this.stats.deferredChecks += 1;
    // Not a violation (docs/pipeline.md: no replica WRL yet), but counted: how often a crash
    // mid-apply really leaves the devices matching no consistent point until re-delivery.
    if (this.history.check(appliedLsn, (name) => this.replicaDisks.get(name)!.snapshot()) !== undefined) this.stats.inconsistentUntilRedelivery += 1;
  }

  /**
   * Delivers shipments to the replica (nothing else) until it is applying one, then crashes it
   * `turnsAfter` turns later: a power loss in the middle of an apply. Crashes anyway if no
   * shipment comes within a few frames.
   */
  async crashReplicaMidApply(turnsAfter: number, random: Random): Promise<void> {
    for (let frames = 0; frames < 8 && !this.replica.core.applying; frames += 1) {
      if (!this.net.deliverOne(random, (label, toReplica) => label === "relay->replica" && toReplica)) break;
      await turn();
    }
    for (let index = 0; index < turnsAfter; index += 1) await turn();
    await this.crashReplica();
  }

  // ---- checks ---------------------------------------------------------------------------------

  /** Injects an I/O error at the WRL's next write or flush (the WRL stops: WRL_IO_FAILED). */
  failWrl(flush: boolean): void {
    this.stats.injectedIoErrors += 1;
    if (flush) this.wrlDisk.sim.failNextFlushes(1);
    else this.wrlDisk.sim.failNextWrites(1);
  }

  /** Injects an I/O error at a replica device's next write or flush (that apply fails; re-delivery repairs it). */
  failReplica(which: number, flush: boolean): void {
    this.stats.injectedIoErrors += 1;
    const disk = [...this.replicaDisks.values()][which % this.replicaDisks.size]!;
    if (flush) disk.sim.failNextFlushes(1);
    else disk.sim.failNextWrites(1);
  }

  /** The replica refused a shipment with IO_ERROR: its records may be half-written until re-delivered. */
  replicaApplyFailed(lastLsn: number): void {
    this.#replicaHorizonLsn = Math.max(this.#replicaHorizonLsn, lastLsn);
  }

  /** Called by the replica's state store on every save (a claimed consistent point). */
  replicaSaved(state: ReplicaState): void {
    const appliedLsn = state.wrls.find((wrl) => wrl.uuid === wrlUuid)?.appliedLsn ?? 0;
    this.stats.appliedLsnMax = Math.max(this.stats.appliedLsnMax, appliedLsn);
    if (appliedLsn < this.#replicaHorizonLsn || this.checksOff) {
      this.stats.deferredChecks += 1;
      return;
    }
    this.#checkPoint(appliedLsn, "at a shipAck");
  }

  #checkPoint(appliedLsn: number, where: string): void {
    this.stats.checks += 1;
    const applied = this.history.appliedSet(appliedLsn);
    if (typeof applied !== "string") this.consistentPoints.push({ appliedLsn, writeIds: [...applied].map((w) => w.id).sort((x, y) => x - y) });
    const problem = this.history.check(appliedLsn, (name) => this.replicaDisks.get(name)!.snapshot());
    if (problem !== undefined) this.violation(`${where}: ${problem}`);
  }

  /** Everything wrong so far (violations and recording anomalies; the first few), or undefined. */
  problem(): string | undefined {
    const all = [...this.violations, ...this.history.anomalies];
    if (all.length === 0) return undefined;
    return all.length <= 3 ? all.join("\n") : `${all.slice(0, 3).join("\n")}\n(and ${all.length - 3} more)`;
  }

  /** The run's observable history: two runs of one trace must give the same (replay). */
  fingerprint(): string {
    const writes = this.history.writes.map((w) => [w.id, w.reqId, w.epoch, w.completedAt, w.failed]);
    const replicas = [...this.replicaDisks].map(([name, disk]) => [name, Bun.hash(disk.snapshot()).toString(16)]);
    return JSON.stringify({ writes, points: this.consistentPoints, stats: this.stats, nowMs: this.clock.now(), replicas });
  }

  /**
   * Faults off: delivers every frame and lets time pass until every write has completed and the
   * replica has applied everything the WRL holds. Throws if that never happens (a liveness bug).
   */
  async drain(roundsMax = 300): Promise<void> {
    const random = new Random(this.options.seed ^ 0xd7a1);
    for (let round = 0; round < roundsMax; round += 1) {
      await this.settle();
      if (this.#converged()) return;
      // The operator restarts a staging server whose WRL stopped after an I/O error.
      if (this.staging.wrlFailed) await this.restartStaging();
      if (this.net.queuedFrames > 0) {
        while (this.net.queuedFrames > 0) this.net.deliverOne(random);
      } else {
        await this.tick(1_000);
      }
    }
    const wrl = this.staging.core.status().wrls[0]!;
    const inFlight = this.history.writes.filter((w) => w.completedAt === undefined).map(describe);
    throw new Error(
      `the system did not converge with faults off: WRL head ${wrl.headLsn}, tail ${wrl.tailLsn}, relay appliedLsn ${wrl.replica.appliedLsn} (${wrl.replica.lastError?.code ?? "no error"}: ${wrl.replica.lastError?.message ?? ""}), replica appliedLsn ${this.replica.core.appliedLsn(wrlUuid)}, writes in flight: ${inFlight.join(", ") || "none"}`,
    );
  }

  #converged(): boolean {
    if (this.#pending.size > 0 || this.net.queuedFrames > 0) return false;
    const wrl = this.staging.core.status().wrls[0]!;
    return wrl.pendingAppends === 0 && wrl.replica.appliedLsn >= wrl.headLsn && this.replica.core.appliedLsn(wrlUuid) >= wrl.headLsn && !this.replica.core.applying && this.clients.every(clientInSync);
  }

  /** After drain(): see final-check.ts. */
  finalProblem(): string | undefined {
    return finalProblem(this);
  }
}
