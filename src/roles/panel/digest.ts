/**
 * The weekly digest: one mail to every mail recipient (their alert filters do not apply: it is a
 * summary), built by digest-content.ts and sent through the Mailer's queue, so it is retried like
 * an alert and a mail that still fails is a `mail.failed` activity entry.
 *
 * Schedule (digest_settings, migration 4): weekday 0–6 (0 = Sunday) and hour 0–23, in UTC. A
 * check every digestCheckIntervalMs sends one when it is due:
 *   enabled, the newest slot (weekday at hour:00) is past by less than digestLateMaxMs,
 *   last_sent_ms is before that slot, and at least digestGapMinMs ago   → send
 *   otherwise                                                           → nothing
 * last_sent_ms is written before the mail is queued (at most once: a crash between the two loses
 * that week's digest rather than sending it twice), and read from the database, so a restart
 * neither repeats a digest nor forgets one that is due (one missed while the panel was down goes
 * out at the next start within digestLateMaxMs of its slot; later than that it is skipped). Without enabled mail settings or recipients nothing is
 * sent and nothing recorded: it goes out once mail is set up. A digest sent by hand (POST
 * /api/settings/digest/send) does not move the schedule.
 */
import type { Database } from "bun:sqlite";
import { logger } from "../../log.ts";
import { digestCheckIntervalMs, digestGapMinMs, digestLateMaxMs, digestSectionLinesMax, digestWindowMs } from "./constants.ts";
import { buildDigest, type DigestAlert, type DigestMail } from "./digest-content.ts";
import { databaseOf } from "./history-db.ts";
import { unitOf } from "./history-derive.ts";
import type { MetricHistory } from "./history.ts";
import type { Mailer } from "./mailer.ts";
import type { ComponentStatus } from "./monitor.ts";
import type { PanelStore } from "./store.ts";

const log = logger("panel:digest");
const dayMs = 24 * 60 * 60 * 1000;
const weekMs = 7 * dayMs;

/** Series the digest summarises (by the end of their name). */
const summarised = ["writeBytesPerSecond", "relayBytesPerSecond", "appliedBytesPerSecond", "lagMs", "rpoMs", "fillRatio"];

export interface DigestSettings {
  enabled: boolean;
  /** 0 = Sunday … 6 = Saturday (UTC). */
  weekday: number;
  hour: number;
  lastSentMs: number;
}

/** The newest slot (weekday at hour:00 UTC) at or before `nowMs`. */
export function slotAtOrBefore(nowMs: number, weekday: number, hour: number): number {
  const now = new Date(nowMs);
  const todayAtHour = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), hour);
  let slot = todayAtHour - ((now.getUTCDay() - weekday + 7) % 7) * dayMs;
  if (slot > nowMs) slot -= weekMs;
  return slot;
}

/** Is a scheduled digest due at `nowMs`? (The decision table above.) */
export function digestDue(settings: DigestSettings, nowMs: number): boolean {
  if (!settings.enabled) return false;
  const slot = slotAtOrBefore(nowMs, settings.weekday, settings.hour);
  return nowMs - slot < digestLateMaxMs && settings.lastSentMs < slot && nowMs - settings.lastSentMs >= digestGapMinMs;
}

/** When the next scheduled digest goes out (null when disabled). */
export function nextDigestMs(settings: DigestSettings, nowMs: number): number | null {
  if (!settings.enabled) return null;
  if (digestDue(settings, nowMs)) return nowMs;
  let next = slotAtOrBefore(nowMs, settings.weekday, settings.hour) + weekMs;
  while (next - settings.lastSentMs < digestGapMinMs) next += weekMs;
  return next;
}

export interface DigestOptions {
  /** Every component's live status (Monitor.checkAll). */
  statuses: () => Promise<ComponentStatus[]>;
  nowMs?: () => number;
  panelUrl?: () => string | undefined;
  checkIntervalMs?: number;
}

export type SendOutcome = { sent: true; to: string[]; subject: string } | { sent: false; reason: "MAIL_NOT_CONFIGURED" | "NO_RECIPIENTS" };

export class Digest {
  private readonly db: Database;
  private readonly nowMs: () => number;
  private timer: ReturnType<typeof setInterval> | undefined;
  private checking: Promise<unknown> | undefined;
  private stopped = false;

  constructor(
    private readonly store: PanelStore,
    private readonly mailer: Mailer,
    private readonly history: MetricHistory,
    private readonly options: DigestOptions,
  ) {
    this.db = databaseOf(store);
    this.nowMs = options.nowMs ?? Date.now;
  }

  settings(): DigestSettings {
    const row = this.db.query("SELECT enabled, weekday, hour, last_sent_ms FROM digest_settings WHERE id = 1").get() as { enabled: bigint; weekday: bigint; hour: bigint; last_sent_ms: bigint } | null;
    // Migration 4 inserts the row; a database without it is one this druvaa did not make.
    if (row === null) return { enabled: false, weekday: 1, hour: 8, lastSentMs: 0 };
    return { enabled: Number(row.enabled) === 1, weekday: Number(row.weekday), hour: Number(row.hour), lastSentMs: Number(row.last_sent_ms) };
  }

