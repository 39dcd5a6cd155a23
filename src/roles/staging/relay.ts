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
 * its backoff — relay-retry.ts: doubling up to stagingRelayDelayMsMax, or stagingFailedOverRetryMs
 * while the replica answers FAILED_OVER — and starts a new session, which resumes from what the
 * replica says it applied, so nothing is ever skipped or dropped):
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
 *   shipAck with appliedLsn < that shipment's end lastError PROTO_UNEXPECTED; end (unless `held`
 *                                                   and a span part that says spanContinues)
 *   shipNack (gap, device, busy, …)               lastError = {code, message}; end
 *   shipNack/resume refused FAILED_OVER           as above; retried slowly, warned once per episode
 *   paused() (POST /wrl/discard); a split hold    end: no error, no backoff, no session meanwhile
 *   connection closed by the replica              lastError NET_CLOSED (or its reason); end
 *   reading the WRL fails (WRL_CORRUPT, …)        lastError = it; end
 *
 * Compression (compression.ts, --compression): each shipment is packed — zstd-compressed when
 * that makes it smaller — before it is sent; up to packingMax are compressed at once, and they
 * are sent in LSN order. A shipment being packed counts against the window like a sent one.
 * Coalescing (relay-coalesce.ts; --coalesce): while behind, when the replica takes them, spans
 * (one bigger than a frame goes as parts).
 *
 * Bandwidth, windows, RPO (relay-pacing.ts, relay-rpo.ts; --rate-limit, --schedule, --rpo):
 *   a frame to send (resume, ship, pong)          paid for in the rate limit's bucket; resume and
 *                                                   ship wait for tokens (counted as waiting on the
 *                                                   link for auto compression), a pong does not
 *   window closed at the top of the shipping      nothing more is read or sent in this session
 *     loop, or after a shipment waited for tokens   (packed shipments are dropped: the next session
 *                                                   resumes at appliedLsn + 1); once those in flight
 *                                                   are answered, an orderly close, no error
 *   window closed between sessions                no dial: sleep (relay Clock) until it opens
 *   RPO state changes                             logged, event, compression boost on (at-risk,
 *                                                   missed) or off (ok)
 *
 * Waking: the staging core calls notify() after every append; a relay with nothing to ship also
 * looks again every stagingRelayIdlePollMs, or at the window's next change if sooner. No busy polling.
 *
 * Not guaranteed: an answer timeout. A replica that keeps the connection open but never answers
 * (its apply is paused by a long restore, or it hangs) holds the window until the connection
 * drops; the lag in the status shows it.
 */
import type { ConsolaInstance } from "consola/basic";
import { stagingRelayIdlePollMs, stagingRelayWindowMax } from "../../constants.ts";
import { DruvaaError } from "../../errors.ts";
import { logger } from "../../log.ts";
import type { Message } from "../../protocol/messages.ts";
import { ShipmentCompressor } from "./compression.ts";
import { realClock, Signal, type Clock } from "./relay-clock.ts";
import { asDruvaaError, nackError } from "./relay-errors.ts";
import { RelayCoalescing } from "./relay-coalesce.ts";
import { RelayGate } from "./relay-pacing.ts";
import { isPauseEnd, RelayPause } from "./relay-pause.ts";
import { askResume } from "./relay-resume.ts";
import { RelayRetry } from "./relay-retry.ts";
import { RpoMonitor } from "./relay-rpo.ts";
import { SplitPause } from "./split-hold.ts";
import type { InflightShipment, LastError, NotPrepared, Packing, RelayLink, RelayOptions, RelayStatus, RelayTargetStatus } from "./relay-types.ts";
import { buildShipment, defaultShipmentLimits, type ShipmentLimits } from "./shipment.ts";

export { realClock, type Clock } from "./relay-clock.ts";
export type { LastError, RelayLink, RelayOptions, RelayStatus, RelayTargets, RelayTargetStatus, RelayWrl } from "./relay-types.ts";

