/**
 * Convergence: every intervalMs (and on kick()) each component with a decided config is asked for
 * its GET /config, in the coordinator's queue (never while a transaction is preparing). Decision
 * table (component's answer → what the panel does):
 *
 *   unreachable                               → nothing now (the monitor raises COMPONENT_UNREACHABLE);
 *                                               counts as behind
 *   version ≥ decided                         → acked = version; CONFIG_BEHIND cleared
 *   version < decided                         → re-send commit {decided txid}
 *     commit answers CONFIG_NOT_PREPARED      → prepare {decided txid, version, config}, then commit
 *     commit ok                               → acked = decided; CONFIG_BEHIND cleared
 *     anything else                           → behind
 *   behind for more than behindGraceMs        → CONFIG_BEHIND raised (once; cleared when it catches up)
 *   applied.error for its committed version   → CONFIG_APPLY_FAILED raised; cleared once applied cleanly
 *   pending txid of a transaction we aborted  → abort re-sent (its abort was lost)
 *
 * What it does not do: decide anything new. It only delivers decisions recorded in component_config.
 */
import { logger } from "../../log.ts";
import { configBehindGraceMs, configConvergeIntervalMs } from "./constants.ts";
import type { ConfigCoordinator } from "./config-coordinator.ts";
import type { ComponentLink, LinkResult } from "./config-link.ts";
import type { ConfigStore, DecidedConfig } from "./config-store.ts";
import type { AlertEvent } from "./mailer.ts";
import type { Component } from "./store.ts";

const log = logger("panel:converge");

export const behindCode = "CONFIG_BEHIND";
export const applyFailedCode = "CONFIG_APPLY_FAILED";

export interface ConvergeOptions {
  intervalMs?: number;
  behindGraceMs?: number;
  onAlert?: ((event: AlertEvent) => void) | undefined;
  now?: () => number;
}

export class ConfigConverger {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private round: Promise<void> | undefined;
  private stopped = false;
  /** When each component was first seen behind (ms), until it catches up. */
  private readonly behindSince = new Map<string, number>();

  constructor(
    private readonly config: ConfigStore,
    private readonly coordinator: ConfigCoordinator,
    private readonly link: ComponentLink,
    private readonly options: ConvergeOptions = {},
  ) {}

  start(): void {
    const run = () => {
      this.timer = undefined;
      if (this.stopped) return;
      this.round = this.runRound().finally(() => {
        if (!this.stopped) this.timer = setTimeout(run, this.options.intervalMs ?? configConvergeIntervalMs);
      });
    };
    this.timer = setTimeout(run, 0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.round;
  }

  /** One round now (in the queue); never throws. */
  async runRound(): Promise<void> {
    try {
      await this.coordinator.inTurn(async () => {
        const rows = this.config.listDecided();
        await Promise.all(rows.map(async (decided) => {
          const component = this.config.panel.getComponent(decided.component);
          if (component !== undefined && !this.stopped) await this.converge(component, decided);
        }));
      });
    } catch (error) {
      log.error(`convergence round: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private async converge(component: Component, decided: DecidedConfig): Promise<void> {
    const got = await this.link.request(component, "GET", "/config");
    if (!got.ok) return this.behind(component, decided, got.error.message);
    const version = Number(got.body.version);
    const pending = got.body.pending as { txid?: unknown } | null | undefined;
    if (typeof pending?.txid === "string" && pending.txid !== decided.txid && this.config.getTx(pending.txid)?.state === "aborted") {
      await this.link.request(component, "POST", "/config/abort", { txid: pending.txid });
    }
    if (Number.isSafeInteger(version) && version >= decided.version) {
      this.caughtUp(component, version);
      this.checkApplied(component, got.body.applied, version);
      return;
    }
    let commit: LinkResult = await this.link.request(component, "POST", "/config/commit", { txid: decided.txid });
    if (!commit.ok && commit.kind === "refused" && commit.error.code === "CONFIG_NOT_PREPARED") {
      log.info(`${component.name} lost the pending config ${decided.txid}: preparing it again`);
      const prepared = await this.link.request(component, "POST", "/config/prepare", { txid: decided.txid, version: decided.version, config: decided.config });
      commit = prepared.ok ? await this.link.request(component, "POST", "/config/commit", { txid: decided.txid }) : prepared;
    }
    if (!commit.ok) return this.behind(component, decided, `${commit.error.code}: ${commit.error.message}`);
    log.info(`${component.name} caught up: config version ${decided.version} (${decided.txid}) committed`);
    this.config.panel.recordActivity("panel", "config.converged", { component: component.name, version: decided.version, txid: decided.txid });
    this.caughtUp(component, decided.version);
    this.checkApplied(component, commit.body.applied, decided.version);
  }

  private caughtUp(component: Component, version: number): void {
    this.config.setAcked(component.name, version);
    this.behindSince.delete(component.name);
    if (this.config.panel.clearAlert(component.name, behindCode)) {
      this.notify(component, "cleared", behindCode, `${component.role} ${component.name} is on the decided config again (version ${version})`);
    }
  }

  private behind(component: Component, decided: DecidedConfig, why: string): void {
    const nowMs = (this.options.now ?? Date.now)();
    const since = this.behindSince.get(component.name) ?? nowMs;
    this.behindSince.set(component.name, since);
    if (nowMs - since < (this.options.behindGraceMs ?? configBehindGraceMs)) return;
    const message = `${component.role} ${component.name} is not on the decided config version ${decided.version} (${decided.txid}): ${why}`;
    if (this.config.panel.raiseAlert(component.name, behindCode, message)) {
      log.warn(message);
      this.notify(component, "raised", behindCode, message);
    }
  }

  private checkApplied(component: Component, applied: unknown, version: number): void {
    const info = (typeof applied === "object" && applied !== null ? applied : {}) as { version?: unknown; error?: { code?: unknown; message?: unknown } };
    if (info.version !== version) return;
    if (info.error !== undefined && info.error !== null) {
      const message = `${component.role} ${component.name} could not apply config version ${version}: ${String(info.error.code ?? "")} ${String(info.error.message ?? "")}`.trim();
      if (this.config.panel.raiseAlert(component.name, applyFailedCode, message)) {
        log.warn(message);
        this.notify(component, "raised", applyFailedCode, message);
      }
    } else if (this.config.panel.clearAlert(component.name, applyFailedCode)) {
      this.notify(component, "cleared", applyFailedCode, `${component.role} ${component.name} applied config version ${version}`);
    }
  }

  private notify(component: Component, kind: "raised" | "cleared", code: string, message: string): void {
    this.options.onAlert?.({ kind, component: component.name, role: component.role, code, message, time: new Date() });
  }
}
