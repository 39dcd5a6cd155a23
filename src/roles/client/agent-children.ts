/**
 * The agent's children: one `druvaa client attach` process per enabled attachment, supervised.
 *
 *   apply(config)   reconciles what runs with `config` (idempotent; a retried apply does only what
 *                   is left): children of removed, disabled or changed attachments get SIGTERM and
 *                   are waited for; then missing change maps are created and new or changed ones
 *                   start, each awaited until its ready line (or its exit: the apply then fails,
 *                   naming it, and the child is retried like a crash).
 *   crash           a child that exits while it should run is logged once, counted, and started
 *                   again after a backoff (childRestartBackoffMinMs doubling to
 *                   childRestartBackoffMaxMs; back to the minimum once a child ran that long).
 *   stopAll()       at agent shutdown: SIGTERM to every child, each waited for (SIGKILL after
 *                   childStopWaitMs, logged: a client that will not stop has failed writes to report).
 *
 * How the agent reads a child's GET /status. A child's TCP control port (127.0.0.1:0, reported as
 * its address) follows the role's rules: under TLS it is HTTPS for admin and panel certificates
 * only, and the agent holds a client certificate, which it must not be able to pass off as an
 * admin one. So each child also serves its control routes as plain HTTP on a Unix socket
 * (`client attach --control-socket`) in STATE_DIR/run, a directory of mode 0700: only the agent's
 * user (who owns the devices and state anyway) can connect. This works the same with TLS and with
 * --insecure, and needs no second certificate.
 *
 * Children of an agent that was killed (SIGKILL, OOM) keep running; their pids are in
 * STATE_DIR/attachments/NAME.pid, and the next agent stops them (SIGTERM, waited for) before it
 * starts its own (reapOrphans), so two clients never serve one device.
 * Not guaranteed: a child's stdout after its ready line is appended to its log with its stderr,
 * but lines of the two may interleave.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { chmod, mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { clientShutdownWaitMs } from "../../constants.ts";
import { DruvaaError } from "../../errors.ts";
import { selfCommand } from "../../demo/processes.ts";
import { logger } from "../../log.ts";
import { attachArgs, attachmentPaths, ensureChangeMap, sameAttachment, type AgentConfig, type Attachment, type AttachmentPaths } from "./agent-config.ts";

const log = logger("client:agent");

export const childRestartBackoffMinMs = 1_000;
export const childRestartBackoffMaxMs = 30_000;
/** How long apply waits for a child's ready line (attach to staging included). */
export const childReadyWaitMs = 60_000;
/** How long a child may take to stop after SIGTERM: its own write drain, plus exit. */
export const childStopWaitMs = clientShutdownWaitMs + 10_000;
/** A child's GET /status read by the agent's own /status. */
export const childStatusWaitMs = 2_000;
if (!(childRestartBackoffMinMs < childRestartBackoffMaxMs && childStatusWaitMs < childReadyWaitMs)) throw new Error("agent child bounds are ordered");

type ChildProcess = Bun.Subprocess<"ignore", "pipe", number>;

export type ChildState = "starting" | "running" | "stopped" | "crashed" | "restarting";

export interface ChildExit {
  code: number | null;
  signal: string | null;
  atMs: number;
}

export interface AgentSetup {
  stateDir: string;
  nodeId: string;
  /** The link-security flags every child gets (the agent's own). */
  securityArgs: readonly string[];
  /** A child restarted by the supervisor (after a crash or a failed start) printed its ready line. */
  onRestarted?: (name: string) => void;
}

class AttachmentChild {
  state: ChildState = "stopped";
  restarts = 0;
  lastExit: ChildExit | null = null;
  addresses: Record<string, unknown> | null = null;
  proc: ChildProcess | undefined;
  readonly paths: AttachmentPaths;
  #wanted = false;
  #backoffMs = childRestartBackoffMinMs;
  #readyAtMs = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #settled: Promise<void> = Promise.resolve();

  constructor(
    public config: Attachment,
    private readonly setup: AgentSetup,
  ) {
    this.paths = attachmentPaths(setup.stateDir, config.name);
  }

  get active(): boolean {
    return this.#wanted;
  }

