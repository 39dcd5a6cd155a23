/**
 * The DR-Panel's web UI is built into the one executable: the compiled binary, run from a directory
 * with no source tree, serves the page, every UI module, uPlot, and the help pages, byte for byte
 * as in the repository.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bunPath, repoRoot } from "../helpers/cli.ts";
import { ApiClient, strongPassword } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "druvaa-ui-binary-"));
let panel: ReturnType<typeof Bun.spawn> | undefined;
afterAll(async () => {
  panel?.kill("SIGKILL");
  await panel?.exited;
  rmSync(dir, { recursive: true, force: true });
});

/** The first stdout line of `proc` that is JSON with event "ready" (bounded by the test's timeout). */
async function readyLine(proc: ReturnType<typeof Bun.spawn>): Promise<{ url: string }> {
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the panel exited before it was ready: ${text}`);
    text += decoder.decode(value, { stream: true });
    for (const line of text.split("\n")) {
      if (line.startsWith("{") && line.includes('"ready"')) {
        reader.releaseLock();
        return JSON.parse(line) as { url: string };
      }
    }
  }
}

test("the compiled binary serves the UI, uPlot and the help pages without the source tree", async () => {
  const build = Bun.spawnSync({ cmd: [bunPath, join(repoRoot, "scripts/build-binaries.ts"), "--target", "linux-x64", "--outdir", join(dir, "dist")], cwd: repoRoot, stdout: "pipe", stderr: "pipe" });
  expect(build.exitCode, build.stderr.toString()).toBe(0);
  const binary = JSON.parse(build.stdout.toString()).built["linux-x64"] as string;

  const elsewhere = mkdtempSync(join(dir, "cwd-"));
  panel = Bun.spawn({ cmd: [binary, "panel", "--listen", "127.0.0.1:0", "--db", join(elsewhere, "panel.db"), "--insecure", "--json"], cwd: elsewhere, stdout: "pipe", stderr: "pipe", env: { PATH: "/usr/bin:/bin", NO_COLOR: "1" } });
  const { url } = await readyLine(panel);

  // The page is the repository's index.html with its assets put under the build's version.
  const page = await fetch(`${url}/`);
  expect(page.status).toBe(200);
  const html = await page.text();
  const version = /"\/assets\/([A-Za-z0-9_-]{16})\/app\.js"/.exec(html)?.[1];
  expect(version, html).toBeDefined();
  expect(html).toBe(readFileSync(join(repoRoot, "src/roles/panel/ui/index.html"), "utf8").replaceAll('"/assets/', `"/assets/${version}/`));
  const uiDir = join(repoRoot, "src/roles/panel/ui");
  const files = readdirSync(uiDir).filter((name) => name.endsWith(".js") || name.endsWith(".css"));
  expect(files.length).toBeGreaterThan(5);
  for (const name of files) {
    const response = await fetch(`${url}/assets/${version}/${name}`);
    expect(response.status, name).toBe(200);
    expect(response.headers.get("cache-control"), name).toContain("immutable");
    expect(await response.text(), name).toBe(readFileSync(join(uiDir, name), "utf8"));
  }
  expect(await (await fetch(`${url}/assets/${version}/uPlot.iife.min.js`)).text()).toBe(readFileSync(join(repoRoot, "node_modules/uplot/dist/uPlot.iife.min.js"), "utf8"));
  expect(await (await fetch(`${url}/assets/uPlot.min.css`)).text()).toBe(readFileSync(join(repoRoot, "node_modules/uplot/dist/uPlot.min.css"), "utf8"));

  const admin = new ApiClient(url);
  expect((await admin.login("admin", "druvaa")).status).toBe(200);
  expect((await admin.post("/api/password", { current: "druvaa", new: strongPassword })).status).toBe(200);
  const help = await admin.get("/api/help/pipeline");
  expect(help.status).toBe(200);
  expect(help.body.markdown).toBe(readFileSync(join(repoRoot, "docs/pipeline.md"), "utf8"));
}, 120_000);
