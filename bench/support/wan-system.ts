/**
 * One druvaa system for bench/wan.ts: replica, staging and a client as real processes on
 * loopback (src/demo/processes.ts), optionally with a WAN link (src/io/wan-link.ts, in this
 * process) between staging's relay and the replica, whose stats count every byte the relay puts
 * on the wire (frame headers, handshakes and TLS records included). Links are plaintext
 * (--insecure) or TLS 1.3 with certificates made by `druvaa admin ca init` / `admin cert issue`
 * (as src/demo/run.ts does). Staging can be stopped and started again with other flags on the
 * same WRL and state dir: the way to drain a WRL filled while the relay was held back.
 *
 * Every process and the link are registered with the benchmark's Cleanup; stop() ends them
 * earlier and removes the system's dir.
 */
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fetchStatus } from "../../src/commands/status-format.ts";
import { runDruvaa, startRole, type RoleProcess } from "../../src/demo/processes.ts";
import { startWanLink, type WanLink } from "../../src/io/wan-link.ts";
import { resolveControlToolSecurity } from "../../src/roles/link-security.ts";
import type { PreparedTls } from "../../src/tls/transport-tls.ts";
import type { StagingWrlStatus } from "../../src/roles/staging/core-status.ts";
import type { Cleanup } from "./lib.ts";
import { sparseImage } from "./images.ts";
import { protectReserveBytesDefault } from "../../src/protect-constants.ts";

export type Node = "replica" | "staging" | "client";
/**
 * The link-security flags of each node: TLS certificate flags, or --insecure; with TLS, `control`
 * is the admin certificate the benchmark reads the (HTTPS) control ports with.
 */
export type Security = ((node: Node) => string[]) & { readonly control?: PreparedTls | undefined };

export const plaintext: Security = () => ["--insecure"];

/** A CA and a certificate for replica, staging, client (device disk0) and admin (control ports) under `dir`. */
export async function makeCertificates(dir: string): Promise<Security> {
  const caDir = join(dir, "ca");
  await runDruvaa(["admin", "ca", "init", "--dir", caDir, "--name", "druvaa-bench-ca", "--days", "2"]);
  for (const [role, extra] of [["replica", []], ["staging", []], ["client", ["--device", "disk0"]], ["admin", []]] as const) {
    await runDruvaa(["admin", "cert", "issue", "--role", role, "--name", `bench-${role}`, ...extra, "--dir", caDir, "--out", dir, "--days", "1"]);
  }
  const files = (node: Node | "admin") => ({ "tls-cert": join(dir, `bench-${node}.pem`), "tls-key": join(dir, `bench-${node}.key`), "tls-ca": join(caDir, "ca.pem"), crl: join(caDir, "crl.pem") });
  const flags = (node: Node) => Object.entries(files(node)).flatMap(([flag, path]) => [`--${flag}`, path]);
  return Object.assign(flags, { control: await resolveControlToolSecurity(files("admin")) });
}

/**
 * The flags that turn coalescing shipments on and off, if `druvaa staging serve --help` lists a
 * --coalesce flag (issue 5 part 3): its value hint (e.g. <off|auto>) decides what to pass.
 */
export async function coalesceFlags(): Promise<{ on: string[]; off: string[] } | undefined> {
  const help = Bun.spawnSync([...selfCli(), "staging", "serve", "--help"], { env: { ...process.env, NO_COLOR: "1" } });
  const text = help.stdout.toString() + help.stderr.toString();
  const match = /--coalesce(?:=<([^>]*)>)?/.exec(text);
  if (match === null) return undefined;
  const hint = match[1];
  if (hint === undefined) return { on: ["--coalesce"], off: [] }; // a plain boolean flag
  const values = hint.split(/[|,\s]/);
  const on = ["auto", "on", "true"].find((value) => values.includes(value)) ?? "auto";
  const off = ["off", "false", "never"].find((value) => values.includes(value)) ?? "off";
  return { on: ["--coalesce", on], off: ["--coalesce", off] };
}

function selfCli(): string[] {
  return [process.execPath, join(import.meta.dir, "../../src/cli.ts")];
}

export interface WanSystemOptions {
  /** A fresh dir for this system's images, WRLs and state (removed by stop()). */
  dir: string;
  cleanup: Cleanup;
  deviceBytes: number;
  wrlBytes: number;
  security: Security;
  /** A WAN link between staging's relay and the replica; none: the relay dials the replica directly. */
  link?: { rateBitsPerSecond: number; delayMs: number };
  stagingFlags: string[];
  /** Give the replica an RS-WRL of this size (needed to take coalesced shipments). */
  replicaWrlBytes?: number;
}

/** Staging's status of a WRL, as its core reports it (src/roles/staging/core-status.ts). */
export type WrlStatus = StagingWrlStatus;

export class WanSystem {
  replica!: RoleProcess;
  staging!: RoleProcess;
  client: RoleProcess | undefined;
  link: WanLink | undefined;
  #relayTarget = "";
  #stopped = false;

