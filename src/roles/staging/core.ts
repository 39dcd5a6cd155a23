/**
 * StagingCore: the staging server's logic without sockets. WRLs, the links to the replicas, the
 * device state store and the clock come from outside, so the same code runs in `druvaa staging
 * serve` and in an in-process simulation.
 *
 * Every WRL is one consistency group: the order in which writes of all its clients are appended
 * is a linear extension of "depends on" (a client sends a dependent write only after the write
 * it depends on was acked, i.e. was durable in the WRL). One Relay per WRL ships it. The WRLs
 * served may change while it runs (`--managed`, managed.ts): addWrl, changeRelay and removeWrl
 * touch only the WRL they name (core-wrls.ts sets up an entry).
 *
 * attach (decision table, checked in this order; nothing is persisted unless the last row):
 *   staging stopping                                 refused SHUTTING_DOWN
 *   no WRL of that name                              refused WRL_UNKNOWN
 *   device name longer than a WRL record holds       refused DEVICE_NAME_INVALID
 *   the client's TLS certificate does not name it   refused DEVICE_NOT_ALLOWED
 *   another connected client holds the device        refused DEVICE_BUSY (the same node id
 *                                                      reconnecting takes it over)
 *   bigger than the replica's device of that name    refused DEVICE_TOO_BIG (both sizes named;
 *     (when the replica has told its sizes)            only when the relay heard them)
 *   devices-WRLNAME.json cannot be saved             refused IO_ERROR
 *   otherwise                                        saved (if changed), then accepted
 *
 * write (decision table; appends are issued in arrival order, and a connection's answers may
 * interleave but each comes only after its record is durable):
 *   staging stopping                                 writeNack SHUTTING_DOWN
 *   device not attached on this connection / WRL     writeNack DEVICE_UNKNOWN
 *   outside the attached size or not aligned to      writeNack OUT_OF_RANGE
 *     its logical block size
 *   append → {ok: true, lsn} (durable)                writeAck {reqId, lsn}
 *   append → full                                    writeNack WRL_FULL (nothing written)
 *   append → too-large                               writeNack OUT_OF_RANGE
 *   append rejects: WRL closed / I/O failed          writeNack SHUTTING_DOWN / IO_ERROR
 */
import { assert } from "../../assert.ts";
import { protocolTextLengthMax, stagingShutdownWaitMs, wrlDeviceNameBytesMax } from "../../constants.ts";
import { DruvaaError } from "../../errors.ts";
import { logger } from "../../log.ts";
import type { AttachMessage, Message, WriteMessage, WriteNackCode } from "../../protocol/messages.ts";
import type { CompressionSetting } from "./compression.ts";
import type { CoalesceSetting } from "./relay-coalesce.ts";
import { allowsDevice } from "../../tls/identity.ts";
import { wrlAppendOf } from "./records.ts";
import type { StagingCoreStatus } from "./core-status.ts";
import { openWrlEntry, relayOf, type RelaySettings, type StagingLog, type StagingWrlSpec, type WrlEntry } from "./core-wrls.ts";
import { realClock, type Clock, type Relay, type RelayTargets } from "./relay.ts";
import { RecentEvents } from "./relay-rpo.ts";
import type { RpoEvent } from "./rpo.ts";
import { ClientSession, sessionDeviceKey, type SessionPeer } from "./session.ts";
import type { ShipmentLimits } from "./shipment.ts";
import type { AttachedDevice, DeviceStateStore, WrlDevicesState } from "./state.ts";

export type { StagingCoreStatus, StagingWrlStatus } from "./core-status.ts";
export type { StagingLog, StagingWrlSpec } from "./core-wrls.ts";

const log = logger("staging");

export interface StagingCoreOptions {
  wrls: readonly StagingWrlSpec[];
  store: DeviceStateStore;
  clock?: Clock;
  /** Shipment bounds and window of the relays (tests make them small). */
  shipmentLimits?: ShipmentLimits;
  relayWindowMax?: number;
  /** zstd compression of every relay's shipments (--compression); default off. */
  compression?: CompressionSetting;
  /** Coalescing of every relay's shipments (--coalesce); default off. */
  coalesce?: CoalesceSetting;
  /** Per WRL name: its --rate-limit, --schedule and --rpo (relay-flags.ts); default none. */
  relayTargets?: ReadonlyMap<string, RelayTargets>;
  /**
   * True when the bytes handed to handle()/write() are never changed afterwards by whoever
   * received them (SocketConnection: Bun hands out fresh chunks and the frame decoder never
   * reuses a buffer it delivered from). Large payloads are then kept without a copy. Default
   * false: every payload is copied, as if it were a reused receive buffer.
   */
  receivedBytesStay?: boolean;
}

