/**
 * Split and join of a WRL's replication (the panel's Manage page; POST /wrl/split and /wrl/join on
 * staging's control port, split-routes.ts). A WRL is one consistency group, so a split acts on
 * every device (every pair) in it.
 *
 *   split  the relay's session ends and none starts until the join (split-hold.ts): the replica
 *          stays at the last shipment it applied (to back it up or test on it). Clients keep
 *          writing and the WRL keeps logging; a WRL that fills up behaves as when the replica is
 *          unreachable (writes refused WRL_FULL, clients switch to their change maps).
 *   join   the hold ends; the relay resumes from what the replica says it applied, and the
 *          replica catches up.
 *
 * Decision table (requests run one at a time, in arrival order):
 *   request                                  action
 *   split or join of a WRL not served        WRL_UNKNOWN (404), nothing changes
 *   split of a split WRL                     ok, the same split (sinceMs and by unchanged)
 *   split                                    saved (STATE_DIR/splits.json, atomically, fsynced),
 *                                              then every relay of the WRL holds; answered once
 *                                              the running session has ended
 *   join of a WRL not split                  ok, wasSplit false
 *   join                                     saved without it, then the hold ends
 *   saving fails                             IO_ERROR (500), nothing changes
 *
 * At open (before the relays start): each saved split of a served WRL holds again, so a restart
 * keeps it split until the join; one whose WRL is no longer served is dropped, with a warning.
 *
 * Not guaranteed: the replica's image is frozen once the shipments it had received when the
 * session ended are applied (the replica finishes those); the answer's `appliedLsn` is what it had
 * acknowledged by then. A WRL the panel adds under a name that was split and removed is not split.
 */
import { join } from "node:path";
import { DruvaaError, exitCodes } from "../../errors.ts";
import { readJsonState, writeJsonState } from "../../io/state-file.ts";
import { logger } from "../../log.ts";
import { forgetSplit, holdRelays } from "./split-hold.ts";

const log = logger("staging:split");

export const splitsFileName = "splits.json";
/** Bound on `by` (who split it, e.g. the panel's user): status text, not an identity. */
export const splitByLengthMax = 200;

/** A WRL's split as GET /status shows it. */
export interface SplitInfo {
  sinceMs: number;
  by?: string;
}

interface SavedSplit extends SplitInfo {
  wrl: string;
  wrlUuid: string;
}

interface SplitsFile {
  version: 1;
  splits: SavedSplit[];
}

/** What splits need of the staging core (StagingCore is one). */
export interface SplitHost {
  wrlHandle(name: string): { uuid: string; wrl: object; relay: { readonly appliedLsn: number } } | undefined;
  wrlNames(): string[];
}

export interface SplitAnswer {
  wrl: string;
  split: SplitInfo;
  /** False when the WRL was split already (the same split). */
  changed: boolean;
  /** The last LSN the replica had acknowledged when the relay's session ended. */
  appliedLsn: number;
}

export interface JoinAnswer {
  wrl: string;
  wasSplit: boolean;
}

interface Held {
  saved: SavedSplit;
  /** The handle's log object the relays hold on. */
  wrl: object;
  join: () => void;
}

export class WrlSplits {
  readonly #path: string;
  readonly #host: SplitHost;
  readonly #now: () => number;
  readonly #held = new Map<string, Held>();
  #chain: Promise<unknown> = Promise.resolve();

  private constructor(stateDir: string, host: SplitHost, now: () => number) {
    this.#path = join(stateDir, splitsFileName);
    this.#host = host;
    this.#now = now;
  }

