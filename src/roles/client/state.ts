/**
 * What the client keeps in its state directory (STATE_DIR/client-state.json, replaced atomically):
 * the devices it last attached, an epoch reservation, and the initial syncs done (initial-sync.ts).
 *
 * Epochs must keep rising across restarts: records of the old and the new process may sit next
 * to each other in the WRL, and equal epochs there would claim two writes to the same range were
 * concurrent. So the file holds `epochReservedUpTo`, written BEFORE epochs up to it are handed
 * out; a new process starts above it, even after a crash, and reserves the next stretch.
 *
 * Recovery table (startup):
 *   no file                 -> start at epoch 1, reserve [1, clientEpochReserve]
 *   file, valid             -> start at epochReservedUpTo + 1, reserve the next stretch
 *   file, not valid JSON    -> STATE_CORRUPT (readJsonState), the client does not start
 *   file, wrong shape       -> STATE_CORRUPT, the client does not start
 *   initialSyncs malformed  -> STATE_CORRUPT (guessing would re-send a whole device, or skip one)
 * Not guaranteed: a process handing out more than clientEpochReserve / 2 epochs between two
 * checks (clientStateSaveIntervalMs) could outrun its reservation; that is over 500,000 writes
 * completed in one second.
 */
import { join } from "node:path";
import { clientEpochReserve } from "../../constants.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import { readJsonState, writeJsonState } from "../../io/state-file.ts";

export const clientStateFileName = "client-state.json";

export interface ClientStateDevice {
  name: string;
  path: string;
  wrl: string;
  wrlUuid?: string;
  ackedLsn: number;
}

/**
 * The initial sync of a device to a WRL (by uuid: a re-created WRL is a new pair), once it got
 * far enough to never start over (initial-sync.ts): `marked` when what must travel is durably
 * dirty in the change map, `done` when it was sent.
 */
export interface InitialSyncRecord {
  device: string;
  wrlUuid: string;
  mode: "network" | "checksum" | "media";
  state: "marked" | "done";
  at: string;
}

export interface ClientState {
  nodeId: string;
  staging: string;
  epochReservedUpTo: number;
  devices: ClientStateDevice[];
  /** The change map the devices are tracked with: another map's bits say nothing about them. */
  changeMapUuid?: string;
  initialSyncs?: InitialSyncRecord[];
  savedAt: string;
}

export class ClientStateFile {
  readonly path: string;
  #reservedUpTo: number;
  #lastSaved = "";
  /** Initial syncs recorded, carried over from the previous file and written by every save. */
  initialSyncs: InitialSyncRecord[];

  private constructor(path: string, reservedUpTo: number, readonly startEpoch: number, initialSyncs: InitialSyncRecord[]) {
    this.path = path;
    this.#reservedUpTo = reservedUpTo;
    this.initialSyncs = initialSyncs;
  }

  /** Reads the state (if any), picks the first epoch, and persists the first reservation. */
  static async open(stateDir: string, describe: () => Omit<ClientState, "epochReservedUpTo" | "savedAt">): Promise<ClientStateFile> {
    const path = join(stateDir, clientStateFileName);
    const previous = await readJsonState<unknown>(path);
    let startEpoch = 1;
    if (previous !== undefined) {
      const reserved = (previous as { epochReservedUpTo?: unknown } | null)?.epochReservedUpTo;
      if (typeof reserved !== "number" || !Number.isSafeInteger(reserved) || reserved < 0 || reserved + 2 * clientEpochReserve > Number.MAX_SAFE_INTEGER) {
        throw new DruvaaError("STATE_CORRUPT", `${path}: epochReservedUpTo is missing or not a usable integer`, "Outside damage: restore the file from backup, or remove it (the client then starts epochs at 1)");
      }
      startEpoch = reserved + 1;
      const tracked = (previous as { changeMapUuid?: unknown }).changeMapUuid;
      const given = describe().changeMapUuid;
      if (typeof tracked === "string" && given !== undefined && tracked !== given) {
        throw new DruvaaError(
          "CHANGEMAP_MISMATCH",
          `the change map given (uuid ${given}) is not the one this client tracks its devices with (uuid ${tracked}, recorded in ${path}): its bits do not say which blocks differ from the replica; nothing was exported`,
          `Give the original change map; to start over with a new one, remove ${path} and start with --initial-sync checksum (only the blocks that differ travel)`,
          exitCodes.refused,
        );
      }
    }
    const file = new ClientStateFile(path, startEpoch - 1, startEpoch, readInitialSyncs(previous, path));
    await file.save(startEpoch, describe());
    return file;
  }

  /** Saves the state; extends the reservation when `currentEpoch` used half of it. */
  async save(currentEpoch: number, details: Omit<ClientState, "epochReservedUpTo" | "savedAt">): Promise<void> {
    if (currentEpoch + clientEpochReserve / 2 > this.#reservedUpTo) this.#reservedUpTo = currentEpoch + clientEpochReserve;
    const state = { ...details, initialSyncs: this.initialSyncs, epochReservedUpTo: this.#reservedUpTo };
    const body = JSON.stringify(state);
    if (body === this.#lastSaved) return;
    await writeJsonState(this.path, { ...state, savedAt: new Date().toISOString() } satisfies ClientState);
    this.#lastSaved = body;
  }
}

function readInitialSyncs(previous: unknown, path: string): InitialSyncRecord[] {
  const value = (previous as { initialSyncs?: unknown } | undefined)?.initialSyncs;
  if (value === undefined) return [];
  const valid = Array.isArray(value) && value.every((entry: Partial<InitialSyncRecord> | null) =>
    typeof entry === "object" && entry !== null && typeof entry.device === "string" && typeof entry.wrlUuid === "string" && typeof entry.at === "string"
    && ["network", "checksum", "media"].includes(entry.mode as string) && ["marked", "done"].includes(entry.state as string));
  if (!valid) throw new DruvaaError("STATE_CORRUPT", `${path}: initialSyncs is not a list of initial-sync records`, "Outside damage: restore the file from backup, or remove the initialSyncs entry (initial syncs then run again)");
  return value as InitialSyncRecord[];
}
