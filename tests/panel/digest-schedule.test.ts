/**
 * The weekly digest (src/roles/panel/digest.ts) under a fake clock: its schedule's decision table
 * (due at the slot, never two within a week, a change of day does not send a second one, nothing
 * while disabled, a restart neither repeats nor forgets one), and its content — components' state,
 * the week's alerts, activity by user and action, metric min/avg/max — with HTML escaped.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SendMailOptions } from "../../src/io/smtp.ts";
import { digestDue, nextDigestMs, slotAtOrBefore, type DigestSettings } from "../../src/roles/panel/digest.ts";
import { PanelMonitoring } from "../../src/roles/panel/live-monitoring.ts";
import { Mailer } from "../../src/roles/panel/mailer.ts";
import type { ComponentStatus } from "../../src/roles/panel/monitor.ts";
import { PanelStore } from "../../src/roles/panel/store.ts";

const hourMs = 60 * 60 * 1000;
const dayMs = 24 * hourMs;
// Monday 2026-01-05 08:00 UTC.
const monday8 = Date.UTC(2026, 0, 5, 8);

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("digest schedule", () => {
  test("the decision table", () => {
    expect(new Date(monday8).getUTCDay()).toBe(1);
    const weekly = (lastSentMs: number, weekday = 1, enabled = true): DigestSettings => ({ enabled, weekday, hour: 8, lastSentMs });
    expect(slotAtOrBefore(monday8 + 5 * hourMs, 1, 8)).toBe(monday8);
    expect(slotAtOrBefore(monday8 - 1, 1, 8)).toBe(monday8 - 7 * dayMs);
    expect(slotAtOrBefore(monday8, 3, 8)).toBe(monday8 - 5 * dayMs); // the Wednesday before
    const lastWeek = monday8 - 7 * dayMs;
    const rows: [string, DigestSettings, number, boolean][] = [
      ["before the slot", weekly(lastWeek), monday8 - 60_000, false],
      ["at the slot", weekly(lastWeek), monday8, true],
      ["late (panel was down 5 h): still sent", weekly(lastWeek), monday8 + 5 * hourMs, true],
      ["a day late: skipped", weekly(lastWeek), monday8 + dayMs, false],
      ["sent this week already", weekly(monday8), monday8 + 60_000, false],
      ["the next week's slot", weekly(monday8), monday8 + 7 * dayMs, true],
      ["moved to Tuesday the day after one went out: not two in a week", weekly(monday8, 2), monday8 + dayMs, false],
      ["moved to Tuesday: the Tuesday after", weekly(monday8, 2), monday8 + 8 * dayMs, true],
      ["never sent", weekly(0), monday8, true],
      ["never sent, before the first slot", weekly(0), monday8 - 60_000, false],
      ["disabled", weekly(lastWeek, 1, false), monday8, false],
    ];
    for (const [why, settings, nowMs, due] of rows) expect([why, digestDue(settings, nowMs)]).toEqual([why, due]);
    expect(nextDigestMs(weekly(monday8), monday8 + 60_000)).toBe(monday8 + 7 * dayMs);
    expect(nextDigestMs(weekly(monday8, 2), monday8 + dayMs)).toBe(monday8 + 8 * dayMs);
    expect(nextDigestMs(weekly(lastWeek), monday8)).toBe(monday8);
    expect(nextDigestMs(weekly(lastWeek, 1, false), monday8)).toBeNull();
  });

  test("scheduled checks send one digest a week with the week's content, and a restart does not repeat it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "druvaa-digest-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    let now = monday8 - 8 * dayMs; // the Sunday a week before
    const open = () => {
      const store = PanelStore.open(join(dir, "panel.db"), () => new Date(now));
      const mails: SendMailOptions[] = [];
      const mailer = new Mailer(store, { send: async (options) => {
        mails.push(options);
        return { accepted: options.to, rejected: [], reply: "250 ok" };
      } });
      const statuses: ComponentStatus[] = [
        { name: "stg1", role: "staging", control: "127.0.0.1:1", reachable: true, status: { role: "staging", wrls: [{ name: "fast", fillRatio: 0.42, lagSeconds: 2 }] } },
        { name: "dr1", role: "replica", control: "127.0.0.1:2", reachable: false, error: { code: "CONTROL_UNREACHABLE", message: "connection refused <by peer> & gone" } },
      ];
      const monitoring = new PanelMonitoring(store, mailer, { statuses: async () => statuses, panelUrl: () => "https://panel.example:8000", nowMs: () => now });
      const close = async () => {
        await monitoring.stop();
        await mailer.stop();
        store.close();
      };
      cleanups.push(close);
      return { store, mails, monitoring, mailer, statuses, close };
    };
    let panel = open();
    const { store } = panel;
    store.addComponent("stg1", "staging", "127.0.0.1:1", "admin");
    store.addComponent("dr1", "replica", "127.0.0.1:2", "admin");
    store.setMailSettings({ host: "127.0.0.1", port: 25, from: "druvaa@example.com", starttls: "never", authUser: null, authPassword: null, enabled: true });
    store.putMailRecipient("ops@example.com", ["COMPONENT_UNREACHABLE"], ["dr1"], false, "admin");
    store.putMailRecipient("boss@example.com", "*", "*", false, "admin");
    // Older than the week: not in the digest.
    store.raiseAlert("stg1", "RPO_MISSED", "old news");
    store.clearAlert("stg1", "RPO_MISSED");
    store.recordActivity("olduser", "user.create", {});
    // This week: history rounds, alerts, activity.
    now = monday8 - 2 * dayMs;
    for (let round = 0; round < 40; round += 1) {
      now += 60_000;
      panel.monitoring.history.record([{ ...panel.statuses[0]!, status: { role: "staging", wrls: [{ name: "fast", fillRatio: round % 2 === 0 ? 0.2 : 0.6, lagSeconds: round % 2 === 0 ? 1 : 3 }] } } as ComponentStatus]);
    }
    store.raiseAlert("dr1", "COMPONENT_UNREACHABLE", "replica dr1 at 127.0.0.1:2 does not answer: <refused>");
    store.raiseAlert("stg1", "WRL_FILL_HIGH", "staging stg1: WRL fast is 85 % full");
    store.clearAlert("stg1", "WRL_FILL_HIGH");
    store.recordActivity("admin", "component.add", {});
    store.recordActivity("admin", "component.add", {});
    store.recordActivity("otto", "pair.create", {});

    now = monday8 - 60_000;
    expect(await panel.monitoring.digest.check()).toBe(false);
    now = monday8 + 30_000;
    expect(await panel.monitoring.digest.check()).toBe(true);
    const mail = await waitFor("the digest mail", () => panel.mails[0]);
    expect(await panel.monitoring.digest.check()).toBe(false); // sent this week already
    // Every recipient, whatever its alert filter.
    expect([...mail.to].sort()).toEqual(["boss@example.com", "ops@example.com"]);
    expect(mail.subject).toBe("[druvaa] weekly digest: 2 components, 1 open alerts");
    const text = mail.text;
    expect(text).toContain("2026-01-05 08:00 UTC");
    expect(text).toContain("Panel: https://panel.example:8000");
    expect(text).toMatch(/stg1 \(staging\) {2}answers; WRL fast 42\.0 % full, lag 2\.0 s {2}no open alert/);
    expect(text).toContain("dr1 (replica)  does not answer (connection refused <by peer> & gone)  open: COMPONENT_UNREACHABLE");
    expect(text).toContain("Alerts in the last 7 days: 2 raised, 1 cleared");
    expect(text).toMatch(/raised {2}COMPONENT_UNREACHABLE {2}dr1 {2}replica dr1 at 127\.0\.0\.1:2 does not answer: <refused>/);
    expect(text).toMatch(/cleared {2}WRL_FILL_HIGH {2}stg1/);
    expect(text).not.toContain("old news");
    expect(text).toContain("admin  component.add  2");
    expect(text).toContain("otto  pair.create  1");
    expect(text).not.toContain("olduser");
    expect(text).toMatch(/stg1\/wrl\/fast\/lagMs {2}1\.0 s \/ [\d.]+ s \/ 3\.0 s/);
    expect(text).toMatch(/stg1\/wrl\/fast\/fillRatio {2}20\.0 % \/ [\d.]+ % \/ 60\.0 %/);
    // The HTML part says the same with everything escaped.
    const html = mail.html!;
    expect(html).toContain("&lt;refused&gt;");
    expect(html).toContain("connection refused &lt;by peer&gt; &amp; gone");
    expect(html).not.toContain("<refused>");
    expect(html).not.toContain("<by peer>");
    expect(html).toContain("<td>admin</td><td>component.add</td><td>2</td>");
    expect(store.listActivity(10).some((entry) => entry.user === "panel" && entry.action === "digest.sent")).toBe(true);

    // A restart reads last_sent_ms: no second digest this week; the next Monday's goes out.
    await panel.close();
    now = monday8 + 2 * hourMs;
    panel = open();
    expect(await panel.monitoring.digest.check()).toBe(false);
    expect(panel.monitoring.digest.settings().lastSentMs).toBe(monday8 + 30_000);
    now = monday8 + 7 * dayMs;
    expect(await panel.monitoring.digest.check()).toBe(true);
    await waitFor("the next week's digest", () => panel.mails[0]);
    // Disabled: nothing, even when due.
    panel.monitoring.digest.setSchedule(false, 1, 8);
    now = monday8 + 14 * dayMs;
    expect(await panel.monitoring.digest.check()).toBe(false);
  });
});

async function waitFor<T>(what: string, check: () => T | undefined): Promise<T> {
  for (let attempt = 0; attempt < 500; attempt += 1) {
    const value = check();
    if (value !== undefined) return value;
    await Bun.sleep(10);
  }
  throw new Error(`no ${what}`);
}
