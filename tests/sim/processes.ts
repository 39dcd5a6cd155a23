/**
 * The three roles as simulated processes, each built from the real core with its devices, clock,
 * state store and connections injected:
 *   - SimClient: a ClientCore on the disks of client-disks.ts (with a change map: FencedDisks, an
 *     activity log, crashes); its staging link is a SimConnection: attach every device, then
 *     linkUp (which resends everything unacked);
 *   - StagingProcess: a real WriteLog on a FencedDisk, a StagingCore and its Relay; client
 *     connections served as src/roles/staging/server.ts does (one message at a time, through
 *     core.handle);
 *   - ReplicaProcess: a ReplicaCore on FencedDisks with a state store that lives in the world
 *     (so it survives the process), relay connections served as src/roles/replica/server.ts does
 *     (answers in arrival order, a bounded window of shipments).
 * No handshake: the connection is born past hello/helloAck. kill() is a crash: the process's
 * clock, disks, stores and connections all stop at once; what it had in memory is simply gone.
 */
import { clientReconnectDelayMsMin, replicaConnectionShipWindowMax } from "../../src/constants.ts";
import type { NbdExport } from "../../src/nbd/backend.ts";
import type { Message, ShipMessage, WriteMessage } from "../../src/protocol/messages.ts";
import { recordFlags } from "../../src/protocol/messages.ts";
import type { ChangeMap } from "../../src/changemap/index.ts";
import { ClientCore, type StagingSender } from "../../src/roles/client/core.ts";
import { ReplicaCore } from "../../src/roles/replica/core.ts";
import { ResyncLog } from "../../src/roles/replica/resync-log.ts";
import type { ReplicaState, ReplicaStateStore } from "../../src/roles/replica/state.ts";
import { nextFrame } from "../../src/roles/server-support.ts";
import { openShipment } from "../../src/protocol/ship-codec.ts";
import { StagingCore, type StagingLog } from "../../src/roles/staging/core.ts";
import type { RelayLink } from "../../src/roles/staging/relay.ts";
import type { DeviceStateStore, WrlDevicesState } from "../../src/roles/staging/state.ts";
import { WriteLog } from "../../src/wrl/write-log.ts";
import type { ClientDevice } from "../../src/roles/client/types.ts";
import { openClientDisks, startActivity, type ClientDisks, type OpenedDisks, type PrimaryDisk } from "./client-disks.ts";
import { ProcessClock } from "./clock.ts";
import type { PipeEnd, SimConnection } from "./network.ts";
import type { World } from "./world.ts";

export const wrlName = "w0";
export const wrlUuid = "0d5e7a91-3c2b-4f6e-8a1d-9b8c7d6e5f40";
export const rsWrlUuid = "7c1f2a93-5d4e-4b6a-9e8f-1a2b3c4d5e6f";

const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

// ---- client -------------------------------------------------------------------------------------

/** The client's ack timeout in the simulation (with a change map: then it diverts to the map). */
export const simAckTimeoutMs = 2_000;

export class SimClient {
  readonly core: ClientCore;
  /** What reads of each primary return now (the checks compare these). */
  readonly primaries: Map<string, PrimaryDisk>;
  readonly changeMap: ChangeMap | undefined;
  exports = new Map<string, NbdExport>();
  readonly nodeId: string;
  #connection: SimConnection | undefined;
  #alive = true;
  readonly #fakeAcked = new Set<number>();
  readonly #devices: readonly ClientDevice[];

  /**
   * A client process on `disks` (client-disks.ts): opens them as attach does, then serves. With
   * a change map, disconnected mode, resync and the activity log are on; `startEpoch` continues
   * the epochs of a process that died.
   */
  static async start(world: World, index: number, disks: ClientDisks, startEpoch?: number): Promise<SimClient> {
    const clock = new ProcessClock(world.clock);
    const opened = await openClientDisks(disks, wrlName, () => clock.now(), world.broken !== "no-data-flush");
    const client = new SimClient(world, index, clock, disks, opened, startEpoch);
    client.exports = new Map((await startActivity(opened, client.core.exports())).map((exp) => [exp.name, exp]));
    return client;
  }

  private constructor(private readonly world: World, readonly index: number, readonly clock: ProcessClock, readonly disks: ClientDisks, opened: OpenedDisks, startEpoch?: number) {
    this.nodeId = `client-${index}`;
    this.primaries = disks.primaries;
    this.changeMap = opened.changeMap;
    this.#devices = opened.devices;
    this.core = new ClientCore({
      devices: opened.devices,
      timers: this.clock,
      ...(opened.changeMap === undefined ? {} : { ackTimeoutMs: simAckTimeoutMs, resyncSetsOpen: opened.resyncSetsOpen }),
      ...(startEpoch === undefined ? {} : { startEpoch }),
    });
  }

