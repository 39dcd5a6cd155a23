/**
 * Manage's pairs table with more pairs than the window shows, in real Chromium (playwright-core):
 * every row is filled at the first load; a live update shows at once in the rows in view; a row
 * out of view shows its newest state as soon as it is scrolled into view (manage.js fills rows
 * out of view lazily, so a poll round lays out and paints only what is seen). In-process panel
 * polling every 200 ms, the managed-config fakes (config-fake.ts) over real HTTP; screenshots
 * under test-artifacts/panel-pairs/.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Page } from "playwright-core";
import { startBrowser, type TestBrowser } from "../helpers/browser.ts";
import { waitFor } from "../helpers/wait.ts";
import { fakePairBody, FakeSystem, fakeWrlBody } from "./fake-system.ts";
import type { ApiClient, TestPanel } from "./helpers.ts";

const pairCount = 40;
const names = Array.from({ length: pairCount }, (_, i) => `pair-${String(i).padStart(2, "0")}`);
const system = new FakeSystem({ staging: "127.0.0.1:16501", replica: "127.0.0.1:16503", client: "127.0.0.1:16507" });
let panel: TestPanel;
let admin: ApiClient;
let browser: TestBrowser | undefined;
let page: Page;

/** The client host's attachments as its GET /status shows them: every pair running, in `mode` unless named in `modes`. */
function setModes(modes: Record<string, string> = {}): void {
  system.client.attachments = names.map((name, i) => ({
    name, enabled: true, state: "running", pid: 5000 + i, restarts: 0, lastExit: null, addresses: null,
    status: { role: "client", mode: modes[name] ?? "normal", devices: [{ name: `disk${i}`, path: `/dev/disk${i}`, bytesWritten: 0, writes: 0 }] },
  }));
}

const stateCell = (name: string) => page.locator(`#pairs tr[data-pair="${name}"] td[data-field="state"]`);

beforeAll(async () => {
  setModes();
  ({ panel, admin } = await system.start({ pollIntervalMs: 200, config: { requestTimeoutMs: 2_000, convergeIntervalMs: 60_000 } }));
  expect((await admin.post("/api/wrls", fakeWrlBody)).status).toBe(201);
  for (const [i, name] of names.entries()) {
    const created = await admin.post("/api/pairs", fakePairBody(name, `disk${i}`));
    expect({ name, status: created.status }).toEqual({ name, status: 201 });
  }
  browser = await startBrowser("panel-pairs");
  page = await browser.page();
  const [cookieName, cookieValue] = admin.cookie!.split(";")[0]!.split("=") as [string, string];
  await page.context().addCookies([{ name: cookieName, value: cookieValue, url: panel.url }]);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await system.close();
});

test("every row is filled at the first load, with more pairs than the window shows", async () => {
  await page.goto(`${panel.url}/#/manage/pairs`);
  await page.locator("#pairs[data-loaded]").waitFor();
  expect(await page.locator("#pairs tr[data-pair]").count()).toBe(pairCount);
  expect(await page.locator('#pairs td[data-field="state"]').allTextContents()).toEqual(names.map(() => "replicating"));
  // The last row is out of view (the point of the next test).
  const last = await page.locator(`#pairs tr[data-pair="${names.at(-1)}"]`).boundingBox();
  expect(last!.y).toBeGreaterThan(page.viewportSize()!.height);
  await browser!.screenshot(page, "loaded");
}, 30_000);

test("a live update shows at once in the rows in view; a row out of view shows its newest state once scrolled to", async () => {
  const first = names[0]!;
  const last = names.at(-1)!;
  await page.evaluate(() => (globalThis as any).scrollTo(0, 0));
  setModes({ [first]: "resyncing", [last]: "resyncing" });
  await waitFor("the first row to show resyncing", 10_000, async () => (await stateCell(first).textContent()) === "resyncing");
  // The panel knows the last pair's new state too (the API is what the row is filled from).
  const listed = (await admin.get("/api/pairs")).body.pairs as { name: string; state: string }[];
  expect(listed.find((p) => p.name === last)?.state).toBe("resyncing");
  await page.locator(`#pairs tr[data-pair="${last}"]`).scrollIntoViewIfNeeded();
  await waitFor("the last row, scrolled to, to show resyncing", 5_000, async () => (await stateCell(last).textContent()) === "resyncing");
  await expect(page.locator(`#pairs tr[data-pair="${last}"]`).getAttribute("data-state")).resolves.toBe("resyncing");
  await browser!.screenshot(page, "scrolled");

  // And back: both rows follow, the first one again once scrolled back to.
  setModes();
  await waitFor("the last row back to replicating", 10_000, async () => (await stateCell(last).textContent()) === "replicating");
  await page.evaluate(() => (globalThis as any).scrollTo(0, 0));
  await waitFor("the first row back to replicating", 5_000, async () => (await stateCell(first).textContent()) === "replicating");
  // Every row agrees with the API.
  const states = (await admin.get("/api/pairs")).body.pairs.map((p: { state: string }) => p.state);
  for (const name of names) await page.locator(`#pairs tr[data-pair="${name}"]`).scrollIntoViewIfNeeded();
  await waitFor("every row to match GET /api/pairs", 5_000, async () => JSON.stringify(await page.locator('#pairs td[data-field="state"]').allTextContents()) === JSON.stringify(states));
}, 60_000);
