/**
 * The panel API's email-alert routes (issue 7). Changes are admin only, CSRF-checked like every
 * state-changing route (auth.ts), and recorded in the activity log in the same transaction. The
 * SMTP password is write-only: answers say whether one is set (authPasswordSet), never what it is.
 *
 *   GET    /api/settings/mail                      viewer  {settings | null}
 *   PUT    /api/settings/mail {host, port, from, starttls?, authUser?, authPassword?, enabled?}   admin
 *            authPassword omitted with the same authUser keeps the stored password
 *   GET    /api/settings/mail/recipients           viewer
 *   POST   /api/settings/mail/recipients {address, codes?, components?, cleared?}   admin  201 (replaces one with that address)
 *   DELETE /api/settings/mail/recipients/ADDRESS   admin   404 NOT_FOUND
 *   POST   /api/settings/mail/test {to}            admin   200 {ok, smtp} or 502 {ok:false, error:{code, message}}; 409 MAIL_NOT_CONFIGURED
 */
import { DruvaaError } from "../../errors.ts";
import { sendMail } from "../../io/smtp.ts";
import type { Caller } from "./auth.ts";
import { mailFilterNamesMax, mailRecipientsMax } from "./constants.ts";
import { ApiError, badField, booleanField, checkPanelName, enumField, jsonAnswer, readJsonBody, stringField } from "./http.ts";
import { smtpOptionsOf } from "./mailer.ts";
import type { MailSettings, PanelStore, StartTlsMode } from "./store.ts";

const starttlsModes: readonly StartTlsMode[] = ["never", "if-offered", "required"];
const addressPattern = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*$/;
const hostPattern = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?|[0-9A-Fa-f:.]+)$/;
const codePattern = /^[A-Z][A-Z0-9_]{0,63}$/;

const publicSettings = (settings: MailSettings | undefined) =>
  settings === undefined ? null : { host: settings.host, port: settings.port, from: settings.from, starttls: settings.starttls, authUser: settings.authUser, authPasswordSet: settings.authPassword !== null, enabled: settings.enabled, updatedAt: settings.updatedAt };

export function checkMailAddress(value: string, field: string): string {
  if (value.length > 254 || !addressPattern.test(value) || value.slice(0, value.lastIndexOf("@")).length > 64) {
    throw badField(field, `is not a valid email address: ${JSON.stringify(value.slice(0, 80))}`, "Give a bare address, e.g. ops@example.com (no display name, no angle brackets)");
  }
  return value;
}

function optionalText(body: Record<string, unknown>, field: string): string | null {
  const value = body[field];
  if (value === undefined || value === null || value === "") return null;
  const text = stringField(body, field, 1024);
  if (/[\0\r\n]/.test(text)) throw badField(field, "must not contain NUL or a line break");
  return text;
}

function portField(body: Record<string, unknown>, field: string): number {
  const value = body[field];
  if (value === undefined || value === null) throw badField(field, "is required", "The usual ports are 25 and 587");
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 65535) throw badField(field, "must be a whole number from 1 to 65535", "The usual ports are 25 and 587");
  return value;
}

/** "*" (the default) or a list of at most mailFilterNamesMax names, each checked by `check`. */
function filterField(body: Record<string, unknown>, field: string, check: (name: string, field: string) => void): string[] | "*" {
  const value = body[field];
  if (value === undefined || value === "*") return "*";
  if (!Array.isArray(value)) throw badField(field, 'must be "*" or a list of names');
  if (value.length === 0 || value.length > mailFilterNamesMax) throw badField(field, `must name 1 to ${mailFilterNamesMax} entries (or be "*")`);
  return value.map((item, index) => {
    if (typeof item !== "string") throw badField(`${field}[${index}]`, "must be a string");
    check(item, `${field}[${index}]`);
    return item;
  });
}

export class MailRoutes {
  constructor(private readonly store: PanelStore) {}

  settings(): unknown {
    return { ok: true, settings: publicSettings(this.store.getMailSettings()) };
  }

