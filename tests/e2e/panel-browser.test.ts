/**
 * The DR-Panel end to end, in real Chromium (Debian's chromium through playwright-core), against
 * real processes: `druvaa panel`, a managed staging server, a managed replica and a client agent,
 * an aiosmtpd SMTP server, qemu-io as the workload. Screenshots are kept in
 * test-artifacts/panel-browser/.
 *
 * 1. The first login as admin/druvaa shows only the password change; after it, the menu.
 * 2. Components registered in New, email set up in Settings; the Wizard creates a WRL and a pair
 *    across the three running components in one transaction; the pair's export takes writes.
 * 3. The replica is frozen (SIGSTOP) while writes go on: the Manage page shows lag; thawed, the
 *    lag falls to zero and the replica equals the primary.
 * 4. SIGKILL of the staging server: a COMPONENT_UNREACHABLE alert in the page within seconds and a
 *    mail at the SMTP server; the staging restarted: the alert clears (page and mail).
 * 5. A restore from Manage is a job on the client agent: Manage → Jobs shows it done, the restored
 *    image equals the primary; a second one onto the same file fails with the command's error.
 * 6. Bad input ("12 potatoes", an HTML name) is refused next to its field, as text; no browser
 *    dialog opens in the whole run (one fails the test). Help opens the step-by-step guide.
 * 7. A viewer sees pairs and jobs but no action, and the API refuses every change it tries (403).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { startBrowser, type TestBrowser } from "../helpers/browser.ts";
import { startAiosmtpd, type Aiosmtpd } from "../fixtures/smtp/aiosmtpd.ts";
import { freePort, waitFor } from "../helpers/wait.ts";
import { createImage, isAlive, MiB, plainSha256, qemuIo, sha256File, startTracked } from "./helpers.ts";
import type { RoleProcess } from "../../src/demo/processes.ts";

/** The page's DOM, as the functions run in the browser see it (the test's own lib has no DOM types). */
declare const document: {
  querySelector(selector: string): { getAttribute(name: string): string | null; textContent: string | null } | null;
  getElementById(id: string): { textContent: string | null } | null;
};

type Stored = { rcptTos: string[]; headers: Record<string, string>; text: string | null };

const volumeBytes = 32 * MiB;
const newPassword = "blue harbour lantern 42";
const dir = mkdtempSync(join(tmpdir(), "druvaa-panel-browser-"));
const processes: RoleProcess[] = [];
let smtp: Aiosmtpd<Stored> | undefined;
let browser: TestBrowser | undefined;
let admin: Page;
let panelUrl = "";
const ports: Record<string, number> = {};
/** Every browser dialog (alert, confirm, prompt) and CSP violation of any page: the panel must have none. */
const pageFaults: string[] = [];

function watchPage(page: Page): Page {
  page.on("dialog", (dialog) => {
    pageFaults.push(`${dialog.type()}: ${dialog.message()}`);
    void dialog.dismiss().catch(() => undefined);
  });
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) pageFaults.push(`CSP: ${message.text()}`);
  });
  return page;
}

async function start(name: string, args: string[]): Promise<RoleProcess> {
  const role = await startTracked(name, args);
  processes.push(role);
  return role;
}

const stagingArgs = () => ["staging", "serve", "--managed", "--insecure", "--listen", `127.0.0.1:${ports.stagingData}`, "--control", `127.0.0.1:${ports.stagingControl}`, "--state-dir", join(dir, "staging"), "--node-id", "staging1"];

async function cell(page: Page, pair: string, field: string): Promise<string | null> {
  return page.getAttribute(`#pairs tr[data-pair="${pair}"] td[data-field="${field}"]`, "data-value");
}

