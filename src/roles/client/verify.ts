/**
 * Online verify (issue 4 part 7): one pass compares a range of a client device with the replica's
 * copy by block hashes, at the same point of the write order, while the application keeps writing.
 * Only digests cross the network.
 *
 * One probe (a chunk of clientVerifyChunkBytes, cut by planProbes):
 *   wait until the link is up and the client connected (not disconnected, not resyncing)
 *   → hold the range in the core's overlap gate → read it from the local device → sha256 of each
 *   block → `write {kind: "verify"}` with the digests → staging's ack (the probe is logged at LSN
 *   L) → release the range → wait for the replica's outcome for L (verifyReport).
 * Why concurrent writes never cause a false report: while the range is held, every earlier write
 * overlapping it has completed (so it was logged below L, and our read sees it), and every later
 * one waits for the release, which comes after the ack (so it is logged above L). The replica
 * compares at L: after every record below it, before every record above it (replica assumption,
 * docs/pipeline.md). The probe takes an epoch of its own (issue/complete around it), so no write
 * overlapping it shares its epoch.
 * Blocks the change map holds dirty when the probe is taken are not compared (the replica may
 * legitimately lack them: they are waiting for a resync); their bytes count as skippedDirtyBytes.
 *
 * Failures (decision table):
 *   link down, client disconnected or resyncing   → wait (retryMs), then probe
 *   probe not acked in time, link lost, WRL full,  → release the range, wait (backoff), probe again
 *     BUSY, SHUTTING_DOWN, IO_ERROR
 *   no outcome within the report timeout           → probe again (timeout doubles up to the max);
 *                                                    an outcome of any probe of the chunk counts
 *   device read error, any other refusal           → the pass fails with it
 *   stop(reason)                                   → the pass rejects with reason
 * A probe is never resent on its own: after a reconnect the range is read and hashed again.
 *
 * Throughput: probesInflight chunks are being read, hashed or acked at once (one hashes while
 * the next is read and the previous waits for its ack), windowChunks may wait for their outcome,
 * so the replica's lag costs no time. Hashing runs on the event loop, one chunk at a time, in
 * slices of clientVerifyHashSliceBytes with a yield between (NBD requests keep being served).
 * Whole-page chunks of an image file are read through an O_DIRECT handle of the pass's own
 * (direct-reader.ts): the page cache would cost a kernel copy of every byte, as much CPU as hashing.
 */
import type { ConsolaInstance } from "consola/basic";
import { directIoAlignmentBytes } from "../../constants.ts";
import {
  clientVerifyChunkBytes, clientVerifyHashSliceBytes, clientVerifyProbesInflight, clientVerifyRangesKeptMax, clientVerifyReportTimeoutMs,
  clientVerifyReportTimeoutMsMax, clientVerifyRetryMs, clientVerifyWindowChunks,
} from "../../verify-constants.ts";
import { DruvaaError } from "../../errors.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { alignedBuffer } from "../../io/handle-device.ts";
import type { EpochAssigner } from "../../order/epochs.ts";
import { verifyDigestBytes, type ByteRange, type VerifyReportMessage } from "../../protocol/messages.ts";
import { openDirectReader, pagesAligned } from "./direct-reader.ts";
import type { ClientDevice, ClientMode, ClientTimers } from "./types.ts";
import { transientProbeCodes, type ProbeAck, type ProbeChannel } from "./verify-link.ts";
import { clipRanges, dirtyWithin, hashBlocks, planProbes, RangeList, subtractRanges, type ProbeRange } from "./verify-ranges.ts";
import { Slots } from "../../io/slots.ts";

/** What a pass needs of the client core. */
export interface VerifyHost {
  readonly verifyAccess: {
    /** Holds a device range in the core's overlap gate; resolves with its release. */
    lockRange(device: string, offsetBytes: number, lengthBytes: number): Promise<() => void>;
  };
  readonly epochs: EpochAssigner;
  readonly mode: ClientMode;
}

