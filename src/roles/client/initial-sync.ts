/**
 * Initial synchronization of a new pair (issue 4 part 6): `druvaa client attach ... --initial-sync
 * none|network|checksum|media`. It runs once per device and WRL (by uuid: a re-created WRL is a new
 * pair), while the application keeps writing; the client state file records how far it got
 * (state.ts InitialSyncRecord), so a restart resumes rather than starts over.
 *
 *   none      the user asserts the replica already equals the primary (both new and zeroed, say).
 *   network   every block of the device is marked dirty in the change map, once; the normal resync
 *             sends them (rate-limited by --rate-limit) while new writes are logged as usual and
 *             take precedence (the resync holds each chunk in the overlap gate).
 *   checksum  a verify pass with repair over the whole device: both sides hash blocks, only the
 *             differing ones are marked dirty and travel (the replica holds a stale copy).
 *   media     the client sends nothing: the replica is seeded from a backup (druvaa replica seed).
 *
 * Decision table at start, per device (record: the state file's entry for the device and the
 * WRL uuid staging named at attach):
 *   record done                      -> nothing
 *   record marked                    -> the dirty bits persisted: the resync sends them; recorded
 *                                       done once the client is connected with the device clean
 *   no record, none                  -> nothing, and nothing recorded (a later run may ask for more)
 *   no record, media                 -> recorded done at once
 *   no record, network               -> whole device marked (durably) → recorded marked → resync
 *   no record, checksum              -> verify pass with repair; every differing block durably
 *                                       marked → recorded marked → resync. A restart before the
 *                                       record runs the pass again (marks made are kept).
 * Not guaranteed: `done` is recorded when the bits are clear, which is when staging holds the
 * data; it reaches the replica with the rest of the WRL.
 */
import type { ConsolaInstance } from "consola/basic";
import { usageError } from "../../errors.ts";
import { logger } from "../../log.ts";
import type { InitialSyncRecord } from "./state.ts";
import { realTimers, type ClientDevice, type ClientMode, type ClientTimers } from "./types.ts";
import type { VerifyRun, VerifyService } from "./verify-runs.ts";

export const initialSyncModes = ["none", "network", "checksum", "media"] as const;
export type InitialSyncMode = (typeof initialSyncModes)[number];

/** Reads --initial-sync; network and checksum need a change map (they send through the resync). */
export function parseInitialSyncMode(text: string | undefined, hasChangeMap: boolean): InitialSyncMode {
  const mode = (text ?? "none") as InitialSyncMode;
  if (!initialSyncModes.includes(mode)) throw usageError(`--initial-sync ${text}: not one of ${initialSyncModes.join(", ")}`, "e.g. --initial-sync network (send the whole device once) or --initial-sync checksum (send what differs)");
  if ((mode === "network" || mode === "checksum") && !hasChangeMap) {
    throw usageError(`--initial-sync ${mode} needs --changemap: the blocks to send are marked there and sent by the resync`, "Create one with: druvaa changemap create PATH --region NAME=SIZE, and add --changemap PATH");
  }
  return mode;
}

type DeviceSyncState = "none" | "waiting" | "marking" | "verifying" | "resyncing" | "done" | "failed";

interface DeviceSync {
  spec: ClientDevice;
  mode: InitialSyncMode;
  state: DeviceSyncState;
  run?: VerifyRun;
  error?: string;
}

export interface InitialSyncOptions {
  mode: InitialSyncMode;
  devices: readonly ClientDevice[];
  /** The WRL uuid staging named for the device at attach. */
  wrlUuidOf(device: string): string | undefined;
  /** Where records live (the client state file); persist() makes them durable. */
  records: { initialSyncs: InitialSyncRecord[] };
  persist(): Promise<void>;
  verifier: VerifyService;
  core: { requestResync(): unknown; readonly mode: ClientMode };
  timers?: ClientTimers;
  log?: ConsolaInstance;
  pollMs?: number;
}

export interface InitialSyncStatus {
  mode: InitialSyncMode;
  state: "none" | "running" | "done" | "failed";
  progress: { doneBytes: number; totalBytes: number } | null;
  note: string | null;
  devices: { name: string; mode: InitialSyncMode; state: DeviceSyncState; doneBytes: number; totalBytes: number; verifyRun: number | null; error: string | null }[];
}

export class InitialSync {
  readonly #options: InitialSyncOptions;
  readonly #timers: ClientTimers;
  readonly #log: ConsolaInstance;
  readonly #devices: DeviceSync[];
  #stopped = false;
  readonly #wakeOnStop = new Set<() => void>();
  /** Resolves when every device's part is settled (done, failed, none) or stop() was called. */
  settled: Promise<void> = Promise.resolve();

  constructor(options: InitialSyncOptions) {
    this.#options = options;
    this.#timers = options.timers ?? realTimers;
    this.#log = options.log ?? logger("client:initial-sync");
    this.#devices = options.devices.map((spec) => ({ spec, mode: options.mode, state: "none" }));
  }

