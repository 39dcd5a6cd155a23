/**
 * Test doubles for the staging core: an in-memory link whose far end is a real ReplicaCore on
 * MemoryDevices (with knobs to hold answers, refuse, nack or drop), WRLs on in-memory or
 * simulated disks that outlive a WriteLog (restart and crash), and a client session that
 * collects the core's answers.
 */
import { DruvaaError } from "../../src/errors.ts";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { decodeFrame, encodeFrameBytes, type Frame } from "../../src/protocol/frame.ts";
import type { AttachAckMessage, Message, ShipMessage, ShipNackCode, WriteAckMessage, WriteNackMessage } from "../../src/protocol/messages.ts";
import { openShipment } from "../../src/protocol/ship-codec.ts";
import { ReplicaCore } from "../../src/roles/replica/core.ts";
import type { ResyncLog } from "../../src/roles/replica/resync-log.ts";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import type { StagingCore } from "../../src/roles/staging/core.ts";
import type { RelayLink } from "../../src/roles/staging/relay.ts";
import type { ClientSession } from "../../src/roles/staging/session.ts";
import { WriteLog } from "../../src/wrl/write-log.ts";
import type { PeerIdentity } from "../../src/tls/identity.ts";

/** Deterministic bytes (xorshift) for payloads. */
export { bytes } from "../helpers/bytes.ts";

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** Polls `condition` every few ms until it holds; throws with `what` after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

// ---- an in-memory link ---------------------------------------------------------------------------

const empty = new Uint8Array(0);

/**
 * One end of an in-memory connection. Every frame goes through the real encoder and decoder, so a
 * message the socket transport would refuse (a header over its bound, a bad field) fails here too.
 */
