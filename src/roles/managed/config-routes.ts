/**
 * Managed mode: a role started with `--managed` takes its configuration (the WRLs of a staging
 * server, the devices of a replica, the attachments of a client host) from the panel, pushed with
 * a two-phase commit over the role's control port (HTTPS with admin/panel certificates under TLS,
 * loopback with --insecure: the same authenticated links as everything else). Contract, for every
 * role (docs/panel.md "Managed components"):
 *
 *   GET  /config                        {ok, version, txid, config, pending: {txid, version}|null,
 *                                        applied: {version, atMs, error?}}
 *   POST /config/prepare {txid, version, config}
 *        validates `config` (the component's whole desired configuration, not a diff) against this
 *        host: paths, sizes, ports, names. Valid → saved durably as pending, answers {ok:true}.
 *        Invalid → 409 {ok:false, error:{code, message, hint, field}}; nothing is saved.
 *        version ≤ the committed one → 409 CONFIG_STALE. A newer prepare replaces an older
 *        pending one (the panel is the one coordinator; its newest decision wins).
 *   POST /config/commit {txid}
 *        the pending config of that txid becomes the committed one (saved durably first), then it
 *        is applied (new WRLs/devices/attachments start, removed ones stop). Re-sending the commit
 *        of the committed txid answers ok again (idempotent). Unknown txid → 409 CONFIG_NOT_PREPARED.
 *        An apply that fails leaves the config committed and reports the error in GET /config
 *        `applied.error` (the panel raises CONFIG_APPLY_FAILED); the next start applies it again.
 *   POST /config/abort {txid}
 *        drops the pending config of that txid; ok whether or not it was pending (idempotent).
 *
 * Decision table at start (what the files in STATE_DIR say → what happens):
 *   committed file   pending file   → apply committed; keep pending for the panel to commit/abort
 *   committed file   none           → apply committed
 *   none             pending file   → run with an empty config; keep pending
 *   none             none           → run with an empty config (version 0)
 * What it does not do: decide anything on its own. A pending config is never committed without the
 * panel's commit, so a component that was down when the panel decided converges when the panel
 * re-sends the commit (or a new prepare) on its return.
 */
import { join } from "node:path";
import { DruvaaError, exitCodes } from "../../errors.ts";
import { logger } from "../../log.ts";
import { readJsonState, writeFileAtomic } from "../../io/state-file.ts";
import type { ControlRoute } from "../../io/control-server.ts";
import { rm } from "node:fs/promises";

const log = logger("managed");

/** A refusal of a prepared config, naming the field (a JSON path like `wrls[0].path`) it is about. */
export class ConfigRefusal extends DruvaaError {
  constructor(
    code: string,
    message: string,
    hint: string | undefined,
    readonly field: string,
  ) {
    super(code, message, hint, exitCodes.refused);
  }
  override toJSON() {
    return { ...super.toJSON(), field: this.field };
  }
}

/** What a role plugs in: how to check a config on this host, and how to make it so. */
export interface ManagedRole<Config> {
  /** The empty configuration (version 0): nothing configured. */
  readonly empty: Config;
  /**
   * Decodes and checks `raw` against this host (throws ConfigRefusal with the field at fault; any
   * other error is refused as CONFIG_INVALID). Must not change anything: it may run for a config
   * that is then aborted. `current` is the committed config (for checks like "this WRL exists already").
   */
  validate(raw: unknown, current: Config): Promise<Config>;
  /** Makes `next` the running configuration (from `previous`). Throws if it cannot; may be retried with the same pair. */
  apply(next: Config, previous: Config): Promise<void>;
}

interface Saved<Config> {
  txid: string;
  version: number;
  config: Config;
}

const txidPattern = /^[A-Za-z0-9._:-]{1,80}$/;