  /** Decides for every device (table above) and starts what is due; returns at once. */
  start(): void {
    this.settled = Promise.all(this.#devices.map((device) => this.#runDevice(device).catch((error: unknown) => {
      device.state = "failed";
      device.error = error instanceof Error ? error.message : String(error);
      this.#log.error(`initial sync of ${device.spec.name} failed: ${device.error}; restart the client to try again`);
    }))).then(() => undefined);
  }

  stop(): void {
    this.#stopped = true;
    for (const wake of [...this.#wakeOnStop]) wake();
  }

  /** Waits pollMs, or less if stop() is called. */
  #pause(): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        cancel();
        this.#wakeOnStop.delete(wake);
        resolve();
      };
      const cancel = this.#timers.schedule(this.#options.pollMs ?? 1000, wake);
      this.#wakeOnStop.add(wake);
    });
  }

  async #runDevice(device: DeviceSync): Promise<void> {
    const name = device.spec.name;
    // Known once staging accepted the attach (a client with a change map may start without it).
    let wrlUuid = this.#options.wrlUuidOf(name);
    while (wrlUuid === undefined) {
      if (this.#stopped) return;
      device.state = "waiting";
      await this.#pause();
      wrlUuid = this.#options.wrlUuidOf(name);
    }
    const record = this.#options.records.initialSyncs.find((entry) => entry.device === name && entry.wrlUuid === wrlUuid);
    if (record !== undefined) device.mode = record.mode;
    if (record?.state === "done") {
      device.state = "done";
      return;
    }
    if (record === undefined) {
      if (device.mode === "none") {
        device.state = "none";
        return;
      }
      if (device.mode === "media") {
        await this.#record(device, wrlUuid, "done");
        device.state = "done";
        this.#log.info(`initial sync of ${name}: media; the client sends nothing, the replica is seeded from a backup (druvaa replica seed --device ${name} --from IMAGE)`);
        return;
      }
      if (device.mode === "network") {
        device.state = "marking";
        this.#log.info(`initial sync of ${name}: network; marking all ${device.spec.device.sizeBytes} byte(s) for the resync`);
        await device.spec.changeMap!.markAll();
      } else {
        await this.#checksumPass(device);
        if (this.#stopped) return;
      }
      await this.#record(device, wrlUuid, "marked");
      this.#options.core.requestResync();
    }
    device.state = "resyncing";
    while (!(this.#options.core.mode === "connected" && device.spec.changeMap!.dirtyBytes === 0)) {
      if (this.#stopped) return;
      await this.#pause();
    }
    await this.#record(device, wrlUuid, "done");
    device.state = "done";
    this.#log.info(`initial sync of ${name} (${device.mode}) complete`);
  }

  /** A verify pass with repair; retried while the client cannot verify yet (not connected). */
  async #checksumPass(device: DeviceSync): Promise<void> {
    for (;;) {
      if (this.#stopped) return;
      device.state = "verifying";
      try {
        device.run = this.#options.verifier.start({ device: device.spec.name, repair: true });
      } catch (error) {
        device.state = "waiting";
        this.#log.info(`initial sync of ${device.spec.name}: cannot verify yet (${error instanceof Error ? error.message : String(error)}); trying again`);
        await this.#pause();
        continue;
      }
      await device.run.passEnded;
      if (device.run.error === undefined) return;
      if (device.run.state === "cancelled" && this.#stopped) return;
      throw device.run.error;
    }
  }

  async #record(device: DeviceSync, wrlUuid: string, state: InitialSyncRecord["state"]): Promise<void> {
    const mode = device.mode;
    if (mode === "none") return;
    const records = this.#options.records;
    records.initialSyncs = [
      ...records.initialSyncs.filter((entry) => !(entry.device === device.spec.name && entry.wrlUuid === wrlUuid)),
      { device: device.spec.name, wrlUuid, mode, state, at: new Date(this.#timers.now?.() ?? Date.now()).toISOString() },
    ];
    await this.#options.persist();
  }

  status(): InitialSyncStatus {
    const devices = this.#devices.map((device) => {
      const totalBytes = device.spec.device.sizeBytes;
      let doneBytes = 0;
      if (device.state === "done") doneBytes = totalBytes;
      else if (device.state === "verifying" && device.run !== undefined) doneBytes = device.run.pass.progress.checkedBytes;
      else if (device.state === "resyncing") doneBytes = totalBytes - Math.min(totalBytes, device.spec.changeMap?.dirtyBytes ?? 0);
      return { name: device.spec.name, mode: device.mode, state: device.state, doneBytes, totalBytes, verifyRun: device.run?.id ?? null, error: device.error ?? null };
    });
    const active = devices.filter((device) => device.state !== "none");
    const state = active.length === 0 ? "none" : active.some((device) => device.state === "failed") ? "failed" : active.every((device) => device.state === "done") ? "done" : "running";
    const media = devices.some((device) => device.mode === "media");
    return {
      mode: this.#options.mode,
      state,
      progress: active.length === 0 ? null : { doneBytes: active.reduce((sum, d) => sum + d.doneBytes, 0), totalBytes: active.reduce((sum, d) => sum + d.totalBytes, 0) },
      note: media ? "media: the client sends nothing; the replica is seeded from a backup (druvaa replica seed --device NAME --from IMAGE on the replica host)" : null,
      devices,
    };
  }
}