  private constructor(readonly options: WanSystemOptions) {}

  /** Creates the images and WRLs, then starts replica, link, staging and client. */
  static async start(options: WanSystemOptions): Promise<WanSystem> {
    const system = new WanSystem(options);
    options.cleanup.onExit(() => system.stop());
    const { dir, deviceBytes, wrlBytes, security } = options;
    mkdirSync(dir, { recursive: true });
    await sparseImage(system.path("primary.img"), deviceBytes);
    await sparseImage(system.path("replica.img"), deviceBytes + protectReserveBytesDefault); // + the swapped header reserve
    await runDruvaa(["wrl", "create", "--primary", system.path("wrl.img"), "--size", String(wrlBytes)]);
    const rsWrl: string[] = [];
    if (options.replicaWrlBytes !== undefined) {
      await runDruvaa(["wrl", "create", "--primary", system.path("rs-wrl.img"), "--size", String(options.replicaWrlBytes)]);
      rsWrl.push("--wrl", system.path("rs-wrl.img"));
    }
    system.replica = await system.#start("replica", ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `disk0=${system.path("replica.img")}`, ...rsWrl, "--state-dir", system.path("replica-state"), ...security("replica")]);
    system.#relayTarget = String(system.replica.ready.listen);
    if (options.link !== undefined) {
      const colon = system.#relayTarget.lastIndexOf(":");
      system.link = await startWanLink({
        listen: { kind: "tcp", host: "127.0.0.1", port: 0 },
        target: { kind: "tcp", host: system.#relayTarget.slice(0, colon), port: Number(system.#relayTarget.slice(colon + 1)) },
        ...options.link,
      });
      system.#relayTarget = system.link.address;
    }
    system.staging = await system.#startStaging(options.stagingFlags);
    system.client = await system.#start("client", ["client", "attach", "--device", `disk0=${system.path("primary.img")}`, "--staging", String(system.staging.ready.listen), "--wrl", "wrl0", "--export", `unix:${system.path("export.sock")}`, "--control", "127.0.0.1:0", "--state-dir", system.path("client-state"), ...security("client")]);
    return system;
  }

  path(name: string): string {
    return join(this.options.dir, name);
  }

  get uri(): string {
    return `nbd+unix:///disk0?socket=${this.path("export.sock")}`;
  }

  async #start(name: string, args: string[]): Promise<RoleProcess> {
    const role = await startRole(name, args);
    this.options.cleanup.onExit(() => role.stop());
    return role;
  }

  #startStaging(flags: string[]): Promise<RoleProcess> {
    return this.#start("staging", ["staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--wrl", `wrl0=${this.path("wrl.img")}`, "--replica", `wrl0=${this.#relayTarget}`, "--state-dir", this.path("staging-state"), ...flags, ...this.options.security("staging")]);
  }

  /** Staging's status of its one WRL. */
  async wrl(): Promise<WrlStatus> {
    return ((await fetchStatus(String(this.staging.ready.control), undefined, this.options.security.control)) as unknown as { wrls: WrlStatus[] }).wrls[0]!;
  }

  /** Stops the client (SIGTERM): nothing more is written. */
  async stopClient(): Promise<void> {
    await this.client?.stop();
    this.client = undefined;
  }

  /** Stops staging (SIGTERM: a final checkpoint) and starts it again on the same WRL with `flags`. */
  async restartStaging(flags: string[]): Promise<RoleProcess> {
    await this.staging.stop();
    this.staging = await this.#startStaging(flags);
    return this.staging;
  }

  /** Polls every `pollMs` until the replica applied everything staging logged; answers the seconds since `fromMs`. */
  async waitDrained(fromMs: number, timeoutMs: number, pollMs = 20): Promise<number> {
    for (;;) {
      const wrl = await this.wrl();
      const elapsedMs = performance.now() - fromMs;
      if (wrl.replica.appliedLsn >= wrl.headLsn) return elapsedMs / 1000;
      if (elapsedMs > timeoutMs) throw new Error(`the replica did not drain within ${timeoutMs / 1000} s (head ${wrl.headLsn}, applied ${wrl.replica.appliedLsn}, error ${JSON.stringify(wrl.replica.lastError)})\n${this.logTails()}`);
      await Bun.sleep(pollMs);
    }
  }

  /** The last lines each role logged, for an error report. */
  logTails(lines = 10): string {
    return [this.client, this.staging, this.replica].filter((role): role is RoleProcess => role !== undefined)
      .map((role) => `--- ${role.name} (pid ${role.pid}) ---\n${role.stderrText().trim().split("\n").slice(-lines).join("\n")}`).join("\n");
  }

  /** Stops the roles (client first) and the link, removes the dir. Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const role of [this.client, this.staging, this.replica]) await role?.stop();
    await this.link?.stop();
    rmSync(this.options.dir, { recursive: true, force: true });
  }
}
