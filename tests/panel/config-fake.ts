/**
 * A fake managed component for the panel's configuration tests: a small Bun.serve server that
 * keeps the contract of src/roles/managed/config-routes.ts (GET /config, prepare/commit/abort with
 * CONFIG_STALE and CONFIG_NOT_PREPARED), serves GET /status (role, addresses.listen) and, for a
 * client host, GET /probe and the agent's jobs (POST /jobs starts one, running; GET /jobs lists
 * them). It records every request, and can refuse a prepare, be down (its port
 * closed), drop the connection of a commit, lose its pending config, or report an apply failure.
 * A staging server answers POST /wrl/split and /wrl/join (its split WRLs in GET /status `wrls`).
 */
export interface Received {
  method: string;
  path: string;
  body: any;
}

interface Saved {
  txid: string;
  version: number;
  config: unknown;
}

export class FakeComponent {
  committed: Saved = { txid: "", version: 0, config: null };
  pending: Saved | undefined;
  received: Received[] = [];
  /** The next prepares answer 409 with this error. */
  refusePrepare: { code: string; message: string; field?: string } | undefined;
  /** The next commit closes the port (every connection cut) instead of answering. */
  downOnCommit = false;
  /** GET /config reports this apply error for the committed version. */
  applyError: { code: string; message: string } | undefined;
  /** The client host's attachments in GET /status. */
  attachments: Record<string, unknown>[] = [];
  /** A replica's restore port in GET /status `addresses.restore` (absent when undefined). */
  restoreAddress: string | undefined;
  /** A client host's jobs, as GET /jobs lists them (POST /jobs adds one, running). */
  jobs: Record<string, unknown>[] = [];
  /** A staging server's split WRLs (POST /wrl/split adds one, /wrl/join drops it), in GET /status `wrls[].split`. */
  splitWrls = new Map<string, { sinceMs: number; by?: string }>();
  /** GET /probe answers this size for every path (null: the path is missing). */
  probeSizeBytes: number | null = 1024 * 1024 * 1024;
  private server: ReturnType<typeof Bun.serve> | undefined;
  port = 0;

  constructor(
    readonly role: "client" | "staging" | "replica",
    readonly listen: string,
  ) {}

  get control(): string {
    return `127.0.0.1:${this.port}`;
  }

  start(): void {
    this.server = Bun.serve({ hostname: "127.0.0.1", port: this.port, fetch: (request) => this.handle(request) });
    this.port = this.server.port!;
  }

  /** Closes the port (requests in flight are cut). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    await server?.stop(true);
  }

  /** The same port again, the same saved state (a restart that kept its files). */
  restart(): void {
    if (this.server === undefined) this.start();
  }

  losePending(): void {
    this.pending = undefined;
  }

  /** Requests of `path` (e.g. "/config/prepare"). */
  requests(path: string): Received[] {
    return this.received.filter((r) => r.path === path);
  }