  /** Starts the child and resolves once it is ready; rejects if it exits first (it is then retried as after a crash). */
  async start(): Promise<void> {
    this.#wanted = true;
    this.#backoffMs = childRestartBackoffMinMs;
    try {
      await this.#spawn("starting");
    } catch (error) {
      // Failed before a child ran (a change map that cannot be made): not retried on its own; the next apply tries again.
      if (this.proc === undefined && this.state !== "crashed" && this.state !== "restarting") this.#wanted = false;
      throw error;
    }
  }

  /** SIGTERM, waited for (bounded); a pending restart is cancelled. Idempotent. */
  async stop(): Promise<void> {
    this.#wanted = false;
    clearTimeout(this.#timer);
    const proc = this.proc;
    if (proc === undefined) {
      this.state = "stopped";
      return;
    }
    proc.kill("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stopped = await Promise.race([proc.exited.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), childStopWaitMs)))]);
    clearTimeout(timer);
    if (!stopped) {
      log.error(`attachment ${this.config.name} (pid ${proc.pid}) did not stop ${childStopWaitMs} ms after SIGTERM: killing it (see ${this.paths.logPath})`);
      proc.kill("SIGKILL");
      await proc.exited;
    }
    await this.#settled;
  }

  async #spawn(state: "starting" | "restarting"): Promise<void> {
    const runDir = join(this.setup.stateDir, "run");
    await mkdir(runDir, { recursive: true, mode: 0o700 });
    await chmod(runDir, 0o700);
    await mkdir(this.paths.stateDir, { recursive: true });
    await rm(this.paths.controlSocket, { force: true }); // a killed child's leftover
    const created = await ensureChangeMap(this.config);
    if (created) log.info(`attachment ${this.config.name}: created change map ${this.config.changemap} with a region per device`);
    if (!this.#wanted) throw new DruvaaError("ATTACHMENT_STOPPED", `attachment ${this.config.name} was stopped while starting`);
    const args = attachArgs(this.config, this.paths, this.setup.nodeId, this.setup.securityArgs);
    const fd = openSync(this.paths.logPath, "a");
    let proc: ChildProcess;
    try {
      writeSync(fd, `--- ${new Date().toISOString()} druvaa client agent: starting druvaa ${args.join(" ")}\n`);
      proc = Bun.spawn([...selfCommand(), ...args], { stdin: "ignore", stdout: "pipe", stderr: fd, env: { ...process.env, NO_COLOR: "1" } });
    } catch (error) {
      closeSync(fd);
      throw error;
    }
    this.proc = proc;
    this.state = state;
    this.addresses = null;
    const ready = readyLine(proc, fd).then((line) => {
      if (this.proc === proc) {
        this.state = "running";
        this.addresses = addressesOf(line);
        this.#readyAtMs = Date.now();
        if (state === "restarting") this.setup.onRestarted?.(this.config.name);
      }
      return line;
    });
    this.#settled = (async () => {
      const code = await proc.exited;
      await ready.catch(() => undefined); // stdout drained into the log before the fd closes
      closeSync(fd);
      this.#exited(proc, code);
    })();
    await writeFile(this.paths.pidPath, `${proc.pid}\n`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const line = await Promise.race([ready.catch(() => undefined), new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), childReadyWaitMs)))]);
    clearTimeout(timer);
    if (line === undefined) {
      await this.#settled;
      throw new DruvaaError("ATTACHMENT_START_FAILED", `attachment ${this.config.name} exited before it was ready (${describeExit(this.lastExit)})`, `See its log: ${this.paths.logPath}; the agent keeps retrying`);
    }
    if (line === null) throw new DruvaaError("ATTACHMENT_NOT_READY", `attachment ${this.config.name} (pid ${proc.pid}) is not ready after ${childReadyWaitMs} ms`, `See its log: ${this.paths.logPath}`);
  }

  #exited(proc: ChildProcess, code: number): void {
    if (this.proc !== proc) return;
    this.proc = undefined;
    this.addresses = null;
    const signal = proc.signalCode === null ? null : String(proc.signalCode);
    this.lastExit = { code: signal === null ? code : null, signal, atMs: Date.now() };
    void rm(this.paths.pidPath, { force: true });
    if (!this.#wanted) {
      this.state = "stopped";
      // A client that stops with an error has something to say (writes it had to fail): in its log.
      const stopped = `attachment ${this.config.name} (pid ${proc.pid}) stopped (${describeExit(this.lastExit)})`;
      if (this.lastExit.code === 0) log.info(stopped);
      else log.warn(`${stopped}; see ${this.paths.logPath}`);
      return;
    }
    if (this.state === "running" && Date.now() - this.#readyAtMs >= childRestartBackoffMaxMs) this.#backoffMs = childRestartBackoffMinMs;
    this.#scheduleRestart(`pid ${proc.pid} exited unexpectedly (${describeExit(this.lastExit)})`);
  }

  /** One log line per crash; the next start after the backoff (doubling, bounded). */
  #scheduleRestart(why: string): void {
    const delayMs = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, childRestartBackoffMaxMs);
    this.state = "crashed";
    log.warn(`attachment ${this.config.name}: ${why}: restart ${this.restarts + 1} in ${delayMs / 1000} s; see ${this.paths.logPath}`);
    this.#timer = setTimeout(() => {
      if (!this.#wanted) return;
      this.restarts += 1;
      this.state = "restarting";
      this.#spawn("restarting").catch((error: unknown) => {
        // A child that spawned and exited is the exit handler's (a crash again); this is a failure before the spawn.
        if (this.proc === undefined && this.#wanted && this.state === "restarting") this.#scheduleRestart(`restart failed: ${error instanceof Error ? error.message : String(error)}`);
      });
    }, delayMs);
  }

  /** The child's GET /status through its control socket, or null when it does not answer. */
  async childStatus(): Promise<unknown> {
    if (this.state !== "running") return null;
    try {
      const response = await fetch("http://localhost/status", { unix: this.paths.controlSocket, signal: AbortSignal.timeout(childStatusWaitMs) });
      return response.ok ? await response.json() : null;
    } catch {
      return null;
    }
  }
}

