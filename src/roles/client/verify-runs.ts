/**
 * Verify runs of a client (`druvaa verify`, and the checksum initial sync): each run is one
 * VerifyPass over a device range, optionally with repair, identified by a number. Served on the
 * client's control port:
 *   POST /verify {device, repair?, offset?, length?} → the new run (its `id`), at once
 *   GET  /verify?id=ID                               → the run: state, progress, differing ranges
 *   GET  /verify                                     → every run kept (running, then the last few)
 *   POST /verify/cancel {id}                         → stops it
 *
 * Run states: running → (repair, something differed) resyncing → done | failed | cancelled.
 * Repair marks each probe's differing blocks dirty in the change map (durably, before they count)
 * and, once the pass ended, starts a resync and waits until the client is connected with no dirty
 * block left: only what differs travels, and a crash in the middle leaves the marks for the resync
 * after the restart.
 *
 * Refusals at the start (exit 4 for `druvaa verify`): an unknown device (DEVICE_UNKNOWN), repair
 * without a change map (NO_CHANGEMAP), the client in disconnected mode (DISCONNECTED) or staging
 * not connected (STAGING_UNREACHABLE), a run already going on that device (VERIFY_BUSY).
 */
import type { ConsolaInstance } from "consola/basic";
import { verifyBlockBytesMax } from "../../constants.ts";
import { clientVerifyBlockBytesDefault, clientVerifyRunsKept } from "../../verify-constants.ts";
import { DruvaaError, exitCodes, usageError } from "../../errors.ts";
import type { ControlRoute } from "../../io/control-server.ts";
import { logger } from "../../log.ts";
import type { ByteRange } from "../../protocol/messages.ts";
import { realTimers, type ClientDevice, type ClientTimers } from "./types.ts";
import { VerifyPass, type VerifyHost, type VerifyProgress, type VerifyTuning } from "./verify.ts";
import type { ProbeChannel } from "./verify-link.ts";

/** What runs need of the core besides a pass's needs. */
export interface VerifyCore extends VerifyHost {
  /** Starts a resync pass now if one is due. */
  requestResync(): unknown;
}

export interface VerifyRequest {
  device: string;
  repair?: boolean;
  offset?: number;
  length?: number;
}

export type VerifyRunState = "running" | "resyncing" | "done" | "failed" | "cancelled";

/** A run as GET /verify shows it (and `druvaa verify --json` prints it). */
export interface VerifyRunView extends VerifyProgress {
  id: number;
  device: string;
  repair: boolean;
  state: VerifyRunState;
  offset: number;
  length: number;
  blockBytes: number;
  differing: ByteRange[];
  differingBytes: number;
  /** More differing ranges than a run keeps: `differing` lists the first ones only. */
  differingTruncated: boolean;
  /** Bytes marked dirty for the repair (0 without repair). */
  repairedBytes: number;
  seconds: number;
  mbPerSecond: number;
  error: { code: string; message: string; hint?: string } | null;
}

export interface VerifyServiceOptions {
  devices: readonly ClientDevice[];
  core: VerifyCore;
  probes: ProbeChannel;
  timers?: ClientTimers;
  log?: ConsolaInstance;
  tuning?: Partial<VerifyTuning>;
}

export class VerifyRun {
  state: VerifyRunState = "running";
  repairedBytes = 0;
  error: DruvaaError | undefined;
  readonly startedAt: number;
  endedAt: number | undefined;
  /** Resolves when the run ended (in any state); never rejects. */
  readonly finished: Promise<void>;
  /** Resolves when the pass ended (for repair: every differing block durably marked); never rejects. */
  readonly passEnded: Promise<void>;
  #cancelWait: (() => void) | undefined;

  constructor(readonly id: number, readonly spec: ClientDevice, readonly repair: boolean, readonly pass: VerifyPass, readonly offset: number, readonly blockBytes: number, private readonly service: VerifyService) {
    this.startedAt = service.now();
    let passDone!: () => void;
    this.passEnded = new Promise((resolve) => (passDone = resolve));
    this.finished = this.#run(passDone);
  }

