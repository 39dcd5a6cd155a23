/**
 * The relay of one WRL: ships its records, in LSN order, to the replica named by --replica, and
 * frees them (advanceTail) only once the replica says they are durable there.
 *
 * One session (docs/pipeline.md "Staging"):
 *   dial (connect + handshake as role staging) → `resume {wrl, wrlUuid}` → `resumeAck
 *   {appliedLsn, devices}` → advanceTail(appliedLsn) if the replica is past the tail → ship from
 *   max(tailLsn, appliedLsn) + 1, keeping up to stagingRelayWindowMax shipments unanswered →
 *   every `shipAck {appliedLsn}` frees a window slot and advances the tail.
 *
 * Decision table, per event (the session ends on every row marked "end"; the relay then waits
 * its backoff — stagingRelayDelayMsMin doubling to stagingRelayDelayMsMax, reset once a session
 * got a shipment acknowledged — and starts a new session, which resumes from what the replica
 * says it applied, so nothing is ever skipped or dropped):
 *
 *   event                                         action
 *   dial or handshake fails                       lastError = it; end
 *   answer to resume is a shipNack                lastError = {code, message}; end
 *   resumeAck for another uuid / not an answer    lastError PROTO_UNEXPECTED; end
 *   resumeAck.appliedLsn > WRL head               lastError REPLICA_AHEAD; end (the replica holds
 *                                                   records this WRL lost: an operator decides)
 *   resumeAck.appliedLsn < WRL tail               lastError REPLICA_MISSING_RECORDS; end (another
 *                                                   replica, or one that lost its state: records it
 *                                                   lacks were freed; nothing is sent)
 *   shipAck                                       window slot freed; tail advanced to
 *                                                   min(appliedLsn, last LSN shipped)
 *   shipAck with appliedLsn < that shipment's end lastError PROTO_UNEXPECTED; end
 *   shipNack (gap, device, busy, …)               lastError = {code, message}; end
 *   connection closed by the replica              lastError NET_CLOSED (or its reason); end
 *   reading the WRL fails (WRL_CORRUPT, …)        lastError = it; end
 *
 * Compression (compression.ts, --compression): each shipment is packed — zstd-compressed when
 * that makes it smaller — before it is sent; up to packingMax are compressed at once, and they
 * are sent in LSN order. A shipment being packed counts against the window like a sent one.
 *
 * Waking: the staging core calls notify() after every append; a relay with nothing to ship also
 * looks again every stagingRelayIdlePollMs. No busy polling.
 *
 * Not guaranteed: an answer timeout. A replica that keeps the connection open but never answers
 * (its apply is paused by a long restore, or it hangs) holds the window until the connection
 * drops; the lag in the status shows it.
 */
import type { ConsolaInstance } from "consola/basic";
import { stagingRelayDelayMsMax, stagingRelayDelayMsMin, stagingRelayIdlePollMs, stagingRelayWindowMax, stagingResumeTimeoutMs } from "../../constants.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import { logger } from "../../log.ts";
import type { Frame } from "../../protocol/frame.ts";
import type { ShipmentFrame } from "../../protocol/ship-codec.ts";
import { ShipmentCompressor } from "./compression.ts";
import { realClock, Signal, type Clock } from "./relay-clock.ts";
import { asDruvaaError, nackError } from "./relay-errors.ts";
import type { LastError, RelayLink, RelayOptions, RelayStatus } from "./relay-types.ts";
import { buildShipment, defaultShipmentLimits, type ShipmentLimits } from "./shipment.ts";

export { realClock, type Clock } from "./relay-clock.ts";
export type { LastError, RelayLink, RelayOptions, RelayStatus, RelayWrl } from "./relay-types.ts";

/** What #prepare did instead of preparing a shipment: nothing to ship, or records waiting for a window slot. */
type NotPrepared = "idle" | "windowFull";

/** A shipment read from the WRL and being compressed (packed), not sent yet. */
interface Packing {
  firstLsn: number;
  lastLsn: number;
  /** The frame as it goes on the wire, and the pooled buffer it still uses (if any). */
  packed: Promise<{ frame: ShipmentFrame; pooled?: Uint8Array }>;
}

interface InflightShipment {
  firstLsn: number;
  lastLsn: number;
  /** The recycled buffer the payload was copied into, if any: reusable once the replica acked. */
  pooled?: Uint8Array;
}