  async putSettings(request: Request, caller: Caller): Promise<unknown> {
    const body = await readJsonBody(request);
    const host = stringField(body, "host", 253);
    if (!hostPattern.test(host)) throw badField("host", "is not a host name or IP address", "e.g. mail.example.com");
    const port = portField(body, "port");
    const from = checkMailAddress(stringField(body, "from", 254), "from");
    const starttls = body.starttls === undefined ? "if-offered" : enumField(body, "starttls", starttlsModes);
    const authUser = optionalText(body, "authUser");
    let authPassword = optionalText(body, "authPassword");
    const enabled = booleanField(body, "enabled", true);
    const before = this.store.getMailSettings();
    if (authUser === null) {
      if (authPassword !== null) throw badField("authPassword", "needs authUser");
    } else if (authPassword === null) {
      // Keeping the stored password lets a form be saved without typing it again.
      if (before?.authUser !== authUser || before.authPassword === null) throw badField("authPassword", "is required with authUser");
      authPassword = before.authPassword;
    }
    this.store.transaction(() => {
      this.store.setMailSettings({ host, port, from, starttls, authUser, authPassword, enabled });
      this.store.recordActivity(caller.user.name, "mail.settings", { host, port, from, starttls, authUser, authPasswordChanged: authPassword !== (before?.authPassword ?? null), enabled });
    });
    return this.settings();
  }

  recipients(): unknown {
    return { ok: true, recipients: this.store.listMailRecipients() };
  }

  async addRecipient(request: Request, caller: Caller): Promise<Response> {
    const body = await readJsonBody(request);
    const address = checkMailAddress(stringField(body, "address", 254), "address");
    const codes = filterField(body, "codes", (code, field) => {
      if (!codePattern.test(code)) throw badField(field, `is not an alert code: ${JSON.stringify(code.slice(0, 80))}`, "Codes are upper case, e.g. COMPONENT_UNREACHABLE");
    });
    const components = filterField(body, "components", (name, field) => checkPanelName(name, field));
    const cleared = booleanField(body, "cleared", false);
    this.store.transaction(() => {
      const exists = this.store.listMailRecipients().some((recipient) => recipient.address === address);
      if (!exists && this.store.countMailRecipients() >= mailRecipientsMax) throw new ApiError(409, "TOO_MANY_RECIPIENTS", `the panel mails at most ${mailRecipientsMax} recipients`, "Use a mailing list address");
      this.store.putMailRecipient(address, codes, components, cleared, caller.user.name);
      this.store.recordActivity(caller.user.name, exists ? "mail.recipient.update" : "mail.recipient.add", { address, codes, components, cleared });
    });
    return jsonAnswer({ ok: true, recipient: this.store.listMailRecipients().find((recipient) => recipient.address === address) }, 201);
  }

  deleteRecipient(address: string, caller: Caller): unknown {
    checkMailAddress(address, "address");
    this.store.transaction(() => {
      if (!this.store.deleteMailRecipient(address)) throw new ApiError(404, "NOT_FOUND", `no recipient "${address}"`, "GET /api/settings/mail/recipients lists them");
      this.store.recordActivity(caller.user.name, "mail.recipient.remove", { address });
    });
    return { ok: true };
  }

  /** Sends one test mail now (not queued) and answers what the SMTP server said. */
  async test(request: Request, caller: Caller): Promise<Response> {
    const body = await readJsonBody(request);
    const to = checkMailAddress(stringField(body, "to", 254), "to");
    const settings = this.store.getMailSettings();
    if (settings === undefined) throw new ApiError(409, "MAIL_NOT_CONFIGURED", "no mail settings yet", "PUT /api/settings/mail first");
    const text = `This is a test mail from the druvaa panel, sent by ${caller.user.name} at ${new Date().toISOString()}.\nAlerts will come from ${settings.from} through ${settings.host}:${settings.port}.\n`;
    try {
      const result = await sendMail(smtpOptionsOf(settings, [to], "[druvaa] test mail", text));
      this.store.recordActivity(caller.user.name, "mail.test", { to, ok: true, reply: result.reply });
      return jsonAnswer({ ok: true, smtp: result });
    } catch (error) {
      const detail = error instanceof DruvaaError ? { code: error.code, message: error.message, ...(error.hint === undefined ? {} : { hint: error.hint }) } : { code: "INTERNAL", message: String(error) };
      this.store.recordActivity(caller.user.name, "mail.test", { to, ok: false, error: { code: detail.code, message: detail.message } });
      return jsonAnswer({ ok: false, error: detail }, 502);
    }
  }
}