  /** Loads STATE_DIR/splits.json and holds each saved split of a served WRL (call before the relays start). */
  static async open(stateDir: string, host: SplitHost, now: () => number = Date.now): Promise<WrlSplits> {
    const splits = new WrlSplits(stateDir, host, now);
    const saved = parseSplits(await readJsonState<unknown>(splits.#path), splits.#path);
    let dropped = false;
    for (const entry of saved) {
      const handle = host.wrlHandle(entry.wrl);
      if (handle === undefined) {
        log.warn(`WRL ${entry.wrl} was split, but this staging server no longer serves it: its split is dropped`);
        dropped = true;
        continue;
      }
      if (handle.uuid !== entry.wrlUuid) log.warn(`WRL ${entry.wrl} is now ${handle.uuid} (split when it was ${entry.wrlUuid}): it stays split until POST /wrl/join`);
      await splits.#hold({ ...entry, wrlUuid: handle.uuid }, handle.wrl);
      log.info(`WRL ${entry.wrl} is split (since ${new Date(entry.sinceMs).toISOString()}${entry.by === undefined ? "" : `, by ${entry.by}`}): nothing is relayed until POST /wrl/join`);
    }
    if (dropped) await splits.#save();
    return splits;
  }

  /** The WRL's split, or null (GET /status `split`). */
  of(name: string): SplitInfo | null {
    const held = this.#held.get(name);
    return held === undefined ? null : infoOf(held.saved);
  }

  /** POST /wrl/split (decision table above). */
  split(name: string, by?: string): Promise<SplitAnswer> {
    return this.#serial(async () => {
      const handle = this.#handle(name);
      const known = this.#held.get(name);
      if (known !== undefined) return { wrl: name, split: infoOf(known.saved), changed: false, appliedLsn: handle.relay.appliedLsn };
      const saved: SavedSplit = { wrl: name, wrlUuid: handle.uuid, sinceMs: this.#now(), ...(by === undefined ? {} : { by }) };
      await this.#save([...this.#savedSplits(), saved]);
      await this.#hold(saved, handle.wrl);
      const appliedLsn = handle.relay.appliedLsn;
      log.warn(`WRL ${name} split${by === undefined ? "" : ` by ${by}`}: relaying stopped at LSN ${appliedLsn} (the replica stays there); writes are logged until POST /wrl/join`);
      return { wrl: name, split: infoOf(saved), changed: true, appliedLsn };
    });
  }

  /** POST /wrl/join (decision table above). */
  join(name: string): Promise<JoinAnswer> {
    return this.#serial(async () => {
      const held = this.#held.get(name);
      if (held === undefined) {
        this.#handle(name);
        return { wrl: name, wasSplit: false };
      }
      await this.#save(this.#savedSplits().filter((saved) => saved.wrl !== name));
      this.#held.delete(name);
      forgetSplit(held.wrl);
      held.join();
      log.info(`WRL ${name} joined: relaying resumes from what the replica applied`);
      return { wrl: name, wasSplit: true };
    });
  }

  async #hold(saved: SavedSplit, wrl: object): Promise<void> {
    const joined = Promise.withResolvers<void>();
    this.#held.set(saved.wrl, { saved, wrl, join: () => joined.resolve() });
    await holdRelays(wrl, joined.promise);
  }

  #handle(name: string): NonNullable<ReturnType<SplitHost["wrlHandle"]>> {
    const handle = this.#host.wrlHandle(name);
    if (handle === undefined) {
      throw new DruvaaError("WRL_UNKNOWN", `this staging server has no WRL named ${name}`, `It serves: ${this.#host.wrlNames().join(", ") || "none"} (GET /status lists them)`, exitCodes.notFound);
    }
    return handle;
  }

  #savedSplits(): SavedSplit[] {
    return [...this.#held.values()].map((held) => held.saved);
  }

  async #save(splits = this.#savedSplits()): Promise<void> {
    const file: SplitsFile = { version: 1, splits };
    await writeJsonState(this.#path, file);
  }

  #serial<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#chain.then(task);
    this.#chain = result.catch(() => undefined);
    return result;
  }
}

function infoOf(saved: SavedSplit): SplitInfo {
  return { sinceMs: saved.sinceMs, ...(saved.by === undefined ? {} : { by: saved.by }) };
}

/** The saved splits; a file that is not one is STATE_CORRUPT (not guessed at: a split must not be lost silently). */
function parseSplits(value: unknown, path: string): SavedSplit[] {
  if (value === undefined) return [];
  const corrupt = () => new DruvaaError("STATE_CORRUPT", `${path} is not a splits file (version 1)`, "It is written atomically, so this means outside damage: fix it, or remove it (every WRL is then joined)");
  if (typeof value !== "object" || value === null || (value as { version?: unknown }).version !== 1) throw corrupt();
  const splits = (value as { splits?: unknown }).splits;
  if (!Array.isArray(splits)) throw corrupt();
  return splits.map((entry: unknown): SavedSplit => {
    const { wrl, wrlUuid, sinceMs, by } = (entry ?? {}) as Record<string, unknown>;
    if (typeof wrl !== "string" || typeof wrlUuid !== "string" || typeof sinceMs !== "number" || (by !== undefined && typeof by !== "string")) throw corrupt();
    return { wrl, wrlUuid, sinceMs, ...(by === undefined ? {} : { by }) };
  });
}