/** Tuning of a pass; the defaults are the constants of the same names. */
export interface VerifyTuning {
  chunkBytes: number;
  probesInflight: number;
  windowChunks: number;
  reportTimeoutMs: number;
  reportTimeoutMsMax: number;
  retryMs: number;
  hashSliceBytes: number;
  rangesKeptMax: number;
}

export const defaultVerifyTuning: VerifyTuning = {
  chunkBytes: clientVerifyChunkBytes,
  probesInflight: clientVerifyProbesInflight,
  windowChunks: clientVerifyWindowChunks,
  reportTimeoutMs: clientVerifyReportTimeoutMs,
  reportTimeoutMsMax: clientVerifyReportTimeoutMsMax,
  retryMs: clientVerifyRetryMs,
  hashSliceBytes: clientVerifyHashSliceBytes,
  rangesKeptMax: clientVerifyRangesKeptMax,
};

export interface VerifyPassOptions {
  host: VerifyHost;
  probes: ProbeChannel;
  device: ClientDevice;
  /** The range to compare: offset aligned to blockBytes; the end is clipped to the device. */
  offsetBytes: number;
  lengthBytes: number;
  /** Digest block (a power of two in [verifyBlockBytesMin, verifyBlockBytesMax]). */
  blockBytes: number;
  timers: ClientTimers;
  log: ConsolaInstance;
  /** Called with the differing ranges of each probe (sorted) before they count; a rejection fails the pass. */
  onDiffering?: (ranges: ByteRange[]) => Promise<void>;
  tuning?: Partial<VerifyTuning>;
}

export interface VerifyProgress {
  totalBytes: number;
  /** Bytes whose probe staging logged. */
  probedBytes: number;
  /** Bytes whose outcome came back. */
  checkedBytes: number;
  /** Blocks dirty in the change map when probed: not compared. */
  skippedDirtyBytes: number;
  probes: number;
  /** Probes sent again because their outcome did not come in time. */
  reprobes: number;
  /** Tries given up before staging logged them (link lost, refusals that pass). */
  retries: number;
}

interface Sent {
  ack: ProbeAck;
  /** Dirty ranges of the chunk when it was probed. */
  dirty: ByteRange[];
}

export class VerifyPass {
  readonly progress: VerifyProgress;
  readonly differing: RangeList;
  readonly #options: VerifyPassOptions;
  readonly #tuning: VerifyTuning;
  readonly #probes: ProbeRange[];
  #stopped: DruvaaError | undefined;
  /** The chunk being hashed (chunks hash one after the other). */
  #hashing: Promise<void> = Promise.resolve();
  /**
   * Read buffers, reused: a fresh 8 MiB buffer per chunk cost more CPU (page faults, zeroing)
   * than hashing it. At most probesInflight exist.
   */
  readonly #buffers: Uint8Array[] = [];
  readonly #wakeOnStop = new Set<() => void>();
  /** Probes being read, hashed or sent (first tries and tries again alike): probesInflight. */
  readonly #stage: Slots;
  /** What whole 4 KiB pages are read through: an O_DIRECT handle (direct-reader.ts) or the device. */
  #reader: BlockDevice;