export class Relay {
  readonly #o: RelayOptions;
  readonly #clock: Clock;
  readonly #log: ConsolaInstance;
  readonly #limits: ShipmentLimits;
  readonly #windowMax: number;
  /** Wake the shipping loop (appends, acks, session end) and the backoff pause (stop()). */
  readonly #work = new Signal();
  readonly #stopSignal = new Signal();
  #link: RelayLink | undefined;
  #connected = false;
  #appliedLsn: number;
  #lastError: LastError | null = null;
  #replicaDevices: Map<string, number> | undefined;
  #inflight: InflightShipment[] = [];
  /**
   * Shipment buffers (payloadBytesMax each) whose shipment the replica acknowledged (it then holds
   * no reference to the bytes): reused, which saves allocating and page-faulting a fresh multi-MiB
   * buffer per shipment. Buffers of a session that ended unanswered are dropped, never reused.
   */
  #spareBuffers: Uint8Array[] = [];
  readonly #compressor: ShipmentCompressor;
  readonly #gate: RelayGate;
  readonly #rpo: RpoMonitor;
  readonly #coalescing: RelayCoalescing;
  readonly #retry: RelayRetry;
  readonly #pause = new RelayPause();
  readonly #split: SplitPause; // held from a split to its join (split-hold.ts)
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
    this.#coalescing = new RelayCoalescing(options.coalesce);
    this.#retry = new RelayRetry({ wrl: options.name, address: options.address, log: this.#log, now: () => this.#clock.now() });
    this.#gate = new RelayGate(this.#clock, options.targets?.rateLimit, options.targets?.schedule, this.#log);
    const onEvent = options.onEvent === undefined ? {} : { onEvent: options.onEvent };
    const drained = () => this.#appliedLsn >= options.wrl.info().headLsn;
    this.#rpo = new RpoMonitor({ wrl: options.name, targetSeconds: options.targets?.rpoTargetSeconds ?? null, lag: options.lag, drained, clock: this.#clock, log: this.#log, ...onEvent, boost: (on) => this.#compressor.boost(on) });
    // Records at or below the tail were acknowledged by the replica before they were freed.
    this.#appliedLsn = options.wrl.info().tailLsn;
    options.lag.acked(this.#appliedLsn);
    this.#split = new SplitPause(options.wrl, (reason) => this.#link?.abort(reason), () => this.#stopSignal.wake());
  }

  /** Starts relaying (sessions and retries run until stop()). */
  start(): void {
    this.#loop ??= this.#run();
    this.#rpo.start();
  }

  /** New records were appended: ship them now rather than at the next idle look. */
  notify = (): void => this.#work.wake();

  get appliedLsn(): number {
    return this.#appliedLsn;
  }

