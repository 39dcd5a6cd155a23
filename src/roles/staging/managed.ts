/**
 * `druvaa staging serve --managed`: the WRLs pushed by the panel (docs/panel.md "Staging"; the
 * two-phase commit is src/roles/managed/config-routes.ts), beside any --wrl flags. validate() is
 * managed-validate.ts; apply() makes the running WRLs what the config says.
 *
 * Why WRLs are added to and removed from the running core rather than restarting it: clients of
 * the other WRLs stay connected and their relays keep shipping. Clients name a WRL at attach, so a
 * WRL added to the core's map is reachable from the next attach on; its relay starts at once.
 *
 * apply(next), decision table per WRL (compared with what is running, not with `previous`, so a
 * half-done apply is finished by the next try or the next start):
 *
 *   running          in next                      → action
 *   no               yes                          → create the WRL if its primary is missing
 *                                                    (druvaa wrl create, with --encrypt-at-rest's
 *                                                    key), open it (recovery runs), add it to the core
 *   yes, same paths  yes, same relay settings     → nothing
 *   yes, same paths  yes, other replica,          → its relay is replaced by one with the new
 *                      compression, rateLimit, rpo   settings (records resume from what the
 *                                                    replica acknowledged; clients stay attached)
 *   yes              no, or at other paths        → it leaves the core (its relay stops), it is
 *                                                    closed (final checkpoint); records it still
 *                                                    holds stay in it, unrelayed (prepare refuses
 *                                                    that, WRL_NOT_EMPTY; ones written between
 *                                                    prepare and commit are logged as a warning)
 * Every WRL is tried; the first failure is thrown after the others were done (GET /config
 * `applied.error`).
 */
import { sharedBufferPool } from "../../io/buffer-pool.ts";
import { parseAddress, type PreparedTls } from "../../io/transport.ts";
import { replicaDataPortDefault } from "../../constants.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import { pathExists } from "../../io/open-device.ts";
import { logger } from "../../log.ts";
import { createWrlAtPaths } from "../../wrl/paths.ts";
import type { ManagedRole } from "../managed/config-routes.ts";
import { parseCompression } from "./compression.ts";
import type { StagingCore, StagingWrlSpec } from "./core.ts";
import { realPathOf, validateStagingConfig, type ManagedStagingConfig, type ManagedWrlSpec, type RunningWrl } from "./managed-validate.ts";
import { openWrls, type OpenedWrl } from "./open-wrls.ts";
import { parseRate, parseRpoSeconds } from "./relay-flags.ts";
import { RateLimiter } from "./relay-pacing.ts";
import type { RelayTargets } from "./relay-types.ts";
import { replicaDialer } from "./server.ts";

export type { ManagedStagingConfig, ManagedWrlSpec } from "./managed-validate.ts";

const log = logger("staging:managed");

export interface ManagedWrlsOptions {
  core: StagingCore;
  /** `--wrl NAME=PATHS` flags: not managed; their names and paths are not for the config. */
  flagWrls: ReadonlyMap<string, readonly string[]>;
  /** --encrypt-at-rest: new WRLs are created with it, existing ones must have it. */
  payloadKey: Uint8Array | undefined;
  nodeId: string;
  /** TLS for the relays' links (peers must be replicas); plaintext when absent. */
  replicaTls: PreparedTls | undefined;
  /** --insecure without --insecure-allow-remote: replicas must be on loopback. */
  loopbackOnly: boolean;
  /** The values of --rate-limit, --schedule, --rpo without NAME= (relay-flags.ts relayFlagTargets). */
  relayDefaults: RelayTargets;
}

interface RunningEntry {
  spec: ManagedWrlSpec;
  opened: OpenedWrl;
}

export class ManagedWrls implements ManagedRole<ManagedStagingConfig> {
  readonly empty: ManagedStagingConfig = { wrls: [] };
  /** The managed WRLs open now (served by the core), by name. */
  readonly #running = new Map<string, RunningEntry>();
  /** The apply under way, if any: close() waits for it. */
  #applying: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(private readonly options: ManagedWrlsOptions) {}

