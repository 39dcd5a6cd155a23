/**
 * A pair's restore and failback from the panel: each is a job the pair's client agent runs as a
 * `druvaa restore` / `druvaa failback` child process (src/roles/client/agent-jobs.ts). The panel
 * starts it and lists it; the job goes on without the panel.
 *
 *   restore {to, at?, force?, confirm}  → client agent POST /jobs {kind: "restore", attachment: PAIR,
 *                                          to, at?, force?, replicaRestore}
 *       replicaRestore: the replica's restore port from its live GET /status `addresses.restore`
 *       (a wildcard host replaced by the host of its control address).
 *   failback {keep?, dryRun?, confirm}  → client agent POST /jobs {kind: "failback", attachment: PAIR,
 *                                          replica, staging, keep?, dryRun?}
 *       replica, staging: the control addresses of the WRL's replica and staging components (failback
 *       reads the failover from the one and the records waiting since then from the other).
 *   GET /api/jobs                        → every client agent's GET /jobs, one list, newest first;
 *                                          agents that did not answer in `unreachable`.
 * The answer to an action is {ok, pair, action, job} (the agent's answer: id, kind, state). A
 * refusal of the agent keeps its code, hint and status (400 with its field, 404, 409 JOB_RUNNING or
 * TARGET_IN_USE); an agent that cannot be reached answers 502. Not guaranteed: under TLS the agent
 * holds a client certificate, which the replica's and staging's control ports do not take, so a
 * failback job needs those ports reachable as the command's TLS flags allow (see docs/panel.md).
 */
import { parseAddress, type Address } from "../../io/address.ts";
import type { PreparedTls } from "../../tls/transport-tls.ts";
import type { Caller } from "./auth.ts";
import { configRequestTimeoutMs } from "./constants.ts";
import { ComponentLink, type LinkResult } from "./config-link.ts";
import type { ConfigRoute } from "./config-service.ts";
import type { ConfigStore, Pair } from "./config-store.ts";
import { FieldError, type Fields } from "./config-validate.ts";
import { ApiError } from "./http.ts";
import type { Component } from "./store.ts";

export type JobAction = "restore" | "failback";

export class PairJobs {
  constructor(
    private readonly config: ConfigStore,
    private readonly link: ComponentLink,
  ) {}

  /** Starts the restore or failback job of `pair` on its client agent (confirm checked by the caller). */
  async start(pair: Pair, action: JobAction, fields: Fields, caller: Caller): Promise<unknown> {
    const client = this.config.panel.getComponent(pair.client);
    if (client === undefined) throw new ApiError(409, "NO_CLIENT", `pair "${pair.name}" has no client component`);
    const wrl = this.config.getWrl(pair.wrl);
    const replica = wrl === undefined ? undefined : this.config.panel.getComponent(wrl.replica);
    if (replica === undefined) throw new ApiError(409, "NO_REPLICA", `pair "${pair.name}" has no replica component`);
    let body: Record<string, unknown>;
    if (action === "restore") {
      const to = fields.path("to");
      const at = fields.optionalString("at");
      const force = fields.boolean("force", false);
      body = { kind: "restore", attachment: pair.name, device: pair.deviceName, to, ...(at === undefined ? {} : { at }), ...(force ? { force } : {}), replicaRestore: await this.restoreAddressOf(replica) };
    } else {
      const keep = fields.has("keep") ? fields.enumOf("keep", ["dr", "primary"] as const) : undefined;
      const dryRun = fields.boolean("dryRun", false);
      const staging = this.config.panel.getComponent(wrl!.staging);
      if (staging === undefined) throw new ApiError(409, "NO_STAGING", `WRL "${pair.wrl}" of pair "${pair.name}" has no staging component`);
      body = { kind: "failback", attachment: pair.name, replica: replica.control, staging: staging.control, ...(keep === undefined ? {} : { keep }), ...(dryRun ? { dryRun } : {}) };
    }
    const answer = await this.link.request(client, "POST", "/jobs", body);
    this.config.panel.recordActivity(caller.user.name, `pair.${action}`, { name: pair.name, client: client.name, ...body, ok: answer.ok, ...(answer.ok ? { job: answer.body.id } : { error: answer.error }) });
    if (!answer.ok) throw refusalOf(client, answer);
    return { ok: true, pair: pair.name, action, job: answer.body };
  }