  async #run(passDone: () => void): Promise<void> {
    const log = this.service.log;
    try {
      await this.pass.run();
      passDone();
      if (this.repair && this.repairedBytes > 0) {
        this.state = "resyncing";
        log.info(`verify ${this.id} of ${this.spec.name}: ${this.repairedBytes} differing byte(s) marked; resyncing them`);
        await this.#untilResynced();
      }
      this.state = "done";
      const { count, bytes } = this.pass.differing;
      log.info(`verify ${this.id} of ${this.spec.name}: ${count === 0 ? "equal" : `${count} differing range(s), ${bytes} byte(s)${this.repair ? ", repaired" : ""}`}`);
    } catch (error) {
      passDone();
      this.error = error instanceof DruvaaError ? error : new DruvaaError("VERIFY_FAILED", String(error));
      this.state = this.error.code === "VERIFY_CANCELLED" ? "cancelled" : "failed";
      log.warn(`verify ${this.id} of ${this.spec.name} ${this.state}: ${this.error.message}`);
    } finally {
      this.endedAt = this.service.now();
    }
  }

  /** Asks for a resync, then waits until the client is connected with nothing dirty. */
  async #untilResynced(): Promise<void> {
    const core = this.service.core;
    const region = this.spec.changeMap!;
    core.requestResync();
    while (!(core.mode === "connected" && region.dirtyBytes === 0)) {
      if (this.error !== undefined) throw this.error;
      await new Promise<void>((resolve) => {
        const cancel = this.service.timers.schedule(this.service.pollMs, resolve);
        this.#cancelWait = () => {
          cancel();
          resolve();
        };
      });
      if (core.mode !== "resyncing" && region.dirtyBytes > 0) core.requestResync();
    }
  }

  cancel(reason = new DruvaaError("VERIFY_CANCELLED", `verify ${this.id} was cancelled`)): void {
    if (this.endedAt !== undefined) return;
    this.error ??= reason;
    this.pass.stop(reason);
    this.#cancelWait?.();
  }

  get active(): boolean {
    return this.endedAt === undefined;
  }

  view(): VerifyRunView {
    const seconds = ((this.endedAt ?? this.service.now()) - this.startedAt) / 1000;
    const progress = this.pass.progress;
    return {
      id: this.id,
      device: this.spec.name,
      repair: this.repair,
      state: this.state,
      offset: this.offset,
      length: progress.totalBytes,
      blockBytes: this.blockBytes,
      ...progress,
      differing: this.pass.differing.list(),
      differingBytes: this.pass.differing.bytes,
      differingTruncated: this.pass.differing.truncated,
      repairedBytes: this.repairedBytes,
      seconds,
      mbPerSecond: seconds > 0 ? progress.checkedBytes / seconds / 1e6 : 0,
      error: this.error === undefined ? null : this.error.toJSON(),
    };
  }
}

export class VerifyService {
  readonly core: VerifyCore;
  readonly timers: ClientTimers;
  readonly log: ConsolaInstance;
  readonly pollMs = 200;
  readonly #devices: Map<string, ClientDevice>;
  readonly #probes: ProbeChannel;
  readonly #tuning: Partial<VerifyTuning> | undefined;
  readonly #runs: VerifyRun[] = [];
  #nextId = 1;

  constructor(options: VerifyServiceOptions) {
    this.core = options.core;
    this.#devices = new Map(options.devices.map((spec) => [spec.name, spec]));
    this.#probes = options.probes;
    this.timers = options.timers ?? realTimers;
    this.log = options.log ?? logger("client:verify");
    this.#tuning = options.tuning;
  }

  now(): number {
    return this.timers.now?.() ?? Date.now();
  }

  /** The digest block of a device: its change map's block (so repair marks exactly what differs), else the default. */
  blockBytesOf(spec: ClientDevice): number {
    return Math.min(spec.changeMap?.blockSizeBytes ?? clientVerifyBlockBytesDefault, verifyBlockBytesMax);
  }

  /** Starts a run; throws (refusal or usage error) without starting anything. */
  start(request: VerifyRequest): VerifyRun {
    const spec = this.#devices.get(request.device);
    if (spec === undefined) {
      throw new DruvaaError("DEVICE_UNKNOWN", `this client serves no device named ${request.device}`, `It serves: ${[...this.#devices.keys()].join(", ")}`, exitCodes.refused);
    }
    const repair = request.repair === true;
    if (repair && spec.changeMap === undefined) {
      throw new DruvaaError("NO_CHANGEMAP", `cannot repair ${spec.name}: the client has no change map to mark the differing blocks in`, "Start the client with --changemap PATH, or verify without --repair", exitCodes.refused);
    }
    if (this.core.mode === "disconnected") {
      throw new DruvaaError("DISCONNECTED", `the client is in disconnected mode: its writes are not being logged at staging, so ${spec.name} cannot be compared with the replica now`, "Wait until it is connected again (druvaa resync --connect CLIENT:6007), then verify", exitCodes.refused);
    }
    if (!this.#probes.linkIsUp) {
      throw new DruvaaError("STAGING_UNREACHABLE", `the client is not connected to staging: ${spec.name} cannot be compared with the replica now`, "Check staging (druvaa status --connect STAGING:6002) and try again", exitCodes.refused);
    }
    const busy = this.#runs.find((run) => run.active && run.spec.name === spec.name);
    if (busy !== undefined) {
      throw new DruvaaError("VERIFY_BUSY", `verify ${busy.id} of ${spec.name} is still running`, `Follow it with: curl 'http://CLIENT:6007/verify?id=${busy.id}', or cancel it: POST /verify/cancel {"id":${busy.id}}`, exitCodes.refused);
    }
    const sizeBytes = spec.device.sizeBytes;
    const sector = spec.device.logicalBlockSizeBytes;
    const offset = request.offset ?? 0;
    const length = request.length ?? sizeBytes - Math.min(offset, sizeBytes);
    if (offset % sector !== 0 || length % sector !== 0 || offset + length > sizeBytes || length === 0) {
      throw usageError(`verify range ${offset}+${length} is not inside ${spec.name} (${sizeBytes} bytes) in whole ${sector}-byte blocks`, "Give --offset and --length as multiples of the device's block size, inside the device");
    }
    const blockBytes = this.blockBytesOf(spec);
    const alignedOffset = offset - (offset % blockBytes);
    const end = Math.min(sizeBytes, Math.ceil((offset + length) / blockBytes) * blockBytes);
    const run: VerifyRun = new VerifyRun(this.#nextId, spec, repair, new VerifyPass({
      host: this.core,
      probes: this.#probes,
      device: spec,
      offsetBytes: alignedOffset,
      lengthBytes: end - alignedOffset,
      blockBytes,
      timers: this.timers,
      log: this.log,
      ...(repair ? { onDiffering: (ranges) => this.#mark(run, ranges) } : {}),
      ...(this.#tuning === undefined ? {} : { tuning: this.#tuning }),
    }), alignedOffset, blockBytes, this);
    this.#nextId += 1;
    this.#runs.push(run);
    this.#trim();
    this.log.info(`verify ${run.id} of ${spec.name}: ${end - alignedOffset} byte(s) from ${alignedOffset} in ${blockBytes}-byte blocks${repair ? ", with repair" : ""}`);
    return run;
  }

  async #mark(run: VerifyRun, ranges: ByteRange[]): Promise<void> {
    const region = run.spec.changeMap!;
    await Promise.all(ranges.map((range) => region.markDirty(range.offset, range.length)));
    run.repairedBytes += ranges.reduce((sum, range) => sum + range.length, 0);
  }

