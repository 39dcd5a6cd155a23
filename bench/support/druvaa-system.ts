/**
 * One druvaa system for a benchmark: replica, staging and (when asked) a client with a change
 * map, as real processes on loopback, started through src/demo/processes.ts. Ports are chosen by
 * the kernel at the first start and kept, so staging can be SIGKILLed and started again on the
 * same address with the same WRL and state dir. The client can reach staging through a counting
 * proxy (byte-proxy.ts) to measure what crosses the wire. Every process is registered with the
 * benchmark's Cleanup, restarts included.
 */
import { join } from "node:path";
import { fetchStatus, type StagingStatus } from "../../src/commands/status-format.ts";
import { startRole, type RoleProcess } from "../../src/demo/processes.ts";
import { startByteProxy, type ByteProxy } from "./byte-proxy.ts";
import type { Cleanup } from "./lib.ts";

export interface BenchSystemOptions {
  /** Where the state dirs and the export socket go. */
  dir: string;
  device: string;
  primary: string;
  replica: string;
  wrl: string;
  changeMap: string;
  cleanup: Cleanup;
  /** Put a counting proxy between client and staging. */
  viaProxy: boolean;
}

/** The part of the client's GET /status the benchmark reads. */
export interface ClientView {
  mode: string;
  dirtyBytes: number | null;
  unackedWrites: number;
  staging: { connected: boolean };
  lastResync: { outcome: string; sentBytes: number; seconds: number } | null;
}

export interface SyncTimes {
  /** Seconds from t0 until the client's link to staging was up. */
  connectedSeconds: number;
  /** … until the client was in sync: connected, nothing dirty, every write acked. */
  inSyncSeconds: number;
  /** … until, after that, staging said every WRL is applied at the replica. */
  drainedSeconds: number;
  lastResync: ClientView["lastResync"];
}

const pollMs = 50;

export class BenchSystem {
  replica!: RoleProcess;
  staging!: RoleProcess;
  client: RoleProcess | undefined;
  proxy: ByteProxy | undefined;
  #stagingArgs: string[] = [];

  private constructor(readonly options: BenchSystemOptions) {}

  /** Starts replica and staging (not the client: see startClient). */
  static async start(options: BenchSystemOptions): Promise<BenchSystem> {
    const system = new BenchSystem(options);
    const { dir, device, replica, wrl } = options;
    system.replica = await system.#start("replica", ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `${device}=${replica}`, "--state-dir", join(dir, "replica-state"), "--insecure"]);
    const stagingArgs = (listen: string, control: string) => ["staging", "serve", "--listen", listen, "--control", control, "--wrl", `wrl0=${wrl}`, "--replica", `wrl0=${String(system.replica.ready.listen)}`, "--state-dir", join(dir, "staging-state"), "--insecure"];
    system.staging = await system.#start("staging", stagingArgs("127.0.0.1:0", "127.0.0.1:0"));
    system.#stagingArgs = stagingArgs(String(system.staging.ready.listen), String(system.staging.ready.control));
    if (options.viaProxy) {
      const listen = String(system.staging.ready.listen);
      const colon = listen.lastIndexOf(":");
      const proxy = (system.proxy = await startByteProxy(listen.slice(0, colon), Number(listen.slice(colon + 1))));
      options.cleanup.onExit(() => proxy.close());
    }
    return system;
  }

