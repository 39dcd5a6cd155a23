/**
 * The weekly digest's routes (digest.ts). Changes are admin only, CSRF-checked (auth.ts) and
 * recorded in the activity log.
 *
 *   GET  /api/settings/digest                          viewer  {digest: {enabled, weekday, hour, timeZone, lastSentMs, nextMs}}
 *   PUT  /api/settings/digest {enabled, weekday, hour} admin   every field required; BAD_FIELD names the one at fault
 *   POST /api/settings/digest/send                     admin   202 {to, subject}: queued to every recipient;
 *                                                              409 MAIL_NOT_CONFIGURED, NO_RECIPIENTS
 */
import type { Caller } from "./auth.ts";
import { nextDigestMs, type Digest } from "./digest.ts";
import { ApiError, badField, jsonAnswer, readJsonBody } from "./http.ts";
import type { PanelStore } from "./store.ts";

function integerField(body: Record<string, unknown>, field: string, min: number, max: number, meaning: string): number {
  const value = body[field];
  if (value === undefined || value === null) throw badField(field, `is required (${meaning})`);
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) throw badField(field, `must be a whole number from ${min} to ${max} (${meaning})`);
  return value;
}

export class DigestRoutes {
  constructor(
    private readonly store: PanelStore,
    private readonly digest: Digest,
    private readonly nowMs: () => number = Date.now,
  ) {}

  settings(): unknown {
    const settings = this.digest.settings();
    return { ok: true, digest: { enabled: settings.enabled, weekday: settings.weekday, hour: settings.hour, timeZone: "UTC", lastSentMs: settings.lastSentMs === 0 ? null : settings.lastSentMs, nextMs: nextDigestMs(settings, this.nowMs()) } };
  }

  async putSettings(request: Request, caller: Caller): Promise<unknown> {
    const body = await readJsonBody(request);
    if (typeof body.enabled !== "boolean") throw badField("enabled", body.enabled === undefined ? "is required (true or false)" : "must be true or false");
    const weekday = integerField(body, "weekday", 0, 6, "0 = Sunday … 6 = Saturday");
    const hour = integerField(body, "hour", 0, 23, "the hour in UTC");
    for (const field of Object.keys(body)) if (!["enabled", "weekday", "hour"].includes(field)) throw badField(field, "is not a digest setting", "The fields are enabled, weekday and hour");
    this.store.transaction(() => {
      this.digest.setSchedule(body.enabled as boolean, weekday, hour);
      this.store.recordActivity(caller.user.name, "digest.settings", { enabled: body.enabled, weekday, hour });
    });
    return this.settings();
  }

  async send(caller: Caller): Promise<Response> {
    const outcome = await this.digest.send(caller.user.name, false);
    if (!outcome.sent) {
      throw outcome.reason === "MAIL_NOT_CONFIGURED"
        ? new ApiError(409, "MAIL_NOT_CONFIGURED", "mail is not set up, or is disabled", "PUT /api/settings/mail first")
        : new ApiError(409, "NO_RECIPIENTS", "there is no mail recipient to send the digest to", "POST /api/settings/mail/recipients first");
    }
    return jsonAnswer({ ok: true, to: outcome.to, subject: outcome.subject }, 202);
  }
}