export class Relay {
  readonly #o: RelayOptions;
  readonly #clock: Clock;
  readonly #log: ConsolaInstance;
  readonly #limits: ShipmentLimits;
  readonly #windowMax: number;
  /** Wakes the shipping loop: appends, acks, session end. */
  readonly #work = new Signal();
  /** Wakes the backoff pause: stop(). */
  readonly #stopSignal = new Signal();
  #link: RelayLink | undefined;
  #connected = false;
  #appliedLsn: number;
  #lastError: LastError | null = null;
  #replicaDevices: Map<string, number> | undefined;
  #inflight: InflightShipment[] = [];
  /**
   * Shipment buffers (payloadBytesMax each) whose shipment the replica acknowledged: once it has
   * answered, it holds no reference to the bytes (a socket peer has read them all; an in-process
   * one has applied them). Reusing them saves allocating and page-faulting a fresh multi-MiB
   * buffer per shipment. Buffers of a session that ended unanswered are dropped, never reused.
   */
  #spareBuffers: Uint8Array[] = [];
  readonly #compressor: ShipmentCompressor;
  #shipmentsShipped = 0;
  #bytesShipped = 0;
  #stopping = false;
  /** Whether the current session got a shipment acknowledged (resets the backoff). */
  #sessionAcked = false;
  #loop: Promise<void> | undefined;

