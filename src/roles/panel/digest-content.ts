/**
 * The weekly digest's text and HTML (digest.ts gathers the input): each component's state now,
 * the alerts raised and cleared in the window, the activity counted by user and action, and the
 * min/avg/max of throughput, lag, RPO and WRL fill from the metric history. Pure: the same input
 * gives the same mail. Every value from a component, a user or the database is HTML-escaped in
 * the HTML part; each section is at most digestSectionLinesMax lines ("… N more").
 */
import { digestSectionLinesMax } from "./constants.ts";
import type { ComponentStatus } from "./monitor.ts";

export interface DigestAlert {
  component: string;
  code: string;
  message: string;
  raisedAt: string;
  clearedAt: string | null;
}

export interface DigestInput {
  nowMs: number;
  fromMs: number;
  panelUrl: string | undefined;
  components: readonly ComponentStatus[];
  /** Open alert codes by component. */
  openAlerts: ReadonlyMap<string, string[]>;
  alerts: readonly DigestAlert[];
  activity: readonly { user: string; action: string; count: number }[];
  metrics: readonly { series: string; unit: string; min: number; avg: number; max: number }[];
}

export interface DigestMail {
  subject: string;
  text: string;
  html: string;
}

const htmlEscapes: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => htmlEscapes[c]!);

type Obj = Record<string, unknown>;
const arrayOf = (value: unknown): Obj[] => (Array.isArray(value) ? value.filter((item): item is Obj => typeof item === "object" && item !== null) : []);

/** A value with its unit, for people: 12.5 MiB/s, 1.2 s, 85 %. */
export function formatValue(value: number, unit: string): string {
  if (unit === "ratio") return `${(value * 100).toFixed(1)} %`;
  if (unit === "ms") return value >= 1000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
  if (unit === "bytes/s" || unit === "bytes") {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let scaled = value;
    let index = 0;
    while (Math.abs(scaled) >= 1024 && index < units.length - 1) {
      scaled /= 1024;
      index += 1;
    }
    return `${scaled.toFixed(index === 0 ? 0 : 1)} ${units[index]}${unit === "bytes/s" ? "/s" : ""}`;
  }
  return value.toFixed(value % 1 === 0 ? 0 : 2);
}

/** One line about a component's state now. */
export function componentState(component: ComponentStatus): string {
  if (!component.reachable) return `does not answer (${component.error.message})`;
  const status = component.status;
  if (component.role === "staging") {
    const wrls = arrayOf(status.wrls);
    if (wrls.length === 0) return "answers; no WRL";
    return `answers; ${wrls.map((wrl) => `WRL ${String(wrl.name)} ${formatValue(Number(wrl.fillRatio ?? 0), "ratio")} full, lag ${formatValue(Number(wrl.lagSeconds ?? 0) * 1000, "ms")}`).join("; ")}`;
  }
  if (component.role === "replica") {
    const devices = arrayOf(status.devices);
    const inconsistent = devices.filter((device) => device.consistent === false).map((device) => String(device.name));
    return `answers; ${devices.length} device(s)${inconsistent.length > 0 ? `, not consistent: ${inconsistent.join(", ")}` : ", all consistent"}`;
  }
  const attachments = arrayOf(status.attachments);
  if (attachments.length > 0) {
    // A client host agent: each attachment's child state and mode.
    return `answers; ${attachments.map((attachment) => {
      const child = typeof attachment.status === "object" && attachment.status !== null ? (attachment.status as Obj) : {};
      return `attachment ${String(attachment.name)} ${typeof child.mode === "string" ? child.mode : String(attachment.state ?? "unknown")}`;
    }).join("; ")}`;
  }
  return `answers; ${typeof status.mode === "string" ? `mode ${status.mode}, ` : ""}${arrayOf(status.devices).length} device(s)`;
}

interface Section {
  title: string;
  /** Rows of cells; the text part joins them with two spaces. */
  rows: string[][];
  empty: string;
}

