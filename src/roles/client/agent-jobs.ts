/**
 * The agent's jobs: the panel's restore and failback of an attachment, each run as a child
 * process of the same druvaa binary (`druvaa restore … --json`, `druvaa failback … --json`, the
 * command lines of agent-jobs-args.ts), like the attachments themselves (agent-children.ts).
 *
 *   POST /jobs {kind, attachment, …}  → 202 {ok, id, kind, state: "running"}; the job goes on alone
 *   GET  /jobs                        → {ok, jobs: [{id, kind, attachment, state, startedAtMs,
 *                                        endedAtMs, exitCode, result, error, logPath}]}, newest first
 *
 * A job's state: running, then done (the command exited 0) or failed (anything else; `error` is the
 * command's own error from its --json output when it printed one, e.g. SPLIT_BRAIN with what each
 * side wrote and the two commands). `result` is the command's --json output (its last JSON line).
 * Jobs are kept in memory, the last agentJobsKeptMax (a running one is never dropped); each one's
 * stdout and stderr go to STATE_DIR/jobs/ID.log, which stays.
 *
 * Under TLS a job runs with the agent's job certificate (agent-tls.ts); without one every job is
 * refused (409 JOB_CERT_MISSING) before anything is stopped.
 * One job per attachment at a time (409 JOB_RUNNING). A failback holds its attachment: the child
 * is stopped first (SIGTERM, waited for) and kept stopped while the job runs, a config committed
 * meanwhile included (`withHeld`); once the job ends the committed config is applied again, which
 * starts the attachment if it is enabled. Not guaranteed: an apply that was already under way when
 * the hold began may start the child again; failback then finds the primary in use and refuses
 * (TARGET_IN_USE), nothing changed. A restore does not stop anything.
 * At agent shutdown (stopAll) running jobs get SIGTERM, waited for (SIGKILL after jobStopWaitMs):
 * restore and failback are both safe to run again.
 */
import { randomBytes } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { selfCommand } from "../../demo/processes.ts";
import { DruvaaError } from "../../errors.ts";
import type { ControlRoute } from "../../io/control-server.ts";
import { logger } from "../../log.ts";
import type { AgentConfig } from "./agent-config.ts";
import { jobRequestOf, JobRefusal, type JobKind, type JobRequest } from "./agent-jobs-args.ts";
import type { JobSecurity } from "./agent-tls.ts";

const log = logger("client:jobs");

/** Jobs kept in memory for GET /jobs (running ones are never dropped). */
export const agentJobsKeptMax = 20;
/** A job's stdout kept to find its --json answer (it is a few KiB; the rest is in its log). */
export const jobStdoutBytesMax = 1024 * 1024;
/** How long a job may take to end after SIGTERM at agent shutdown. */
export const jobStopWaitMs = 10_000;
/** A POST /jobs body. */
export const jobBodyBytesMax = 64 * 1024;

export type JobState = "running" | "done" | "failed";

export interface AgentJob {
  id: string;
  kind: JobKind;
  attachment: string;
  state: JobState;
  startedAtMs: number;
  endedAtMs: number | null;
  exitCode: number | null;
  result: unknown;
  error: { code: string; message: string; hint?: string } | null;
  logPath: string;
}

export interface JobsSetup {
  stateDir: string;
  /** Each job's security flags (agent-tls.ts): the job certificate under TLS, or a refusal without one. */
  security: Pick<JobSecurity, "argsFor">;
  /** The committed config. */
  config(): AgentConfig;
  /** Applies the committed config again (through withHeld); resolves once the children match it. */
  reapply(): Promise<void>;
  /** The pid of an attachment's child, or null when none runs. */
  childPid(name: string): Promise<number | null>;
}

type JobProcess = Bun.Subprocess<"ignore", "pipe", number>;

const errorOf = (error: unknown) => (error instanceof DruvaaError ? error.toJSON() : { code: "INTERNAL", message: error instanceof Error ? error.message : String(error) });

export class AgentJobs {
  readonly #jobs: AgentJob[] = [];
  readonly #held = new Set<string>();
  readonly #procs = new Map<string, JobProcess>();
  readonly #running = new Map<string, Promise<void>>();
  #sequence = 0;
  #closing = false;

  constructor(private readonly setup: JobsSetup) {}

