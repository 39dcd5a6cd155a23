/**
 * Client crash recovery: what happens to the extents the activity log names after a run that did
 * not shut down cleanly (SIGKILL, power loss). Each of them may differ between primary and
 * replica: a write may have been logged at staging and not written locally, or written locally
 * and not logged. Checksum-first (CrashRecovery): once staging is connected, a verify pass with
 * repair (verify.ts) compares each of them with the replica by block hashes; only the blocks
 * that differ are marked dirty and resent. The safe default (markActiveExtentsDirty, the core's
 * recoverActiveExtents) marks them dirty whole; it is the fallback whenever verifying cannot be
 * trusted to finish.
 *
 * Until an extent's verify and repair finished it is not known to be in sync, so:
 * - it stays pinned in the activity log (durable) until then: a crash before that (or a clean
 *   shutdown: closeClean answers false while anything is pinned) recovers it again;
 * - `inProgress` in the status keeps `druvaa resync` from reporting the client in sync;
 * - its differing blocks are durably marked dirty before its pin is released.
 * Writes the application makes meanwhile are fine: a probe holds its range in the overlap gate,
 * so every write is ordered wholly before it (read by it, logged below it) or after it.
 *
 * Why a probe sees what the crashed run left in the WRL: the probe is logged through the new
 * connection, after the crashed run's records (they reached staging before this process
 * existed; the mark-dirty default relies on the same order for its resync set). The replica
 * compares at the probe's place in the write order, after applying them: a write logged but
 * never written locally differs (the replica has it, the primary not) and is repaired with the
 * primary's bytes; a write written locally but never logged differs the other way, the same.
 * Blocks dirty in the change map when probed are left to the resync (verify.ts skips them).
 *
 * Decision table (attach, at start, with --changemap):
 *   no activity log, or a new one     -> nothing to recover; every device's resync set may be
 *                                        open (unknown): the first pass ends them
 *   log clean                         -> nothing to recover; the sets it recorded as open
 *   log not clean                     -> every device's set counts as open, and:
 *     ranges of a region no --device    -> marked dirty in that region (the device resyncs when
 *       of this run serves                 it is attached again); released at once
 *     staging not connected at start    -> recoverActiveExtents (marked dirty), then released
 *     staging connected                 -> verified with repair once the client is connected
 *                                          (after the first pass ended the open sets); each
 *                                          merged range released when its pass has ended
 *   while verifying:
 *     the client goes disconnected,     -> every range not yet verified is marked dirty whole,
 *       or clientCrashRecoveryVerify-      then released (a disconnected client cannot verify,
 *       TimeoutMs passes                   and its pinned extents would fill the log)
 *     a pass fails (device read error,  -> its ranges marked dirty whole, then released
 *       a refusal verify cannot retry)
 *     marking fails (change map I/O)    -> left pinned (state failed): the next start recovers
 *     shutdown                          -> passes stopped, ranges left pinned
 */
import type { ConsolaInstance } from "consola/basic";
import type { ActiveRange } from "../../changemap/activity-log.ts";
import type { ChangeMapRegion } from "../../changemap/index.ts";
import { clientActivityExtentBytes, clientCrashRecoveryPassesMax, clientCrashRecoveryVerifyTimeoutMs } from "../../constants.ts";
import { DruvaaError } from "../../errors.ts";
import { logger } from "../../log.ts";
import type { ByteRange } from "../../protocol/messages.ts";
import { formatBytes } from "../../units.ts";
import { realTimers, type ClientDevice, type ClientTimers } from "./types.ts";
import { VerifyPass, type VerifyHost, type VerifyTuning } from "./verify.ts";
import type { ProbeChannel } from "./verify-link.ts";

/** The default recovery: marks each range dirty in its device's region; resolves once durable. */
export async function markActiveExtentsDirty(ranges: readonly ActiveRange[], devices: readonly ClientDevice[]): Promise<void> {
  const regions = new Map<string, ChangeMapRegion>();
  for (const device of devices) if (device.changeMap !== undefined) regions.set(device.changeMap.name, device.changeMap);
  await markRanges(ranges, (name) => regions.get(name));
}

/** Marks each range dirty in the region `regionOf` gives (all marks share the change map's flushes). */
export async function markRanges(ranges: readonly ActiveRange[], regionOf: (name: string) => ChangeMapRegion | undefined): Promise<void> {
  await Promise.all(ranges.map((range) => {
    const region = regionOf(range.region);
    if (region === undefined) throw new DruvaaError("CHANGEMAP_REGION_UNKNOWN", `the activity log names region '${range.region}', which no device of this client uses`);
    const endBytes = Math.min(range.offsetBytes + range.lengthBytes, region.volumeSizeBytes);
    return endBytes > range.offsetBytes ? region.markDirty(range.offsetBytes, endBytes - range.offsetBytes) : Promise.resolve();
  }));
}