function sections(input: DigestInput): Section[] {
  const raised = input.alerts.filter((alert) => Date.parse(alert.raisedAt) >= input.fromMs);
  const cleared = input.alerts.filter((alert) => alert.clearedAt !== null && Date.parse(alert.clearedAt) >= input.fromMs);
  const events = [
    ...raised.map((alert) => ({ at: alert.raisedAt, row: [alert.raisedAt, "raised", alert.code, alert.component, alert.message] })),
    ...cleared.map((alert) => ({ at: alert.clearedAt!, row: [alert.clearedAt!, "cleared", alert.code, alert.component, ""] })),
  ].sort((a, b) => a.at.localeCompare(b.at));
  return [
    {
      title: `Components (${input.components.length})`,
      rows: input.components.map((component) => {
        const open = input.openAlerts.get(component.name) ?? [];
        return [`${component.name} (${component.role})`, componentState(component), open.length === 0 ? "no open alert" : `open: ${open.join(", ")}`];
      }),
      empty: "No component is managed by the panel.",
    },
    { title: `Alerts in the last 7 days: ${raised.length} raised, ${cleared.length} cleared`, rows: events.map((event) => event.row), empty: "No alert was raised or cleared." },
    { title: "Activity by user and action", rows: input.activity.map((entry) => [entry.user, entry.action, String(entry.count)]), empty: "Nobody changed anything." },
    {
      title: "Throughput, lag and WRL fill (min / avg / max)",
      rows: input.metrics.map((metric) => [metric.series, `${formatValue(metric.min, metric.unit)} / ${formatValue(metric.avg, metric.unit)} / ${formatValue(metric.max, metric.unit)}`]),
      empty: "No metric history yet.",
    },
  ];
}

const bounded = (rows: string[][]) => (rows.length > digestSectionLinesMax ? { rows: rows.slice(0, digestSectionLinesMax), more: rows.length - digestSectionLinesMax } : { rows, more: 0 });

export function buildDigest(input: DigestInput): DigestMail {
  const from = new Date(input.fromMs).toISOString().slice(0, 16).replace("T", " ");
  const to = new Date(input.nowMs).toISOString().slice(0, 16).replace("T", " ");
  const openCount = [...input.openAlerts.values()].reduce((sum, codes) => sum + codes.length, 0);
  const subject = `[druvaa] weekly digest: ${input.components.length} components, ${openCount} open alerts`;
  const intro = `The druvaa panel's weekly digest, ${from} to ${to} UTC.`;
  const text: string[] = [intro, ...(input.panelUrl === undefined ? [] : [`Panel: ${input.panelUrl}`]), ""];
  const html: string[] = [`<!DOCTYPE html><html><body style="font-family:sans-serif">`, `<h1>druvaa weekly digest</h1>`, `<p>${escapeHtml(intro)}${input.panelUrl === undefined ? "" : ` Panel: <a href="${escapeHtml(input.panelUrl)}">${escapeHtml(input.panelUrl)}</a>`}</p>`];
  for (const section of sections(input)) {
    const { rows, more } = bounded(section.rows);
    text.push(section.title, "-".repeat(section.title.length));
    html.push(`<h2>${escapeHtml(section.title)}</h2>`);
    if (rows.length === 0) {
      text.push(section.empty);
      html.push(`<p>${escapeHtml(section.empty)}</p>`);
    } else {
      text.push(...rows.map((row) => `  ${row.filter((cell) => cell !== "").join("  ")}`));
      html.push(`<table border="1" cellpadding="4" cellspacing="0">`, ...rows.map((row) => `<tr>${row.map((cell) => `<td>${escapeHtml(cell)}</td>`).join("")}</tr>`), `</table>`);
    }
    if (more > 0) {
      text.push(`  … ${more} more`);
      html.push(`<p>… ${more} more</p>`);
    }
    text.push("");
  }
  html.push(`</body></html>`);
  return { subject, text: text.join("\n"), html: html.join("\n") };
}
