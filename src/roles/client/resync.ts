/**
 * The resync pass of the client: after disconnected mode (or a restart with dirty bits), every
 * dirty range of every device's change-map region is read from the local device and sent to
 * staging as resync records (`kind: "resync"`), many chunks at a time, optionally rate-limited;
 * once a device has no dirty bit left and every chunk of it was acked, `endSet` ends the device's
 * resync set (a `resyncEnd` write): only then may the replica apply the set. The core
 * does one chunk (`ResyncChunk`): it holds the range in the overlap gate while it reads, sends and
 * waits for the durable ack, so a newer application write to the same blocks is logged after the
 * chunk; and it clears the bits only once staging acked. Ranges are re-scanned until no bit is
 * left: bits the application sets meanwhile (it cannot while the link is up, but a failed chunk
 * leaves its bits) are picked up by the next scan.
 *
 * In flight: chunks are bounded by bytes (inflightBytes) and by count (inflightChunks), not by a
 * fixed number of workers. After a disconnect the dirty ranges are mostly single 4 KiB blocks;
 * each waits for staging's durable ack, so with a few in flight the pass ran at a few thousand
 * blocks a second whatever the disk could do. Hundreds in flight let staging's group commit
 * log many of them per fdatasync. One chunk always goes, whatever its size.
 * Not done: merging nearby dirty ranges into one chunk (clean blocks in between sent along). At
 * 1% of blocks dirty at random, fewer than 1 in 25 dirty blocks has another within its next 4, so
 * it would save few round trips, and every clean byte sent counts against "bytes sent ≈ bytes
 * changed".
 *
 * A chunk that could not be sent (the link went down, the ack timed out, the WRL filled up)
 * answers false: the pass stops and reports "interrupted" once the chunks in flight settled;
 * the core retries later.
 */
import { clientResyncChunkBytes, clientResyncChunksInflightMax, clientResyncInflightBytesMax } from "../../constants.ts";
import type { ChangeMapRegion } from "../../changemap/index.ts";
import type { ClientTimers } from "./core.ts";

/** Sends one dirty range; resolves true once staging holds it durably and the bits are cleared. */
export type ResyncChunk = (device: string, offsetBytes: number, lengthBytes: number) => Promise<boolean>;

/** Ends a clean device's resync set (if one is open); resolves true once staging holds the end. */
export type ResyncSetEnd = (device: string) => Promise<boolean>;

export interface ResyncTarget {
  device: string;
  region: ChangeMapRegion;
}

export interface ResyncProgress {
  /** Bytes sent and acknowledged in this pass. */
  sentBytes: number;
  /** Dirty bytes left, over every device. */
  remainingBytes: number;
  startedAt: number;
}

export type ResyncOutcome = "done" | "interrupted";

export interface ResyncOptions {
  targets: readonly ResyncTarget[];
  chunk: ResyncChunk;
  /** Called after a device's scan left it clean, every chunk of it acked; false interrupts the pass. */
  endSet?: ResyncSetEnd;
  timers: ClientTimers;
  now: () => number;
  /** Bytes per second (0 or undefined: unlimited). */
  rateLimitBytesPerSecond?: number;
  /** Bytes of the chunks in flight (default clientResyncInflightBytesMax); one chunk always goes. */
  inflightBytes?: number;
  /** Chunks in flight (default clientResyncChunksInflightMax). */
  inflightChunks?: number;
  /** Longest chunk (default clientResyncChunkBytes): a longer dirty run is cut. */
  chunkBytes?: number;
}

export class ResyncPass {
  readonly progress: ResyncProgress;
  #stopped = false;
  /** Bytes handed to #pace so far: the rate limit spaces chunks by what was scheduled, not sent. */
  #scheduledBytes = 0;
  readonly #options: ResyncOptions;

  constructor(options: ResyncOptions) {
    this.#options = options;
    this.progress = { sentBytes: 0, remainingBytes: remainingBytes(options.targets), startedAt: options.now() };
  }

  /** Asks the pass to stop after the chunks in flight. */
  stop(): void {
    this.#stopped = true;
  }

  async run(): Promise<ResyncOutcome> {
    const { targets } = this.#options;
    for (;;) {
      let sentThisScan = 0;
      for (const target of targets) {
        const outcome = await this.#scan(target);
        if (outcome === "interrupted") return outcome;
        sentThisScan += outcome;
        // Every chunk of this device was acked (the scan waited for them) and no bit is left.
        if (target.region.dirtyBytes === 0 && this.#options.endSet !== undefined && !this.#stopped) {
          if (!(await this.#options.endSet(target.device))) return "interrupted";
        }
      }
      this.progress.remainingBytes = remainingBytes(targets);
      if (this.progress.remainingBytes === 0) return "done";
      if (this.#stopped) return "interrupted";
      // Bits left that this scan could not take (set behind the scan position): scan again. A
      // scan that sent nothing while bits remain means chunks keep failing: let the core decide.
      if (sentThisScan === 0) return "interrupted";
    }
  }

  /** One scan over a region: bytes sent, or "interrupted" (once every chunk in flight settled). */
  async #scan(target: ResyncTarget): Promise<number | "interrupted"> {
    const options = this.#options;
    const ranges = target.region.dirtyRanges({ maxRangeBytes: options.chunkBytes ?? clientResyncChunkBytes });
    const bytesMax = options.inflightBytes ?? clientResyncInflightBytesMax;
    const chunksMax = options.inflightChunks ?? clientResyncChunksInflightMax;
    let sent = 0;
    let interrupted = false;
    let inflightBytes = 0;
    let inflightChunks = 0;
    let settled: (() => void) | undefined;
    const stopping = () => interrupted || this.#stopped;
    const oneSettled = () => new Promise<void>((resolve) => (settled = resolve));
    for (;;) {
      if (stopping()) break;
      const next = ranges.next();
      if (next.done === true) break;
      const { offsetBytes, lengthBytes } = next.value;
      while (inflightChunks > 0 && (inflightChunks >= chunksMax || inflightBytes + lengthBytes > bytesMax)) await oneSettled();
      if (stopping()) break;
      await this.#pace(lengthBytes);
      if (stopping()) break;
      inflightBytes += lengthBytes;
      inflightChunks += 1;
      void options.chunk(target.device, offsetBytes, lengthBytes).then(
        (ok) => {
          if (!ok) {
            interrupted = true;
            return;
          }
          sent += lengthBytes;
          this.progress.sentBytes += lengthBytes;
          this.progress.remainingBytes = Math.max(0, this.progress.remainingBytes - lengthBytes);
        },
        () => void (interrupted = true),
      ).finally(() => {
        inflightBytes -= lengthBytes;
        inflightChunks -= 1;
        settled?.();
        settled = undefined;
      });
    }
    while (inflightChunks > 0) await oneSettled();
    return stopping() ? "interrupted" : sent;
  }

  /** Waits until sending `bytes` more keeps the pass under its rate limit. */
  async #pace(bytes: number): Promise<void> {
    const rate = this.#options.rateLimitBytesPerSecond;
    if (rate === undefined || rate <= 0) return;
    this.#scheduledBytes += bytes;
    const dueMs = this.progress.startedAt + (this.#scheduledBytes / rate) * 1000;
    const waitMs = dueMs - this.#options.now();
    if (waitMs > 0) await new Promise<void>((resolve) => this.#options.timers.schedule(waitMs, resolve));
  }
}

function remainingBytes(targets: readonly ResyncTarget[]): number {
  return targets.reduce((sum, target) => sum + target.region.dirtyBytes, 0);
}