beforeAll(async () => {
  for (const name of ["stagingData", "stagingControl", "replicaData", "replicaControl", "replicaRestore", "agentControl", "panel"]) ports[name] = freePort();
  smtp = await startAiosmtpd<Stored>(join(dir, "mail"));
  await createImage(join(dir, "primary.img"), volumeBytes);
  await start("replica", ["replica", "apply", "--managed", "--insecure", "--listen", `127.0.0.1:${ports.replicaData}`, "--control", `127.0.0.1:${ports.replicaControl}`, "--restore", `127.0.0.1:${ports.replicaRestore}`, "--state-dir", join(dir, "replica"), "--node-id", "replica1"]);
  await start("staging", stagingArgs());
  await start("agent", ["client", "agent", "--insecure", "--control", `127.0.0.1:${ports.agentControl}`, "--state-dir", join(dir, "client"), "--node-id", "db1"]);
  const panel = await start("panel", ["panel", "--insecure", "--listen", `127.0.0.1:${ports.panel}`, "--db", join(dir, "panel.db")]);
  panelUrl = String(panel.ready.url);
  browser = await startBrowser("panel-browser");
  admin = watchPage(await browser.page());
}, 120_000);

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  for (const role of processes.reverse()) {
    if (!isAlive(role.pid)) continue;
    try { process.kill(role.pid, "SIGCONT"); } catch { /* gone meanwhile */ }
    await role.stop().catch(() => undefined);
  }
  smtp?.proc.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

async function login(page: Page, user: string, password: string): Promise<void> {
  await page.goto(`${panelUrl}/`);
  await page.fill("#login-user", user);
  await page.fill("#login-password", password);
  await page.click("#login-submit");
}

async function submitForm(page: Page, id: string, fields: Record<string, string>, expectInResult?: RegExp): Promise<void> {
  for (const [selector, value] of Object.entries(fields)) {
    const tag = await page.$eval(selector, (element) => element.tagName);
    if (tag === "SELECT") await page.selectOption(selector, value);
    else await page.fill(selector, value);
  }
  await page.click(`#${id}-submit`);
  if (expectInResult !== undefined) {
    await page.waitForFunction(([resultId, pattern]) => new RegExp(pattern!).test(document.getElementById(resultId!)?.textContent ?? ""), [`${id}-result`, expectInResult.source], { timeout: 15_000 });
  }
}

/** Opens the pair's Restore dialog in Manage and confirms it onto `to`; returns the job's id from the outcome line. */
async function restoreFromManage(to: string): Promise<string> {
  await admin.click('#pairs tr[data-pair="pair-db"] button[data-action="restore"]');
  await admin.waitForSelector("#confirm-dialog[open] #confirm-to");
  await admin.fill("#confirm-input", "pair-db");
  await admin.fill("#confirm-to", to);
  await admin.click("#confirm-ok");
  // The dialog closes once the action was answered: the outcome line then names this job (not the last one).
  await admin.waitForSelector("#confirm-dialog", { state: "hidden", timeout: 30_000 });
  const id = /job (\S+) running/.exec((await admin.textContent('#action-result[data-outcome="ok"]:has(#action-jobs-link)')) ?? "")?.[1];
  expect(id).toMatch(/-restore-/);
  return id!;
}

/** A Jobs row's cells: the state's raw value, the others' text. */
async function jobFields(id: string): Promise<Record<string, string | null>> {
  return admin.$$eval(`#jobs tr[data-job="${id}"] td[data-field]`, (cells) => Object.fromEntries(cells.map((cell) => [cell.getAttribute("data-field"), cell.getAttribute("data-field") === "state" ? cell.getAttribute("data-value") : cell.textContent])));
}

