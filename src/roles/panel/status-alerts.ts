/**
 * Alerts read from a component's own GET /status after each poll round (Monitor's onRound), beside
 * the monitor's COMPONENT_UNREACHABLE. Each is one alert per component and code (the alerts table's
 * key); its message names the WRLs or devices at fault. Raised once, cleared when the condition is
 * gone; each change goes to onAlert (the mailer, whose recipients' filters apply; live streams).
 *
 * Decision table, per reachable component (an unreachable one keeps its alerts as they are: its
 * state is unknown, and COMPONENT_UNREACHABLE says so):
 *   code                 raised when                                         cleared when
 *   WRL_FILL_HIGH        staging: a WRL's fillRatio > 0.80                   every WRL's fillRatio < 0.70
 *   RPO_MISSED           staging: a WRL's rpo.state is "missed"              no WRL's is
 *   CLIENT_DISCONNECTED  client: mode "disconnected" (writes go to the       mode is "connected" or "resyncing"
 *                        change map), for the client or any agent attachment
 *   APPLY_FAILED         replica: a device with `failed: true`, or           every device consistent (or in an
 *                        `consistent: false` outside an unbuffered resync    unbuffered resync)
 * Between the fill thresholds nothing changes (hysteresis: no alert storm from a WRL hovering at 80 %).
 * A status without the fields a row reads (an older role) changes nothing for that row.
 */
import type { Database } from "bun:sqlite";
import { logger } from "../../log.ts";
import { databaseOf, openAlertKeys } from "./history-db.ts";
import type { AlertEvent } from "./mailer.ts";
import type { ComponentStatus } from "./monitor.ts";
import type { PanelStore } from "./store.ts";

const log = logger("panel:alerts");

export const wrlFillRaiseRatio = 0.8;
export const wrlFillClearRatio = 0.7;
export const statusAlertCodes = ["WRL_FILL_HIGH", "RPO_MISSED", "CLIENT_DISCONNECTED", "APPLY_FAILED"] as const;
export type StatusAlertCode = (typeof statusAlertCodes)[number];

/** What a status says about one code: raise (with the message), clear, or nothing known. */
export type Verdict = { raise: string } | "clear" | "unknown";

type Obj = Record<string, unknown>;
const objectOf = (value: unknown): Obj | undefined => (typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Obj) : undefined);
const arrayOf = (value: unknown): Obj[] | undefined => (Array.isArray(value) ? value.map(objectOf).filter((item): item is Obj => item !== undefined) : undefined);
const percent = (ratio: number) => `${Math.round(ratio * 100)} %`;

function stagingVerdicts(name: string, status: Obj): Partial<Record<StatusAlertCode, Verdict>> {
  const wrls = arrayOf(status.wrls);
  if (wrls === undefined) return {};
  const fills = wrls.filter((wrl) => typeof wrl.fillRatio === "number").map((wrl) => ({ name: String(wrl.name), fill: wrl.fillRatio as number }));
  const high = fills.filter((wrl) => wrl.fill > wrlFillRaiseRatio);
  const fill: Verdict = high.length > 0
    ? { raise: `staging ${name}: WRL ${high.map((wrl) => `${wrl.name} is ${percent(wrl.fill)} full`).join(", ")} (alert over ${percent(wrlFillRaiseRatio)}, cleared under ${percent(wrlFillClearRatio)})` }
    : fills.every((wrl) => wrl.fill < wrlFillClearRatio) ? "clear" : "unknown";
  const rpos = wrls.map((wrl) => ({ name: String(wrl.name), rpo: objectOf(wrl.rpo) })).filter((wrl) => typeof wrl.rpo?.state === "string");
  const missed = rpos.filter((wrl) => wrl.rpo!.state === "missed");
  const rpo: Verdict = missed.length > 0
    ? { raise: `staging ${name}: RPO target missed on WRL ${missed.map((wrl) => `${wrl.name} (RPO ${Number(wrl.rpo!.rpoSeconds).toFixed(0)} s, target ${String(wrl.rpo!.targetSeconds)} s)`).join(", ")}` }
    : "clear";
  return { WRL_FILL_HIGH: fill, RPO_MISSED: rpo };
}

