/**
 * Email alerts: when the monitor raises or clears an alert, one mail (src/io/smtp.ts) goes to every
 * recipient whose filter matches. The monitor never waits for it: notify() only queues. The queue
 * is bounded (mailQueueMax; when full the oldest pending mail is dropped, with a warning); mails
 * are sent one at a time, each tried mailAttemptsMax times with growing pauses. A mail that still
 * fails is logged and recorded as a `mail.failed` activity entry. What it does not guarantee:
 * delivery across a panel restart (the queue is in memory), or order across retries of one mail.
 */
import { DruvaaError } from "../../errors.ts";
import { sendMail, type SendMailOptions, type SendMailResult } from "../../io/smtp.ts";
import { logger } from "../../log.ts";
import { mailAttemptsMax, mailQueueMax, mailRetryBaseMs, mailTimeoutMs } from "./constants.ts";
import type { MailRecipient, MailSettings, PanelStore } from "./store.ts";

const log = logger("panel:mail");

export interface AlertEvent {
  kind: "raised" | "cleared";
  component: string;
  /** The component's role, for the subject ("replica dr1"). */
  role: string;
  code: string;
  message: string;
  time: Date;
}

/** Does `recipient` get mail about `event`? */
export function recipientWants(recipient: MailRecipient, event: AlertEvent): boolean {
  if (event.kind === "cleared" && !recipient.cleared) return false;
  if (recipient.codes !== "*" && !recipient.codes.includes(event.code)) return false;
  if (recipient.components !== "*" && !recipient.components.includes(event.component)) return false;
  return true;
}

export function smtpOptionsOf(settings: MailSettings, to: string[], subject: string, text: string): SendMailOptions {
  return {
    host: settings.host,
    port: settings.port,
    from: settings.from,
    to,
    subject,
    text,
    starttls: settings.starttls,
    timeoutMs: mailTimeoutMs,
    ...(settings.authUser === null ? {} : { auth: { user: settings.authUser, password: settings.authPassword ?? "" } }),
  };
}

export function alertMail(event: AlertEvent, panelUrl: string | undefined): { subject: string; text: string } {
  const subject = `[druvaa] ${event.kind === "cleared" ? "cleared: " : ""}${event.code}: ${event.role} ${event.component}`;
  const text = [
    event.kind === "cleared" ? `The alert ${event.code} of ${event.role} ${event.component} is cleared.` : `Alert ${event.code} raised for ${event.role} ${event.component}.`,
    "",
    `Component: ${event.component} (${event.role})`,
    `Code: ${event.code}`,
    `Message: ${event.message}`,
    `Time: ${event.time.toISOString()}`,
    ...(panelUrl === undefined ? [] : [`Panel: ${panelUrl}`]),
    "",
  ].join("\n");
  return { subject, text };
}

interface Pending {
  what: string;
  options: SendMailOptions;
}

export interface MailerOptions {
  send?: (options: SendMailOptions) => Promise<SendMailResult>;
  retryBaseMs?: number;
  panelUrl?: () => string | undefined;
}

export class Mailer {
  private readonly queue: Pending[] = [];
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly store: PanelStore,
    private readonly options: MailerOptions = {},
  ) {}

  /** Queues the mail about `event` for every recipient that wants it; never throws, never waits. */
  notify(event: AlertEvent): void {
    try {
      const settings = this.store.getMailSettings();
      if (settings === undefined || !settings.enabled || this.stopped) return;
      const to = this.store.listMailRecipients().filter((recipient) => recipientWants(recipient, event)).map((recipient) => recipient.address);
      if (to.length === 0) return;
      const { subject, text } = alertMail(event, this.options.panelUrl?.());
      this.enqueue({ what: subject, options: smtpOptionsOf(settings, to, subject, text) });
    } catch (error) {
      log.error(`cannot queue the mail about ${event.code} of ${event.component}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** Queues one mail to `to` (the weekly digest, digest.ts); false, nothing queued, without enabled mail settings. */
  queueMail(to: string[], subject: string, text: string, html?: string): boolean {
    const settings = this.store.getMailSettings();
    if (settings === undefined || !settings.enabled || this.stopped || to.length === 0) return false;
    this.enqueue({ what: subject, options: { ...smtpOptionsOf(settings, to, subject, text), ...(html === undefined ? {} : { html }) } });
    return true;
  }

  /** Pending mails (for tests and status). */
  get pendingCount(): number {
    return this.queue.length;
  }

  private enqueue(pending: Pending): void {
    if (this.queue.length >= mailQueueMax) {
      const dropped = this.queue.shift()!;
      log.warn(`mail queue full (${mailQueueMax}): dropped the oldest pending mail "${dropped.what}"`);
      this.store.recordActivity("panel", "mail.dropped", { subject: dropped.what, to: dropped.options.to });
    }
    this.queue.push(pending);
    this.running ??= this.drain().finally(() => {
      this.running = undefined;
    });
  }

  private async drain(): Promise<void> {
    for (let pending = this.queue.shift(); pending !== undefined && !this.stopped; pending = this.queue.shift()) {
      await this.deliver(pending);
    }
  }

  private async deliver(pending: Pending): Promise<void> {
    const send = this.options.send ?? sendMail;
    for (let attempt = 1; ; attempt += 1) {
      try {
        const result = await send(pending.options);
        log.info(`mailed "${pending.what}" to ${result.accepted.join(", ")}`);
        if (result.rejected.length > 0) this.store.recordActivity("panel", "mail.failed", { subject: pending.what, rejected: result.rejected });
        return;
      } catch (error) {
        const detail = error instanceof DruvaaError ? { code: error.code, message: error.message } : { code: "INTERNAL", message: String(error) };
        if (attempt >= mailAttemptsMax || this.stopped) {
          log.error(`mail "${pending.what}" failed after ${attempt} attempts: ${detail.message}`);
          this.store.recordActivity("panel", "mail.failed", { subject: pending.what, to: pending.options.to, attempts: attempt, error: detail });
          return;
        }
        log.warn(`mail "${pending.what}" attempt ${attempt} failed (${detail.message}); retrying`);
        await Bun.sleep((this.options.retryBaseMs ?? mailRetryBaseMs) * 2 ** (attempt - 1));
        if (this.stopped) return; // stopping: the mail is dropped with the rest of the queue
      }
    }
  }

  /** Stops sending: pending mails are dropped; waits for the one under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.queue.length = 0;
    await this.running;
  }
}
