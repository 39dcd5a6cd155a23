/** Shared test helpers for the WRL: crash-at-any-operation disks and record payloads. */
import type { BlockDevice } from "../../src/io/block-device.ts";
import { SimDisk } from "../../src/io/sim-disk.ts";
import { Random } from "../../src/io/random.ts";
import { DruvaaError } from "../../src/errors.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { wrlRecordHeaderBytes, wrlSuperblockAreaBytes } from "../../src/constants.ts";
import { deviceNameBytes, encodeRecord, probeHeader, type RecordHeader } from "../../src/wrl/record-format.ts";

/**
 * What the operation at the crash point does before the power goes:
 *   - drop:  nothing; every unsynced sector is then dropped, kept or torn by SimDisk;
 *   - land:  it completes, then the same;
 *   - skip-first-sector: a write lands except its first sector, and everything unsynced is kept
 *     (a drive that reordered the write and lost just its first sector): the one outcome that
 *     leaves later records of a batch intact behind a torn first one, which SimDisk's
 *     independent per-sector choices almost never produce for multi-sector records.
 */
export type CrashMode = "drop" | "land" | "skip-first-sector";

/**
 * Power loss at a chosen device operation, across every disk of one WRL at once. Arm it with the
 * number of writes/flushes to let through; the next one triggers the crash, after which every
 * device handed out before the crash refuses all I/O, so the dead WriteLog cannot touch the
 * "rebooted" disks.
 */
export class CrashPlan {
  private remaining: number | undefined;
  private mode: CrashMode = "drop";
  private generation = 0;
  crashed = false;
  /**
   * When set, each write lands (and resolves) after 0–3 event-loop turns chosen by this source,
   * so writes complete out of order and after later calls, as on a real device.
   */
  writeDelays: Random | undefined;

  constructor(readonly disks: SimDisk[]) {}

  arm(operationsBeforeCrash: number, mode: CrashMode): void {
    this.remaining = operationsBeforeCrash;
    this.mode = mode;
  }

  get armed(): boolean {
    return this.remaining !== undefined;
  }

  /** Crashes now (a quiescent point), if it has not happened yet. */
  crashNow(): void {
    if (!this.crashed) this.crash();
  }

  /** Devices for the next WriteLog: valid until the next crash. */
  devices(): BlockDevice[] {
    this.crashed = false;
    const generation = this.generation;
    return this.disks.map((disk) => new CrashingDevice(disk, this, generation));
  }

  /** One more device of the current generation (a spare joining the live WriteLog). */
  device(index: number): BlockDevice | undefined {
    const disk = this.disks[index];
    return disk === undefined ? undefined : new CrashingDevice(disk, this, this.generation);
  }

  isDead(generation: number): boolean {
    return generation !== this.generation;
  }

  /** Called before a write or flush; true if the crash happens at this operation. */
  takeTurn(): CrashMode | undefined {
    if (this.remaining === undefined) return undefined;
    if (this.remaining > 0) {
      this.remaining -= 1;
      return undefined;
    }
    return this.mode;
  }

  crash(): void {
    for (const disk of this.disks) disk.crash();
    this.generation += 1;
    this.remaining = undefined;
    this.crashed = true;
  }
}

function crashedError(name: string): DruvaaError {
  return new DruvaaError("IO_CRASHED", `${name}: simulated power loss`);
}

class CrashingDevice implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly logicalBlockSizeBytes: number;

  constructor(private readonly disk: SimDisk, private readonly plan: CrashPlan, private readonly generation: number) {
    this.name = disk.name;
    this.sizeBytes = disk.sizeBytes;
    this.logicalBlockSizeBytes = disk.logicalBlockSizeBytes;
  }

  private alive(): void {
    if (this.plan.isDead(this.generation)) throw crashedError(this.name);
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    this.alive();
    return this.disk.read(offsetBytes, lengthBytes);
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    const delayTurns = this.plan.writeDelays?.nextInt(4) ?? 0;
    for (let turn = 0; turn < delayTurns; turn += 1) await new Promise((resolve) => setImmediate(resolve));
    await this.mutate(async (mode) => {
      if (mode !== "skip-first-sector") return this.disk.write(offsetBytes, data);
      if (data.length > 512) await this.disk.write(offsetBytes + 512, data.subarray(512));
      for (const disk of this.plan.disks) await disk.flush();
    });
  }

  async flush(): Promise<void> {
    await this.mutate(() => this.disk.flush());
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.mutate(() => this.disk.discard(offsetBytes, lengthBytes));
  }

  async close(): Promise<void> {
    // The disk outlives this handle (it is reopened after a crash); nothing to release.
  }

  private async mutate(operation: (mode: CrashMode | undefined) => Promise<void>): Promise<void> {
    this.alive();
    const mode = this.plan.takeTurn();
    if (mode === undefined) return operation(undefined);
    if (mode !== "drop") await operation(mode);
    this.plan.crash();
    throw crashedError(this.name);
  }
}