  /** GET /api/jobs: every client agent's jobs, newest first. */
  async list(): Promise<unknown> {
    const clients = this.config.panel.listComponents().filter((component) => component.role === "client");
    const answers = await Promise.all(clients.map(async (client) => [client, await this.link.request(client, "GET", "/jobs")] as const));
    const jobs: Record<string, unknown>[] = [];
    const unreachable: { component: string; error: unknown }[] = [];
    for (const [client, answer] of answers) {
      if (!answer.ok) {
        unreachable.push({ component: client.name, error: answer.error });
        continue;
      }
      const listed = Array.isArray(answer.body.jobs) ? (answer.body.jobs as unknown[]) : [];
      for (const job of listed) if (typeof job === "object" && job !== null) jobs.push({ component: client.name, pair: (job as { attachment?: unknown }).attachment ?? null, ...(job as Record<string, unknown>) });
    }
    const startedAt = (job: Record<string, unknown>) => (typeof job.startedAtMs === "number" ? job.startedAtMs : 0);
    jobs.sort((a, b) => startedAt(b) - startedAt(a));
    return { ok: true, jobs, unreachable };
  }

  /** The replica's restore port: its live GET /status `addresses.restore`, a wildcard host replaced by its control host. */
  private async restoreAddressOf(replica: Component): Promise<string> {
    const answer = await this.link.request(replica, "GET", "/status");
    const restore = answer.ok ? (answer.body.addresses as { restore?: unknown } | null | undefined)?.restore : undefined;
    const unknown = (why: string) => new ApiError(409, "ADDRESS_UNKNOWN", `the restore address of replica "${replica.name}" is not known: ${why}`, "Start the replica (druvaa replica apply serves its restore port, --restore), then try again");
    if (typeof restore !== "string") throw unknown(answer.ok ? "its status shows no restore address" : answer.error.message);
    let address: Address;
    try {
      address = parseAddress(restore, 0);
    } catch {
      throw unknown(`its status shows "${restore}"`);
    }
    if (address.kind !== "tcp" || address.port === 0) throw unknown(`its status shows "${restore}", not HOST:PORT`);
    const wildcard = address.host === undefined || address.host === "0.0.0.0" || address.host === "::" || address.host === "";
    if (!wildcard) return restore;
    const control = parseAddress(replica.control, 0);
    const host = control.kind === "tcp" && control.host !== undefined ? control.host : "127.0.0.1";
    return `${host.includes(":") ? `[${host}]` : host}:${address.port}`;
  }
}

/** An agent's refusal as the panel's answer: its status (400 with the field, 404, 409), or 502 when unreachable. */
function refusalOf(client: Component, answer: Extract<LinkResult, { ok: false }>): ApiError {
  const message = `${client.name}: ${answer.error.message}`;
  if (answer.kind === "unreachable") return new ApiError(502, answer.error.code, message, answer.error.hint);
  if (answer.status === 404 && answer.error.code === "NOT_FOUND") return new ApiError(501, "NOT_IMPLEMENTED", `${client.name} runs no jobs (${answer.error.message})`, "Upgrade druvaa on the client host: its agent serves POST /jobs from this version on");
  if (answer.status === 400 && answer.error.field !== undefined) return new FieldError(answer.error.field, `${client.name}: ${answer.error.message}`, answer.error.hint);
  return new ApiError(answer.status === 404 ? 404 : 409, answer.error.code, message, answer.error.hint);
}

/** The GET /api/jobs route [viewer], for server.ts's table (its own link: the panel's TLS toward components). */
export function jobsRoute(config: ConfigStore, tls: PreparedTls | undefined, requestTimeoutMs = configRequestTimeoutMs): ConfigRoute {
  const jobs = new PairJobs(config, new ComponentLink(tls, requestTimeoutMs));
  return { method: "GET", path: "/api/jobs", role: "viewer", handler: () => jobs.list() };
}
