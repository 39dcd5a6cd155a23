/**
 * The mailer's queue (src/roles/panel/mailer.ts) in process, with a scripted send in place of SMTP
 * (the real SMTP path is tests/panel/mail.test.ts): filters, retries with backoff, a mail that
 * keeps failing recorded as mail.failed, and the bounded queue dropping its oldest mail.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SendMailOptions, SendMailResult } from "../../src/io/smtp.ts";
import { DruvaaError } from "../../src/errors.ts";
import { mailAttemptsMax, mailQueueMax } from "../../src/roles/panel/constants.ts";
import { Mailer, type AlertEvent } from "../../src/roles/panel/mailer.ts";
import { PanelStore } from "../../src/roles/panel/store.ts";

const scratch = mkdtempSync(join(tmpdir(), "druvaa-mailer-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let count = 0;

function storeWithMail(): PanelStore {
  const store = PanelStore.open(join(scratch, `p${count++}.db`));
  store.setMailSettings({ host: "127.0.0.1", port: 25, from: "druvaa@panel.example", starttls: "never", authUser: null, authPassword: null, enabled: true });
  store.putMailRecipient("ops@example.com", ["COMPONENT_UNREACHABLE"], "*", false, "admin");
  return store;
}

const event = (component: string, kind: AlertEvent["kind"] = "raised"): AlertEvent => ({ kind, component, role: "replica", code: "COMPONENT_UNREACHABLE", message: "does not answer", time: new Date() });
const ok = (options: SendMailOptions): SendMailResult => ({ accepted: options.to, rejected: [], reply: "250 ok" });

async function settle(mailer: Mailer): Promise<void> {
  for (let i = 0; i < 200 && mailer.pendingCount > 0; i += 1) await Bun.sleep(10);
  await Bun.sleep(50);
}

describe("panel mailer", () => {
  test("retries a failing send, then records mail.failed after mailAttemptsMax tries; a cleared notice goes only to who asked", async () => {
    const store = storeWithMail();
    const calls: string[] = [];
    let failuresLeft = 1;
    const mailer = new Mailer(store, {
      retryBaseMs: 5,
      send: async (options) => {
        calls.push(options.subject);
        if (options.subject.includes("dr-bad") || failuresLeft-- > 0) throw new DruvaaError("SMTP_CONNECT_FAILED", "cannot connect");
        return ok(options);
      },
    });
    mailer.notify(event("dr1"));
    mailer.notify(event("dr1", "cleared")); // ops did not ask for cleared notices
    await settle(mailer);
    expect(calls).toEqual(["[druvaa] COMPONENT_UNREACHABLE: replica dr1", "[druvaa] COMPONENT_UNREACHABLE: replica dr1"]);
    mailer.notify(event("dr-bad"));
    await settle(mailer);
    await Bun.sleep(100);
    expect(calls.filter((subject) => subject.includes("dr-bad"))).toHaveLength(mailAttemptsMax);
    const failed = store.listActivity(10).find((entry) => entry.action === "mail.failed");
    expect(failed?.detail).toMatchObject({ to: ["ops@example.com"], attempts: mailAttemptsMax, error: { code: "SMTP_CONNECT_FAILED" } });
    await mailer.stop();
    store.close();
  });

  test("a full queue drops its oldest pending mail (logged as mail.dropped); notify never waits for SMTP", async () => {
    const store = storeWithMail();
    const sent: string[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const mailer = new Mailer(store, {
      send: async (options) => {
        await gate;
        sent.push(options.subject);
        return ok(options);
      },
    });
    const startedMs = Date.now();
    for (let i = 0; i < mailQueueMax + 3; i += 1) mailer.notify(event(`c${i}`));
    expect(Date.now() - startedMs).toBeLessThan(1_000);
    // c0 is being sent at once; c1 and c2 were dropped to make room for the last two.
    expect(mailer.pendingCount).toBe(mailQueueMax);
    expect(store.listActivity(1000).filter((entry) => entry.action === "mail.dropped")).toHaveLength(2);
    release();
    await settle(mailer);
    expect(sent).toHaveLength(mailQueueMax + 1);
    expect(sent[0]).toContain("replica c0");
    expect(sent.some((subject) => subject.endsWith("replica c1"))).toBe(false);
    expect(sent.at(-1)).toContain(`replica c${mailQueueMax + 2}`);
    await mailer.stop();
    store.close();
  });
});