function clientVerdict(name: string, status: Obj): Verdict {
  const disconnected: string[] = [];
  let known = false;
  const look = (label: string, client: Obj) => {
    if (typeof client.mode !== "string") return;
    known = true;
    if (client.mode === "disconnected") {
      const seconds = typeof client.disconnectedSeconds === "number" ? ` for ${Math.round(client.disconnectedSeconds)} s` : "";
      const reason = typeof client.disconnectReason === "string" ? `: ${client.disconnectReason}` : "";
      disconnected.push(`${label} disconnected${seconds}${reason}`);
    }
  };
  look(`client ${name}`, status);
  for (const attachment of arrayOf(status.attachments) ?? []) look(`attachment ${String(attachment.name)}`, objectOf(attachment.status) ?? attachment);
  if (disconnected.length > 0) return { raise: `${disconnected.join("; ")} (writes are marked in the change map until a resync)` };
  return known ? "clear" : "unknown";
}

function replicaVerdict(name: string, status: Obj): Verdict {
  const devices = arrayOf(status.devices);
  if (devices === undefined) return "unknown";
  const unbuffered = new Set((arrayOf(status.wrls) ?? []).flatMap((wrl) => {
    const resync = objectOf(wrl.resync);
    return resync?.state === "unbuffered" && Array.isArray(resync.devices) ? resync.devices.map(String) : [];
  }));
  const failed = devices.filter((device) => device.failed === true || (device.consistent === false && !unbuffered.has(String(device.name))));
  if (failed.length > 0) return { raise: `replica ${name}: applying to device ${failed.map((device) => String(device.name)).join(", ")} failed (not consistent until the records are delivered again)` };
  return "clear";
}

/** What one component's status says, per code it can speak to. */
export function verdictsOf(component: ComponentStatus): Partial<Record<StatusAlertCode, Verdict>> {
  if (!component.reachable) return {};
  if (component.role === "staging") return stagingVerdicts(component.name, component.status);
  if (component.role === "client") return { CLIENT_DISCONNECTED: clientVerdict(component.name, component.status) };
  return { APPLY_FAILED: replicaVerdict(component.name, component.status) };
}

export interface StatusAlertsOptions {
  onAlert?: ((event: AlertEvent) => void) | undefined;
  now?: () => Date;
}

export class StatusAlerts {
  private readonly db: Database;

  constructor(
    private readonly store: PanelStore,
    private readonly options: StatusAlertsOptions = {},
  ) {
    this.db = databaseOf(store);
  }

  /** Raises and clears the status alerts of one round's statuses. Touches the database only for changes. */
  evaluate(statuses: readonly ComponentStatus[]): void {
    const open = openAlertKeys(this.db);
    for (const component of statuses) {
      for (const [code, verdict] of Object.entries(verdictsOf(component)) as [StatusAlertCode, Verdict][]) {
        const isOpen = open.has(`${component.name}\n${code}`);
        const event = { component: component.name, role: component.role, code, time: this.options.now?.() ?? new Date() };
        if (typeof verdict === "object" && !isOpen) {
          if (this.store.raiseAlert(component.name, code, verdict.raise)) {
            log.warn(`${code}: ${verdict.raise}`);
            this.notify({ ...event, kind: "raised", message: verdict.raise });
          }
        } else if (verdict === "clear" && isOpen) {
          if (this.store.clearAlert(component.name, code)) {
            log.info(`${code} of ${component.role} ${component.name} cleared`);
            this.notify({ ...event, kind: "cleared", message: clearedMessage(code, component) });
          }
        }
      }
    }
  }

  private notify(event: AlertEvent): void {
    try {
      this.options.onAlert?.(event);
    } catch (error) {
      log.error(`passing on ${event.code} of ${event.component}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

function clearedMessage(code: StatusAlertCode, component: ComponentStatus): string {
  const who = `${component.role} ${component.name}`;
  switch (code) {
    case "WRL_FILL_HIGH":
      return `${who}: every WRL is under ${percent(wrlFillClearRatio)} full again`;
    case "RPO_MISSED":
      return `${who}: every WRL meets its RPO target again`;
    case "CLIENT_DISCONNECTED":
      return `${who}: connected to staging again`;
    case "APPLY_FAILED":
      return `${who}: every device is consistent again`;
  }
}