  /** The replica's device of that name, as its last resumeAck said; undefined when unknown. */
  replicaDeviceSize = (name: string): number | undefined => this.#replicaDevices?.get(name);

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
      failedOverSince: this.#retry.failedOverSince,
      inflightShipments: this.#inflight.length,
      replicaDevices: this.#replicaDevices === undefined ? null : [...this.#replicaDevices].map(([name, sizeBytes]) => ({ name, sizeBytes })),
      shipmentsShipped: this.#shipmentsShipped,
      bytesShipped: this.#bytesShipped,
      compression: this.#compressor.status(),
      coalescing: this.#coalescing.status(),
      split: this.#split.held,
    };
  }

  /** Rate limit, schedule window and RPO (status per WRL). */
  targetStatus(): RelayTargetStatus {
    return { ...this.#gate.status(), rpo: this.#rpo.status() };
  }

  /** Ends the session (unanswered shipments are shipped again by the next start) and stops retrying. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#split.stop();
    this.#rpo.stop();
    this.#stopSignal.wake();
    this.#work.wake();
    this.#gate.interrupt();
    // Unanswered shipments need not be flushed: the next start resumes from what the replica applied.
    this.#link?.abort(new DruvaaError("SHUTTING_DOWN", "the staging server is stopping"));
    await this.#loop;
  }

  /** Runs `task` with no session, nothing in flight or queued (relay-pause.ts; failback.ts). */
  paused = <T>(task: () => Promise<T>): Promise<T> => this.#pause.run((reason) => this.#link?.abort(reason), () => this.#stopSignal.wake(), task);

  /** Records up to `lsn` were freed unacknowledged (failback.ts): they count as acknowledged. */
  noteDiscarded = (lsn: number): void => this.#noteApplied(lsn);

  // ---- sessions -----------------------------------------------------------------------------

  async #run(): Promise<void> {
    while (!this.#stopping) {
      for (const pause of [this.#pause, this.#split]) if (pause.held) await pause.released(); // a session that starts during one ends after its dial
      // Outside every window: no session at all (the WRL buffers) until the next opening.
      await this.#gate.untilOpen(() => this.#stopping);
      if (this.#stopping) break;
      this.#sessionAcked = false;
      const session = this.#session();
      for (const pause of [this.#pause, this.#split]) pause.running(session);
      try {
        await session;
        continue; // ended by stop(), a pause or the window closing: no error, no backoff
      } catch (error) {
        if (this.#stopping) break;
        if (isPauseEnd(error)) continue;
        const failure = asDruvaaError(error);
        const delayMs = this.#retry.failed(failure, this.#lastError, this.#sessionAcked);
        this.#setError(failure);
        await this.#stopSignal.wait(this.#clock, delayMs);
      }
    }
  }

  /** One connection's life, until it fails (throws why) or the relay stops (resolves). */
  async #session(): Promise<void> {
    const link = await this.#o.dial();
    this.#link = link;
    try {
      if (this.#stopping || this.#pause.held || this.#split.held) return;
      let next = await this.#resume(link);
      this.#connected = true;
      if (next > this.#o.wrl.info().headLsn) this.#retry.accepted(); // nothing to ship: no ack will tell
      this.#inflight = [];
      let over: DruvaaError | undefined;
      const end = (error: unknown) => {
        if (over !== undefined) return;
        over = asDruvaaError(error);
        link.abort(over); // also ends a send() waiting for the queue to drain
        this.#work.wake();
        this.#gate.interrupt();
      };
      const reading = this.#readAnswers(link, end).catch(end);
      // Shipments being compressed, in LSN order: up to packingMax at once (zstd runs on Bun's
      // thread pool), so compressing the next ones overlaps waiting for this one.
      const packing: Packing[] = [];
      let closing = false; // the window closed: nothing more is read or sent in this session
      try {
        while (over === undefined && !this.#stopping) {
          if (closing || !this.#gate.isOpen()) {
            closing = true;
            if (this.#inflight.length === 0) break;
            await this.#work.wait(this.#clock, stagingRelayIdlePollMs); // an answer wakes it
            continue;
          }
          if (packing.length < this.#compressor.packingMax) {
            const prepared = await this.#prepare(next, packing.length);
            if (typeof prepared !== "string") {
              packing.push(prepared);
              next = prepared.lastLsn + 1;
              continue;
            }
            if (packing.length === 0) {
              const waitStartedMs = performance.now();
              await this.#work.wait(this.#clock, Math.min(stagingRelayIdlePollMs, this.#gate.msUntilChange()));
              // Records waited for a slot: the link or the replica holds the relay back (compression's auto level).
              if (prepared === "windowFull") this.#compressor.noteWait(performance.now() - waitStartedMs);
              continue;
            }
          }
          if (!(await this.#send(link, packing.shift()!, () => over !== undefined))) closing = true;
        }
      } catch (error) {
        end(error);
      }
      const windowClosed = closing && over === undefined && !this.#stopping;
      if (windowClosed) await link.close(); // the shipments in flight were answered; untilOpen() tells the rest
      end(new DruvaaError("STOPPING", "the relay is stopping"));
      await reading;
      if (this.#stopping || windowClosed) return;
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
    const { reply, info } = await askResume(link, this.#o, (resume) => this.#gate.pace(resume, undefined, () => this.#stopping));
    this.#replicaDevices = new Map(reply.devices.map((device) => [device.name, device.sizeBytes]));
    this.#coalescing.resumed(reply.acceptsCoalesced);
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
    if (this.#inflight.length + packing >= this.#windowMax) return this.#coalescing.noteWindowFull(this.#clock.now());
    const part = this.#coalescing.queued(next); // the next part of a span too big for one frame
    const records = part === undefined ? await this.#o.wrl.read(next, this.#limits.payloadBytesMax) : [];
    if ((part === undefined && records.length === 0) || this.#stopping) return "idle";
    let pooled: Uint8Array | undefined;
    const allocate = (bytes: number) => {
      if (bytes > this.#limits.payloadBytesMax) return new Uint8Array(bytes);
      pooled = this.#spareBuffers.pop() ?? new Uint8Array(this.#limits.payloadBytesMax);
      return pooled.subarray(0, bytes);
    };
    const target = { wrl: this.#o.name, wrlUuid: this.#o.uuid, deviceSizes: this.#o.deviceSizes() };
    const coalesced = part ?? (await this.#coalescing.build(records, { target, limits: this.#limits, lag: this.#o.lag, nowMs: this.#clock.now(), rpoState: this.#rpo.state, wrl: this.#o.wrl }));
    const shipment = coalesced ?? buildShipment(records, target, this.#limits, allocate);
    const packed = this.#compressor.pack(shipment).then((frame) => {
      if (frame === shipment || pooled === undefined) return { frame, pooled };
      // Compressed into a buffer of its own: the copy of the records' data is free again.
      if (this.#spareBuffers.length < this.#windowMax) this.#spareBuffers.push(pooled);
      return { frame };
    });
    packed.catch(() => undefined); // a session that ends first never awaits it
    return { firstLsn: shipment.message.firstLsn, lastLsn: shipment.message.lastLsn, coalesced: coalesced !== undefined, spanContinues: shipment.message.spanContinues === true, packed };
  }

  /**
   * Sends a packed shipment once the rate limit lets it go (window slot taken at once, freed by
   * its answer). Not sent (false) when the session ended or the window closed meanwhile.
   */
  async #send(link: RelayLink, shipment: Packing, ended: () => boolean): Promise<boolean> {
    const { frame, pooled } = await shipment.packed;
    const { firstLsn, lastLsn, coalesced, spanContinues } = shipment;
    // Waiting for tokens is waiting on the link (compression's auto level).
    this.#compressor.noteWait(await this.#gate.pace(frame.message, frame.payload, () => ended() || this.#stopping));
    if (ended() || this.#stopping || !this.#gate.isOpen()) return false;
    this.#inflight.push({ firstLsn, lastLsn, coalesced, spanContinues, ...(pooled === undefined ? {} : { pooled }) });
    this.#shipmentsShipped += 1;
    this.#bytesShipped += frame.payload.length;
    const sendStartedMs = performance.now();
    await link.send(frame.message, frame.payload);
    // send() waits only while the connection's send queue is full: the link is the bottleneck.
    this.#compressor.noteWait(performance.now() - sendStartedMs);
    return true;
  }

  /** The replica's answers, one per shipment, in order; throws why the session must end. */
  async #readAnswers(link: RelayLink, fail: (error: unknown) => void): Promise<never> {
    for (;;) {
      const reply = (await link.receive()).message;
      switch (reply.type) {
        case "shipAck": {
          const shipped = this.#inflight.shift();
          if (shipped === undefined) throw new DruvaaError("PROTO_UNEXPECTED", "the replica acknowledged a shipment that was not sent", "Run the same druvaa release on staging and replica");
          // A span part held by the replica until the span's last part (nothing applied yet).
          if (reply.appliedLsn < shipped.lastLsn && !(reply.held === true && shipped.spanContinues)) {
            throw new DruvaaError("PROTO_UNEXPECTED", `the replica acknowledged LSN ${shipped.firstLsn}..${shipped.lastLsn} with appliedLsn ${reply.appliedLsn}`, "Run the same druvaa release on staging and replica");
          }
          this.#sessionAcked = true;
          this.#retry.accepted();
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
          this.#coalescing.refused(this.#inflight[0], reply.code);
          throw nackError(reply);
        case "ping": {
          const pong: Message = { type: "pong", nonce: reply.nonce };
          this.#gate.charge(pong);
          await link.send(pong);
          break;
        }
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