export class ManagedConfig<Config> {
  #committed: Saved<Config>;
  #pending: Saved<Config> | undefined;
  #applied: { version: number; atMs: number; error?: { code: string; message: string; hint?: string } } = { version: 0, atMs: 0 };
  /** One prepare/commit/abort/apply at a time. */
  #turn: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly role: ManagedRole<Config>,
    private readonly committedPath: string,
    private readonly pendingPath: string,
    committed: Saved<Config> | undefined,
    pending: Saved<Config> | undefined,
  ) {
    this.#committed = committed ?? { txid: "", version: 0, config: role.empty };
    this.#pending = pending;
  }

  /** Loads the saved configs from `stateDir` (see the decision table); call start() to apply. */
  static async open<Config>(stateDir: string, role: ManagedRole<Config>): Promise<ManagedConfig<Config>> {
    const committedPath = join(stateDir, "managed-config.json");
    const pendingPath = join(stateDir, "managed-config.pending.json");
    const committed = await readJsonState<Saved<Config>>(committedPath);
    const pending = await readJsonState<Saved<Config>>(pendingPath);
    return new ManagedConfig(role, committedPath, pendingPath, committed, pending);
  }

  get version(): number {
    return this.#committed.version;
  }

  get config(): Config {
    return this.#committed.config;
  }

  /** Applies the committed config at start. A failure is reported in GET /config, not thrown: the role keeps serving its control port so the panel can see it and push a fix. */
  async start(): Promise<void> {
    await this.#inTurn(() => this.#apply(this.role.empty));
  }

  /**
   * The role reports that the committed config now runs after all, though its apply failed (a
   * client host's attachment that exited before it was ready and was restarted by its supervisor):
   * the apply error is dropped, so GET /config shows it applied and the panel clears
   * CONFIG_APPLY_FAILED. Nothing happens when the config applied cleanly or is being changed.
   */
  recovered(): void {
    void this.#inTurn(async () => {
      if (this.#applied.error === undefined || this.#applied.version !== this.#committed.version) return;
      log.info(`config version ${this.#committed.version} runs now: its apply error (${this.#applied.error.code}) is cleared`);
      this.#applied = { version: this.#committed.version, atMs: Date.now() };
    });
  }

  status(): Record<string, unknown> {
    return { version: this.#committed.version, txid: this.#committed.txid, pending: this.#pending === undefined ? null : { txid: this.#pending.txid, version: this.#pending.version }, applied: this.#applied };
  }

  routes(): Record<string, ControlRoute> {
    return {
      "/config": () => ({ ok: true, ...this.status(), config: this.#committed.config }),
      "POST /config/prepare": async (request) => answer(() => this.prepare(request)),
      "POST /config/commit": async (request) => answer(() => this.commit(request)),
      "POST /config/abort": async (request) => answer(() => this.abort(request)),
    };
  }

  async prepare(request: Request): Promise<unknown> {
    const body = await bodyOf(request);
    const txid = txidOf(body);
    const version = body.version;
    if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 1) throw new ConfigRefusal("CONFIG_INVALID", "version: a positive integer is needed", undefined, "version");
    return this.#inTurn(async () => {
      if (version <= this.#committed.version) throw new ConfigRefusal("CONFIG_STALE", `version ${version} is not newer than the committed version ${this.#committed.version}`, "The panel re-reads GET /config and prepares a newer version", "version");
      let config: Config;
      try {
        config = await this.role.validate(body.config, this.#committed.config);
      } catch (error) {
        if (error instanceof ConfigRefusal) throw error;
        if (error instanceof DruvaaError) throw new ConfigRefusal(error.code, error.message, error.hint, "config");
        throw new ConfigRefusal("CONFIG_INVALID", `config: ${String(error)}`, undefined, "config");
      }
      if (this.#pending !== undefined && this.#pending.txid !== txid) log.info(`prepare ${txid} (version ${version}) replaces pending ${this.#pending.txid} (version ${this.#pending.version})`);
      const pending = { txid, version, config };
      await writeFileAtomic(this.pendingPath, JSON.stringify(pending));
      this.#pending = pending;
      log.info(`prepared ${txid}: version ${version}`);
      return { ok: true, txid, version };
    });
  }

  async commit(request: Request): Promise<unknown> {
    const txid = txidOf(await bodyOf(request));
    return this.#inTurn(async () => {
      if (this.#committed.txid === txid) return { ok: true, txid, version: this.#committed.version, applied: this.#applied };
      const pending = this.#pending;
      if (pending === undefined || pending.txid !== txid) {
        throw new ConfigRefusal("CONFIG_NOT_PREPARED", `no prepared config ${txid}${pending === undefined ? "" : ` (pending: ${pending.txid})`}`, "Prepare it again: the component lost it, or a newer prepare replaced it", "txid");
      }
      const previous = this.#committed.config;
      await writeFileAtomic(this.committedPath, JSON.stringify(pending));
      this.#committed = pending;
      this.#pending = undefined;
      await rm(this.pendingPath, { force: true });
      log.info(`committed ${txid}: version ${pending.version}`);
      await this.#apply(previous);
      return { ok: true, txid, version: pending.version, applied: this.#applied };
    });
  }

  async abort(request: Request): Promise<unknown> {
    const txid = txidOf(await bodyOf(request));
    return this.#inTurn(async () => {
      if (this.#pending?.txid === txid) {
        this.#pending = undefined;
        await rm(this.pendingPath, { force: true });
        log.info(`aborted ${txid}`);
      }
      return { ok: true, txid };
    });
  }

  async #apply(previous: Config): Promise<void> {
    const { version, config } = this.#committed;
    try {
      await this.role.apply(config, previous);
      this.#applied = { version, atMs: Date.now() };
    } catch (error) {
      const info = error instanceof DruvaaError ? error.toJSON() : { code: "INTERNAL", message: String(error) };
      this.#applied = { version, atMs: Date.now(), error: info };
      log.error(`applying config version ${version}: ${info.message}`);
    }
  }

  #inTurn<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#turn.then(work, work);
    this.#turn = next.catch(() => undefined);
    return next;
  }
}

async function bodyOf(request: Request): Promise<Record<string, unknown>> {
  const body: unknown = await request.json().catch(() => undefined);
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new ConfigRefusal("CONFIG_INVALID", "the body must be a JSON object", 'e.g. {"txid": "tx-1", "version": 2, "config": {...}}', "body");
  return body as Record<string, unknown>;
}

function txidOf(body: Record<string, unknown>): string {
  const txid = body.txid;
  if (typeof txid !== "string" || !txidPattern.test(txid)) throw new ConfigRefusal("CONFIG_INVALID", "txid: 1-80 letters, digits or ._:-", undefined, "txid");
  return txid;
}

/** Refusals answer 409 with the field; other errors go to the control server (500). */
async function answer(work: () => Promise<unknown>): Promise<unknown> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ConfigRefusal) return Response.json({ ok: false, error: error.toJSON() }, { status: 409 });
    throw error;
  }
}
