/** Test helpers for the change map: devices that count, hold back or crash, and property seeds. */
import type { BlockDevice } from "../../src/io/block-device.ts";
import type { SimDisk } from "../../src/io/sim-disk.ts";
import { DruvaaError } from "../../src/errors.ts";
import { CountingDevice } from "../../src/io/counting-device.ts";

export { CountingDevice };

/** A device whose flushes wait until the test opens the gate (to hold a group commit in flight). */
export class GatedDevice extends CountingDevice {
  private gate: Promise<void> | undefined;
  private releaseGate: (() => void) | undefined;
  /** Flushes that have started and are waiting at the gate. */
  waitingFlushes = 0;

  /** Flushes from now on wait at the gate. */
  hold(): void {
    this.gate = new Promise((resolve) => (this.releaseGate = resolve));
  }

  /** Lets the waiting flushes (and later ones) through. */
  release(): void {
    this.releaseGate?.();
    this.gate = undefined;
  }

  override async flush(): Promise<void> {
    this.flushCount += 1;
    const gate = this.gate;
    if (gate !== undefined) {
      this.waitingFlushes += 1;
      await gate;
      this.waitingFlushes -= 1;
    }
    return this.inner.flush();
  }
}

/**
 * Power loss at a chosen write or flush of a SimDisk. `device()` hands out a view valid until the
 * next crash; after it, every call on an old view fails, so a dead ChangeMap cannot touch the
 * "rebooted" disk. At the crash point the operation either never happens ("drop") or completes
 * first ("land"); then SimDisk.crash() drops, keeps or tears each unsynced sector.
 */
export class CrashPlan {
  private remaining: number | undefined;
  private land = false;
  private generation = 0;
  crashed = false;

  constructor(readonly disk: SimDisk) {}

  arm(operationsBeforeCrash: number, land: boolean): void {
    this.remaining = operationsBeforeCrash;
    this.land = land;
  }

  disarm(): void {
    this.remaining = undefined;
  }

  device(): BlockDevice {
    this.crashed = false;
    return new CrashingDevice(this.disk, this, this.generation);
  }

  isDead(generation: number): boolean {
    return generation !== this.generation;
  }

  /** Called before every write or flush; returns "crash" (after landing it if so armed). */
  async operate(run: () => Promise<void>): Promise<void> {
    if (this.remaining !== undefined && this.remaining > 0) {
      this.remaining -= 1;
      return run();
    }
    if (this.remaining === undefined) return run();
    if (this.land) await run();
    this.crashNow();
    throw new DruvaaError("IO_ERROR", "simulated power loss");
  }

  crashNow(): void {
    this.remaining = undefined;
    this.disk.crash();
    this.generation += 1;
    this.crashed = true;
  }
}

class CrashingDevice implements BlockDevice {
  constructor(private readonly disk: SimDisk, private readonly plan: CrashPlan, private readonly generation: number) {}
  get name() { return this.disk.name; }
  get sizeBytes() { return this.disk.sizeBytes; }
  get logicalBlockSizeBytes() { return this.disk.logicalBlockSizeBytes; }
  private checkAlive(): void {
    if (this.plan.isDead(this.generation)) throw new DruvaaError("IO_ERROR", "device of a crashed process");
  }
  async read(offsetBytes: number, lengthBytes: number) {
    this.checkAlive();
    return this.disk.read(offsetBytes, lengthBytes);
  }
  async write(offsetBytes: number, data: Uint8Array) {
    this.checkAlive();
    return this.plan.operate(() => this.disk.write(offsetBytes, data));
  }
  async flush() {
    this.checkAlive();
    return this.plan.operate(() => this.disk.flush());
  }
  async discard(offsetBytes: number, lengthBytes: number) {
    this.checkAlive();
    return this.disk.discard(offsetBytes, lengthBytes);
  }
  async close() {}
}

export function propertySeed(testName: string): number {
  const fromEnv = process.env.CHANGEMAP_PROPERTY_SEED;
  const seed = fromEnv === undefined ? Math.floor(Math.random() * 0x7fff_ffff) : Number(fromEnv);
  console.log(`[${testName}] fast-check seed=${seed}; replay with: CHANGEMAP_PROPERTY_SEED=${seed} node_modules/.bin/bun test tests/changemap (fast-check also prints the counterexample path on failure)`);
  return seed;
}

/** Lets pending promise callbacks and queued microtasks run (several turns). */
export async function settleTurns(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i += 1) await new Promise<void>((resolve) => setImmediate(resolve));
}
