/**
 * The panel's view of its components: a component's live GET /status (its control port, with a
 * short timeout), and a background poll every pollIntervalMs that keeps the alert table true —
 * COMPONENT_UNREACHABLE raised once when a component stops answering, cleared when it answers
 * again. Rounds never overlap (the next is scheduled when one ends); stop() waits for the round
 * under way. Each alert raised or cleared is passed to onAlert (the mailer, which only queues).
 * A component removed from the panel has its alerts cleared without a notice. After each background
 * round the statuses go to onRound (history.ts, status-alerts.ts, live.ts): alerts read from a
 * component's own status (WRL fill, RPO, disconnected clients, failed applies) are status-alerts.ts's.
 */
import { controlRequest } from "../../commands/control-client.ts";
import { DruvaaError } from "../../errors.ts";
import { logger } from "../../log.ts";
import type { PreparedTls } from "../../tls/transport-tls.ts";
import { pollIntervalMs, statusTimeoutMs } from "./constants.ts";
import type { AlertEvent } from "./mailer.ts";
import type { Component, ComponentRole, PanelStore } from "./store.ts";

const log = logger("panel:monitor");

export const unreachableCode = "COMPONENT_UNREACHABLE";

/** The default control port of each role, for addresses given without one. */
export const controlPortDefaults: Record<ComponentRole, number> = { client: 6007, staging: 6002, replica: 6004 };

export type ComponentStatus =
  | { name: string; role: ComponentRole; control: string; reachable: true; status: Record<string, unknown> }
  | { name: string; role: ComponentRole; control: string; reachable: false; error: { code: string; message: string; hint?: string } };

export interface MonitorOptions {
  intervalMs?: number;
  timeoutMs?: number;
  /** TLS toward components that run with TLS (the panel's own certificate); plain HTTP when absent. */
  tls?: PreparedTls | undefined;
  /** Told of each alert raised or cleared (the mailer: it only queues, so the poll never waits). */
  onAlert?: ((event: AlertEvent) => void) | undefined;
  /** Told each background round's statuses (history, status alerts, live streams); an error it throws is logged. */
  onRound?: ((statuses: ComponentStatus[]) => void) | undefined;
}

export class Monitor {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private round: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly store: PanelStore,
    private readonly options: MonitorOptions = {},
  ) {}

  /** One component's live status; updates its alert either way. Never throws for an unreachable one. */
  async check(component: Component): Promise<ComponentStatus> {
    const base = { name: component.name, role: component.role, control: component.control };
    const result = await this.fetchStatus(component).then(
      (status): ComponentStatus => ({ ...base, reachable: true, status }),
      (error: unknown): ComponentStatus => ({ ...base, reachable: false, error: error instanceof DruvaaError ? error.toJSON() : { code: "INTERNAL", message: String(error) } }),
    );
    if (this.stopped) return result;
    const event = { component: component.name, role: component.role, code: unreachableCode, time: new Date() };
    if (result.reachable) {
      if (this.store.clearAlert(component.name, unreachableCode)) {
        log.info(`${component.name} (${component.control}) answers again`);
        this.options.onAlert?.({ ...event, kind: "cleared", message: `${component.role} ${component.name} at ${component.control} answers again` });
      }
    } else {
      const message = `${component.role} ${component.name} at ${component.control} does not answer: ${result.error.message}`;
      if (this.store.raiseAlert(component.name, unreachableCode, message)) {
        log.warn(`${component.name} (${component.control}) unreachable: ${result.error.message}`);
        this.options.onAlert?.({ ...event, kind: "raised", message });
      }
    }
    return result;
  }

  private async fetchStatus(component: Component): Promise<Record<string, unknown>> {
    const timeoutMs = this.options.timeoutMs ?? statusTimeoutMs;
    const response = await controlRequest(component.control, "/status", { signal: AbortSignal.timeout(timeoutMs) }, controlPortDefaults[component.role], this.options.tls);
    const body = (await response.json().catch(() => undefined)) as Record<string, unknown> | undefined;
    if (!response.ok || typeof body !== "object" || body === null || typeof body.role !== "string") {
      throw new DruvaaError("BAD_STATUS", `${component.control} answered ${response.status} without a druvaa status`, "Is this the component's control port?");
    }
    if (body.role !== component.role) {
      throw new DruvaaError("WRONG_ROLE", `${component.control} is a ${body.role}, not a ${component.role}`, "Check the component's control address");
    }
    return body;
  }

  /** Every component's live status, in name order. */
  async checkAll(): Promise<ComponentStatus[]> {
    return await Promise.all(this.store.listComponents().map((component) => this.check(component)));
  }

  /** Starts the background poll (the first round at once). */
  start(): void {
    const run = () => {
      this.timer = undefined;
      if (this.stopped) return;
      this.round = this.checkAll().then(
        (statuses) => {
          try {
            if (!this.stopped) this.options.onRound?.(statuses);
          } catch (error) {
            log.error(`after the status poll: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
          }
        },
        (error: unknown) => log.error(`status poll: ${error instanceof Error ? error.message : String(error)}`),
      ).finally(() => {
        if (!this.stopped) this.timer = setTimeout(run, this.options.intervalMs ?? pollIntervalMs);
      });
    };
    run();
  }

  /** Stops the poll and waits for the round under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.round;
  }
}
