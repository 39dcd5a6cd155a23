/**
 * The seeds a running replica does (POST /seed on its control port, `druvaa replica seed`): one
 * at a time per device, in the background (the HTTP request returns once the request is checked;
 * the command follows progress in GET /status `seeds`). Refusals are answered at once, before
 * anything is written: an unknown device, a device that does not await a seed, a seed already
 * running, a missing image or one of the wrong size.
 */
import { DruvaaError, exitCodes, usageError } from "../../errors.ts";
import { logger } from "../../log.ts";
import { formatBytes } from "../../units.ts";
import type { ReplicaDevice } from "./apply.ts";
import { openSeedImage, seedFromImage, type SeedProgress } from "./media-seed.ts";
import type { SeedStatus } from "./seed-command.ts";

const log = logger("replica:seed");

export interface SeedHost {
  devices: readonly ReplicaDevice[];
  /** Runs `task` under the replica's apply lock. */
  exclusive<T>(task: () => Promise<T>): Promise<T>;
  /** The size the client declared for the device (shipments say it), if known. */
  declaredSizeBytes(device: string): number | undefined;
  /** Devices named by --await-seed whose seed completed in an earlier run. */
  seededAlready: ReadonlySet<string>;
}

export class SeedRuns {
  readonly #runs = new Map<string, SeedStatus>();

  constructor(private readonly host: SeedHost) {}

  /** Checks the request and starts the seed; throws the refusal (nothing written) otherwise. */
  async start(body: unknown): Promise<{ ok: true; device: string; totalBytes: number }> {
    const request = (typeof body === "object" && body !== null ? body : {}) as { device?: unknown; from?: unknown };
    if (typeof request.device !== "string" || typeof request.from !== "string") throw usageError("POST /seed needs a JSON body {device, from}", "Use druvaa replica seed --device NAME --from IMAGE");
    const deviceName = request.device;
    const imagePath = request.from;
    const target = this.host.devices.find((entry) => entry.name === deviceName);
    if (target === undefined) {
      throw new DruvaaError("DEVICE_UNKNOWN", `the replica has no device ${deviceName}`, `Devices on this replica: ${this.host.devices.map((entry) => entry.name).join(", ") || "none"}`, exitCodes.notFound);
    }
    const tracker = target.seed;
    if (tracker === undefined || tracker.completed) {
      throw new DruvaaError("SEED_NOT_AWAITED", `device ${deviceName} does not await a seed${tracker?.completed === true || this.host.seededAlready.has(deviceName) ? " (it was seeded already)" : ""}; nothing was written`, `Only a device started with druvaa replica apply --await-seed ${deviceName} (before replication began) can be seeded from media: it records which blocks replication wrote since`, exitCodes.refused);
    }
    if (this.#runs.get(deviceName)?.state === "seeding") throw new DruvaaError("SEED_RUNNING", `a seed of ${deviceName} is already running`, "Follow it with druvaa status --connect REPLICA:6004", exitCodes.refused);
    const sizeBytes = this.host.declaredSizeBytes(deviceName) ?? target.device.sizeBytes;
    await (await openSeedImage(imagePath, deviceName, sizeBytes)).close(); // refusals now, before the answer
    const status: SeedStatus = { device: deviceName, state: "seeding", copiedBytes: 0, skippedBytes: 0, totalBytes: sizeBytes };
    this.#runs.set(deviceName, status);
    log.info(`seeding ${deviceName} from ${imagePath} (${formatBytes(sizeBytes)}); ${formatBytes(tracker.writtenBytes)} written by replication since the media point are kept`);
    const onProgress = (progress: SeedProgress) => Object.assign(status, { copiedBytes: progress.copiedBytes, skippedBytes: progress.skippedBytes });
    seedFromImage({ tracker, target: target.device, sizeBytes, imagePath, exclusive: (task) => this.host.exclusive(task), onProgress }).then(
      (done) => {
        Object.assign(status, { state: "done", copiedBytes: done.copiedBytes, skippedBytes: done.skippedBytes });
        log.info(`seeded ${deviceName}: ${formatBytes(done.copiedBytes)} copied, ${formatBytes(done.skippedBytes)} kept`);
      },
      (error: unknown) => {
        const info = error instanceof DruvaaError ? { code: error.code, message: error.message, ...(error.hint === undefined ? {} : { hint: error.hint }) } : { code: "SEED_FAILED", message: String(error) };
        Object.assign(status, { state: "failed", error: info });
        log.error(`seed of ${deviceName} failed: ${info.message}`);
      },
    );
    return { ok: true, device: deviceName, totalBytes: sizeBytes };
  }

  /** Every device that awaits a seed or had one in this process. */
  status(): SeedStatus[] {
    const listed: SeedStatus[] = [];
    for (const entry of this.host.devices) {
      const run = this.#runs.get(entry.name);
      if (run !== undefined) listed.push({ ...run });
      else if (entry.seed !== undefined && !entry.seed.completed) listed.push({ device: entry.name, state: "awaiting", copiedBytes: 0, skippedBytes: 0, totalBytes: entry.device.sizeBytes });
    }
    return listed;
  }
}