type AttachRefusal = { code: string; message: string };

/**
 * The WRL keeps the bytes it is given (its record cache hands them to the relay without a copy)
 * for as long as the record is unshipped, so they must not change meanwhile. Where received bytes
 * stay as they are (`receivedBytesStay`), a payload that is most of its buffer (a large write,
 * assembled by the frame decoder in a buffer of its own) is kept as it is: copying 1 MiB writes
 * into fresh buffers was a large part of staging's CPU. A small payload is still copied out
 * (cheap): as a view it would pin the whole receive chunk it came from (up to hundreds of KB,
 * shared with other frames) while the cache counts only the view.
 */
function ownedPayload(payload: Uint8Array, receivedBytesStay: boolean): Uint8Array {
  return receivedBytesStay && payload.byteLength * 2 >= payload.buffer.byteLength ? payload : payload.slice();
}

export class StagingCore {
  readonly #wrls: Map<string, WrlEntry>;
  readonly #store: DeviceStateStore;
  readonly #clock: Clock;
  readonly #sessions = new Set<ClientSession>();
  readonly #receivedBytesStay: boolean;
  /** The relay settings every WRL shares, and the RPO state changes of every WRL (status `events`). */
  readonly #settings: RelaySettings;
  #started = false;
  #stopping = false;

  private constructor(wrls: Map<string, WrlEntry>, store: DeviceStateStore, settings: RelaySettings, receivedBytesStay: boolean) {
    this.#wrls = wrls;
    this.#store = store;
    this.#settings = settings;
    this.#clock = settings.clock;
    this.#receivedBytesStay = receivedBytesStay;
  }

  /** Loads each WRL's attached devices and sets up its relay (not started: see start()). */
  static async open(options: StagingCoreOptions): Promise<StagingCore> {
    const { shipmentLimits, relayWindowMax, compression, coalesce, relayTargets } = options;
    const settings: RelaySettings = { clock: options.clock ?? realClock, events: new RecentEvents<RpoEvent>(), shipmentLimits, relayWindowMax, compression, coalesce, relayTargets };
    const wrls = new Map<string, WrlEntry>();
    for (const spec of options.wrls) {
      assert(!wrls.has(spec.name), `WRL ${spec.name} given twice (the CLI refuses that)`);
      wrls.set(spec.name, await openWrlEntry(spec, options.store, settings));
    }
    return new StagingCore(wrls, options.store, settings, options.receivedBytesStay ?? false);
  }

