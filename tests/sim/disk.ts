/**
 * Simulated disks that survive their process: a SimDisk (src/io/sim-disk.ts) plus a generation.
 * A process gets a handle bound to the current generation; crash() pulls the plug — the SimDisk
 * drops, keeps or tears every unsynced sector — and every handle of the dead generation freezes:
 * its pending and future operations never complete, as if the process stopped at that instant.
 * The next process opens a fresh handle on what is left.
 *
 * Latency: a write lands in the SimDisk when it is issued (later reads see it, a crash may keep
 * or tear it) but resolves only 0–2 event-loop turns later; a flush takes effect when it
 * resolves, 0–2 turns after it was issued. Both choices come from a seeded PRNG, so a crash can
 * fall between a write and its flush, and runs replay exactly.
 */
import { DruvaaError } from "../../src/errors.ts";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { Random } from "../../src/io/random.ts";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { turn } from "./clock.ts";

/** Counts events so the simulation can tell when everything has come to rest. */
export class Activity {
  #events = 0;
  /** Disk operations issued and not resolved (frozen ones of dead processes excluded). */
  pendingOps = 0;
  bump(): void {
    this.#events += 1;
  }
  get events(): number {
    return this.#events;
  }
}

const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

export class FencedDisk {
  readonly sim: SimDisk;
  readonly #delays: Random;
  #generation = 0;

  constructor(readonly name: string, sizeBytes: number, seed: number, private readonly activity: Activity) {
    this.sim = new SimDisk({ sizeBytes, seed, name });
    this.#delays = new Random(seed ^ 0x5eed);
  }

  /** A handle for the process starting now. */
  handle(): BlockDevice {
    return new DiskHandle(this, this.#generation);
  }

  /** Power loss: the current generation's handles freeze; unsynced sectors are dropped, kept or torn. */
  crash(): void {
    this.#generation += 1;
    this.sim.crash();
  }

  /**
   * The process dies but the machine does not (a kill, a restart after an error): the current
   * generation's handles freeze; unsynced writes stay (in the page cache), neither lost nor durable.
   */
  restart(): void {
    this.#generation += 1;
    this.sim.reopen();
    // An injected fault not yet hit was the old process's bad luck, not the next one's.
    this.sim.failNextWrites(0);
    this.sim.failNextFlushes(0);
  }

  /** What reads return now (flushed or not). */
  snapshot(): Uint8Array {
    return this.sim.snapshot();
  }

  /** @internal */
  alive(generation: number): boolean {
    return generation === this.#generation;
  }

  /** @internal Runs `effect` now or after the delay, then resolves; freezes if the generation dies. */
  async operate<T>(generation: number, effectNow: (() => Promise<T>) | undefined, effectLater: (() => Promise<T>) | undefined): Promise<T> {
    if (!this.alive(generation)) return never<T>();
    this.activity.bump();
    this.activity.pendingOps += 1;
    let result: T | undefined;
    let failure: unknown;
    let failed = false;
    try {
      if (effectNow !== undefined) result = await effectNow();
    } catch (error) {
      failed = true;
      failure = error;
    }
    const delayTurns = this.#delays.nextInt(3);
    for (let index = 0; index < delayTurns; index += 1) await turn();
    if (!this.alive(generation)) {
      this.activity.pendingOps -= 1;
      return never<T>();
    }
    if (!failed && effectLater !== undefined) {
      try {
        result = await effectLater();
      } catch (error) {
        failed = true;
        failure = error;
      }
    }
    this.activity.pendingOps -= 1;
    this.activity.bump();
    if (failed) throw failure;
    return result as T;
  }
}

class DiskHandle implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly logicalBlockSizeBytes: number;

  constructor(private readonly disk: FencedDisk, private readonly generation: number) {
    this.name = `${disk.name}#${generation}`;
    this.sizeBytes = disk.sim.sizeBytes;
    this.logicalBlockSizeBytes = disk.sim.logicalBlockSizeBytes;
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    return this.disk.operate(this.generation, () => this.disk.sim.read(offsetBytes, lengthBytes), undefined);
  }

  write(offsetBytes: number, data: Uint8Array): Promise<void> {
    return this.disk.operate(this.generation, () => this.disk.sim.write(offsetBytes, data), undefined);
  }

  flush(): Promise<void> {
    return this.disk.operate(this.generation, undefined, () => this.disk.sim.flush());
  }

  discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.disk.operate(this.generation, () => this.disk.sim.discard(offsetBytes, lengthBytes), undefined);
  }

  async close(): Promise<void> {
    if (!this.disk.alive(this.generation)) throw new DruvaaError("IO_CLOSED", `${this.name}: the process that opened it crashed`);
  }
}
