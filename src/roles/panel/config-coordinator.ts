/**
 * The panel's side of the two-phase commit (docs/panel.md "The panel's side"). A change is a
 * TxPlan whose mutate() changes the configuration tables; run(plan):
 *   1. dry run: mutate() in a transaction that is rolled back, computing every component's config
 *      from the tables; the components whose config differs from the decided one are touched
 *      (version = max(decided, acked, the component's own from GET /config) + 1). mutate()
 *      throwing (an ApiError) refuses the change
 *      before anything is sent or recorded. Nothing touched: recorded committed at once.
 *   2. config_tx row `preparing`; prepare sent to every touched component in parallel, each
 *      bounded by configRequestTimeoutMs.
 *   3. all ok → ONE SQLite transaction (the commit point): mutate() again, component_config of
 *      each, config_tx `committed`, activity. Then commit sent to the staging servers and
 *      replicas in parallel, then to the client hosts (their attachments dial the new WRL at
 *      once); one that does not take it is left to the convergence loop (config-converge.ts),
 *      which re-sends it.
 *   4. any refused or unreachable → abort sent to all (best effort: a component that keeps a
 *      pending config of an aborted txid never commits it, and the next prepare replaces it);
 *      config_tx `aborted` with every component's reason; activity.
 * One transaction at a time: run() and the convergence rounds share one queue (a convergence
 * prepare of the decided config must not replace the pending config of a transaction under way),
 * holding at most configTxQueueMax waiting (more: 503 BUSY).
 * At start, a transaction left `preparing` (the panel stopped before deciding) is recorded aborted
 * and aborted at its components. What it does not do: retry a refused prepare.
 */
import { randomBytes } from "node:crypto";
import { logger } from "../../log.ts";
import { configTxQueueMax } from "./constants.ts";
import type { ComponentLink, LinkResult } from "./config-link.ts";
import { emptyConfigs, type ConfigStore, type ConfigTx, type TxComponent, type TxReason } from "./config-store.ts";
import { ApiError } from "./http.ts";
import type { Component, ComponentRole } from "./store.ts";

const log = logger("panel:config");

export interface TxPlan {
  user: string;
  /** One line for the transaction list ("create WRL fast"). */
  summary: string;
  /** The activity log's action ("wrl.create"). */
  action: string;
  detail: Record<string, unknown>;
  /** Changes the tables; runs twice (dry run, then at the commit point), so it must be deterministic. */
  mutate(): void;
}

interface Touched {
  component: Component;
  /** The version to prepare: the decided (or acked) one + 1, or the component's own + 1 if higher. */
  version: number;
  config: unknown;
}

/** Maps a component's JSON path (`attachments[0].devices[0].path`) to the panel's form field (`pair.devicePath`). */
export function formFieldOf(role: ComponentRole, field: string | undefined): string | undefined {
  if (field === undefined) return undefined;
  const key = (pattern: RegExp) => pattern.exec(field)?.[1];
  if (role === "staging") {
    const name = key(/^wrls\[\d+\]\.([A-Za-z]+)/);
    return name === undefined ? "wrl" : name === "replica" ? "wrl.replica" : `wrl.${name}`;
  }
  if (role === "replica") {
    const name = key(/^devices\[\d+\]\.([A-Za-z]+)/);
    const map: Record<string, string> = { name: "pair.deviceName", path: "pair.replicaDevicePath", sizeBytes: "pair.replicaSizeBytes", primarySizeBytes: "pair.deviceSizeBytes" };
    return name === undefined ? "pair" : (map[name] ?? "pair");
  }
  const device = key(/^attachments\[\d+\]\.devices\[\d+\]\.([A-Za-z]+)/);
  if (device !== undefined) return device === "name" ? "pair.deviceName" : "pair.devicePath";
  const name = key(/^attachments\[\d+\]\.([A-Za-z]+)/);
  const map: Record<string, string> = { name: "pair.name", devices: "pair.devicePath", staging: "pair.wrl", wrl: "pair.wrl", export: "pair.export", changemap: "pair.changemap", initialSync: "pair.initialSync", rateLimit: "pair.rateLimit", enabled: "pair.enabled" };
  return name === undefined ? "pair" : (map[name] ?? "pair");
}