export class MemoryLink implements RelayLink {
  readonly #inbox: Frame[] = [];
  #waiter: { resolve: (frame: Frame) => void; reject: (error: unknown) => void; timer?: ReturnType<typeof setTimeout> } | undefined;
  #reason: DruvaaError | undefined;
  #open = true;
  #resolveClosed!: (reason: DruvaaError | undefined) => void;
  readonly closed = new Promise<DruvaaError | undefined>((resolve) => (this.#resolveClosed = resolve));

  /** `toPeer` gets each frame sent and its size on the wire (preamble, header, payload). */
  constructor(private readonly toPeer: (frame: Frame, frameBytes: number) => void, private readonly onClose: () => void = () => undefined) {}

  get isOpen(): boolean {
    return this.#open;
  }

  async send(message: Message, payload: Uint8Array = empty): Promise<void> {
    if (!this.#open) throw this.#reason ?? new DruvaaError("NET_CLOSED", "link closed");
    const encoded = encodeFrameBytes(message, payload);
    const frame = decodeFrame(encoded);
    queueMicrotask(() => {
      if (this.#open) this.toPeer(frame, encoded.length);
    });
  }

  /** The peer sends `message` to this end. */
  deliver(message: Message): void {
    if (!this.#open) return;
    const frame = decodeFrame(encodeFrameBytes(message));
    const waiter = this.#waiter;
    if (waiter === undefined) {
      this.#inbox.push(frame);
      return;
    }
    this.#waiter = undefined;
    clearTimeout(waiter.timer);
    waiter.resolve(frame);
  }

  receive(timeoutMs?: number): Promise<Frame> {
    const frame = this.#inbox.shift();
    if (frame !== undefined) return Promise.resolve(frame);
    if (!this.#open) return Promise.reject(this.#reason);
    return new Promise<Frame>((resolve, reject) => {
      this.#waiter = { resolve, reject };
      if (timeoutMs !== undefined) {
        this.#waiter.timer = setTimeout(() => {
          this.#waiter = undefined;
          reject(new DruvaaError("NET_TIMEOUT", `no frame within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  async close(reason?: DruvaaError): Promise<void> {
    this.abort(reason);
  }

  abort(reason?: DruvaaError): void {
    if (!this.#open) return;
    this.#open = false;
    this.#reason = reason ?? new DruvaaError("NET_CLOSED", "link closed");
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter !== undefined) {
      clearTimeout(waiter.timer);
      waiter.reject(this.#reason);
    }
    this.#resolveClosed(reason);
    this.onClose();
  }
}

// ---- a replica behind in-memory links ------------------------------------------------------------

/** A real ReplicaCore on MemoryDevices, reached through MemoryLinks, with fault knobs. */
export class FakeReplica {
  /** Every shipment received, in order (also those nacked or dropped). */
  readonly shipments: ShipMessage[] = [];
  /** Every frame received (resume and ship), in order: its type, size on the wire and arrival time by `clock`. */
  readonly frames: { type: string; frameBytes: number; atMs: number; firstLsn?: number; lastLsn?: number }[] = [];
  /** The clock arrival times are read from (a test's fake clock); Date.now by default. */
  clock: { now(): number } = { now: () => Date.now() };
  dials = 0;
  /** Dial attempts fail with NET_CONNECT_REFUSED while set. */
  refuseDials = false;
  /** The next shipments are answered with these nack codes (not applied). */
  readonly nackNext: ShipNackCode[] = [];
  /** When set, the connection is dropped when this many more shipments have arrived (the last one unanswered). */
  dropAfterShipments: number | undefined;
  /** Shipments are kept unanswered (and unapplied) while set. */
  holding = false;
  readonly #held: (() => void)[] = [];
  readonly links = new Set<MemoryLink>();

  private constructor(public core: ReplicaCore, readonly devices: Map<string, MemoryDevice>, readonly store: MemoryStateStore) {}

  /** With `rsWrl`, the replica has a replica WRL (and so takes coalesced shipments). */
  static async create(sizes: Record<string, number>, store = new MemoryStateStore(), rsWrl?: ResyncLog): Promise<FakeReplica> {
    const devices = new Map(Object.entries(sizes).map(([name, sizeBytes]) => [name, new MemoryDevice(sizeBytes, name)]));
    const core = await ReplicaCore.open({ devices: [...devices].map(([name, device]) => ({ name, device, path: `/replica/${name}`, discardReadsZeros: true })), store, ...(rsWrl === undefined ? {} : { rsWrl }) });
    return new FakeReplica(core, devices, store);
  }

  /** What the relay's dial() does: a new link (handshake implied). */
  readonly dial = async (): Promise<RelayLink> => {
    this.dials += 1;
    if (this.refuseDials) throw new DruvaaError("NET_CONNECT_REFUSED", "nobody listens (fake replica refusing)");
    let replies: Promise<unknown> = Promise.resolve();
    const link: MemoryLink = new MemoryLink((frame, frameBytes) => {
      const message = frame.message;
      this.frames.push({ type: message.type, frameBytes, atMs: this.clock.now(), ...(message.type === "ship" ? { firstLsn: message.firstLsn, lastLsn: message.lastLsn } : {}) });
      if (message.type === "resume") {
        const reply = this.core.resume(message);
        replies = replies.then(() => link.deliver(reply));
        return;
      }
      if (message.type !== "ship") throw new Error(`fake replica got ${message.type}`);
      this.shipments.push(message);
      if (this.dropAfterShipments !== undefined) {
        this.dropAfterShipments -= 1;
        if (this.dropAfterShipments <= 0) {
          this.dropAfterShipments = undefined;
          link.abort(new DruvaaError("NET_RESET", "fake replica dropped the connection"));
          return;
        }
      }
      const nackCode = this.nackNext.shift();
      // As the replica server does: a compressed shipment is opened first (its payload is fresh).
      const opened = openShipment({ message, payload: frame.payload });
      const payload = opened.payload === frame.payload ? frame.payload.slice() : opened.payload;
      const answer = async (): Promise<Message> => {
        if (this.holding) await new Promise<void>((resolve) => this.#held.push(resolve));
        if (nackCode !== undefined) return { type: "shipNack", wrl: message.wrl, code: nackCode, message: `fake ${nackCode}` };
        return this.core.ship(opened.message, payload);
      };
      const reply = answer();
      replies = replies.then(() => reply).then((answerMessage) => link.deliver(answerMessage));
    }, () => this.links.delete(link));
    this.links.add(link);
    return link;
  };

  /** Stops holding and answers what was held. */
  release(): void {
    this.holding = false;
    for (const resume of this.#held.splice(0)) resume();
  }

  get heldCount(): number {
    return this.#held.length;
  }

  disconnectAll(): void {
    for (const link of [...this.links]) link.abort(new DruvaaError("NET_RESET", "fake replica disconnected"));
  }

  image(name: string): Uint8Array {
    return this.devices.get(name)!.snapshot();
  }
}

// ---- WRL devices that outlive a WriteLog ---------------------------------------------------------

/** A BlockDevice over a disk that a crash or restart hands to a new owner; the old handle goes dead. */
class Handle implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly logicalBlockSizeBytes: number;
  constructor(private readonly disk: BlockDevice, private readonly alive: () => boolean, private readonly flushGate: () => Promise<void> | undefined) {
    this.name = disk.name;
    this.sizeBytes = disk.sizeBytes;
    this.logicalBlockSizeBytes = disk.logicalBlockSizeBytes;
  }
  #check(): void {
    if (!this.alive()) throw new DruvaaError("IO_CRASHED", `${this.name}: this handle died with its process`);
  }
  async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    this.#check();
    return this.disk.read(offsetBytes, lengthBytes);
  }
  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    this.#check();
    return this.disk.write(offsetBytes, data);
  }
  async flush(): Promise<void> {
    this.#check();
    const gate = this.flushGate();
    if (gate !== undefined) await gate;
    this.#check();
    return this.disk.flush();
  }
  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.#check();
    return this.disk.discard(offsetBytes, lengthBytes);
  }
  async close(): Promise<void> {
    // The disk outlives the handle.
  }
}

/** A WRL's disk (memory or simulated) across restarts and crashes. */
export class WrlDisk {
  #generation = 0;
  #gate: { promise: Promise<void>; open: () => void } | undefined;
  constructor(readonly disk: MemoryDevice | SimDisk) {}

  /** Flushes wait (nothing becomes durable) until releaseFlushes(). */
  holdFlushes(): void {
    let open!: () => void;
    const promise = new Promise<void>((resolve) => (open = resolve));
    this.#gate = { promise, open };
  }

  releaseFlushes(): void {
    this.#gate?.open();
    this.#gate = undefined;
  }

  static memory(sizeBytes: number): WrlDisk {
    return new WrlDisk(new MemoryDevice(sizeBytes, "wrl-mem"));
  }

  static sim(sizeBytes: number, seed: number): WrlDisk {
    return new WrlDisk(new SimDisk({ sizeBytes, seed, name: "wrl-sim" }));
  }

  device(): BlockDevice {
    const generation = this.#generation;
    return new Handle(this.disk, () => generation === this.#generation, () => this.#gate?.promise);
  }

  create(): Promise<WriteLog> {
    return WriteLog.create([this.device()], { uuid: "5a1f0c3e-7b2d-4e8f-9a6b-1c0d2e3f4a5b" });
  }

  /** The process dies: the old WriteLog's handle stops working; a SimDisk loses or tears unsynced sectors. */
  kill(): void {
    this.#generation += 1;
    if (this.disk instanceof SimDisk) this.disk.crash();
  }

  open(): Promise<WriteLog> {
    return WriteLog.open([this.device()]);
  }
}

// ---- a client of the core ------------------------------------------------------------------------

export type WriteAnswer = WriteAckMessage | WriteNackMessage;

/** A client session on a StagingCore, without sockets; answers are matched by reqId. */
export class CoreClient {
  readonly session: ClientSession;
  readonly answers: Message[] = [];
  #reqId = 1;
  #epoch = 1;
  readonly #waiting = new Map<number, (answer: WriteAnswer) => void>();

  constructor(readonly core: StagingCore, nodeId = "client-a", address = "10.0.0.1:5000", identity?: PeerIdentity) {
    this.session = core.openSession({
      nodeId,
      address,
      identity,
      reply: (message) => {
        // Through the codec: an answer the transport would refuse fails the test.
        const checked = decodeFrame(encodeFrameBytes(message)).message;
        this.answers.push(checked);
        if (checked.type === "writeAck" || checked.type === "writeNack") {
          const resolve = this.#waiting.get(checked.reqId);
          this.#waiting.delete(checked.reqId);
          resolve?.(checked);
        }
      },
    });
  }

  async attach(wrl: string, device: string, sizeBytes: number, logicalBlockSizeBytes = 512): Promise<AttachAckMessage> {
    return (await this.core.attach(this.session, { type: "attach", wrl, device, sizeBytes, logicalBlockSizeBytes })) as AttachAckMessage;
  }

  /** A data write (or, with data undefined, a zero write of zeroLength bytes); resolves with its answer. */
  write(wrl: string, device: string, offset: number, data: Uint8Array | undefined, zeroLength = 0): Promise<WriteAnswer> {
    const reqId = this.#reqId++;
    const answer = new Promise<WriteAnswer>((resolve) => this.#waiting.set(reqId, resolve));
    const length = data === undefined ? zeroLength : data.length;
    const message: Message = { type: "write", reqId, device, wrl, epoch: this.#epoch++, offset, length, ...(data === undefined ? { zero: true } : {}) };
    // Through the codec, as the server would hand it over; the payload is a view into a buffer
    // that is scribbled over afterwards, as a reused receive buffer would be.
    const frame = decodeFrame(encodeFrameBytes(message, data));
    void this.core.handle(this.session, frame.message, frame.payload);
    frame.payload.fill(0xee);
    return answer;
  }

  close(): void {
    this.core.closeSession(this.session);
  }
}

/** Applies writes (data or zeros) to an image, as the replica should end up. */
export function applyTo(image: Uint8Array, offset: number, data: Uint8Array | undefined, zeroLength = 0): void {
  if (data === undefined) image.fill(0, offset, offset + zeroLength);
  else image.set(data, offset);
}
