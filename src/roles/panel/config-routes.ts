/**
 * The configuration API (docs/panel.md "Configuration"): WRLs, change maps, pairs, the wizard and
 * the transaction list. Every change is one two-phase-commit transaction (config-coordinator.ts):
 *   committed → 201 {ok, wrl|changemap|pair, tx}
 *   aborted   → 409 {ok:false, error:{code: CONFIG_REFUSED, message, hint, field}, tx}: the first
 *               component's reason, `field` the form field it is about; tx.reasons has all of them
 * Refusals before anything is sent (bad field, name taken, WRL in use) → 400/404/409 with `field`.
 * Pair actions, probe and sizing: config-actions.ts.
 */
import type { Caller } from "./auth.ts";
import { configTxLimitDefault, configTxLimitMax } from "./constants.ts";
import type { ConfigCoordinator, TxPlan } from "./config-coordinator.ts";
import type { NewChangemap, NewPair, NewWrl } from "./config-plans.ts";
import { ConfigPlans } from "./config-plans.ts";
import type { ConfigStore, ConfigTx } from "./config-store.ts";
import { checkConfigName, Fields, FieldError, withFields } from "./config-validate.ts";
import { ApiError, integerParam, jsonAnswer, readJsonBody } from "./http.ts";
import type { PairStates } from "./config-actions.ts";

/** The answer to a transaction: `status` (201: created) with `entity` when committed, 409 with the first reason when aborted. */
export function txAnswer(tx: ConfigTx, entity: Record<string, unknown>, status = 201): Response {
  if (tx.state === "committed") return jsonAnswer({ ok: true, ...entity, tx }, status);
  const first = tx.reasons[0];
  const message = first === undefined ? "the change was not made" : `${first.component}: ${first.message}`;
  const error = { code: "CONFIG_REFUSED", message, ...(first?.hint === undefined ? {} : { hint: first.hint }), ...(first?.formField === undefined ? {} : { field: first.formField }), ...(first === undefined ? {} : { reason: first.code }) };
  return jsonAnswer({ ok: false, error, tx }, 409);
}

export class ConfigRoutes {
  constructor(
    private readonly config: ConfigStore,
    private readonly coordinator: ConfigCoordinator,
    private readonly plans: ConfigPlans,
    private readonly states: PairStates,
  ) {}

  private change(plan: Omit<TxPlan, "user">, caller: Caller): Promise<ConfigTx> {
    return this.coordinator.run({ ...plan, user: caller.user.name });
  }

  // WRLs

  wrls(): unknown {
    const wrls = this.config.listWrls().map((wrl) => this.publicWrl(wrl.name));
    return { ok: true, wrls };
  }

  private publicWrl(name: string): Record<string, unknown> | undefined {
    const wrl = this.config.getWrl(name);
    if (wrl === undefined) return undefined;
    const { stagingAddress, ...options } = wrl.options;
    return { name: wrl.name, staging: wrl.staging, stagingAddress, paths: wrl.paths, sizeBytes: wrl.sizeBytes, replica: wrl.replica, replicaAddress: wrl.replicaAddress, compression: options.compression ?? null, rateLimit: options.rateLimit ?? null, rpo: options.rpo ?? null, pairs: this.config.pairsOfWrl(wrl.name), createdBy: wrl.createdBy, createdAt: wrl.createdAt };
  }

  addWrl(request: Request, caller: Caller): Promise<unknown> {
    return withFields(async () => {
      const wrl = await this.plans.readWrl(new Fields(await readJsonBody(request), "wrl"), caller.user.name);
      const tx = await this.change({ summary: `create WRL ${wrl.name} on ${wrl.staging}`, action: "wrl.create", detail: { name: wrl.name, staging: wrl.staging, replica: wrl.replica }, mutate: () => this.plans.insertWrl(wrl) }, caller);
      return txAnswer(tx, { wrl: this.publicWrl(wrl.name) ?? wrl });
    });
  }

  deleteWrl(name: string, caller: Caller): Promise<unknown> {
    return withFields(async () => {
      checkConfigName(name, "name");
      if (this.config.getWrl(name) === undefined) throw new ApiError(404, "NOT_FOUND", `no WRL "${name}"`, "GET /api/wrls lists them");
      const tx = await this.change({
        summary: `remove WRL ${name}`, action: "wrl.remove", detail: { name },
        mutate: () => {
          const pairs = this.config.pairsOfWrl(name);
          if (pairs.length > 0) throw new FieldError("name", `WRL "${name}" is used by pair(s) ${pairs.join(", ")}`, "Remove those pairs first", 409, "WRL_IN_USE");
          if (!this.config.deleteWrl(name)) throw new ApiError(404, "NOT_FOUND", `no WRL "${name}"`);
        },
      }, caller);
      return txAnswer(tx, { removed: name }, 200);
    });
  }

  // Change maps

  changemaps(): unknown {
    return { ok: true, changemaps: this.config.listChangemaps().map((changemap) => ({ ...changemap, pairs: this.config.pairsOfChangemap(changemap.name) })) };
  }

  addChangemap(request: Request, caller: Caller): Promise<unknown> {
    return withFields(async () => {
      const changemap = this.plans.readChangemap(new Fields(await readJsonBody(request), "changemap"), caller.user.name);
      const tx = await this.change({ summary: `create change map ${changemap.name} on ${changemap.client}`, action: "changemap.create", detail: { name: changemap.name, client: changemap.client, path: changemap.path }, mutate: () => this.plans.insertChangemap(changemap) }, caller);
      return txAnswer(tx, { changemap: this.config.getChangemap(changemap.name) ?? changemap });
    });
  }