  private async handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const body: any = request.method === "POST" ? await request.json().catch(() => undefined) : undefined;
    this.received.push({ method: request.method, path: url.pathname, body: body ?? Object.fromEntries(url.searchParams) });
    const refuse = (code: string, message: string, field?: string) => Response.json({ ok: false, error: { code, message, ...(field === undefined ? {} : { field }) } }, { status: 409 });
    const route = `${request.method} ${url.pathname}`;
    if (route === "GET /status") {
      return Response.json({ role: this.role, addresses: { listen: this.listen, control: this.control, ...(this.restoreAddress === undefined ? {} : { restore: this.restoreAddress }) }, ...(this.role === "client" ? { agent: true, attachments: this.attachments } : {}), ...(this.role === "staging" ? { wrls: [...this.splitWrls].map(([name, split]) => ({ name, split })) } : {}) });
    }
    if (route === "GET /probe" && this.role === "client") {
      return Response.json({ ok: true, path: url.searchParams.get("path"), exists: this.probeSizeBytes !== null, kind: this.probeSizeBytes === null ? "missing" : "block", sizeBytes: this.probeSizeBytes, inUse: null });
    }
    if (route === "GET /config") {
      const applied = { version: this.committed.version, atMs: Date.now(), ...(this.applyError === undefined ? {} : { error: this.applyError }) };
      return Response.json({ ok: true, version: this.committed.version, txid: this.committed.txid, config: this.committed.config, pending: this.pending === undefined ? null : { txid: this.pending.txid, version: this.pending.version }, applied });
    }
    if (route === "POST /config/prepare") {
      if (this.refusePrepare !== undefined) return refuse(this.refusePrepare.code, this.refusePrepare.message, this.refusePrepare.field);
      if (body.version <= this.committed.version) return refuse("CONFIG_STALE", `version ${body.version} is not newer than ${this.committed.version}`, "version");
      this.pending = { txid: body.txid, version: body.version, config: body.config };
      return Response.json({ ok: true, txid: body.txid, version: body.version });
    }
    if (route === "POST /config/commit") {
      if (this.downOnCommit) {
        this.downOnCommit = false;
        void this.stop();
        return await new Promise<Response>(() => undefined);
      }
      if (this.committed.txid === body.txid) return Response.json({ ok: true, txid: body.txid, version: this.committed.version });
      if (this.pending === undefined || this.pending.txid !== body.txid) return refuse("CONFIG_NOT_PREPARED", `no prepared config ${body.txid}`, "txid");
      this.committed = this.pending;
      this.pending = undefined;
      return Response.json({ ok: true, txid: body.txid, version: this.committed.version, applied: { version: this.committed.version, atMs: Date.now(), ...(this.applyError === undefined ? {} : { error: this.applyError }) } });
    }
    if (route === "POST /config/abort") {
      if (this.pending?.txid === body.txid) this.pending = undefined;
      return Response.json({ ok: true, txid: body.txid });
    }
    if ((route === "POST /attachment/resync" || route === "POST /attachment/verify") && this.role === "client") {
      return Response.json({ ok: true, name: url.searchParams.get("name"), ...(body ?? {}) });
    }
    if (route === "POST /jobs" && this.role === "client") {
      if (this.jobs.some((job) => job.attachment === body.attachment && job.state === "running")) return refuse("JOB_RUNNING", `attachment ${body.attachment} has a job running`, "attachment");
      const job = { id: `job-${this.jobs.length + 1}`, kind: body.kind, attachment: body.attachment, state: "running", startedAtMs: Date.now() + this.jobs.length, endedAtMs: null, exitCode: null, result: null, error: null, logPath: `/var/lib/druvaa/client/jobs/job-${this.jobs.length + 1}.log` };
      this.jobs.push(job);
      return Response.json({ ok: true, id: job.id, kind: job.kind, attachment: job.attachment, state: "running" }, { status: 202 });
    }
    if (route === "GET /jobs" && this.role === "client") return Response.json({ ok: true, jobs: [...this.jobs].reverse() });
    if ((route === "POST /wrl/split" || route === "POST /wrl/join") && this.role === "staging") {
      if (typeof body?.wrl !== "string") return Response.json({ ok: false, error: { code: "USAGE", message: "`wrl` is required" } }, { status: 400 });
      const known = this.splitWrls.get(body.wrl);
      if (route === "POST /wrl/join") {
        this.splitWrls.delete(body.wrl);
        return Response.json({ ok: true, wrl: body.wrl, wasSplit: known !== undefined });
      }
      const split = known ?? { sinceMs: Date.now(), ...(typeof body.by === "string" ? { by: body.by } : {}) };
      this.splitWrls.set(body.wrl, split);
      return Response.json({ ok: true, wrl: body.wrl, split, changed: known === undefined, appliedLsn: 0 });
    }
    if (route === "POST /snapshots" && this.role === "replica") return Response.json({ ok: true, id: 7, device: body.device, export: body.export });
    return Response.json({ ok: false, error: { code: "NOT_FOUND", message: `no such endpoint: ${route}` } }, { status: 404 });
  }
}

/** Polls `check` until it returns true (each try after a short pause); fails after `tries`. */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, tries = 600): Promise<void> {
  for (let i = 0; i < tries; i += 1) {
    if (await check()) return;
    await Bun.sleep(50);
  }
  throw new Error(`never happened: ${what}`);
}