export const newTxid = () => `tx-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;

export class ConfigCoordinator {
  #turn: Promise<unknown> = Promise.resolve();
  #waiting = 0;

  constructor(
    private readonly config: ConfigStore,
    private readonly link: ComponentLink,
  ) {}

  /** Runs `work` when the transactions and convergence rounds before it are done. */
  inTurn<T>(work: () => Promise<T>): Promise<T> {
    if (this.#waiting >= configTxQueueMax) throw new ApiError(503, "BUSY", `${this.#waiting} configuration changes are waiting already`, "Retry in a few seconds");
    this.#waiting += 1;
    const run = async () => {
      this.#waiting -= 1;
      return await work();
    };
    const next = this.#turn.then(run, run);
    this.#turn = next.catch(() => undefined);
    return next;
  }

  /** Records transactions left `preparing` by a panel that stopped as aborted, and aborts them at their components. */
  async recover(): Promise<void> {
    await this.inTurn(async () => {
      for (const tx of this.config.listTxInState("preparing")) {
        const components = tx.components.map((c) => ({ ...c, result: "aborted" }));
        const reasons: TxReason[] = [{ component: "panel", code: "PANEL_RESTARTED", message: "the panel stopped before it decided this transaction", hint: "Make the change again" }];
        this.config.transaction(() => {
          this.config.updateTx(tx.txid, "aborted", components, reasons);
          this.config.panel.recordActivity("panel", "config.tx.aborted", { txid: tx.txid, summary: tx.summary, reasons });
        });
        await Promise.all(tx.components.map(async (c) => {
          const component = this.config.panel.getComponent(c.component);
          if (component !== undefined) await this.link.request(component, "POST", "/config/abort", { txid: tx.txid });
        }));
      }
    });
  }

  /** The configs `mutate` would give every component, and which of them differ from the decided ones. */
  plan(mutate: () => void): Touched[] {
    const components = this.config.panel.listComponents();
    const next = this.config.dryRun(() => {
      mutate();
      return components.map((component) => this.config.configOf(component));
    });
    const touched: Touched[] = [];
    components.forEach((component, index) => {
      const decided = this.config.getDecided(component.name);
      const current = decided?.config ?? emptyConfigs[component.role];
      if (JSON.stringify(next[index]) === JSON.stringify(current)) return;
      touched.push({ component, version: Math.max(decided?.version ?? 0, decided?.ackedVersion ?? 0) + 1, config: next[index] });
    });
    return touched;
  }

  /** Runs one transaction (see the file comment); the answer says committed or aborted, with every component's result. */
  run(plan: TxPlan): Promise<ConfigTx> {
    return this.inTurn(() => this.#execute(plan));
  }

  async #execute(plan: TxPlan): Promise<ConfigTx> {
    const touched = this.plan(() => plan.mutate());
    const txid = newTxid();
    const time = new Date().toISOString();
    const base = { txid, time, user: plan.user, summary: plan.summary };
    if (touched.length === 0) {
      const tx: ConfigTx = { ...base, state: "committed", components: [], reasons: [] };
      this.config.transaction(() => {
        plan.mutate();
        this.config.insertTx(tx);
        this.config.panel.recordActivity(plan.user, plan.action, { ...plan.detail, txid, state: "committed" });
      });
      return tx;
    }
    await this.#learnVersions(touched);
    this.config.insertTx({ ...base, state: "preparing", components: touched.map((t) => ({ component: t.component.name, version: t.version, result: "preparing" })), reasons: [] });
    const prepared = await Promise.all(touched.map((t) => this.link.request(t.component, "POST", "/config/prepare", { txid, version: t.version, config: t.config })));
    const reasons = touched.flatMap((t, i) => reasonOf(t.component, prepared[i]!, "prepare"));
    if (reasons.length === 0) {
      try {
        this.config.transaction(() => {
          plan.mutate();
          for (const t of touched) this.config.setDecided(t.component.name, t.version, txid, t.config);
          this.config.updateTx(txid, "committed", touched.map((t) => ({ component: t.component.name, version: t.version, result: "prepared" })), []);
          this.config.panel.recordActivity(plan.user, plan.action, { ...plan.detail, txid, state: "committed", components: touched.map((t) => ({ component: t.component.name, version: t.version })) });
        });
      } catch (error) {
        // The tables changed under the plan (e.g. a component removed meanwhile): not decided.
        const info = error instanceof ApiError ? { code: error.code, message: error.message } : { code: "INTERNAL", message: error instanceof Error ? error.message : String(error) };
        log.error(`${txid}: recording the decision failed: ${info.message}`);
        reasons.push({ component: "panel", ...info });
      }
    }
    if (reasons.length > 0) return await this.#abort(plan, base, touched, prepared, reasons);
    log.info(`${txid} committed (${plan.summary}): ${touched.map((t) => `${t.component.name} v${t.version}`).join(", ")}`);
    // Staging and replica first, then the client hosts: a client's new attachment dials its WRL at
    // once, so the WRL (and the replica's device) should be there when it starts.
    const commitOf = (t: Touched) => this.link.request(t.component, "POST", "/config/commit", { txid });
    const serversFirst = await Promise.all(touched.map((t) => (t.component.role === "client" ? undefined : commitOf(t))));
    const commits = await Promise.all(touched.map((t, i) => serversFirst[i] ?? commitOf(t)));
    const components: TxComponent[] = touched.map((t, i) => ({ component: t.component.name, version: t.version, result: commits[i]!.ok ? "committed" : "commit-pending" }));
    const notes = touched.flatMap((t, i) => reasonOf(t.component, commits[i]!, "commit"));
    this.config.transaction(() => {
      touched.forEach((t, i) => {
        if (commits[i]!.ok) this.config.setAcked(t.component.name, t.version);
      });
      this.config.updateTx(txid, "committed", components, notes);
    });
    return this.config.getTx(txid)!;
  }

  /**
   * A component whose committed version is ahead of what the panel knows (its database restored
   * from a backup, or a new panel) would refuse the prepare as CONFIG_STALE: each touched
   * component's GET /config sets the version to its own + 1 when that is higher. One that does
   * not answer keeps the panel's number (its prepare fails and says why).
   */
  async #learnVersions(touched: Touched[]): Promise<void> {
    await Promise.all(touched.map(async (t) => {
      const answer = await this.link.request(t.component, "GET", "/config");
      const version = answer.ok ? answer.body.version : undefined;
      if (typeof version === "number" && Number.isSafeInteger(version) && version >= t.version) t.version = version + 1;
    }));
  }

  async #abort(plan: TxPlan, base: Pick<ConfigTx, "txid" | "time" | "user" | "summary">, touched: Touched[], prepared: LinkResult[], reasons: TxReason[]): Promise<ConfigTx> {
    const { txid } = base;
    await Promise.all(touched.map((t) => this.link.request(t.component, "POST", "/config/abort", { txid })));
    const components: TxComponent[] = touched.map((t, i) => {
      const answer = prepared[i]!;
      return { component: t.component.name, version: t.version, result: answer.ok ? "aborted" : answer.kind };
    });
    this.config.transaction(() => {
      this.config.updateTx(txid, "aborted", components, reasons);
      this.config.panel.recordActivity(plan.user, plan.action, { ...plan.detail, txid, state: "aborted", reasons });
    });
    log.warn(`${txid} aborted (${plan.summary}): ${reasons.map((r) => `${r.component}: ${r.code} ${r.message}`).join("; ")}`);
    return this.config.getTx(txid)!;
  }
}

/** A component's reason from a failed request ([] when it went well). */
export function reasonOf(component: Component, answer: LinkResult, step: "prepare" | "commit"): TxReason[] {
  if (answer.ok) return [];
  const formField = formFieldOf(component.role, answer.error.field);
  const message = answer.kind === "unreachable" ? `${step}: ${component.name} could not be reached: ${answer.error.message}` : answer.error.message;
  const hint = step === "commit" ? "The panel re-sends the commit until the component takes it" : answer.error.hint;
  return [{ component: component.name, code: answer.error.code, message, ...(hint === undefined ? {} : { hint }), ...(answer.error.field === undefined ? {} : { field: answer.error.field }), ...(formField === undefined ? {} : { formField }) }];
}