  deleteChangemap(name: string, caller: Caller): Promise<unknown> {
    return withFields(async () => {
      checkConfigName(name, "name");
      if (this.config.getChangemap(name) === undefined) throw new ApiError(404, "NOT_FOUND", `no change map "${name}"`, "GET /api/changemaps lists them");
      const tx = await this.change({
        summary: `remove change map ${name}`, action: "changemap.remove", detail: { name },
        mutate: () => {
          const pairs = this.config.pairsOfChangemap(name);
          if (pairs.length > 0) throw new FieldError("name", `change map "${name}" is used by pair(s) ${pairs.join(", ")}`, "Remove those pairs first", 409, "CHANGEMAP_IN_USE");
          if (!this.config.deleteChangemap(name)) throw new ApiError(404, "NOT_FOUND", `no change map "${name}"`);
        },
      }, caller);
      return txAnswer(tx, { removed: name }, 200);
    });
  }

  // Pairs

  async pairs(): Promise<unknown> {
    return { ok: true, pairs: await this.states.describe(this.config.listPairs()) };
  }

  private replicaOfWrl = (name: string): string | undefined => this.config.getWrl(name)?.replica;

  addPair(request: Request, caller: Caller): Promise<unknown> {
    return withFields(async () => {
      const pair = await this.plans.readPair(new Fields(await readJsonBody(request), "pair"), caller.user.name, this.replicaOfWrl);
      const tx = await this.change({ summary: `create pair ${pair.name} (${pair.client}:${pair.devicePath} → WRL ${pair.wrl})`, action: "pair.create", detail: { name: pair.name, client: pair.client, wrl: pair.wrl }, mutate: () => this.plans.insertPair(pair) }, caller);
      return txAnswer(tx, { pair: await this.onePair(pair.name, pair) });
    });
  }

  private async onePair(name: string, fallback: NewPair): Promise<unknown> {
    const pair = this.config.getPair(name);
    return pair === undefined ? fallback : (await this.states.describe([pair]))[0];
  }

  deletePair(name: string, caller: Caller): Promise<unknown> {
    return withFields(async () => {
      checkConfigName(name, "name");
      if (this.config.getPair(name) === undefined) throw new ApiError(404, "NOT_FOUND", `no pair "${name}"`, "GET /api/pairs lists them");
      const tx = await this.change({
        summary: `remove pair ${name}`, action: "pair.remove", detail: { name },
        mutate: () => {
          if (!this.config.deletePair(name)) throw new ApiError(404, "NOT_FOUND", `no pair "${name}"`);
        },
      }, caller);
      return txAnswer(tx, { removed: name }, 200);
    });
  }

  /** The wizard's whole set ({wrl?, changemap?, pair}) as one transaction. */
  wizard(request: Request, caller: Caller): Promise<unknown> {
    return withFields(async () => {
      const body = new Fields(await readJsonBody(request), "");
      const wrlFields = body.optionalObject("wrl");
      const changemapFields = body.optionalObject("changemap");
      const pairFields = body.object("pair");
      const wrl: NewWrl | undefined = wrlFields === undefined ? undefined : await this.plans.readWrl(wrlFields, caller.user.name);
      const changemap: NewChangemap | undefined = changemapFields === undefined ? undefined : this.plans.readChangemap(changemapFields, caller.user.name);
      const pair = await this.plans.readPair(pairFields, caller.user.name, (name) => (wrl?.name === name ? wrl.replica : this.replicaOfWrl(name)));
      const parts = [wrl === undefined ? undefined : `WRL ${wrl.name}`, changemap === undefined ? undefined : `change map ${changemap.name}`, `pair ${pair.name}`].filter((part) => part !== undefined);
      const tx = await this.change({
        summary: `wizard: ${parts.join(", ")}`, action: "wizard", detail: { wrl: wrl?.name ?? null, changemap: changemap?.name ?? null, pair: pair.name },
        mutate: () => {
          if (wrl !== undefined) this.plans.insertWrl(wrl);
          if (changemap !== undefined) this.plans.insertChangemap(changemap);
          this.plans.insertPair(pair);
        },
      }, caller);
      return txAnswer(tx, { wrl: wrl === undefined ? null : (this.publicWrl(wrl.name) ?? wrl), changemap: changemap === undefined ? null : (this.config.getChangemap(changemap.name) ?? changemap), pair: await this.onePair(pair.name, pair) });
    });
  }

  /** Starts or stops a pair: its `enabled` in a new transaction (only its client host's config changes). */
  setEnabled(name: string, enabled: boolean, caller: Caller): Promise<ConfigTx> {
    return this.change({
      summary: `${enabled ? "start" : "stop"} pair ${name}`, action: enabled ? "pair.start" : "pair.stop", detail: { name },
      mutate: () => {
        if (!this.config.setPairEnabled(name, enabled)) throw new ApiError(404, "NOT_FOUND", `no pair "${name}"`);
      },
    }, caller);
  }

  // Transactions

  transactions(url: URL): Promise<unknown> {
    return withFields(() => ({ ok: true, transactions: this.config.listTx(integerParam(url, "limit", configTxLimitDefault, 1, configTxLimitMax)) }));
  }
}