  get alive(): boolean {
    return this.#alive;
  }

  /** SIGKILL: the process is gone (its devices and change map stay, with what was written to them). */
  kill(): void {
    this.#alive = false;
    this.clock.kill();
    const connection = this.#connection;
    this.#connection = undefined;
    connection?.abort();
  }

  /** Connects to `staging`: attach every device; once all are accepted, linkUp resends what is unacked. */
  connect(staging: StagingProcess): void {
    const connection = this.world.net.connect(this.clock, staging.clock, `${this.nodeId}->staging`);
    this.#connection = connection;
    const end = connection.a;
    const waiting = new Set(this.#devices.map((d) => d.name));
    end.onFrame((frame) => {
      const message = frame.message;
      if (!this.#alive) return;
      if (message.type === "attachAck") {
        if (!message.accepted) this.world.violation(`staging refused to attach ${message.device} of ${this.nodeId}: ${message.error?.code}: ${message.error?.message}`);
        waiting.delete(message.device);
        if (waiting.size === 0) this.core.linkUp(this.#sender(end));
      } else if (message.type === "writeAck" || message.type === "writeNack") {
        this.core.handleReply(message);
      } else {
        this.world.violation(`${this.nodeId} got an unexpected ${message.type} from staging`);
      }
    });
    void end.closed.then(() => this.lost(connection));
    staging.accept(connection);
    for (const { name, device } of this.#devices) {
      void end.send({ type: "attach", device: name, wrl: wrlName, sizeBytes: device.sizeBytes, logicalBlockSizeBytes: device.logicalBlockSizeBytes });
    }
  }

  get connection(): SimConnection | undefined {
    return this.#connection;
  }

  /**
   * The connection is gone: writes stay pending in the core until the next linkUp. After a
   * network drop the client reconnects by itself after its reconnect delay (as StagingLink
   * does); after a staging crash the world reconnects it once staging is back.
   */
  lost(connection = this.#connection): void {
    if (connection === undefined || connection !== this.#connection || !this.#alive) return;
    this.#connection = undefined;
    connection.abort();
    this.core.linkDown();
    this.clock.schedule(clientReconnectDelayMsMin, () => {
      if (this.#connection === undefined && this.#alive && this.world.staging.alive) this.connect(this.world.staging);
    });
  }

  #sender(end: PipeEnd): StagingSender {
    return {
      send: (message: WriteMessage, payload: Uint8Array | undefined) => {
        this.world.history.noteSend(this.index, message, payload);
        void end.send(message, payload).catch(() => undefined);
        if (this.world.broken === "early-complete" && !this.#fakeAcked.has(message.reqId)) {
          // Deliberately broken: the write completes to the application before staging made it
          // durable (the real ack, when it comes, is ignored as "not pending").
          this.#fakeAcked.add(message.reqId);
          queueMicrotask(() => this.core.handleReply({ type: "writeAck", reqId: message.reqId, lsn: 0 }));
        }
      },
    };
  }
}

// ---- staging ------------------------------------------------------------------------------------

export class StagingProcess {
  readonly clock: ProcessClock;
  alive = true;
  readonly connections = new Set<SimConnection>();
  wrl!: WriteLog;
  core!: StagingCore;
  /** The WRL stopped after an I/O error (WRL_IO_FAILED): only a restart brings it back. */
  wrlFailed = false;

  private constructor(private readonly world: World) {
    this.clock = new ProcessClock(world.clock);
  }

  /** A process that has not booted yet (kill() works on it while it boots). */
  static create(world: World): StagingProcess {
    return new StagingProcess(world);
  }

  /** Creates the WRL (first start) or opens it, which runs crash recovery; starts the relay. */
  async boot(fresh: boolean): Promise<this> {
    const world = this.world;
    const process = this;
    const handle = world.wrlDisk.handle();
    let uuids = 0;
    const uuidSource = () => `00000000-0000-4000-8000-${String(++uuids).padStart(12, "0")}`;
    // With payloadKey the WRL encrypts payloads at rest (recovery and the relay's reads from disk decrypt).
    const key = world.options.payloadKey === undefined ? {} : { payloadKey: world.options.payloadKey };
    process.wrl = fresh ? await WriteLog.create([handle], { uuid: wrlUuid, uuidSource, ...key }) : await WriteLog.open([handle], { uuidSource, ...key });
    if (!process.alive) return never();
    const wrl = process.wrl;
    const noteFailure = (error: unknown): never => {
      if ((error as { code?: unknown }).code === "WRL_IO_FAILED") process.wrlFailed = true;
      throw error;
    };
    const traced: StagingLog = {
      append: (input) => {
        world.stats.appendedBytes += input.data.length;
        return wrl.append(input).catch(noteFailure);
      },
      info: () => wrl.info(),
      read: async (fromLsn, maxBytes) => {
        const records = await wrl.read(fromLsn, maxBytes).catch(noteFailure);
        if (process.alive) for (const record of records) world.history.noteRecord(record);
        return records;
      },
      advanceTail: (lsn) => wrl.advanceTail(lsn).catch(noteFailure),
    };
    process.core = await StagingCore.open({
      wrls: [{ name: wrlName, wrl: traced, devicePaths: ["sim:wrl"], replicaAddress: "sim:replica", dialReplica: () => process.#dialReplica() }],
      store: new StagingStore(world, process),
      clock: process.clock,
      shipmentLimits: world.options.shipmentLimits,
      ...(world.options.coalesce === undefined ? {} : { coalesce: world.options.coalesce }),
      ...(world.options.compression === undefined ? {} : { compression: world.options.compression }),
      relayWindowMax: world.options.relayWindowMax,
    });
    if (!process.alive) return never();
    process.core.start();
    return process;
  }

  async #dialReplica(): Promise<RelayLink> {
    if (!this.alive) return never();
    const connection = this.world.net.connect(this.clock, this.world.replica.clock, "relay->replica");
    this.connections.add(connection);
    this.world.replica.accept(connection);
    return connection.a;
  }

  /** A client connected; its messages are handled one at a time, as the staging server does. */
  accept(connection: SimConnection): void {
    this.connections.add(connection);
    void this.#serve(connection.b, connection.label);
  }

  async #serve(end: PipeEnd, nodeId: string): Promise<void> {
    const session = this.core.openSession({ nodeId: nodeId.split("->")[0]!, address: `sim:${nodeId}`, reply: (message) => void end.send(message).catch(() => undefined) });
    try {
      for (;;) {
        const frame = await nextFrame(end);
        if (frame === undefined || !this.alive) return;
        if (!(await this.core.handle(session, frame.message, frame.payload))) {
          this.world.violation(`staging got a ${frame.message.type} it does not take`);
          end.abort();
          return;
        }
      }
    } finally {
      if (this.alive) this.core.closeSession(session);
    }
  }

  kill(): void {
    this.alive = false;
    this.clock.kill();
    for (const connection of this.connections) connection.abort();
  }
}

/** Staging's attached-devices state, kept in the world so it survives the process; a dead process cannot save. */
class StagingStore implements DeviceStateStore {
  constructor(private readonly world: World, private readonly process: StagingProcess) {}
  load(wrl: string): Promise<WrlDevicesState | undefined> {
    return this.world.stagingDevices.load(wrl);
  }
  save(state: WrlDevicesState): Promise<void> {
    if (!this.process.alive) return never();
    return this.world.stagingDevices.save(state);
  }
  where(wrl: string): string {
    return this.world.stagingDevices.where(wrl);
  }
}

// ---- replica ------------------------------------------------------------------------------------

export class ReplicaProcess {
  readonly clock: ProcessClock;
  alive = true;
  readonly connections = new Set<SimConnection>();
  /** The highest lastLsn of a shipment handed to this core: what a crash mid-apply may have touched. */
  startedLsnMax = 0;
  core!: ReplicaCore;

  private constructor(private readonly world: World) {
    this.clock = new ProcessClock(world.clock);
  }

  static async start(world: World): Promise<ReplicaProcess> {
    const process = new ReplicaProcess(world);
    const devices = [...world.replicaDisks].map(([name, disk]) => ({ name, device: disk.handle(), path: `sim:replica-${name}`, discardReadsZeros: true }));
    // With a replica WRL (resync sets), on its own simulated disk: made once, recovered after crashes.
    let rsWrl: ResyncLog | undefined;
    if (world.rsWrlDisk !== undefined) {
      const handle = world.rsWrlDisk.handle();
      const fresh = !world.rsWrlMade;
      world.rsWrlMade = true;
      let uuids = 0;
      const uuidSource = () => `00000000-0000-4000-9000-${String(++uuids).padStart(12, "0")}`;
      rsWrl = ResyncLog.over(fresh ? await WriteLog.create([handle], { uuid: rsWrlUuid, uuidSource }) : await WriteLog.open([handle], { uuidSource }));
    }
    process.core = await ReplicaCore.open({ devices, store: new ReplicaStore(world, process), now: () => world.clock.now(), ...(rsWrl === undefined ? {} : { rsWrl }) });
    return process;
  }

  accept(connection: SimConnection): void {
    this.connections.add(connection);
    void this.#serve(connection.b);
  }

  /** The newest relay connection still open. */
  relayConnection(): SimConnection | undefined {
    return [...this.connections].filter((connection) => connection.isOpen).at(-1);
  }

  async #serve(end: PipeEnd): Promise<void> {
    let replies: Promise<unknown> = Promise.resolve();
    const answer = (reply: Message | Promise<Message>): Promise<void> => {
      const sent = replies.then(() => reply).then((message) => (this.alive ? end.send(message) : never<void>()));
      replies = sent.catch(() => undefined);
      return sent;
    };
    const window: Promise<void>[] = [];
    for (;;) {
      const frame = await nextFrame(end);
      if (frame === undefined || !this.alive) return;
      const message = frame.message;
      if (message.type === "resume") {
        // As server.ts does: a resync set whose apply failed is applied again first.
        const reply = this.core.retryFailedSets().then((failing) => failing === undefined ? this.core.resume(message) : ({ type: "shipNack", wrl: message.wrl, code: "IO_ERROR", message: failing } as const));
        void answer(reply).catch(() => undefined);
      } else if (message.type === "ship") {
        // As server.ts does: a compressed shipment is opened before anything looks at it.
        const opened = openShipment({ message, payload: frame.payload });
        const [ship, payload] = this.world.broken === "reverse-apply" ? reversed(opened.message, opened.payload) : [opened.message, opened.payload];
        this.startedLsnMax = Math.max(this.startedLsnMax, message.lastLsn);
        if (message.coalesced === true) this.world.stats.coalescedSpans += 1;
        if (message.spanContinues === true) this.world.stats.spanParts += 1;
        if (message.codec !== undefined) this.world.stats.compressedShipments += 1;
        const reply = this.core.ship(ship, payload).then((result) => {
          // A failed apply may leave any record of the shipment half-written until re-delivered.
          if (result.type === "shipNack" && result.code === "IO_ERROR") this.world.replicaApplyFailed(message.lastLsn);
          return result;
        });
        window.push(answer(reply).catch(() => undefined));
        while (window.length >= replicaConnectionShipWindowMax) await window.shift();
      } else {
        this.world.violation(`the replica got a ${message.type} from the relay`);
        end.abort();
        return;
      }
    }
  }

  kill(): void {
    this.alive = false;
    this.clock.kill();
    for (const connection of this.connections) connection.abort();
  }
}

/**
 * The replica's state file, kept in the world. A save is atomic (as writeJsonState's rename is)
 * and is the replica's claim of a consistent point: the world checks the devices right there,
 * while the apply lock is still held and nothing else is being written.
 */
class ReplicaStore implements ReplicaStateStore {
  readonly where = "sim:replica-state.json";
  constructor(private readonly world: World, private readonly process: ReplicaProcess) {}
  async load(): Promise<ReplicaState | undefined> {
    return this.world.replicaState === undefined ? undefined : structuredClone(this.world.replicaState);
  }
  save(state: ReplicaState): Promise<void> {
    if (!this.process.alive) return never();
    this.world.replicaState = structuredClone(state);
    this.world.replicaSaved(state);
    return Promise.resolve();
  }
}

/** Deliberately broken apply: the shipment's records in reverse order (payload rearranged to match). */
function reversed(ship: ShipMessage, payload: Uint8Array): [ShipMessage, Uint8Array] {
  const pieces: Uint8Array[] = [];
  let at = 0;
  for (const record of ship.records) {
    const zero = (record.flags & recordFlags.zero) !== 0;
    pieces.push(zero ? new Uint8Array(0) : payload.subarray(at, at + record.length));
    if (!zero) at += record.length;
  }
  const out = new Uint8Array(payload.length);
  let position = 0;
  for (const piece of pieces.reverse()) {
    out.set(piece, position);
    position += piece.length;
  }
  return [{ ...ship, records: [...ship.records].reverse() }, out];
}
