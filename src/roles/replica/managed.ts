/**
 * `druvaa replica apply --managed`: the replica devices pushed by the panel (docs/panel.md
 * "Replica"; the two-phase commit is src/roles/managed/config-routes.ts), beside any --device
 * flags. validate() is managed-validate.ts; apply() makes the running devices what the config
 * says.
 *
 * Why devices are added to and removed from the running core, not by restarting the core and the
 * servers on the same ports: a restart would end what the replica serves besides relays — the
 * NBD exports of failed-over WRLs and of snapshots, restores in progress, seeds — and drop the
 * control request that asked for the commit. The core keeps one map of devices that every part
 * looks devices up in (apply, resync sets, journal, restores, snapshots, failover), so a device
 * added to it under the apply lock (ReplicaCore.changeDevices, between two apply groups) is
 * served from the next group on, and the devices already there, their journal, RS-WRL sets,
 * snapshots and failovers are untouched. A relay of a WRL whose device arrives only now was
 * refused DEVICE_UNKNOWN before and retries with backoff (its records wait at staging).
 *
 * apply(next), decision table per device (compared with what is running, not with `previous`,
 * so a half-done apply is finished by the next try or the next start):
 *
 *   running          in next                 → action
 *   no               yes                     → create a missing image (sizeBytes, sparse), open
 *                                               it as --device does (protect-headers marker
 *                                               written at first use), add it to the core
 *   yes, same path   yes                     → nothing
 *   yes              no, or at another path  → refused if failed over / mid-resync / mid-seed
 *                                               (checked again under the lock); else its
 *                                               snapshots end, it leaves the core, it is closed
 * Every device is tried; the first failure is thrown after the others were done (GET /config
 * `applied.error`). Before the core opens (the committed config at start) devices are only
 * opened: the core then opens with them, so its recovery (journal undo, RS-WRL sets, failovers)
 * sees every device.
 */
import { realpath } from "node:fs/promises";
import { assert } from "../../assert.ts";
import { protectReserveBytesDefault } from "../../protect-constants.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import { FileDevice } from "../../io/file-device.ts";
import { pathExists } from "../../io/open-device.ts";
import { logger } from "../../log.ts";
import type { ManagedRole } from "../managed/config-routes.ts";
import type { ReplicaDevice } from "./apply.ts";
import { openReplicaDevices } from "./open-devices.ts";
import type { ReplicaCore } from "./core.ts";
import type { Failovers } from "./failover.ts";
import { validateReplicaConfig, type ManagedReplicaConfig, type ManagedReplicaDeviceSpec, type RemovalBlocker } from "./managed-validate.ts";

export type { ManagedReplicaConfig, ManagedReplicaDeviceSpec } from "./managed-validate.ts";

const log = logger("replica:managed");

export interface ManagedDevicesOptions {
  /** `--device NAME=PATH` flags: not managed; their names and paths are not for the config. */
  flagDevices: ReadonlyMap<string, string>;
  protectHeadersBytes?: number;
  /** --wrl: the RS-WRL's path, if any. */
  rsWrlPath?: string;
  failovers: Failovers;
  /** Declared sizes from the saved state, until the core is open (then its state says). */
  declaredSizeBytes: ReadonlyMap<string, number>;
}

/** What the running replica lends once the core is open. */
export interface ManagedHost {
  core: ReplicaCore;
  /** Ends the snapshots (history and exported) of devices leaving the replica. */
  endSnapshots(names: readonly string[]): Promise<void>;
}

export class ManagedDevices implements ManagedRole<ManagedReplicaConfig> {
  readonly empty: ManagedReplicaConfig = { devices: [] };
  /** The managed devices open now, by name. */
  readonly #running = new Map<string, ReplicaDevice>();
  #host: ManagedHost | undefined;

  constructor(private readonly options: ManagedDevicesOptions) {}