  async #start(name: string, args: string[]): Promise<RoleProcess> {
    const role = await startRole(name, args);
    this.options.cleanup.onExit(() => role.stop());
    return role;
  }

  get exportAddress(): string {
    return `unix:${join(this.options.dir, "export.sock")}`;
  }

  get stagingControl(): string {
    return String(this.staging.ready.control);
  }

  get clientControl(): string {
    if (this.client === undefined) throw new Error("the client is not started");
    return String(this.client.ready.control);
  }

  /** Starts `druvaa client attach` with the change map and `extraFlags`; resolves once it is ready. */
  async startClient(extraFlags: string[] = []): Promise<RoleProcess> {
    const { dir, device, primary, changeMap } = this.options;
    const staging = this.proxy?.address ?? String(this.staging.ready.listen);
    this.client = await this.#start("client", ["client", "attach", "--device", `${device}=${primary}`, "--staging", staging, "--wrl", "wrl0", "--export", this.exportAddress, "--control", "127.0.0.1:0", "--state-dir", join(dir, "client-state"), "--changemap", changeMap, ...extraFlags, "--insecure"]);
    return this.client;
  }

  async killStaging(): Promise<void> {
    this.staging.proc.kill("SIGKILL");
    await this.staging.proc.exited;
  }

  /** Starts staging again on the same addresses, WRL and state dir. */
  async restartStaging(): Promise<RoleProcess> {
    this.staging = await this.#start("staging", this.#stagingArgs);
    return this.staging;
  }

  async clientStatus(): Promise<ClientView> {
    return (await fetchStatus(this.clientControl, 6007)) as unknown as ClientView;
  }

  async stagingDrained(): Promise<boolean> {
    const status = (await fetchStatus(this.stagingControl)) as StagingStatus;
    return status.wrls.every((wrl) => (wrl.replica?.appliedLsn ?? 0) >= wrl.headLsn);
  }

  /** Polls until staging says every WRL is applied at the replica. */
  async waitDrained(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!(await this.stagingDrained())) {
      if (performance.now() > deadline) throw new Error(`staging did not drain within ${timeoutMs} ms`);
      await Bun.sleep(pollMs);
    }
  }

  /** Polls until the client's mode is `mode` (e.g. disconnected after staging was killed). */
  async waitForMode(mode: string, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const status = await this.clientStatus();
      if (status.mode === mode) return;
      if (performance.now() > deadline) throw new Error(`the client is still ${status.mode} after ${timeoutMs} ms (expected ${mode})`);
      await Bun.sleep(pollMs);
    }
  }

  /**
   * Polls every 50 ms from `t0` (performance.now()) until the client is in sync and staging is
   * drained; the times are relative to t0. In sync counts only once the work was seen: dirty
   * bytes in a status read, or a resync pass other than `lastResyncBefore` (a status read
   * before the client marked anything dirty must not count).
   */
  async waitInSyncAndDrained(t0: number, lastResyncBefore: ClientView["lastResync"], timeoutMs: number): Promise<SyncTimes> {
    const before = JSON.stringify(lastResyncBefore);
    let connectedSeconds: number | undefined;
    let inSyncSeconds: number | undefined;
    let status: ClientView | undefined;
    let sawDirty = false;
    for (;;) {
      const elapsed = () => (performance.now() - t0) / 1000;
      status = await this.clientStatus();
      if (connectedSeconds === undefined && status.staging.connected) connectedSeconds = elapsed();
      sawDirty ||= (status.dirtyBytes ?? 0) > 0;
      const passEnded = sawDirty || (status.lastResync !== null && JSON.stringify(status.lastResync) !== before);
      if (inSyncSeconds === undefined && passEnded && status.mode === "connected" && (status.dirtyBytes ?? 0) === 0 && status.unackedWrites === 0) inSyncSeconds = elapsed();
      if (inSyncSeconds !== undefined && (await this.stagingDrained())) {
        return { connectedSeconds: connectedSeconds ?? inSyncSeconds, inSyncSeconds, drainedSeconds: elapsed(), lastResync: status.lastResync };
      }
      if (elapsed() * 1000 > timeoutMs) {
        throw new Error(`not in sync and drained after ${timeoutMs / 1000} s: client ${status.mode}, ${status.dirtyBytes ?? 0} byte(s) dirty, ${status.unackedWrites} unacked, staging ${status.staging.connected ? "connected" : "not connected"}`);
      }
      await Bun.sleep(pollMs);
    }
  }

  /** The last lines each role logged, for an error report. */
  logTails(lines = 12): string {
    const roles = [this.client, this.staging, this.replica].filter((role): role is RoleProcess => role !== undefined);
    return roles.map((role) => `--- ${role.name} (pid ${role.pid}) ---\n${role.stderrText().trim().split("\n").slice(-lines).join("\n")}`).join("\n");
  }

  /** Stops every role (client first) and the proxy. */
  async stop(): Promise<void> {
    for (const role of [this.client, this.staging, this.replica]) await role?.stop();
    await this.proxy?.close();
  }
}