  /** `config` with every held attachment disabled (what the children must run while a failback holds it). */
  withHeld(config: AgentConfig): AgentConfig {
    if (this.#held.size === 0) return config;
    return { attachments: config.attachments.map((attachment) => (this.#held.has(attachment.name) ? { ...attachment, enabled: false } : attachment)) };
  }

  routes(): Record<string, ControlRoute> {
    return {
      "POST /jobs": async (request) => {
        try {
          return await this.#start(request);
        } catch (error) {
          if (error instanceof JobRefusal) return error.answer();
          throw error;
        }
      },
      "GET /jobs": () => ({ ok: true, jobs: [...this.#jobs].reverse() }),
    };
  }

  async #start(request: Request): Promise<Response> {
    if (this.#closing) throw new JobRefusal(503, "AGENT_STOPPING", "the agent is stopping", "Start the job again once the agent is back");
    const text = await request.text();
    if (text.length > jobBodyBytesMax) throw new JobRefusal(413, "TOO_LARGE", `the body has ${text.length} bytes, more than ${jobBodyBytesMax}`, undefined);
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw new JobRefusal(400, "USAGE", "the body is not JSON", 'e.g. {"kind": "failback", "attachment": "pair-db", "replica": "10.0.0.9:6004", "keep": "dr"}', "body");
    }
    const name = (raw as { attachment?: unknown } | null)?.attachment;
    const busy = this.#jobs.find((job) => job.state === "running" && job.attachment === name);
    if (busy !== undefined) throw new JobRefusal(409, "JOB_RUNNING", `attachment ${String(name)} has a ${busy.kind} job running (${busy.id})`, `Wait for it to end (GET /jobs shows it; its log: ${busy.logPath}), then start this one again`, "attachment");
    const job = await jobRequestOf(raw, this.setup.config(), this.setup.stateDir, this.setup.security);
    // Checked again: the decoding above awaited, and another POST may have started one meanwhile.
    const again = this.#jobs.find((entry) => entry.state === "running" && entry.attachment === job.attachment.name);
    if (again !== undefined) throw new JobRefusal(409, "JOB_RUNNING", `attachment ${job.attachment.name} has a ${again.kind} job running (${again.id})`, "Wait for it to end (GET /jobs shows it), then start this one again", "attachment");
    const startedAtMs = Date.now();
    this.#sequence += 1;
    const id = `${new Date(startedAtMs).toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}-${job.kind}-${this.#sequence}-${randomBytes(2).toString("hex")}`;
    const record: AgentJob = { id, kind: job.kind, attachment: job.attachment.name, state: "running", startedAtMs, endedAtMs: null, exitCode: null, result: null, error: null, logPath: join(this.setup.stateDir, "jobs", `${id}.log`) };
    this.#jobs.push(record);
    this.#trim();
    log.info(`job ${id}: ${job.kind} of attachment ${job.attachment.name} started`);
    const done = this.#run(record, job).catch((error: unknown) => {
      // #run records its own failures; this is only a failure to record one.
      log.error(`job ${id}: ${errorOf(error).message}`);
    }).finally(() => this.#running.delete(id));
    this.#running.set(id, done);
    return Response.json({ ok: true, id, kind: job.kind, attachment: job.attachment.name, state: "running", logPath: record.logPath }, { status: 202 });
  }

  /** Drops the oldest ended jobs past agentJobsKeptMax. */
  #trim(): void {
    while (this.#jobs.length > agentJobsKeptMax) {
      const oldest = this.#jobs.findIndex((job) => job.state !== "running");
      if (oldest < 0) return;
      this.#jobs.splice(oldest, 1);
    }
  }

  async #run(record: AgentJob, job: JobRequest): Promise<void> {
    const name = job.attachment.name;
    const end = (state: JobState, fields: Partial<AgentJob>) => {
      Object.assign(record, { state, endedAtMs: Date.now(), ...fields });
      const line = `job ${record.id}: ${record.kind} of attachment ${name} ${state}${record.error === null ? "" : `: ${record.error.code}: ${record.error.message}`}`;
      if (state === "done") log.info(line);
      else log.warn(`${line}; see ${record.logPath}`);
      this.#trim();
    };
    try {
      await mkdir(join(this.setup.stateDir, "jobs"), { recursive: true });
      if (job.holdsAttachment) {
        this.#held.add(name);
        await this.setup.reapply().catch((error: unknown) => log.warn(`job ${record.id}: applying the config with ${name} stopped: ${errorOf(error).message}`));
        const pid = await this.setup.childPid(name);
        if (pid !== null) {
          end("failed", { error: { code: "ATTACHMENT_STILL_RUNNING", message: `attachment ${name} (pid ${pid}) is still running: ${record.kind} needs its client stopped; nothing was changed`, hint: `See the agent's log and ${record.logPath}; start the job again` } });
          return;
        }
      }
      const outcome = await this.#spawn(record, job.args);
      const answer = outcome.result as { ok?: unknown; error?: { code?: unknown; message?: unknown; hint?: unknown } } | null;
      if (outcome.exitCode === 0) end("done", { exitCode: 0, result: outcome.result });
      else {
        const error = typeof answer?.error?.code === "string" && typeof answer.error.message === "string"
          ? { code: answer.error.code, message: answer.error.message, ...(typeof answer.error.hint === "string" ? { hint: answer.error.hint } : {}) }
          : { code: "JOB_FAILED", message: `druvaa ${record.kind} ${outcome.signal === null ? `exited with code ${outcome.exitCode}` : `was ended by ${outcome.signal}`}`, hint: `See its log: ${record.logPath}` };
        end("failed", { exitCode: outcome.exitCode, result: outcome.result, error });
      }
    } catch (error) {
      end("failed", { error: errorOf(error) });
    } finally {
      if (job.holdsAttachment) {
        this.#held.delete(name);
        if (!this.#closing) {
          // Starts the attachment again if the committed config has it enabled; a child that fails to start is retried by the agent (as after a crash).
          await this.setup.reapply().catch((error: unknown) => log.warn(`job ${record.id}: starting attachment ${name} again: ${errorOf(error).message}`));
        }
      }
    }
  }

  /** Runs `druvaa ARGS`: stdout and stderr to the job's log, the last JSON line of stdout as its result. */
  async #spawn(record: AgentJob, args: readonly string[]): Promise<{ exitCode: number | null; signal: string | null; result: unknown }> {
    const fd = openSync(record.logPath, "a");
    let proc: JobProcess;
    try {
      writeSync(fd, `--- ${new Date().toISOString()} druvaa client agent: job ${record.id}: druvaa ${args.join(" ")}\n`);
      proc = Bun.spawn([...selfCommand(), ...args], { stdin: "ignore", stdout: "pipe", stderr: fd, env: { ...process.env, NO_COLOR: "1" } });
    } catch (error) {
      closeSync(fd);
      throw error;
    }
    this.#procs.set(record.id, proc);
    try {
      const decoder = new TextDecoder();
      let stdout = "";
      for await (const chunk of proc.stdout) {
        writeSync(fd, chunk);
        if (stdout.length < jobStdoutBytesMax) stdout += decoder.decode(chunk, { stream: true });
      }
      const code = await proc.exited;
      const signal = proc.signalCode === null ? null : String(proc.signalCode);
      writeSync(fd, `--- ${new Date().toISOString()} job ${record.id}: ${signal === null ? `exit code ${code}` : `signal ${signal}`}\n`);
      return { exitCode: signal === null ? code : null, signal, result: lastJsonLine(stdout) };
    } finally {
      this.#procs.delete(record.id);
      closeSync(fd);
    }
  }

  /** At agent shutdown: every running job gets SIGTERM and is waited for (SIGKILL after jobStopWaitMs). */
  async stopAll(): Promise<void> {
    this.#closing = true;
    await Promise.all([...this.#procs.values()].map(async (proc) => {
      proc.kill("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stopped = await Promise.race([proc.exited.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), jobStopWaitMs)))]);
      clearTimeout(timer);
      if (!stopped) {
        log.error(`job pid ${proc.pid} did not stop ${jobStopWaitMs} ms after SIGTERM: killing it`);
        proc.kill("SIGKILL");
      }
    }));
    await Promise.all(this.#running.values());
  }
}

/** The last line of `text` that parses as a JSON object, or null. */
function lastJsonLine(text: string): unknown {
  const lines = text.split("\n");
  for (let index = lines.length - 1; index >= 0; index -= 1) {
    const line = lines[index]!.trim();
    if (!line.startsWith("{")) continue;
    try {
      return JSON.parse(line) as unknown;
    } catch {
      // not JSON: only logged
    }
  }
  return null;
}