function describeExit(exit: ChildExit | null): string {
  if (exit === null) return "no exit";
  return exit.signal === null ? `exit code ${exit.code}` : `signal ${exit.signal}`;
}

function addressesOf(ready: Record<string, unknown>): Record<string, unknown> {
  const { export: exportAddress, exports, control, controlSocket } = ready;
  return { export: exportAddress ?? null, exports: exports ?? null, control: control ?? null, controlSocket: controlSocket ?? null };
}

/** The child's ready line; every stdout line (ready line included) is appended to its log. */
async function readyLine(proc: ChildProcess, fd: number): Promise<Record<string, unknown>> {
  const decoder = new TextDecoder();
  let pending = "";
  let ready: Record<string, unknown> | undefined;
  let resolveReady!: (line: Record<string, unknown>) => void;
  const found = new Promise<Record<string, unknown>>((resolve) => (resolveReady = resolve));
  const drained = (async () => {
    for await (const chunk of proc.stdout) {
      writeSync(fd, chunk);
      pending += decoder.decode(chunk, { stream: true });
      let newline: number;
      while (ready === undefined && (newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          if (parsed.event === "ready") resolveReady((ready = parsed));
        } catch {
          // not JSON: only logged
        }
      }
      if (ready !== undefined) pending = "";
    }
    if (ready === undefined) throw new DruvaaError("ATTACHMENT_START_FAILED", "exited before its ready line");
    return ready;
  })();
  return Promise.race([found, drained]);
}

export interface AttachmentStatus {
  name: string;
  enabled: boolean;
  state: ChildState;
  pid: number | null;
  restarts: number;
  lastExit: ChildExit | null;
  addresses: Record<string, unknown> | null;
  status: unknown;
}

export class AgentChildren {
  readonly #children = new Map<string, AttachmentChild>();
  #closing = false;

  constructor(private readonly setup: AgentSetup) {}

  /** The control socket of attachment `name` while its child runs; undefined otherwise. */
  controlSocketOf(name: string): string | undefined {
    const child = this.#children.get(name);
    return child?.state === "running" ? child.paths.controlSocket : undefined;
  }