  validate(raw: unknown, current: ManagedStagingConfig): Promise<ManagedStagingConfig> {
    return validateStagingConfig(raw, current, {
      flagWrls: this.options.flagWrls,
      payloadKey: this.options.payloadKey,
      loopbackOnly: this.options.loopbackOnly,
      running: (name) => this.#runningState(name),
    });
  }

  apply(next: ManagedStagingConfig): Promise<void> {
    const work = this.#applying.then(() => this.#apply(next));
    this.#applying = work.catch(() => undefined);
    return work;
  }

  /** At shutdown (the core stopped): closes every managed WRL (final checkpoint); throws the first failure. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#applying;
    const entries = [...this.#running.values()];
    this.#running.clear();
    const results = await Promise.allSettled(entries.map((entry) => entry.opened.wrl.close()));
    const failed = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  }

  /** The managed WRLs open now (the ready line). */
  get opened(): OpenedWrl[] {
    return [...this.#running.values()].map((entry) => entry.opened);
  }

  async #apply(next: ManagedStagingConfig): Promise<void> {
    if (this.#closed) throw new DruvaaError("SHUTTING_DOWN", "the staging server is shutting down", "The committed config is applied at the next start");
    const wanted = new Map(next.wrls.map((spec) => [spec.name, spec]));
    const failures: unknown[] = [];
    const attempt = async (name: string, work: () => Promise<void>) => {
      try {
        await work();
      } catch (error) {
        log.error(`WRL ${name}: ${error instanceof Error ? error.message : String(error)}`);
        failures.push(error);
      }
    };
    // Removals first: a WRL moved to other paths, or a path moved to another WRL, is free again.
    for (const [name, entry] of this.#running) {
      const spec = wanted.get(name);
      if (spec === undefined || !samePaths(spec.paths, entry.spec.paths)) await attempt(name, () => this.#remove(name));
    }
    for (const spec of next.wrls) {
      const entry = this.#running.get(spec.name);
      if (entry === undefined) await attempt(spec.name, () => this.#add(spec));
      else if (!sameRelaySettings(entry.spec, spec)) await attempt(spec.name, () => this.#changeRelay(entry, spec));
    }
    if (failures.length > 0) throw failures[0];
  }

  async #add(spec: ManagedWrlSpec): Promise<void> {
    const [primary, ...secondaries] = spec.paths as [string, ...string[]];
    // Checked at prepare, and again here: a --wrl flag given since (this is also the start's
    // apply) must not be opened a second time, which would corrupt it.
    if (this.options.core.wrlHandle(spec.name) !== undefined) throw new DruvaaError("WRL_NAME_TAKEN", `WRL ${spec.name}: a --wrl flag of this staging server has that name`, "Drop the --wrl flag and restart, or rename the WRL in the panel", exitCodes.refused);
    const taken = await this.#servedPaths();
    for (const path of spec.paths) {
      const other = taken.get(await realPathOf(path));
      if (other !== undefined) throw new DruvaaError("WRL_PATH_TAKEN", `WRL ${spec.name}: ${path} is also a device of WRL ${other}`, "Every WRL needs devices of its own", exitCodes.refused);
    }
    if (!(await pathExists(primary))) {
      const created = await createWrlAtPaths({ primary, secondaries, ...(spec.sizeBytes === undefined ? {} : { sizeBytes: spec.sizeBytes }), ...(this.options.payloadKey === undefined ? {} : { payloadKey: this.options.payloadKey }) });
      log.info(`WRL ${spec.name}: created at ${spec.paths.join(", ")} (${created.sizeBytes} bytes, uuid ${created.uuid})`);
    }
    const replica = parseAddress(spec.replica, replicaDataPortDefault);
    const [opened] = (await openWrls([{ name: spec.name, paths: spec.paths, replica, replicaText: spec.replica }], { payloadKey: this.options.payloadKey })) as [OpenedWrl];
    try {
      const uuid = opened.wrl.info().uuid;
      const twin = this.options.core.wrlNames().find((name) => this.options.core.wrlHandle(name)?.uuid === uuid);
      if (twin !== undefined) throw new DruvaaError("WRL_PATH_TAKEN", `WRL ${spec.name}: ${primary} is the same write log (uuid ${uuid}) as WRL ${twin}`, "Give every WRL its own write log", exitCodes.refused);
      // A record's payload is the receive buffer its write arrived in (pooled by the server):
      // once the record is freed (shipped and acknowledged), the buffer serves the next writes.
      opened.wrl.onFreedData((data) => sharedBufferPool.give(data));
      await this.options.core.addWrl(this.#coreSpec(spec, opened));
    } catch (error) {
      await opened.wrl.close().catch(() => undefined); // already failing with the better error
      throw error;
    }
    this.#running.set(spec.name, { spec, opened });
    const info = opened.wrl.info();
    log.info(`WRL ${spec.name} (${info.uuid}) serves, relaying to ${spec.replica}: head LSN ${info.headLsn}, ${info.recordCount} record(s) to relay${opened.wrl.recovery ? `; recovery: ${opened.wrl.recovery.stopReason}` : ""}`);
  }

  async #remove(name: string): Promise<void> {
    const entry = this.#running.get(name)!;
    const state = this.#runningState(name);
    await this.options.core.removeWrl(name);
    this.#running.delete(name);
    await entry.opened.wrl.close();
    if (state !== undefined && state.unrelayedRecords > 0) log.warn(`WRL ${name} removed with ${state.unrelayedRecords} record(s) not relayed to ${entry.spec.replica}: they stay in ${entry.spec.paths[0]} until it is served again`);
    else log.info(`WRL ${name} removed`);
  }

  async #changeRelay(entry: RunningEntry, spec: ManagedWrlSpec): Promise<void> {
    const replica = parseAddress(spec.replica, replicaDataPortDefault);
    const opened: OpenedWrl = { ...entry.opened, replica, replicaText: spec.replica };
    await this.options.core.changeRelay(this.#coreSpec(spec, opened));
    this.#running.set(spec.name, { spec, opened });
    log.info(`WRL ${spec.name}: relay restarted (replica ${spec.replica}, compression ${spec.compression ?? "server default"}, rate limit ${spec.rateLimit ?? "server default"}, RPO ${spec.rpo ?? "server default"})`);
  }

  #coreSpec(spec: ManagedWrlSpec, opened: OpenedWrl): StagingWrlSpec {
    const defaults = this.options.relayDefaults;
    const rateLimit = spec.rateLimit === undefined ? defaults.rateLimit : new RateLimiter(parseRate(spec.rateLimit, `rateLimit ${spec.rateLimit}`), "wrl");
    const rpoTargetSeconds = spec.rpo === undefined ? defaults.rpoTargetSeconds : parseRpoSeconds(spec.rpo, `rpo ${spec.rpo}`);
    const targets: RelayTargets = {
      ...(rateLimit === undefined ? {} : { rateLimit }),
      ...(defaults.schedule === undefined ? {} : { schedule: defaults.schedule }),
      ...(rpoTargetSeconds === undefined ? {} : { rpoTargetSeconds }),
    };
    return {
      name: spec.name,
      wrl: opened.wrl,
      devicePaths: opened.devicePaths,
      replicaAddress: spec.replica,
      dialReplica: replicaDialer(opened.replica, this.options.nodeId, this.options.replicaTls),
      ...(spec.compression === undefined ? {} : { compression: parseCompression(String(spec.compression)) }),
      targets,
    };
  }

  /** The real path of every device of every WRL served now (flags and managed), and its WRL. */
  async #servedPaths(): Promise<Map<string, string>> {
    const served = new Map<string, string>();
    for (const [name, paths] of this.options.flagWrls) for (const path of paths) served.set(await realPathOf(path), name);
    for (const [name, entry] of this.#running) for (const path of entry.spec.paths) served.set(await realPathOf(path), name);
    return served;
  }

  #runningState(name: string): RunningWrl | undefined {
    const entry = this.#running.get(name);
    const handle = this.options.core.wrlHandle(name);
    if (entry === undefined || handle === undefined) return undefined;
    return { paths: entry.spec.paths, unrelayedRecords: Math.max(0, handle.wrl.info().headLsn - handle.relay.appliedLsn), connectedDevices: handle.connectedDevices };
  }
}

function samePaths(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((path, index) => path === b[index]);
}

function sameRelaySettings(a: ManagedWrlSpec, b: ManagedWrlSpec): boolean {
  return a.replica === b.replica && String(a.compression) === String(b.compression) && a.rateLimit === b.rateLimit && a.rpo === b.rpo;
}