/** Total bytes of `ranges` (for the log line). */
export function rangeBytes(ranges: readonly ActiveRange[]): number {
  return ranges.reduce((sum, range) => sum + range.lengthBytes, 0);
}

/** What checksum-first recovery needs of the core (ClientCore has it all). */
export interface RecoveryCore extends VerifyHost {
  /** The fallback: marks the ranges dirty, durably (crash-recovery's default, or the option). */
  recoverActiveExtents(ranges: readonly ActiveRange[]): Promise<void>;
  requestResync(): unknown;
}

export interface CrashRecoveryOptions {
  /** The recovered ranges of devices this run serves, pinned in the activity log. */
  ranges: readonly ActiveRange[];
  devices: readonly ClientDevice[];
  core: RecoveryCore;
  probes: ProbeChannel;
  /** Unpins one range in the activity log (called once its differing blocks are durably marked). */
  release(range: ActiveRange): void;
  /** The digest block of a device (VerifyService.blockBytesOf: its change map's block). */
  blockBytesOf(spec: ClientDevice): number;
  /** For counting extents in status and log lines (the activity log's). */
  extentBytes?: number;
  timers?: ClientTimers;
  log?: ConsolaInstance;
  tuning?: Partial<VerifyTuning>;
  passesMax?: number;
  verifyTimeoutMs?: number;
  /** How often the disconnect and timeout watch, and the wait for the resync, look. */
  pollMs?: number;
}

export type CrashRecoveryState = "none" | "verifying" | "resyncing" | "done" | "failed" | "stopped";

export interface CrashRecoveryStatus {
  state: CrashRecoveryState;
  /**
   * Some extent is not known to be in sync yet (being verified or marked; or its marks failed,
   * until a restart recovers it): the client is not in sync (`druvaa resync` waits).
   */
  inProgress: boolean;
  extents: number;
  totalBytes: number;
  verifiedExtents: number;
  verifiedBytes: number;
  /** Bytes whose probe outcome came back (progress within the passes). */
  checkedBytes: number;
  differingBlocks: number;
  differingBytes: number;
  /** Bytes marked dirty whole instead of verified (the fallback). */
  markedBytes: number;
  reason: string | null;
  seconds: number;
}

/** Adjacent or overlapping recovered ranges of one device, verified by one pass. */
interface RecoveryGroup {
  spec: ClientDevice;
  offsetBytes: number;
  endBytes: number;
  ranges: ActiveRange[];
  state: "pending" | "verifying" | "verified" | "marking" | "marked" | "failed";
  pass?: VerifyPass;
}

export class CrashRecovery {
  readonly #options: CrashRecoveryOptions;
  readonly #timers: ClientTimers;
  readonly #log: ConsolaInstance;
  readonly #groups: RecoveryGroup[];
  readonly #extentBytes: number;
  #state: CrashRecoveryState;
  #reason: string | null = null;
  #differingBlocks = 0;
  #differingBytes = 0;
  #startedAt = 0;
  #endedAt: number | undefined;
  #stopped = false;
  #falling: Promise<void> | undefined;
  #cancelTimer: (() => void) | undefined;
  #wake: (() => void) | undefined;
  /** Resolves when recovery has ended (done, failed or stopped); never rejects. */
  settled: Promise<void> = Promise.resolve();

  constructor(options: CrashRecoveryOptions) {
    this.#options = options;
    this.#timers = options.timers ?? realTimers;
    this.#log = options.log ?? logger("client:crash-recovery");
    this.#extentBytes = options.extentBytes ?? clientActivityExtentBytes;
    this.#groups = groupRanges(options.ranges, options.devices);
    this.#state = this.#groups.length === 0 ? "none" : "verifying";
  }