  /** WRL `name`'s log, uuid and relay (failback.ts), or undefined; wrlNames(): every WRL served. */
  wrlHandle(name: string): { name: string; uuid: string; wrl: StagingLog; relay: Relay; connectedDevices: string[] } | undefined {
    const entry = this.#wrls.get(name);
    if (entry === undefined) return undefined;
    const connectedDevices = [...entry.holders].filter(([, session]) => session.isOpen).map(([device]) => device);
    return { name, uuid: entry.uuid, wrl: entry.spec.wrl, relay: entry.relay, connectedDevices };
  }
  wrlNames = (): string[] => [...this.#wrls.keys()];

  /** Starts every relay (and, from now on, the relay of every WRL added). */
  start(): void {
    this.#started = true;
    for (const entry of this.#wrls.values()) entry.relay.start();
  }

  /**
   * Serves one more WRL (managed.ts): clients may attach to it from now on, and its relay starts
   * at once if the core has started. The WRLs already served are not touched.
   */
  async addWrl(spec: StagingWrlSpec): Promise<void> {
    assert(!this.#wrls.has(spec.name), `WRL ${spec.name} is served already`);
    const entry = await openWrlEntry(spec, this.#store, this.#settings);
    if (this.#stopping) throw new DruvaaError("SHUTTING_DOWN", `WRL ${spec.name} not added: the staging server is shutting down`, "It is added at the next start");
    assert(!this.#wrls.has(spec.name), `WRL ${spec.name} added twice at once`);
    this.#wrls.set(spec.name, entry);
    if (this.#started) entry.relay.start();
  }

  /** WRL `spec.name` relays as `spec` says now (replica, compression, targets): its relay is replaced; its clients stay attached. */
  async changeRelay(spec: StagingWrlSpec): Promise<void> {
    const entry = this.#wrls.get(spec.name);
    assert(entry !== undefined && entry.spec.wrl === spec.wrl, `WRL ${spec.name} is served with that log`);
    await entry.relay.stop();
    entry.spec = spec;
    entry.relay = relayOf(entry, this.#settings);
    if (this.#started && !this.#stopping) entry.relay.start();
  }

  /**
   * Stops serving WRL `name`: attaches and writes to it are refused from now on (WRL_UNKNOWN,
   * DEVICE_UNKNOWN), appends in flight still complete, its relay stops. The log stays open: its
   * owner closes it. Records it still holds stay in it, unrelayed (managed.ts refuses that case at prepare).
   */
  async removeWrl(name: string): Promise<void> {
    const entry = this.#wrls.get(name);
    if (entry === undefined) return;
    this.#wrls.delete(name);
    for (const [device, session] of entry.holders) session.devices.delete(sessionDeviceKey(name, device));
    entry.holders.clear();
    await entry.relay.stop();
    await entry.saves;
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  /** A client connected (handshake done). Its messages go to handle(); close it with closeSession(). */
  openSession(peer: SessionPeer): ClientSession {
    const session = new ClientSession(peer);
    this.#sessions.add(session);
    return session;
  }

  /** The connection is gone: its devices are free for another client; writes in flight still complete. */
  closeSession(session: ClientSession): void {
    session.markClosed();
    this.#sessions.delete(session);
    for (const device of session.devices.values()) {
      const entry = this.#wrls.get(device.wrl);
      if (entry?.holders.get(device.name) === session) entry.holders.delete(device.name);
    }
  }

  /**
   * One message of a client, in arrival order. Resolves when the next one may be handled: an
   * attach once answered, a write once issued to the WRL and the connection is under its
   * in-flight bounds (the caller stops reading meanwhile). Returns false for a message that does
   * not belong on the data port (the caller closes the connection).
   */
  async handle(session: ClientSession, message: Message, payload: Uint8Array): Promise<boolean> {
    switch (message.type) {
      case "attach":
        session.reply(await this.attach(session, message));
        return true;
      case "write":
        this.write(session, message, payload);
        await session.room();
        return true;
      case "ping":
        session.reply({ type: "pong", nonce: message.nonce });
        return true;
      default:
        return false;
    }
  }

  /** Answers an attach (decision table above). */
  async attach(session: ClientSession, message: AttachMessage): Promise<Message> {
    const refuse = (refusal: AttachRefusal): Message => {
      log.warn(`refused to attach ${message.device} (${message.sizeBytes} bytes) of ${session.nodeId} to WRL ${message.wrl}: ${refusal.code}: ${refusal.message}`);
      return { type: "attachAck", device: message.device, wrl: message.wrl, accepted: false, error: { code: refusal.code, message: refusal.message.slice(0, protocolTextLengthMax) } };
    };
    if (this.#stopping) return refuse({ code: "SHUTTING_DOWN", message: "the staging server is shutting down; attach again after its restart" });
    const entry = this.#wrls.get(message.wrl);
    if (entry === undefined) {
      return refuse({ code: "WRL_UNKNOWN", message: `this staging server has no WRL named ${message.wrl} (it serves: ${[...this.#wrls.keys()].join(", ")})` });
    }
    if (new TextEncoder().encode(message.device).length > wrlDeviceNameBytesMax) {
      return refuse({ code: "DEVICE_NAME_INVALID", message: `device name ${message.device.slice(0, 80)} is longer than the ${wrlDeviceNameBytesMax} bytes a WRL record holds` });
    }
    const identity = session.identity;
    if (identity !== undefined && !allowsDevice(identity, message.device)) {
      return refuse({ code: "DEVICE_NOT_ALLOWED", message: `the certificate of ${identity.name} (serial ${identity.serial}) does not allow device ${message.device} (it allows: ${identity.devices.join(", ")})` });
    }
    const holder = entry.holders.get(message.device);
    if (holder !== undefined && holder !== session) {
      if (holder.nodeId !== session.nodeId) {
        return refuse({ code: "DEVICE_BUSY", message: `device ${message.device} of WRL ${message.wrl} is held by client ${holder.nodeId} (${holder.address}), which is connected` });
      }
      log.info(`client ${session.nodeId} (${session.address}) takes over device ${message.device} of WRL ${message.wrl} from its earlier connection (${holder.address})`);
    }
    const replicaSizeBytes = entry.relay.replicaDeviceSize(message.device);
    if (replicaSizeBytes !== undefined && message.sizeBytes > replicaSizeBytes) {
      return refuse({
        code: "DEVICE_TOO_BIG",
        message: `device ${message.device} has ${message.sizeBytes} bytes, but the replica's device ${message.device} (${entry.spec.replicaAddress}) has only ${replicaSizeBytes} bytes`,
      });
    }
    if (entry.relay.knowsReplicaDevices && replicaSizeBytes === undefined) {
      log.warn(`device ${message.device} attached to WRL ${message.wrl}, but replica ${entry.spec.replicaAddress} has no device of that name: it will refuse the records until it is started with --device ${message.device}=PATH`);
    }
    // Held from here on, so a concurrent attach of the same device sees it while the state saves.
    entry.holders.set(message.device, session);
    try {
      await this.#remember(entry, { name: message.device, sizeBytes: message.sizeBytes, logicalBlockSizeBytes: message.logicalBlockSizeBytes, clientNodeId: session.nodeId, attachedAt: new Date(this.#clock.now()).toISOString() });
    } catch (error) {
      if (entry.holders.get(message.device) === session) entry.holders.delete(message.device);
      return refuse({ code: "IO_ERROR", message: `cannot save ${this.#store.where(message.wrl)}: ${error instanceof Error ? error.message : String(error)}` });
    }
    if (!session.isOpen) {
      if (entry.holders.get(message.device) === session) entry.holders.delete(message.device);
    } else {
      session.devices.set(sessionDeviceKey(message.wrl, message.device), { wrl: message.wrl, name: message.device, sizeBytes: message.sizeBytes, logicalBlockSizeBytes: message.logicalBlockSizeBytes });
    }
    log.info(`client ${session.nodeId} (${session.address}) attached ${message.device} (${message.sizeBytes} bytes) to WRL ${message.wrl}`);
    return { type: "attachAck", device: message.device, wrl: message.wrl, accepted: true, wrlUuid: entry.uuid };
  }

  /** Issues a write (decision table above); the answer goes to session.reply() once it is known. */
  write(session: ClientSession, message: WriteMessage, payload: Uint8Array): void {
    const nack = (code: WriteNackCode, text: string) => session.reply({ type: "writeNack", reqId: message.reqId, code, message: text.slice(0, protocolTextLengthMax) });
    if (this.#stopping) return nack("SHUTTING_DOWN", "the staging server is shutting down; send it again after its restart");
    const entry = this.#wrls.get(message.wrl);
    const device = session.devices.get(sessionDeviceKey(message.wrl, message.device));
    if (entry === undefined || device === undefined || entry.holders.get(message.device) !== session) {
      return nack("DEVICE_UNKNOWN", `device ${message.device} is not attached to WRL ${message.wrl} on this connection; send attach first`);
    }
    const end = message.offset + message.length;
    if (end > device.sizeBytes || message.offset % device.logicalBlockSizeBytes !== 0 || message.length % device.logicalBlockSizeBytes !== 0) {
      return nack("OUT_OF_RANGE", `write of ${message.length} bytes at ${message.offset} is outside device ${message.device} (${device.sizeBytes} bytes) or not aligned to its ${device.logicalBlockSizeBytes}-byte blocks`);
    }
    const input = wrlAppendOf(message, payload.length === 0 ? new Uint8Array(0) : ownedPayload(payload, this.#receivedBytesStay));
    const data = input.data;
    session.started(data.length);
    entry.spec.wrl.append(input).then(
      (result) => {
        session.finished(data.length);
        if (result.ok) {
          entry.lag.appended(result.lsn, data.length, this.#clock.now());
          entry.relay.notify();
          session.reply({ type: "writeAck", reqId: message.reqId, lsn: result.lsn });
        } else if (result.reason === "full") {
          nack("WRL_FULL", `WRL ${message.wrl} is full (${result.freeBytes} bytes free, ${result.neededBytes} needed) until the replica catches up`);
        } else {
          nack("OUT_OF_RANGE", `a write of ${result.payloadBytes} bytes is larger than WRL ${message.wrl} can hold in one record (${result.maxPayloadBytes} bytes)`);
        }
      },
      (error: unknown) => {
        session.finished(data.length);
        const code = (error as { code?: unknown }).code;
        if (code === "WRL_CLOSED") return nack("SHUTTING_DOWN", "the staging server is shutting down; send it again after its restart");
        log.error(`WRL ${message.wrl}: append failed: ${error instanceof Error ? error.message : String(error)}`);
        nack("IO_ERROR", `WRL ${message.wrl} could not log the write: ${error instanceof DruvaaError ? `${error.code}: ${error.message}` : String(error)}`);
      },
    );
  }

  status(): StagingCoreStatus {
    const now = this.#clock.now();
    const connected = (entry: WrlEntry, name: string) => entry.holders.get(name)?.isOpen === true;
    return {
      wrls: [...this.#wrls.values()].map((entry) => {
        const info = entry.spec.wrl.info();
        const replica = entry.relay.status();
        const drained = replica.appliedLsn >= info.headLsn;
        return {
          name: entry.spec.name,
          uuid: entry.uuid,
          devicePaths: [...entry.spec.devicePaths],
          sizeBytes: info.sizeBytes,
          usedBytes: info.usedBytes,
          freeBytes: info.freeBytes,
          fillRatio: info.sizeBytes === 0 ? 0 : info.usedBytes / info.sizeBytes,
          headLsn: info.headLsn,
          tailLsn: info.tailLsn,
          recordCount: info.recordCount,
          pendingAppends: info.pendingAppendCount,
          lagBytes: drained ? 0 : entry.lag.lagBytes(),
          lagSeconds: drained ? 0 : entry.lag.lagSeconds(now),
          appendedBytes: entry.lag.appendedBytes,
          ackedBytes: entry.lag.ackedBytes,
          ...entry.relay.targetStatus(),
          replica,
          devices: [...entry.devices.values()].map((device) => ({ name: device.name, sizeBytes: device.sizeBytes, clientNodeId: device.clientNodeId, connected: connected(entry, device.name) })),
        };
      }),
      clients: [...this.#sessions].map((session) => ({
        nodeId: session.nodeId,
        address: session.address,
        inflightWrites: session.inflightWrites,
        devices: [...session.devices.values()].map((device) => ({ wrl: device.wrl, name: device.name })),
      })),
      events: this.#settings.events.list(),
    };
  }

  /**
   * SIGTERM: new attaches and writes are refused (SHUTTING_DOWN: clients send them again after
   * the restart), appends in flight finish and are answered (up to `waitMs`), then the relays
   * stop. The WRLs stay open: their owner closes them (that writes the final checkpoint).
   */
  async stop(waitMs = stagingShutdownWaitMs): Promise<void> {
    this.#stopping = true;
    const idle = Promise.all([...this.#sessions].map((session) => session.idle()));
    let cancel: (() => void) | undefined;
    const timedOut = new Promise<boolean>((resolve) => (cancel = this.#clock.schedule(waitMs, () => resolve(true))));
    const late = await Promise.race([idle.then(() => false), timedOut]);
    cancel?.();
    if (late) log.warn(`appends still in flight after ${waitMs} ms; stopping anyway (they were not acknowledged)`);
    await Promise.all([...this.#wrls.values()].map((entry) => entry.relay.stop()));
  }

  /** Saves the WRL's devices with `device` in them, unless it is there already as it is. */
  async #remember(entry: WrlEntry, device: AttachedDevice): Promise<void> {
    const save = entry.saves.then(async () => {
      const known = entry.devices.get(device.name);
      if (known !== undefined && known.sizeBytes === device.sizeBytes && known.logicalBlockSizeBytes === device.logicalBlockSizeBytes && known.clientNodeId === device.clientNodeId) return;
      const devices = new Map(entry.devices);
      devices.set(device.name, device);
      const state: WrlDevicesState = { version: 1, wrl: entry.spec.name, wrlUuid: entry.uuid, devices: [...devices.values()] };
      await this.#store.save(state);
      entry.devices = devices;
    });
    entry.saves = save.catch(() => undefined);
    return save;
  }
}