  /** Keeps every active run and the last clientVerifyRunsKept finished ones. */
  #trim(): void {
    let finished = this.#runs.filter((run) => !run.active).length;
    for (let index = 0; index < this.#runs.length && finished > clientVerifyRunsKept; ) {
      if (this.#runs[index]!.active) index += 1;
      else {
        this.#runs.splice(index, 1);
        finished -= 1;
      }
    }
  }

  get(id: number): VerifyRun {
    const run = this.#runs.find((candidate) => candidate.id === id);
    if (run === undefined) throw new DruvaaError("VERIFY_UNKNOWN", `no verify run ${id} on this client (finished runs are kept for a while only)`, "List them with: curl http://CLIENT:6007/verify", exitCodes.notFound);
    return run;
  }

  /** Active runs, for the client's status. */
  status(): { id: number; device: string; state: VerifyRunState; checkedBytes: number; totalBytes: number; differingBytes: number }[] {
    return this.#runs.filter((run) => run.active).map((run) => ({ id: run.id, device: run.spec.name, state: run.state, checkedBytes: run.pass.progress.checkedBytes, totalBytes: run.pass.progress.totalBytes, differingBytes: run.pass.differing.bytes }));
  }

  /** Shutdown: cancels every run. */
  stop(): void {
    for (const run of this.#runs) run.cancel(new DruvaaError("VERIFY_CANCELLED", "the client is shutting down"));
  }

  /** The control-port routes (see the file comment). */
  routes(): Record<string, ControlRoute> {
    return {
      "POST /verify": async (request) => this.start(parseRequest(await jsonBody(request))).view(),
      "/verify": (request) => {
        const id = new URL(request.url).searchParams.get("id");
        if (id === null) return { runs: this.#runs.map((run) => run.view()) };
        return this.get(parseId(id)).view();
      },
      "POST /verify/cancel": async (request) => {
        const run = this.get(parseId((await jsonBody(request)).id));
        run.cancel();
        return run.view();
      },
    };
  }
}

async function jsonBody(request: Request): Promise<Record<string, unknown>> {
  const body: unknown = await request.json().catch(() => undefined);
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw usageError("the request body is not a JSON object", 'e.g. {"device":"disk0","repair":false}');
  return body as Record<string, unknown>;
}

function parseRequest(body: Record<string, unknown>): VerifyRequest {
  const { device, repair, offset, length } = body;
  if (typeof device !== "string" || device.length === 0) throw usageError("verify: `device` (the export name) is required", 'e.g. {"device":"disk0"}');
  if (repair !== undefined && typeof repair !== "boolean") throw usageError("verify: `repair` must be true or false");
  const request: VerifyRequest = { device, repair: repair === true };
  for (const [name, value] of [["offset", offset], ["length", length]] as const) {
    if (value === undefined) continue;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) throw usageError(`verify: \`${name}\` must be a byte count`, `e.g. {"device":"disk0","${name}":1048576}`);
    request[name] = value;
  }
  return request;
}

function parseId(value: unknown): number {
  const id = typeof value === "string" ? Number(value) : value;
  if (typeof id !== "number" || !Number.isSafeInteger(id) || id <= 0) throw usageError(`verify: "${String(value)}" is not a run id`);
  return id;
}