  /** Whether every enabled attachment of `config` has its child running now. */
  allRunning(config: AgentConfig): boolean {
    return config.attachments.every((attachment) => !attachment.enabled || this.#children.get(attachment.name)?.state === "running");
  }

  /** Makes the running children match `config` (see the file comment). Idempotent. */
  async apply(config: AgentConfig): Promise<void> {
    if (this.#closing) throw new DruvaaError("AGENT_STOPPING", "the agent is stopping", "Apply again after it restarts (the committed config is applied at start)");
    const wanted = new Map(config.attachments.map((attachment) => [attachment.name, attachment]));
    for (const [name, child] of this.#children) {
      const want = wanted.get(name);
      const keep = want !== undefined && want.enabled && child.active && sameAttachment(want, child.config);
      if (!keep && child.active) {
        log.info(`attachment ${name}: ${want === undefined ? "removed" : !want.enabled ? "disabled" : "changed"}: stopping pid ${child.proc?.pid ?? "-"}`);
        await child.stop();
      }
      if (want === undefined) this.#children.delete(name);
    }
    const starting: Promise<void>[] = [];
    for (const attachment of config.attachments) {
      let child = this.#children.get(attachment.name);
      if (child === undefined) this.#children.set(attachment.name, (child = new AttachmentChild(attachment, this.setup)));
      if (child.active) continue;
      child.config = attachment;
      if (!attachment.enabled) continue;
      const started = child;
      starting.push(started.start().then(() => log.info(`attachment ${attachment.name}: running (pid ${started.proc?.pid}), export ${String(started.addresses?.export)}`)));
    }
    const failures = (await Promise.allSettled(starting)).flatMap((result) => (result.status === "rejected" ? [result.reason as unknown] : []));
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new DruvaaError("ATTACHMENT_START_FAILED", failures.map((error) => (error instanceof Error ? error.message : String(error))).join("; "), `See the logs in ${join(this.setup.stateDir, "attachments")}; the agent keeps retrying`);
  }

  /** Every attachment of `config`, with its child's state and GET /status. */
  async status(config: AgentConfig): Promise<AttachmentStatus[]> {
    return Promise.all(config.attachments.map(async (attachment) => {
      const child = this.#children.get(attachment.name);
      return {
        name: attachment.name,
        enabled: attachment.enabled,
        state: child?.state ?? "stopped",
        pid: child?.proc?.pid ?? null,
        restarts: child?.restarts ?? 0,
        lastExit: child?.lastExit ?? null,
        addresses: child?.addresses ?? null,
        status: child === undefined ? null : await child.childStatus(),
      };
    }));
  }

  /** At agent shutdown: every child stopped and waited for; no further apply. */
  async stopAll(): Promise<void> {
    this.#closing = true;
    await Promise.all([...this.#children.values()].map((child) => child.stop()));
  }
}

/**
 * Stops children a killed agent left running (their pid files), before this agent starts its own.
 * A pid is signalled only if /proc says it is a `client attach` with this agent's state directory
 * (a pid reused by another program is left alone).
 */
export async function reapOrphans(stateDir: string): Promise<number> {
  const dir = join(stateDir, "attachments");
  let reaped = 0;
  for (const file of (await readdir(dir).catch(() => [] as string[])).filter((name) => name.endsWith(".pid"))) {
    const pid = Number((await readFile(join(dir, file), "utf8").catch(() => "")).trim());
    const cmdline = Number.isSafeInteger(pid) && pid > 0 ? await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "") : "";
    const args = cmdline.split("\0");
    const stateArg = args.indexOf("--state-dir");
    const ours = args.includes("attach") && stateArg >= 0 && args[stateArg + 1] === join(dir, file.slice(0, -".pid".length));
    if (ours) {
      log.warn(`attachment ${file.slice(0, -4)}: pid ${pid} left running by an earlier agent: stopping it`);
      process.kill(pid, "SIGTERM");
      const deadline = Date.now() + childStopWaitMs;
      while (Date.now() < deadline && (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")) === cmdline) await Bun.sleep(50);
      if ((await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")) === cmdline) process.kill(pid, "SIGKILL");
      reaped += 1;
    }
    await rm(join(dir, file), { force: true });
  }
  return reaped;
}