  constructor(options: VerifyPassOptions) {
    this.#options = options;
    this.#tuning = { ...defaultVerifyTuning, ...options.tuning };
    const end = Math.min(options.device.device.sizeBytes, options.offsetBytes + options.lengthBytes);
    this.#probes = planProbes(options.offsetBytes, end, options.blockBytes, this.#tuning.chunkBytes);
    this.progress = { totalBytes: end - options.offsetBytes, probedBytes: 0, checkedBytes: 0, skippedDirtyBytes: 0, probes: 0, reprobes: 0, retries: 0 };
    this.differing = new RangeList(this.#tuning.rangesKeptMax);
    this.#stage = new Slots(this.#tuning.probesInflight, this.#wakeOnStop);
    this.#reader = options.device.device;
  }

  /** Ends the pass: waits stop, run() rejects with `reason` (the first reason given wins). */
  stop(reason: DruvaaError): void {
    this.#stopped ??= reason;
    for (const wake of [...this.#wakeOnStop]) wake();
  }

  /** Resolves once every probe of the range has its outcome; rejects if the pass failed or was stopped. */
  async run(): Promise<void> {
    const reader = await openDirectReader(this.#options.device, this.#options.log);
    this.#reader = reader ?? this.#options.device.device;
    try {
      await this.#run();
    } finally {
      await reader?.close();
    }
  }

  async #run(): Promise<void> {
    let next = 0;
    const window = new Slots(this.#tuning.windowChunks, this.#wakeOnStop);
    const outcomes: Promise<void>[] = [];
    const worker = async () => {
      for (;;) {
        const probe = this.#probes[next];
        if (probe === undefined || this.#stopped !== undefined) return;
        next += 1;
        await window.take();
        if (this.#stopped !== undefined) return window.give();
        let sent: Sent;
        try {
          sent = await this.#probeUntilLogged(probe);
        } catch (error) {
          window.give();
          throw error;
        }
        outcomes.push(this.#awaitOutcome(probe, sent).catch((error: unknown) => this.stop(asError(error))).finally(() => window.give()));
      }
    };
    await Promise.all(Array.from({ length: this.#tuning.probesInflight }, () => worker().catch((error: unknown) => this.stop(asError(error)))));
    await Promise.all(outcomes);
    if (this.#stopped !== undefined) throw this.#stopped;
  }

  /** Probes the chunk until staging has logged a probe of it. */
  async #probeUntilLogged(probe: ProbeRange): Promise<Sent> {
    let delayMs = this.#tuning.retryMs;
    for (;;) {
      await this.#ready();
      await this.#stage.take();
      let sent: Sent | undefined;
      try {
        this.#checkStopped();
        sent = await this.#probeOnce(probe);
      } finally {
        this.#stage.give();
      }
      if (sent !== undefined) return sent;
      this.progress.retries += 1;
      await this.#sleep(delayMs);
      delayMs = Math.min(delayMs * 2, 16 * this.#tuning.retryMs);
    }
  }

  #canProbe(): boolean {
    return this.#options.probes.linkIsUp && this.#options.host.mode === "connected";
  }

  /** Waits until a probe can be logged and compared: link up, client connected. */
  async #ready(): Promise<void> {
    for (;;) {
      this.#checkStopped();
      if (this.#canProbe()) return;
      await this.#sleep(this.#tuning.retryMs);
    }
  }

  /** One try: the range is held in the overlap gate from the read until staging's ack. */
  async #probeOnce(probe: ProbeRange): Promise<Sent | undefined> {
    const { host, device, probes, log } = this.#options;
    const release = await host.verifyAccess.lockRange(device.name, probe.offset, probe.length);
    try {
      this.#checkStopped();
      if (!this.#canProbe()) return undefined;
      const digests = new Uint8Array((probe.length / probe.blockBytes) * verifyDigestBytes);
      const buffer = this.#buffers.pop() ?? alignedBuffer(this.#probes[0]!.length, directIoAlignmentBytes);
      try {
        const data = buffer.subarray(0, probe.length);
        const source = pagesAligned(probe.offset, probe.length) ? this.#reader : device.device;
        if (source.readInto !== undefined) await source.readInto(probe.offset, data);
        else data.set(await source.read(probe.offset, probe.length));
        // One chunk hashes at a time: it is done (and sent) soonest, and the next one hashes while
        // this one waits for its ack, so the CPU never idles while every chunk waits for one.
        const hashed = this.#hashing.then(() => hashBlocks(data, probe.blockBytes, digests, this.#tuning.hashSliceBytes));
        this.#hashing = hashed.catch(() => undefined);
        await hashed;
      } finally {
        this.#buffers.push(buffer);
      }
      this.#checkStopped();
      if (!this.#canProbe()) return undefined;
      const dirty = dirtyWithin(device.changeMap, probe);
      // Issued and sent in the same tick, like a write (core.ts).
      const epoch = host.epochs.issue();
      try {
        const ack = await probes.send({ kind: "verify", verifyBlockBytes: probe.blockBytes, device: device.name, wrl: device.wrl, epoch, offset: probe.offset, length: probe.length }, digests);
        this.progress.probes += 1;
        this.progress.probedBytes += probe.length;
        return { ack, dirty };
      } finally {
        host.epochs.complete();
      }
    } catch (error) {
      if (error instanceof DruvaaError && transientProbeCodes.has(error.code) && this.#stopped === undefined) {
        log.debug(`verify probe of ${device.name}@${probe.offset}+${probe.length}: ${error.message}; probing again`);
        return undefined;
      }
      throw error;
    } finally {
      release();
    }
  }

  /** Waits for the outcome of any probe of the chunk, probing again when none comes in time. */
  async #awaitOutcome(probe: ProbeRange, first: Sent): Promise<void> {
    const sent = [first];
    let timeoutMs = this.#tuning.reportTimeoutMs;
    try {
      for (;;) {
        const outcome = await this.#firstReport(sent, timeoutMs);
        if (outcome === "timeout") {
          this.progress.reprobes += 1;
          this.#options.log.info(`verify of ${this.#options.device.name}@${probe.offset}+${probe.length}: no outcome from the replica within ${timeoutMs} ms; probing again`);
          sent.push(await this.#probeUntilLogged(probe));
          timeoutMs = Math.min(timeoutMs * 2, this.#tuning.reportTimeoutMsMax);
          continue;
        }
        const { report, dirty } = outcome;
        if (report.offset !== probe.offset || report.length !== probe.length) {
          this.#options.log.warn(`the replica's verify outcome at LSN ${report.lsn} covers ${report.offset}+${report.length}, not the probe's ${probe.offset}+${probe.length}; using what falls inside the probe`);
        }
        const differing = subtractRanges(clipRanges(report.differing, probe), dirty);
        if (differing.length > 0) await this.#options.onDiffering?.(differing);
        this.differing.add(differing);
        this.progress.skippedDirtyBytes += dirty.reduce((sum, range) => sum + range.length, 0);
        this.progress.checkedBytes += probe.length;
        return;
      }
    } finally {
      for (const entry of sent) entry.ack.cancelReport();
    }
  }

  #firstReport(sent: Sent[], timeoutMs: number): Promise<{ report: VerifyReportMessage; dirty: ByteRange[] } | "timeout"> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (action: () => void) => {
        if (settled) return;
        settled = true;
        cancel();
        this.#wakeOnStop.delete(onStop);
        action();
      };
      const cancel = this.#options.timers.schedule(timeoutMs, () => finish(() => resolve("timeout")));
      const onStop = () => finish(() => reject(this.#stopped));
      this.#wakeOnStop.add(onStop);
      for (const entry of sent) void entry.ack.report.then((report) => finish(() => resolve({ report, dirty: entry.dirty })));
      if (this.#stopped !== undefined) onStop();
    });
  }

  #checkStopped(): void {
    if (this.#stopped !== undefined) throw this.#stopped;
  }

  /** Sleeps `delayMs`, or less if the pass is stopped meanwhile. */
  #sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        cancel();
        this.#wakeOnStop.delete(done);
        resolve();
      };
      const cancel = this.#options.timers.schedule(delayMs, done);
      this.#wakeOnStop.add(done);
    });
  }
}

function asError(error: unknown): DruvaaError {
  return error instanceof DruvaaError ? error : new DruvaaError("VERIFY_FAILED", error instanceof Error ? error.message : String(error), undefined, 1, { cause: error });
}