/** Deterministic payload for append number `id` (content checks after recovery). */
export function payloadFor(id: number, sizeBytes: number): Uint8Array {
  return new Random(id * 7919 + sizeBytes).fill(new Uint8Array(sizeBytes));
}

export function makeDisks(seed: number, sizesBytes: number[]): SimDisk[] {
  return sizesBytes.map((sizeBytes, index) => new SimDisk({ sizeBytes, seed: seed + index * 1_000_003, name: `sim${index}` }));
}

/** The seed a property test runs with: WRL_PROPERTY_SEED to replay, otherwise fresh. */
export function propertySeed(testName: string): number {
  const fromEnv = process.env.WRL_PROPERTY_SEED;
  const seed = fromEnv === undefined ? Math.floor(Math.random() * 0x7fff_ffff) : Number(fromEnv);
  console.log(`[${testName}] fast-check seed=${seed}; replay with: WRL_PROPERTY_SEED=${seed} node_modules/.bin/bun test tests/wrl (fast-check also prints the counterexample path on failure)`);
  return seed;
}

/**
 * In-memory devices whose bytes outlive the WriteLog: `devices()` hands out fresh MemoryDevices
 * over the same bytes, as a process restart would, and tests can damage `contents` directly.
 */
export class MemoryDisks {
  readonly contents: Uint8Array[];
  constructor(sizesBytes: number[]) {
    this.contents = sizesBytes.map((size) => new Uint8Array(size));
  }
  devices(): MemoryDevice[] {
    return this.contents.map((bytes, index) => new MemoryDevice(bytes.length, `mem${index}`, 512, bytes));
  }
  /** Copies of every device's bytes (for "nothing was written" checks). */
  copies(): Uint8Array[] {
    return this.contents.map((bytes) => bytes.slice());
  }
}

/** Decodes the record header at `offset` of `bytes`, applies `change`, re-encodes it with valid checksums. */
export function rewriteRecord(bytes: Uint8Array, offset: number, change: (header: RecordHeader) => Partial<RecordHeader>): void {
  const probe = probeHeader(bytes.subarray(offset, offset + 4096));
  if (probe.kind !== "header") throw new Error(`no record header at ${offset}: ${probe.kind}`);
  const payload = bytes.slice(offset + wrlRecordHeaderBytes, offset + wrlRecordHeaderBytes + probe.header.payloadBytes);
  const next = { ...probe.header, ...change(probe.header) };
  const device = typeof next.device === "string" ? deviceNameBytes(next.device)! : next.device;
  encodeRecord(bytes, offset, { ...next, device }, payload);
}

export const primaryDataStartBytes = wrlSuperblockAreaBytes;

export const repoRoot = new URL("../../", import.meta.url).pathname;
const bunPath = `${repoRoot}node_modules/.bin/bun`;

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON when --json was given. */
  json: any;
}

/** Runs `druvaa ARGS` as a real subprocess, the way scripts call it. */
export async function runCli(args: string[]): Promise<CliResult> {
  const child = Bun.spawn([bunPath, "src/cli.ts", ...args], { cwd: repoRoot, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  let json: unknown;
  if (args.includes("--json")) {
    try {
      json = JSON.parse(stdout);
    } catch {
      throw new Error(`druvaa ${args.join(" ")}: stdout is not JSON:\n${stdout}\nstderr:\n${stderr}`);
    }
  }
  return { exitCode, stdout, stderr, json };
}

/** The DruvaaError code `promise` rejects with, or "resolved"; any other error is rethrown. */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "resolved";
  } catch (error) {
    if (!(error instanceof DruvaaError)) throw error;
    return error.code;
  }
}
