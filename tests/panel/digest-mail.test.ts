/**
 * The weekly digest's API end to end: settings read by a viewer and changed by an admin (each bad
 * field named), "send now" delivered through the mailer to a real SMTP server nobody here wrote
 * (Debian's aiosmtpd, tests/fixtures/smtp/server.py, which parses the mail with Python's email
 * package: the text and HTML parts, no defects), and a failed delivery in the activity log.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hasAiosmtpd, startAiosmtpd } from "../fixtures/smtp/aiosmtpd.ts";
import { adminClient, ApiClient, startTestPanel, userClient, type TestPanel } from "./helpers.ts";
import { startFakeComponent, waitFor, type FakeComponent } from "./live-fake-component.ts";

const scratch = mkdtempSync(join(tmpdir(), "druvaa-digest-mail-"));
const smtpProcs: ReturnType<typeof Bun.spawn>[] = [];
let panel: TestPanel | undefined;
let fake: FakeComponent | undefined;

afterAll(async () => {
  await panel?.close();
  await fake?.stop();
  for (const proc of smtpProcs) proc.kill("SIGKILL");
  await Promise.all(smtpProcs.map((proc) => proc.exited));
  rmSync(scratch, { recursive: true, force: true });
});

interface Stored {
  rcptTos: string[];
  headers: Record<string, string>;
  contentType: string;
  text: string | null;
  html: string | null;
  defects: string[];
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("weekly digest API (aiosmtpd)", () => {
  test("aiosmtpd is installed (apt-get install python3-aiosmtpd)", () => {
    expect(hasAiosmtpd).toBe(true);
  });

  test("settings, roles, refusals naming the field; send now reaches every recipient; a failed send is logged", async () => {
    const smtp = await startAiosmtpd<Stored>(join(scratch, "mail"));
    smtpProcs.push(smtp.proc);
    fake = startFakeComponent("staging", { wrls: [{ name: "fast", fillRatio: 0.9, lagSeconds: 4, rpo: { rpoSeconds: 4, state: "ok" } }] });
    panel = await startTestPanel({ pollIntervalMs: 200, statusTimeoutMs: 150, mailRetryBaseMs: 10 });
    const admin = await adminClient(panel.url);
    const viewer = await userClient(panel.url, admin, "vera", "viewer");

    // The default schedule (migration 4): Mondays at 08:00 UTC, never sent yet.
    const initial = await viewer.get("/api/settings/digest");
    expect(initial.status).toBe(200);
    expect(initial.body.digest).toMatchObject({ enabled: true, weekday: 1, hour: 8, timeZone: "UTC", lastSentMs: null });
    expect(initial.body.digest.nextMs).toBeNumber();

    // A day three days ahead, whatever today is: not due during this test.
    const weekday = (new Date().getUTCDay() + 3) % 7;
    const put = await admin.request("PUT", "/api/settings/digest", { enabled: true, weekday, hour: 17 });
    expect(put.status).toBe(200);
    expect(put.body.digest).toMatchObject({ enabled: true, weekday, hour: 17 });
    const next = new Date(put.body.digest.nextMs);
    expect([next.getUTCDay(), next.getUTCHours(), next.getUTCMinutes()]).toEqual([weekday, 17, 0]);
    expect(put.body.digest.nextMs - Date.now()).toBeGreaterThan(2 * 24 * 60 * 60 * 1000 - 17 * 60 * 60 * 1000);
    expect((await viewer.get("/api/settings/digest")).body.digest).toMatchObject({ weekday, hour: 17 });
    const refusals: [unknown, string][] = [
      [{ weekday: 5, hour: 17 }, "enabled: "],
      [{ enabled: "yes", weekday: 5, hour: 17 }, "enabled: "],
      [{ enabled: true, weekday: 7, hour: 17 }, "weekday: "],
      [{ enabled: true, weekday: 1.5, hour: 17 }, "weekday: "],
      [{ enabled: true, hour: 17 }, "weekday: "],
      [{ enabled: true, weekday: 5, hour: 24 }, "hour: "],
      [{ enabled: true, weekday: 5, hour: "8" }, "hour: "],
      [{ enabled: true, weekday: 5, hour: 8, timezone: "CET" }, "timezone: "],
    ];
    for (const [body, field] of refusals) {
      const answer = await admin.request("PUT", "/api/settings/digest", body);
      expect({ body, status: answer.status, code: answer.body.error.code, field: answer.body.error.message.startsWith(field) }).toEqual({ body, status: 400, code: "BAD_FIELD", field: true });
    }
    expect((await viewer.get("/api/settings/digest")).body.digest).toMatchObject({ enabled: true, weekday, hour: 17 }); // unchanged
    expect((await viewer.request("PUT", "/api/settings/digest", { enabled: false, weekday: 1, hour: 8 })).body.error.code).toBe("FORBIDDEN");
    expect((await viewer.post("/api/settings/digest/send")).body.error.code).toBe("FORBIDDEN");
    expect((await new ApiClient(panel.url).get("/api/settings/digest")).status).toBe(401);

    // Without mail settings there is nothing to send with.
    const unconfigured = await admin.post("/api/settings/digest/send");
    expect([unconfigured.status, unconfigured.body.error.code]).toEqual([409, "MAIL_NOT_CONFIGURED"]);
    const settings = { host: "127.0.0.1", port: smtp.port, from: "druvaa@panel.example", starttls: "if-offered", enabled: true };
    expect((await admin.request("PUT", "/api/settings/mail", settings)).status).toBe(200);
    expect((await admin.post("/api/settings/digest/send")).body.error.code).toBe("NO_RECIPIENTS");
    expect((await admin.post("/api/settings/mail/recipients", { address: "ops@example.com", codes: ["COMPONENT_UNREACHABLE"] })).status).toBe(201);
    expect((await admin.post("/api/settings/mail/recipients", { address: "boss@example.com" })).status).toBe(201);

    // The WRL is 90 % full: once the component is added (only now, with mail set up: an alert raised
    // before there are recipients is mailed to nobody), wait for that alert and its own mail so the
    // digest lists it.
    expect((await admin.post("/api/components", { name: "stg1", role: "staging", control: fake.control })).status).toBe(201);
    await waitFor("WRL_FILL_HIGH", 10_000, async () => ((await admin.get("/api/alerts")).body.alerts.some((a: { code: string }) => a.code === "WRL_FILL_HIGH") ? true : undefined));
    const alertMail = await waitFor("the alert mail", 15_000, () => smtp.messages()[0]);
    expect(alertMail.headers.Subject).toBe("[druvaa] WRL_FILL_HIGH: staging stg1");

    const sent = await admin.post("/api/settings/digest/send");
    expect(sent.status).toBe(202);
    expect([...sent.body.to].sort()).toEqual(["boss@example.com", "ops@example.com"]);
    const digest = await waitFor("the digest", 15_000, () => smtp.messages().find((message) => message.headers.Subject?.includes("weekly digest")));
    expect([...digest.rcptTos].sort()).toEqual(["boss@example.com", "ops@example.com"]);
    expect(digest.headers.Subject).toBe("[druvaa] weekly digest: 1 components, 1 open alerts");
    expect(digest.contentType).toBe("multipart/alternative");
    expect(digest.defects).toEqual([]);
    expect(digest.text).toContain("stg1 (staging)  answers; WRL fast 90.0 % full, lag 4.0 s  open: WRL_FILL_HIGH");
    expect(digest.text).toMatch(/raised {2}WRL_FILL_HIGH {2}stg1 {2}staging stg1: WRL fast is 90 % full/);
    expect(digest.text).toContain("admin  component.add  1");
    expect(digest.text).toMatch(/stg1\/wrl\/fast\/lagMs {2}4\.0 s \/ 4\.0 s \/ 4\.0 s/);
    expect(digest.text).toContain(`Panel: ${panel.url}`);
    expect(digest.html).toContain("<td>stg1 (staging)</td>");
    expect(digest.html).toContain("<h2>Activity by user and action</h2>");
    // A digest sent by hand does not move the schedule.
    expect((await viewer.get("/api/settings/digest")).body.digest.lastSentMs).toBeNull();
    const activity = (await admin.get("/api/activity?limit=100")).body.activity as { user: string; action: string; detail: any }[];
    expect(activity.some((entry) => entry.user === "admin" && entry.action === "digest.send")).toBe(true);
    expect(activity.some((entry) => entry.user === "admin" && entry.action === "digest.settings" && entry.detail.weekday === weekday)).toBe(true);

    // An SMTP server that is not there: queued (202), retried, then a mail.failed entry.
    expect((await admin.request("PUT", "/api/settings/mail", { ...settings, port: await closedPort() })).status).toBe(200);
    expect((await admin.post("/api/settings/digest/send")).status).toBe(202);
    const failed = await waitFor("the mail.failed entry", 15_000, async () =>
      ((await admin.get("/api/activity?limit=100")).body.activity as { action: string; detail: any }[]).find((entry) => entry.action === "mail.failed" && String(entry.detail.subject).includes("weekly digest")));
    expect(failed.detail.error.code).toBe("SMTP_CONNECT_FAILED");
    expect(failed.detail.attempts).toBe(3);
  }, 90_000);
});