  #now(): number {
    return this.#timers.now?.() ?? Date.now();
  }

  /**
   * Decides (table above). Staging not connected: resolves once the ranges are durably marked
   * dirty. Otherwise resolves at once; the passes run in the background (`settled`).
   */
  async start(): Promise<void> {
    if (this.#groups.length === 0) return;
    this.#startedAt = this.#now();
    const { core, probes } = this.#options;
    if (!probes.linkIsUp || core.mode === "disconnected") {
      await this.#fallBack("staging is not connected");
      this.settled = this.#afterVerify();
      return;
    }
    const { extents, totalBytes } = this.status();
    this.#log.info(`crash recovery: verifying ${extents} extent(s) (${formatBytes(totalBytes)}) against the replica, checksum-first: only blocks that differ are resent`);
    this.#watch();
    this.settled = this.#run();
  }

  /** Shutdown: stops the passes; what is not verified stays pinned (the next start recovers it). */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#cancelTimer?.();
    this.#wake?.();
    const reason = new DruvaaError("CLIENT_STOPPING", "the client is shutting down");
    for (const group of this.#groups) group.pass?.stop(reason);
    if (this.#state === "verifying" || this.#state === "resyncing") this.#state = "stopped";
  }

  status(): CrashRecoveryStatus {
    let totalBytes = 0, extents = 0, verifiedBytes = 0, verifiedExtents = 0, checkedBytes = 0, markedBytes = 0;
    for (const group of this.#groups) {
      const bytes = group.endBytes - group.offsetBytes;
      const count = Math.ceil(bytes / this.#extentBytes); // groups do not overlap; the log's slots may
      totalBytes += bytes;
      extents += count;
      checkedBytes += group.pass?.progress.checkedBytes ?? 0;
      if (group.state === "verified") {
        verifiedBytes += bytes;
        verifiedExtents += count;
      } else if (group.state === "marked") markedBytes += bytes;
    }
    const inProgress = this.#groups.some((group) => group.state !== "verified" && group.state !== "marked");
    const seconds = this.#startedAt === 0 ? 0 : ((this.#endedAt ?? this.#now()) - this.#startedAt) / 1000;
    return { state: this.#state, inProgress, extents, totalBytes, verifiedExtents, verifiedBytes, checkedBytes, differingBlocks: this.#differingBlocks, differingBytes: this.#differingBytes, markedBytes, reason: this.#reason, seconds };
  }

  async #run(): Promise<void> {
    const queue = [...this.#groups];
    const worker = async () => {
      for (let group = queue.shift(); group !== undefined; group = queue.shift()) {
        if (this.#stopped || this.#falling !== undefined) return;
        await this.#verify(group);
      }
    };
    await Promise.all(Array.from({ length: this.#options.passesMax ?? clientCrashRecoveryPassesMax }, worker));
    await this.#falling;
    this.#cancelTimer?.();
    await this.#afterVerify();
  }

  /** One group: a verify pass with repair; on failure its ranges are marked dirty whole. */
  async #verify(group: RecoveryGroup): Promise<void> {
    group.state = "verifying";
    try {
      group.pass = this.#passOf(group);
      await group.pass.run();
    } catch (error) {
      if (this.#stopped || group.state !== "verifying") return; // shutdown, or the fallback has it
      await this.#markGroups([group], `verify of ${group.spec.name}@${group.offsetBytes}+${group.endBytes - group.offsetBytes} failed: ${error instanceof Error ? error.message : String(error)}`);
      return;
    }
    if (group.state !== "verifying") return; // the fallback took it meanwhile (marked whole: safe)
    group.state = "verified";
    for (const range of group.ranges) this.#options.release(range);
  }

  /** The group's pass: each probe's differing blocks are durably marked dirty before they count. */
  #passOf(group: RecoveryGroup): VerifyPass {
    const blockBytes = this.#options.blockBytesOf(group.spec);
    const region = group.spec.changeMap!;
    return new VerifyPass({
      host: this.#options.core,
      probes: this.#options.probes,
      device: group.spec,
      offsetBytes: group.offsetBytes,
      lengthBytes: group.endBytes - group.offsetBytes,
      blockBytes,
      timers: this.#timers,
      log: this.#log,
      onDiffering: async (ranges: ByteRange[]) => {
        await Promise.all(ranges.map((range) => region.markDirty(range.offset, range.length)));
        const bytes = ranges.reduce((sum, range) => sum + range.length, 0);
        this.#differingBytes += bytes;
        this.#differingBlocks += ranges.reduce((sum, range) => sum + Math.ceil(range.length / blockBytes), 0);
      },
      ...(this.#options.tuning === undefined ? {} : { tuning: this.#options.tuning }),
    });
  }

  /** Watches for a disconnect and the verify deadline while passes run. */
  #watch(): void {
    const pollMs = this.#options.pollMs ?? 200;
    const timeoutMs = this.#options.verifyTimeoutMs ?? clientCrashRecoveryVerifyTimeoutMs;
    this.#cancelTimer = this.#timers.schedule(pollMs, () => {
      if (this.#stopped || this.#falling !== undefined) return;
      if (this.#options.core.mode === "disconnected") void this.#fallBack("the client went disconnected before the extents were verified");
      else if (this.#now() - this.#startedAt >= timeoutMs) void this.#fallBack(`the extents were not verified within ${timeoutMs / 1000} s (is the replica applying?)`);
      else this.#watch();
    });
  }

  /** Stops every pass not finished and marks what is not verified dirty whole. */
  #fallBack(reason: string): Promise<void> {
    this.#falling ??= (async () => {
      const open = this.#groups.filter((group) => group.state === "pending" || group.state === "verifying");
      const stopped = new DruvaaError("CRASH_RECOVERY_FALLBACK", reason);
      for (const group of open) group.pass?.stop(stopped);
      await this.#markGroups(open, reason);
    })();
    return this.#falling;
  }

  /** Marks the groups' ranges dirty (durably), then unpins them; on failure they stay pinned. */
  async #markGroups(groups: RecoveryGroup[], reason: string): Promise<void> {
    if (groups.length === 0) return;
    for (const group of groups) group.state = "marking";
    const ranges = groups.flatMap((group) => group.ranges);
    this.#reason ??= reason;
    try {
      await this.#options.core.recoverActiveExtents(ranges);
    } catch (error) {
      for (const group of groups) group.state = "failed";
      this.#log.error(`crash recovery: ${reason}; marking ${ranges.length} range(s) dirty failed too: ${error instanceof Error ? error.message : String(error)}. They stay in the activity log: restart the client to recover them`);
      return;
    }
    for (const group of groups) group.state = "marked";
    for (const range of ranges) this.#options.release(range);
    this.#log.warn(`crash recovery: ${reason}; marked ${ranges.length} range(s) (${formatBytes(rangeBytes(ranges))}) dirty instead: the resync sends them whole`);
  }

  /** Every group verified or marked: the resync sends what is dirty; logs the outcome once it has. */
  async #afterVerify(): Promise<void> {
    if (this.#stopped) return;
    if (this.#groups.some((group) => group.state === "failed")) {
      this.#state = "failed";
      this.#endedAt = this.#now();
      return;
    }
    const status = this.status();
    const found = `${status.verifiedExtents} extent(s) (${formatBytes(status.verifiedBytes)}) verified${status.markedBytes > 0 ? `, ${formatBytes(status.markedBytes)} marked dirty whole` : ""}`;
    const differing = `${status.differingBlocks} block(s) (${formatBytes(status.differingBytes)}) differed`;
    if (status.differingBytes === 0 && status.markedBytes === 0) {
      this.#state = "done";
      this.#endedAt = this.#now();
      this.#log.info(`crash recovery: ${found} in ${status.seconds.toFixed(1)} s, all equal: nothing resent`);
      return;
    }
    this.#state = "resyncing";
    this.#log.info(`crash recovery: ${found} in ${status.seconds.toFixed(1)} s, ${differing}; resyncing`);
    this.#options.core.requestResync();
    const regions = [...new Set(this.#groups.map((group) => group.spec.changeMap!))];
    while (!(this.#options.core.mode === "connected" && regions.every((region) => region.dirtyBytes === 0))) {
      if (this.#stopped) return;
      await new Promise<void>((resolve) => {
        const cancel = this.#timers.schedule(this.#options.pollMs ?? 200, resolve);
        this.#wake = () => (cancel(), resolve());
      });
    }
    this.#state = "done";
    this.#endedAt = this.#now();
    this.#log.info(`crash recovery: ${found}, ${differing} and were resynced`);
  }
}

/** The ranges by device, sorted, adjacent and overlapping ones merged; clipped to the device. */
function groupRanges(ranges: readonly ActiveRange[], devices: readonly ClientDevice[]): RecoveryGroup[] {
  const groups: RecoveryGroup[] = [];
  for (const spec of devices) {
    if (spec.changeMap === undefined) continue;
    const own = ranges.filter((range) => range.region === spec.changeMap!.name).sort((a, b) => a.offsetBytes - b.offsetBytes);
    let last: RecoveryGroup | undefined;
    for (const range of own) {
      // The log clips its ranges to the region, which is the device's size: nothing is cut here
      // in practice, and an empty range still gets its (empty) pass so that it is released.
      const endBytes = Math.max(range.offsetBytes, Math.min(range.offsetBytes + range.lengthBytes, spec.device.sizeBytes));
      if (last !== undefined && range.offsetBytes <= last.endBytes) {
        last.endBytes = Math.max(last.endBytes, endBytes);
        last.ranges.push(range);
        continue;
      }
      last = { spec, offsetBytes: range.offsetBytes, endBytes, ranges: [range], state: "pending" };
      groups.push(last);
    }
  }
  return groups;
}