  /** The managed devices open now (before attach: what the core opens with). */
  get devices(): ReplicaDevice[] {
    return [...this.#running.values()];
  }

  /** The core is open (with `devices`): from now on apply adds and removes devices in it. */
  attach(host: ManagedHost): void {
    this.#host = host;
  }

  validate(raw: unknown, current: ManagedReplicaConfig): Promise<ManagedReplicaConfig> {
    return validateReplicaConfig(raw, current, {
      flagDevices: this.options.flagDevices,
      protectHeadersBytes: this.#reserveBytes,
      rsWrlPath: this.options.rsWrlPath,
      declaredSizeBytes: (name) => this.#declared(name),
      removalBlocker: (name) => this.#removalBlocker(name),
    });
  }

  async apply(next: ManagedReplicaConfig): Promise<void> {
    const failures: unknown[] = [];
    const wanted = new Map(next.devices.map((device) => [device.name, device]));
    for (const [name, entry] of [...this.#running]) {
      if (wanted.get(name)?.path === entry.path) continue;
      await this.#remove(name).catch((error: unknown) => failures.push(error));
    }
    for (const spec of next.devices) {
      if (this.#running.has(spec.name)) continue;
      await this.#add(spec).catch((error: unknown) => failures.push(error));
    }
    if (failures.length > 0) {
      for (const failure of failures.slice(1)) log.error(`applying the managed devices: ${(failure as Error).message}`);
      throw failures[0];
    }
  }

  /** Closes the managed devices (the replica is stopping; the core is stopped). */
  async close(): Promise<void> {
    const entries = [...this.#running.values()];
    this.#running.clear();
    await Promise.allSettled(entries.flatMap((entry) => [entry.device.close(), entry.smallWrites?.close()]));
  }

  get #reserveBytes(): number {
    return this.options.protectHeadersBytes ?? protectReserveBytesDefault;
  }

  #declared(name: string): number | undefined {
    const host = this.#host;
    if (host === undefined) return this.options.declaredSizeBytes.get(name);
    return host.core.recoveryHost.state().devices.find((device) => device.name === name)?.declaredSizeBytes;
  }

  async #add(spec: ManagedReplicaDeviceSpec): Promise<void> {
    // Validated at prepare; checked again because the --device flags may have changed since (a restart).
    const real = await realpath(spec.path).catch(() => spec.path);
    for (const [name, path] of this.options.flagDevices) {
      if (name === spec.name || (await realpath(path).catch(() => path)) === real) {
        throw new DruvaaError("DEVICE_NAME_TAKEN", `managed device ${spec.name} (${spec.path}): the --device flag ${name}=${path} has its ${name === spec.name ? "name" : "path"}`, "Drop the --device flag and restart the replica, or have the panel change the managed device", exitCodes.refused);
      }
    }
    if (spec.sizeBytes !== undefined && !(await pathExists(spec.path))) {
      await (await FileDevice.open(spec.path, { createSizeBytes: spec.sizeBytes })).close();
      log.info(`created ${spec.path} (${spec.sizeBytes} bytes, sparse) for device ${spec.name}`);
    }
    const declared = this.#declared(spec.name);
    const [entry] = await openReplicaDevices(new Map([[spec.name, spec.path]]), this.#reserveBytes, {
      ...(declared === undefined ? {} : { declared: new Map([[spec.name, declared]]) }),
      unchecked: this.options.failovers.plainDevices(),
    });
    assert(entry !== undefined, "openReplicaDevices opens one device per spec");
    const host = this.#host;
    try {
      await host?.core.changeDevices(async (devices) => {
        if (devices.has(spec.name)) throw new DruvaaError("DEVICE_NAME_TAKEN", `the replica has a device ${spec.name} already`, "Give the managed device another name", exitCodes.refused);
        devices.set(spec.name, entry);
      });
    } catch (error) {
      await Promise.allSettled([entry.device.close(), entry.smallWrites?.close()]);
      throw error;
    }
    this.#running.set(spec.name, entry);
    log.info(`device ${spec.name} (${spec.path}) ${host === undefined ? "opened" : "added: served from the next apply group on"}`);
  }

  async #remove(name: string): Promise<void> {
    const entry = this.#running.get(name)!;
    const host = this.#host;
    if (host !== undefined) {
      await host.core.changeDevices(async (devices) => {
        const blocker = this.#removalBlocker(name);
        if (blocker !== undefined) throw new DruvaaError(blocker.code, `dropping device ${name}: ${blocker.message}`, blocker.hint, exitCodes.refused);
        await host.endSnapshots([name]);
        devices.delete(name);
      });
    }
    this.#running.delete(name);
    await Promise.allSettled([entry.device.close(), entry.smallWrites?.close()]);
    log.info(`device ${name} (${entry.path}) removed`);
  }

  /** Why the running device `name` cannot leave now (see the file comment), or undefined. */
  #removalBlocker(name: string): RemovalBlocker | undefined {
    for (const record of this.options.failovers.records.values()) {
      if (record.devices.some((device) => device.name === name)) {
        return { code: "DEVICE_FAILED_OVER", message: `it is failed over with WRL ${record.wrl} (${record.phase})`, hint: `Fail back first: druvaa failback --wrl ${record.wrl}` };
      }
    }
    const host = this.#host?.core.recoveryHost;
    if (host === undefined) return undefined;
    const state = host.state();
    const wrl = state.wrls.find((each) => each.uuid === state.devices.find((device) => device.name === name)?.wrlUuid);
    const resyncing = wrl !== undefined && (wrl.resyncSet !== undefined || (wrl.resyncUnbuffered?.includes(name) ?? false) || host.resyncOpen(wrl.uuid));
    if (resyncing || host.inconsistent.has(name)) {
      return { code: "DEVICE_RESYNCING", message: `it is in the middle of a resync or of a failed apply (WRL ${wrl?.name ?? "?"})`, hint: "Wait until it is consistent again (druvaa status --connect REPLICA:6004), then drop it" };
    }
    const seed = host.devices.get(name)?.seed;
    if (seed !== undefined && !seed.completed) return { code: "DEVICE_SEEDING", message: "it awaits or runs its seed from media (--await-seed)", hint: "Finish the seed first (druvaa replica seed), then drop it" };
    return undefined;
  }
}
