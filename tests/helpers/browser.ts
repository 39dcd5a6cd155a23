/**
 * Real Chromium (Debian's `chromium`, installed by scripts/setup.sh) driven by playwright-core, for
 * the DR-Panel's end-to-end tests. Screenshots are kept as test artefacts under
 * test-artifacts/NAME/ (gitignored; CI can collect them). The browser is closed by the caller's
 * afterAll even when a test fails; a browser that cannot start fails the test (never skipped).
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { repoRoot } from "./cli.ts";

export const chromiumPath = "/usr/bin/chromium";

export interface TestBrowser {
  browser: Browser;
  /** A new page in its own context (its own cookies: one per user). */
  page(): Promise<Page>;
  /** Saves a full-page screenshot as test-artifacts/NAME/NN-label.png; returns its path. */
  screenshot(page: Page, label: string): Promise<string>;
  close(): Promise<void>;
}

export async function startBrowser(name: string): Promise<TestBrowser> {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    // Root in CI: Chromium's sandbox needs an unprivileged user. --disable-dev-shm-usage: small /dev/shm in containers.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
  const dir = join(repoRoot, "test-artifacts", name);
  mkdirSync(dir, { recursive: true });
  let shot = 0;
  return {
    browser,
    async page() {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      return context.newPage();
    },
    async screenshot(page, label) {
      shot += 1;
      const path = join(dir, `${String(shot).padStart(2, "0")}-${label}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    async close() {
      await browser.close();
    },
  };
}