describe("DR-Panel in Chromium, with real components", () => {
  test("the first login forces the password change before anything else", async () => {
    await login(admin, "admin", "druvaa");
    await admin.waitForSelector("#pw-new");
    expect(await admin.$('[data-testid="nav-manage"]')).toBeNull();
    // index.html's modulepreload links are there, and the CSP let each one load (no violation: see watchPage).
    expect(await admin.$$eval('link[rel="modulepreload"]', (links) => links.length)).toBeGreaterThan(10);
    await browser!.screenshot(admin, "first-login-password-change");
    // A weak new password is refused next to its field, and nothing else opens.
    await admin.fill("#pw-current", "druvaa");
    await admin.fill("#pw-new", "short");
    await admin.fill("#pw-confirm", "short");
    await admin.click("#pw-submit");
    await admin.waitForSelector('.field-error[data-error-for="new"]:not([hidden])');
    expect(await admin.textContent('.field-error[data-error-for="new"]')).toMatch(/10 characters/);
    await admin.fill("#pw-new", newPassword);
    await admin.fill("#pw-confirm", newPassword);
    await admin.click("#pw-submit");
    await admin.waitForSelector('[data-testid="nav-wizard"]');
    await browser!.screenshot(admin, "after-password-change");
  });

  test("components and email are set up in the UI; the wizard creates a pair across the running client, staging and replica", async () => {
    await admin.goto(`${panelUrl}/#/new/component`);
    for (const [name, role, port] of [["client1", "client", ports.agentControl], ["staging1", "staging", ports.stagingControl], ["replica1", "replica", ports.replicaControl]] as const) {
      await submitForm(admin, "new-component", { "#new-component-name": name, "#new-component-role": role, "#new-component-control": `127.0.0.1:${port}` }, new RegExp(name));
    }
    await admin.goto(`${panelUrl}/#/settings/mail`);
    await admin.waitForSelector("#mail-host");
    await admin.uncheck("#mail-enabled").catch(() => undefined);
    await submitForm(admin, "mail-settings", { "#mail-host": "127.0.0.1", "#mail-port": String(smtp!.port), "#mail-from": "druvaa@panel.test", "#mail-starttls": "never" }, /saved/);
    await admin.check("#mail-enabled");
    await submitForm(admin, "mail-settings", {}, /saved/);
    await submitForm(admin, "mail-recipient", { "#recipient-address": "ops@example.test", "#recipient-codes": "COMPONENT_UNREACHABLE", "#recipient-components": "*" }, /saved/);
    await browser!.screenshot(admin, "settings-mail");

    await admin.goto(`${panelUrl}/#/wizard`);
    await admin.waitForSelector("#wizard[data-ready]");
    await admin.fill("#wiz-pair-name", "pair-db");
    await admin.selectOption("#wiz-client", "client1");
    await admin.fill("#wiz-device-path", join(dir, "primary.img"));
    await admin.click("#wiz-probe");
    await admin.waitForFunction(() => document.querySelector("#wiz-probe-result")?.getAttribute("data-kind") === "file");
    expect(await admin.getAttribute("#wiz-probe-result", "data-size-bytes")).toBe(String(volumeBytes));
    await admin.fill("#wiz-device-name", "disk0");
    await admin.fill("#wiz-export", `unix:${join(dir, "disk0.sock")}`);
    await admin.click("#wiz-next");
    await admin.selectOption("#wiz-staging", "staging1");
    await admin.selectOption("#wiz-wrl-mode", "new");
    await admin.fill("#wiz-wrl-name", "fast");
    await admin.fill("#wiz-wrl-paths", join(dir, "fast.wrl"));
    await admin.fill("#wiz-wrl-size", "64MiB");
    await admin.click("#wiz-next");
    await admin.selectOption("#wiz-replica", "replica1");
    await admin.fill("#wiz-replica-path", join(dir, "replica-disk0.img"));
    await admin.click("#wiz-next");
    await admin.selectOption("#wiz-initial-sync", "none");
    await admin.fill("#wiz-changemap", join(dir, "pair-db.map"));
    await admin.click("#wiz-next");
    await admin.waitForSelector("#wiz-review");
    await browser!.screenshot(admin, "wizard-review");
    await admin.click("#wiz-finish");
    await admin.waitForSelector("#wiz-result[data-tx-state]", { timeout: 90_000 });
    const outcome = await admin.getAttribute("#wiz-result", "data-tx-state");
    await browser!.screenshot(admin, "wizard-outcome");
    expect({ outcome, text: await admin.textContent("#wiz-result") }).toMatchObject({ outcome: "committed" });
    await admin.waitForSelector("#wiz-done");

    // The pair really runs: the client host exports the device and its writes reach the replica.
    const uri = `nbd+unix:///disk0?socket=${join(dir, "disk0.sock")}`;
    // The attachment starts as the commit lands; its export may take a moment to take connections.
    await waitFor("the pair's export taking writes", 30_000, async () => (await qemuIo(uri, ["write -P 0x5a 0 4M", "write -P 0xa5 8M 1M"])).exitCode === 0);
  }, 180_000);

  test("a workload with the replica frozen shows lag on the Manage page; thawed, the lag falls to zero and the replica equals the primary", async () => {
    await admin.goto(`${panelUrl}/#/manage/pairs`);
    await admin.waitForSelector('#pairs tr[data-pair="pair-db"]');
    await admin.waitForFunction(() => document.querySelector('#pairs tr[data-pair="pair-db"] td[data-field="state"]')?.getAttribute("data-value") === "replicating", undefined, { timeout: 30_000 });
    const replica = processes.find((role) => role.name === "replica")!;
    process.kill(replica.pid, "SIGSTOP");
    try {
      const uri = `nbd+unix:///disk0?socket=${join(dir, "disk0.sock")}`;
      for (let round = 0; round < 6; round += 1) expect((await qemuIo(uri, [`write -P ${0x10 + round} ${(12 + round) * MiB} 512k`])).exitCode).toBe(0);
      await waitFor("lag shown", 30_000, async () => Number((await cell(admin, "pair-db", "lagMs")) || 0) > 0);
      await browser!.screenshot(admin, "manage-lag");
    } finally {
      process.kill(replica.pid, "SIGCONT");
    }
    await waitFor("lag back to zero", 60_000, async () => (await cell(admin, "pair-db", "lagMs")) === "0");
    await browser!.screenshot(admin, "manage-caught-up");
    const replicaImage = join(dir, "replica-disk0.img");
    await waitFor("replica equal to the primary", 30_000, async () => (await plainSha256(replicaImage, volumeBytes)) === (await sha256File(join(dir, "primary.img"))));
  }, 180_000);

  test("SIGKILL of the staging server raises an alert in the page within seconds and mails it; a restart clears it", async () => {
    const staging = processes.find((role) => role.name === "staging")!;
    const before = smtp!.messages().length;
    process.kill(staging.pid, "SIGKILL");
    await staging.proc.exited;
    const killedAt = Date.now();
    await admin.goto(`${panelUrl}/#/manage/alerts`);
    await admin.waitForSelector('#alerts li[data-alert-code="COMPONENT_UNREACHABLE"][data-component="staging1"].open', { timeout: 20_000 });
    const seenAfterMs = Date.now() - killedAt;
    await browser!.screenshot(admin, "alert-staging-down");
    expect(Number(await admin.getAttribute("#alert-badge", "data-count"))).toBeGreaterThanOrEqual(1);
    const mail = await waitFor("the alert mail", 20_000, () => smtp!.messages().slice(before).find((message) => /staging1/.test(message.headers.Subject ?? "")));
    expect(mail.rcptTos).toEqual(["ops@example.test"]);
    expect(mail.headers.Subject).toMatch(/COMPONENT_UNREACHABLE/);
    console.log(`alert shown ${seenAfterMs} ms after the SIGKILL`);

    processes.splice(processes.indexOf(staging), 1);
    await start("staging", stagingArgs());
    await admin.waitForSelector('#alerts li[data-alert-code="COMPONENT_UNREACHABLE"][data-component="staging1"].open', { state: "detached", timeout: 20_000 });
    await waitFor("the alert badge back at 0", 20_000, async () => (await admin.getAttribute("#alert-badge", "data-count")) === "0");
    await browser!.screenshot(admin, "alert-cleared");
    // Replication goes on after the restart: a new write reaches the replica.
    const uri = `nbd+unix:///disk0?socket=${join(dir, "disk0.sock")}`;
    await waitFor("writes accepted again", 30_000, async () => (await qemuIo(uri, ["write -P 0x77 20M 256k"])).exitCode === 0);
    await waitFor("replica equal to the primary", 60_000, async () => (await plainSha256(join(dir, "replica-disk0.img"), volumeBytes)) === (await sha256File(join(dir, "primary.img"))));
  }, 180_000);

  test("a restore started from Manage runs as a job on the client host; Manage → Jobs shows it done and the restored image equals the primary; a second one onto the same file fails with the command's error", async () => {
    const restored = join(dir, "restored-disk0.img");
    const primarySha = await sha256File(join(dir, "primary.img"));
    await admin.goto(`${panelUrl}/#/manage/jobs`);
    await admin.waitForSelector("#jobs[data-loaded]");
    expect(await admin.isVisible("#jobs-empty")).toBe(true);
    await admin.waitForSelector('#pairs tr[data-pair="pair-db"]');

    const first = await restoreFromManage(restored);
    // The outcome line links to the Jobs section, where the job runs to its end.
    await admin.click("#action-jobs-link");
    await admin.waitForSelector(`#jobs tr[data-job="${first}"] td[data-field="state"][data-value="done"]`, { timeout: 120_000 });
    expect(await admin.isVisible("#jobs-empty")).toBe(false);
    const fields = await jobFields(first);
    expect(fields).toMatchObject({ kind: "restore", pair: "pair-db", component: "client1", state: "done", exitCode: "0" });
    expect(fields.outcome).toContain(`restored disk0 to ${restored}`);
    expect(fields.outcome).toContain(`sha256 ${primarySha}`);
    expect(fields.endedAtMs).toMatch(/took /);
    expect(await sha256File(restored, volumeBytes)).toBe(primarySha);

    // Onto the same file again: the restore command refuses an existing file (no force); the job fails with its error and hint.
    const second = await restoreFromManage(restored);
    await admin.waitForSelector(`#jobs tr[data-job="${second}"] td[data-field="state"][data-value="failed"]`, { timeout: 120_000 });
    const failed = await jobFields(second);
    expect(failed).toMatchObject({ kind: "restore", state: "failed", exitCode: "4" });
    expect(failed.outcome).toMatch(/TARGET_EXISTS: .*the file exists and is not empty.*Add --force.*Restore again to a new path, or with "Overwrite an existing target" ticked/s);
    // Newest first; the Jobs menu entry opens the same view.
    await admin.click('[data-testid="nav-manage-jobs"]');
    await admin.waitForSelector(`#jobs tr[data-job="${second}"]`);
    expect(await admin.$$eval("#jobs tbody tr", (rows) => rows.map((tr) => tr.getAttribute("data-job")))).toEqual([second, first]);
    await browser!.screenshot(admin, "manage-jobs");
    expect(await sha256File(restored, volumeBytes)).toBe(primarySha);
  }, 300_000);

  test("bad input is refused next to its field as text, without any browser dialog; Help opens the step-by-step guide", async () => {
    const htmlName = "<img src=x onerror=alert(1)>";
    await admin.goto(`${panelUrl}/#/new/wrl`);
    await admin.waitForSelector('#new-wrl-staging option[value="staging1"]', { state: "attached" });
    await submitForm(admin, "new-wrl", { "#new-wrl-name": htmlName, "#new-wrl-staging": "staging1", "#new-wrl-paths": join(dir, "other.wrl"), "#new-wrl-size": "12 potatoes", "#new-wrl-replica": "replica1" });
    const sizeError = '#new-wrl .field-error[data-error-for="sizeBytes"]';
    const nameError = '#new-wrl .field-error[data-error-for="name"]';
    await admin.waitForSelector(`${sizeError}:not([hidden])`);
    expect(await admin.textContent(sizeError)).toMatch(/^Size: must be a size such as 10GiB/);
    expect(await admin.isVisible(nameError)).toBe(true);
    expect(await admin.textContent(nameError)).toMatch(/^Name: must be 1–64 letters, digits/);
    expect(await admin.getAttribute("#new-wrl-size", "aria-invalid")).toBe("true");
    await browser!.screenshot(admin, "new-wrl-bad-input");
    // A good size clears its error; the name is still refused. Nothing was sent.
    await submitForm(admin, "new-wrl", { "#new-wrl-size": "64MiB" });
    await admin.waitForSelector(`${nameError}:not([hidden])`);
    expect(await admin.isHidden(sizeError)).toBe(true);
    expect(await admin.textContent("#new-wrl-tx")).toBe("");

    // The wizard's first step: the pair name is refused there and the wizard stays on that step.
    await admin.goto(`${panelUrl}/#/wizard`);
    await admin.waitForSelector("#wizard[data-ready]");
    await admin.fill("#wiz-pair-name", htmlName);
    await admin.click("#wiz-next");
    await admin.waitForSelector('.field-error[data-error-for="pair.name"]:not([hidden])');
    expect(await admin.getAttribute("#wiz-step", "data-step")).toBe("1");
    expect(await admin.inputValue("#wiz-pair-name")).toBe(htmlName);
    // No markup from the input made it into the page, and no WRL was created.
    expect(await admin.$$eval("img", (images) => images.length)).toBe(0);
    const wrls = await admin.evaluate(async () => ((await (await fetch("/api/wrls")).json()) as { wrls: { name: string }[] }).wrls.map((wrl) => wrl.name));
    expect(wrls).toEqual(["fast"]);

    await admin.goto(`${panelUrl}/#/help`);
    await admin.waitForSelector('#help-page[data-help="guide"][data-loaded]');
    await admin.waitForSelector('#help-list a[data-help="guide"].active');
    expect(pageFaults).toEqual([]);
  }, 120_000);

  test("a viewer sees no action, and the HTTP API refuses every change a viewer tries", async () => {
    await admin.goto(`${panelUrl}/#/settings/users`);
    await submitForm(admin, "user-add", { "#user-name": "vera", "#user-role": "viewer", "#user-password": "vera sees everything" });
    await admin.waitForSelector('#users tr[data-user="vera"]');
    const viewer = watchPage(await browser!.page());
    await login(viewer, "vera", "vera sees everything");
    const mustChange = await viewer.waitForSelector("#pw-new, #pairs", { timeout: 15_000 });
    if ((await mustChange.getAttribute("id")) === "pw-new") {
      await viewer.fill("#pw-current", "vera sees everything");
      await viewer.fill("#pw-new", "vera still sees all");
      await viewer.fill("#pw-confirm", "vera still sees all");
      await viewer.click("#pw-submit");
    }
    await viewer.goto(`${panelUrl}/#/manage/pairs`);
    await viewer.waitForSelector('#pairs tr[data-pair="pair-db"]');
    await viewer.waitForSelector("#components[data-loaded]");
    await browser!.screenshot(viewer, "viewer-manage");
    expect(await viewer.$$eval("button[data-action]", (buttons) => buttons.length)).toBe(0);
    // A viewer reads the jobs too (GET /api/jobs is [viewer]).
    await viewer.click('[data-testid="nav-manage-jobs"]');
    await viewer.waitForSelector('#jobs tr[data-job] td[data-field="state"][data-value="done"]');
    expect(await viewer.$$eval("#jobs tbody tr", (rows) => rows.length)).toBe(2);
    expect(await viewer.$('[data-testid="nav-wizard"]')).toBeNull();
    expect(await viewer.$('[data-testid="nav-new"]')).toBeNull();

    // The same session, calling the API directly with its CSRF token: every change is 403.
    const refusals = await viewer.evaluate(async () => {
      const session = (await (await fetch("/api/session")).json()) as { csrfToken: string };
      const call = async (method: string, path: string, body?: unknown) => {
        const response = await fetch(path, { method, headers: { "content-type": "application/json", "x-csrf-token": session.csrfToken }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
        return [`${method} ${path}`, response.status, ((await response.json()) as { error?: { code?: string } }).error?.code] as const;
      };
      return [
        await call("POST", "/api/pairs/pair-db/actions", { action: "stop" }),
        await call("POST", "/api/pairs/pair-db/actions", { action: "failover", export: "127.0.0.1:10999", confirm: "pair-db" }),
        await call("DELETE", "/api/pairs/pair-db"),
        await call("POST", "/api/wizard", { pair: { name: "x" } }),
        await call("POST", "/api/wrls", { name: "w2" }),
        await call("POST", "/api/components", { name: "evil", role: "client", control: "127.0.0.1:1" }),
        await call("DELETE", "/api/components/staging1"),
        await call("POST", "/api/users", { name: "mallory", role: "admin", password: "mallory takes over" }),
        await call("PUT", "/api/settings/mail", { host: "evil.test", port: 25, from: "a@b.c", starttls: "never", enabled: true }),
      ];
    });
    for (const [what, status, code] of refusals) expect({ what, status, code }).toEqual({ what, status: 403, code: "FORBIDDEN" });
    // Nothing changed: the pair still runs, and no user or component was added.
    const after = await admin.evaluate(async () => ({
      pairs: ((await (await fetch("/api/pairs")).json()) as { pairs: { name: string; enabled: boolean }[] }).pairs.map((pair) => [pair.name, pair.enabled]),
      users: ((await (await fetch("/api/users")).json()) as { users: { name: string }[] }).users.map((user) => user.name).sort(),
      components: ((await (await fetch("/api/components")).json()) as { components: { name: string }[] }).components.map((component) => component.name).sort(),
    }));
    expect(after).toEqual({ pairs: [["pair-db", true]], users: ["admin", "vera"], components: ["client1", "replica1", "staging1"] });
    expect(pageFaults).toEqual([]);
  }, 120_000);
});