  constructor(options: RelayOptions) {
    this.#o = options;
    this.#clock = options.clock ?? realClock;
    this.#log = options.log ?? logger(`staging:relay:${options.name}`);
    this.#limits = options.limits ?? defaultShipmentLimits;
    this.#windowMax = options.windowMax ?? stagingRelayWindowMax;
    this.#compressor = new ShipmentCompressor(options.compression);
    // Records at or below the tail were acknowledged by the replica before they were freed.
    this.#appliedLsn = options.wrl.info().tailLsn;
    options.lag.acked(this.#appliedLsn);
  }

  /** Starts relaying (sessions and retries run until stop()). */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** New records were appended: ship them now rather than at the next idle look. */
  notify(): void {
    this.#work.wake();
  }

  get appliedLsn(): number {
    return this.#appliedLsn;
  }

  /** The replica's device of that name, as its last resumeAck said; undefined when unknown. */
  replicaDeviceSize(name: string): number | undefined {
    return this.#replicaDevices?.get(name);
  }

  /** Whether the relay has heard the replica's device list. */
  get knowsReplicaDevices(): boolean {
    return this.#replicaDevices !== undefined;
  }

  status(): RelayStatus {
    return {
      address: this.#o.address,
      connected: this.#connected,
      appliedLsn: this.#appliedLsn,
      lastError: this.#lastError,
      inflightShipments: this.#inflight.length,
      replicaDevices: this.#replicaDevices === undefined ? null : [...this.#replicaDevices].map(([name, sizeBytes]) => ({ name, sizeBytes })),
      shipmentsShipped: this.#shipmentsShipped,
      bytesShipped: this.#bytesShipped,
      compression: this.#compressor.status(),
    };
  }

  /** Ends the session (unanswered shipments are shipped again by the next start) and stops retrying. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#stopSignal.wake();
    this.#work.wake();
    // Unanswered shipments need not be flushed: the next start resumes from what the replica applied.
    this.#link?.abort(new DruvaaError("SHUTTING_DOWN", "the staging server is stopping"));
    await this.#loop;
  }

  // ---- sessions -----------------------------------------------------------------------------

  async #run(): Promise<void> {
    let delayMs = stagingRelayDelayMsMin;
    while (!this.#stopping) {
      this.#sessionAcked = false;
      try {
        await this.#session();
      } catch (error) {
        if (this.#stopping) break;
        // A session that got a shipment acknowledged was healthy: the backoff starts over.
        if (this.#sessionAcked) delayMs = stagingRelayDelayMsMin;
        const failure = asDruvaaError(error);
        const repeated = this.#lastError?.code === failure.code && this.#lastError.message === failure.message;
        this.#setError(failure);
        // Every new error at once; the same one again only about once per maximum backoff.
        if (!repeated || delayMs === stagingRelayDelayMsMax) this.#log.warn(`replica ${this.#o.address}: ${failure.message} (${failure.code}); retrying in ${delayMs} ms`);
      }
      if (this.#stopping) break;
      await this.#stopSignal.wait(this.#clock, delayMs);
      delayMs = Math.min(stagingRelayDelayMsMax, delayMs * 2);
    }
  }

  /** One connection's life, until it fails (throws why) or the relay stops (resolves). */
  async #session(): Promise<void> {
    const link = await this.#o.dial();
    this.#link = link;
    try {
      if (this.#stopping) return;
      let next = await this.#resume(link);
      this.#connected = true;
      this.#inflight = [];
      let over: DruvaaError | undefined;
      const end = (error: unknown) => {
        if (over !== undefined) return;
        over = asDruvaaError(error);
        link.abort(over); // also ends a send() waiting for the queue to drain
        this.#work.wake();
      };
      const reading = this.#readAnswers(link, end).catch(end);
      // Shipments being compressed, in LSN order: up to packingMax at once (zstd runs on Bun's
      // thread pool), so compressing the next ones overlaps waiting for this one.
      const packing: Packing[] = [];
      try {
        while (over === undefined && !this.#stopping) {
          if (packing.length < this.#compressor.packingMax) {
            const prepared = await this.#prepare(next, packing.length);
            if (typeof prepared !== "string") {
              packing.push(prepared);
              next = prepared.lastLsn + 1;
              continue;
            }
            if (packing.length === 0) {
              const waitStartedMs = performance.now();
              await this.#work.wait(this.#clock, stagingRelayIdlePollMs);
              // Records waited for a slot: the link or the replica holds the relay back (compression's auto level).
              if (prepared === "windowFull") this.#compressor.noteWait(performance.now() - waitStartedMs);
              continue;
            }
          }
          await this.#send(link, packing.shift()!);
        }
      } catch (error) {
        end(error);
      }
      end(new DruvaaError("STOPPING", "the relay is stopping"));
      await reading;
      if (this.#stopping) return;
      throw over;
    } finally {
      this.#connected = false;
      this.#inflight = [];
      this.#link = undefined;
      link.abort();
    }
  }

  /** resume → resumeAck; advances the tail to what the replica applied; returns the first LSN to ship. */
  async #resume(link: RelayLink): Promise<number> {
    await link.send({ type: "resume", wrl: this.#o.name, wrlUuid: this.#o.uuid });
    let frame: Frame;
    try {
      frame = await link.receive(stagingResumeTimeoutMs);
    } catch (error) {
      if ((error as { code?: unknown }).code === "NET_TIMEOUT") {
        throw new DruvaaError("RESUME_TIMEOUT", `the replica did not answer resume within ${stagingResumeTimeoutMs} ms`, "Is the replica overloaded or stuck? Check its log and status (druvaa status --connect REPLICA:6004)", exitCodes.timeout);
      }
      throw error;
    }
    const reply = frame.message;
    if (reply.type === "shipNack") throw nackError(reply);
    if (reply.type === "error") throw new DruvaaError(reply.code, `the replica refused: ${reply.message}`, reply.hint);
    if (reply.type !== "resumeAck" || reply.wrl !== this.#o.name || reply.wrlUuid !== this.#o.uuid) {
      const what = reply.type === "resumeAck" ? `a resumeAck for WRL ${reply.wrl} (${reply.wrlUuid})` : `a ${reply.type} message`;
      throw new DruvaaError("PROTO_UNEXPECTED", `the replica answered resume of WRL ${this.#o.name} (${this.#o.uuid}) with ${what}`, "Run the same druvaa release on staging and replica");
    }
    this.#replicaDevices = new Map(reply.devices.map((device) => [device.name, device.sizeBytes]));
    const info = this.#o.wrl.info();
    if (reply.appliedLsn > info.headLsn) {
      throw new DruvaaError(
        "REPLICA_AHEAD",
        `the replica applied WRL ${this.#o.name} up to LSN ${reply.appliedLsn}, but this WRL ends at LSN ${info.headLsn}: it lost records the replica has, so shipping would skip new ones`,
        "The WRL was damaged or restored from an old copy; re-create it (druvaa wrl create --force) and start the replica afresh (initial sync)",
        exitCodes.refused,
      );
    }
    if (reply.appliedLsn < info.tailLsn) {
      // Records 1..tailLsn were freed after a replica acknowledged them: this one never got them.
      throw new DruvaaError(
        "REPLICA_MISSING_RECORDS",
        `the replica at ${this.#o.address} applied WRL ${this.#o.name} only up to LSN ${reply.appliedLsn}, but this WRL freed records up to LSN ${info.tailLsn} after a replica acknowledged them: it is not the replica this WRL replicates to, or it lost its state; nothing was sent`,
        "Point --replica at the replica server this WRL replicates to; for a new replica, re-create the WRL (druvaa wrl create --force) and start the pair with an initial sync (druvaa client attach --initial-sync checksum|network)",
        exitCodes.refused,
      );
    }
    this.#noteApplied(reply.appliedLsn);
    if (reply.appliedLsn > info.tailLsn) await this.#o.wrl.advanceTail(reply.appliedLsn);
    const next = Math.max(info.tailLsn, reply.appliedLsn) + 1;
    this.#log.info(`replica ${this.#o.address}: resumed WRL ${this.#o.name} at LSN ${next} (replica applied ${reply.appliedLsn}, head ${info.headLsn})`);
    return next;
  }

  /**
   * Reads the shipment from `next` and starts packing it, if there are records to ship and room
   * in the window (shipments unanswered plus the `packing` ones not sent yet).
   */
  async #prepare(next: number, packing: number): Promise<Packing | NotPrepared> {
    if (next > this.#o.wrl.info().headLsn) return "idle";
    if (this.#inflight.length + packing >= this.#windowMax) return "windowFull";
    const records = await this.#o.wrl.read(next, this.#limits.payloadBytesMax);
    if (records.length === 0 || this.#stopping) return "idle";
    let pooled: Uint8Array | undefined;
    const allocate = (bytes: number) => {
      if (bytes > this.#limits.payloadBytesMax) return new Uint8Array(bytes);
      pooled = this.#spareBuffers.pop() ?? new Uint8Array(this.#limits.payloadBytesMax);
      return pooled.subarray(0, bytes);
    };
    const shipment = buildShipment(records, { wrl: this.#o.name, wrlUuid: this.#o.uuid, deviceSizes: this.#o.deviceSizes() }, this.#limits, allocate);
    const packed = this.#compressor.pack(shipment).then((frame) => {
      if (frame === shipment || pooled === undefined) return { frame, pooled };
      // Compressed into a buffer of its own: the copy of the records' data is free again.
      if (this.#spareBuffers.length < this.#windowMax) this.#spareBuffers.push(pooled);
      return { frame };
    });
    packed.catch(() => undefined); // a session that ends first never awaits it
    return { firstLsn: shipment.message.firstLsn, lastLsn: shipment.message.lastLsn, packed };
  }

  /** Sends a packed shipment (window slot taken at once, freed by its answer). */
  async #send(link: RelayLink, shipment: Packing): Promise<void> {
    const { frame, pooled } = await shipment.packed;
    const { firstLsn, lastLsn } = shipment;
    this.#inflight.push(pooled === undefined ? { firstLsn, lastLsn } : { firstLsn, lastLsn, pooled });
    this.#shipmentsShipped += 1;
    this.#bytesShipped += frame.payload.length;
    const sendStartedMs = performance.now();
    await link.send(frame.message, frame.payload);
    // send() waits only while the connection's send queue is full: the link is the bottleneck.
    this.#compressor.noteWait(performance.now() - sendStartedMs);
  }

  /** The replica's answers, one per shipment, in order; throws why the session must end. */
  async #readAnswers(link: RelayLink, fail: (error: unknown) => void): Promise<never> {
    for (;;) {
      const reply = (await link.receive()).message;
      switch (reply.type) {
        case "shipAck": {
          const shipped = this.#inflight.shift();
          if (shipped === undefined) throw new DruvaaError("PROTO_UNEXPECTED", "the replica acknowledged a shipment that was not sent", "Run the same druvaa release on staging and replica");
          if (reply.appliedLsn < shipped.lastLsn) {
            throw new DruvaaError("PROTO_UNEXPECTED", `the replica acknowledged LSN ${shipped.firstLsn}..${shipped.lastLsn} with appliedLsn ${reply.appliedLsn}`, "Run the same druvaa release on staging and replica");
          }
          this.#sessionAcked = true;
          for (const outcome of reply.verified ?? []) this.#o.onVerified?.(outcome);
          if (shipped.pooled !== undefined && this.#spareBuffers.length < this.#windowMax) this.#spareBuffers.push(shipped.pooled);
          this.#work.wake(); // a window slot is free
          // Never past what this session shipped: the replica cannot have applied more of it.
          const freeTo = Math.min(reply.appliedLsn, shipped.lastLsn);
          this.#noteApplied(freeTo);
          // Not awaited: the next answers are read meanwhile, and their tail advances share the
          // WRL's next checkpoint write. A failure ends the session like any other.
          this.#o.wrl.advanceTail(freeTo).catch(fail);
          break;
        }
        case "shipNack":
          throw nackError(reply);
        case "ping":
          await link.send({ type: "pong", nonce: reply.nonce });
          break;
        case "error":
          throw new DruvaaError(reply.code, `the replica closed the connection: ${reply.message}`, reply.hint);
        default:
          throw new DruvaaError("PROTO_UNEXPECTED", `the replica sent a ${reply.type} message to the relay`, "Run the same druvaa release on staging and replica");
      }
    }
  }

  #noteApplied(lsn: number): void {
    if (lsn <= this.#appliedLsn) return;
    this.#appliedLsn = lsn;
    this.#o.lag.acked(lsn);
  }

  #setError(error: DruvaaError): void {
    this.#lastError = { code: error.code, message: error.message, ...(error.hint === undefined ? {} : { hint: error.hint }), at: new Date(this.#clock.now()).toISOString() };
  }
}