  /** Saves the schedule (checked by the caller); last_sent_ms is kept. */
  setSchedule(enabled: boolean, weekday: number, hour: number): void {
    this.db.query(`INSERT INTO digest_settings (id, enabled, weekday, hour, last_sent_ms) VALUES (1, $enabled, $weekday, $hour, 0)
      ON CONFLICT(id) DO UPDATE SET enabled = excluded.enabled, weekday = excluded.weekday, hour = excluded.hour`).run({ enabled: enabled ? 1 : 0, weekday, hour });
  }

  private markSent(atMs: number): void {
    this.db.query("UPDATE digest_settings SET last_sent_ms = $at WHERE id = 1").run({ at: atMs });
  }

  /** The digest as it would be sent now. */
  async build(): Promise<DigestMail> {
    const components = await this.options.statuses();
    const nowMs = this.nowMs();
    const fromMs = nowMs - digestWindowMs;
    const since = new Date(fromMs).toISOString();
    const openAlerts = new Map<string, string[]>();
    for (const row of this.db.query("SELECT component, code FROM alerts WHERE cleared_at IS NULL ORDER BY component, code").all() as { component: string; code: string }[]) {
      openAlerts.set(row.component, [...(openAlerts.get(row.component) ?? []), row.code]);
    }
    const limit = digestSectionLinesMax + 1; // one more than shown, so the mail can say there were more
    const alerts = (this.db.query("SELECT component, code, message, raised_at, cleared_at FROM alerts WHERE raised_at >= $since OR cleared_at >= $since ORDER BY id LIMIT $limit").all({ since, limit }) as { component: string; code: string; message: string; raised_at: string; cleared_at: string | null }[])
      .map((row): DigestAlert => ({ component: row.component, code: row.code, message: row.message, raisedAt: row.raised_at, clearedAt: row.cleared_at }));
    const activity = (this.db.query("SELECT user_name, action, count(*) AS n FROM activity WHERE time >= $since GROUP BY user_name, action ORDER BY user_name, action LIMIT $limit").all({ since, limit }) as { user_name: string; action: string; n: bigint }[])
      .map((row) => ({ user: row.user_name, action: row.action, count: Number(row.n) }));
    const metrics = [];
    for (const { name } of this.history.seriesList()) {
      if (!summarised.some((suffix) => name.endsWith(`/${suffix}`))) continue;
      if (metrics.length >= limit) break;
      const summary = this.history.summary(name, fromMs);
      if (summary !== undefined) metrics.push({ series: name, unit: unitOf(name), ...summary });
    }
    return buildDigest({ nowMs, fromMs, panelUrl: this.options.panelUrl?.(), components, openAlerts, alerts, activity, metrics });
  }

  /** Builds the digest and queues it to every recipient. `scheduled`: records last_sent_ms first. */
  async send(user: string, scheduled: boolean): Promise<SendOutcome> {
    const settings = this.store.getMailSettings();
    if (settings === undefined || !settings.enabled) return { sent: false, reason: "MAIL_NOT_CONFIGURED" };
    const to = this.store.listMailRecipients().map((recipient) => recipient.address);
    if (to.length === 0) return { sent: false, reason: "NO_RECIPIENTS" };
    const mail = await this.build();
    if (scheduled) this.markSent(this.nowMs());
    if (!this.mailer.queueMail(to, mail.subject, mail.text, mail.html)) return { sent: false, reason: "MAIL_NOT_CONFIGURED" };
    this.store.recordActivity(user, scheduled ? "digest.sent" : "digest.send", { to, subject: mail.subject });
    log.info(`${scheduled ? "weekly" : "requested"} digest queued to ${to.join(", ")}`);
    return { sent: true, to, subject: mail.subject };
  }

  /** One scheduled check: sends the digest when due. True when one was queued. */
  async check(): Promise<boolean> {
    if (this.stopped || !digestDue(this.settings(), this.nowMs())) return false;
    const outcome = await this.send("panel", true);
    if (!outcome.sent) log.debug(`weekly digest due but not sent: ${outcome.reason}`);
    return outcome.sent;
  }

  /** Starts the once-a-minute check (the first one at once: a digest missed while down goes out now). */
  start(): void {
    const run = () => {
      if (this.checking !== undefined || this.stopped) return; // a slow check (status poll) is not doubled
      this.checking = this.check()
        .catch((error: unknown) => log.error(`weekly digest: ${error instanceof Error ? error.message : String(error)}`))
        .finally(() => {
          this.checking = undefined;
        });
    };
    this.timer = setInterval(run, this.options.checkIntervalMs ?? digestCheckIntervalMs);
    run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.checking;
  }
}
