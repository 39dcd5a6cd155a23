/**
 * The DR-Panel's web UI as served over HTTP by an in-process panel: the page and its assets with
 * their security headers and content types, the SPA fallback, and the help pages API.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { adminClient, ApiClient, startTestPanel, userClient, type TestPanel } from "./helpers.ts";

const repoRoot = join(import.meta.dir, "..", "..");
let panel: TestPanel;
let viewer: ApiClient;

beforeAll(async () => {
  panel = await startTestPanel({ pollIntervalMs: 60_000 });
  const admin = await adminClient(panel.url);
  viewer = await userClient(panel.url, admin, "vera", "viewer");
});
afterAll(async () => {
  await panel?.close();
});

function expectSecurityHeaders(response: Response) {
  const csp = response.headers.get("content-security-policy") ?? "";
  expect(csp).toContain("default-src 'self'");
  expect(csp).toContain("script-src 'self'");
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).not.toContain("unsafe-inline");
  expect(csp).not.toContain("unsafe-eval");
  expect(response.headers.get("x-content-type-options")).toBe("nosniff");
  expect(response.headers.get("referrer-policy")).toBe("no-referrer");
}

/** The src/href of every <script> and <link rel=stylesheet> in the page. */
function referencedAssets(html: string): string[] {
  return [...html.matchAll(/<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"/g)].map((match) => match[1]!);
}

describe("the page and its assets", () => {
  test("GET / serves the HTML page with a strict CSP and no inline script, style or handler", async () => {
    const response = await fetch(`${panel.url}/`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expectSecurityHeaders(response);
    const html = await response.text();
    expect(html).toContain('<div id="app">');
    // Every <script> has a src (nothing inline to need 'unsafe-inline'); no style attributes or on* handlers.
    for (const script of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)) {
      expect(script[1]).toMatch(/\bsrc="\/assets\//);
      expect(script[2]!.trim()).toBe("");
    }
    expect(html).not.toMatch(/<style\b|\sstyle=|\son[a-z]+=/i);
  });

  test("every asset index.html references is under this build's version, served with its content type, CSP and an immutable cache; unversioned or another version: revalidated", async () => {
    const html = await (await fetch(`${panel.url}/`)).text();
    const referenced = referencedAssets(html);
    // Nothing from another origin: only the panel's own assets (and the empty data: icon).
    expect(referenced.filter((path) => !path.startsWith("/assets/") && path !== "data:,")).toEqual([]);
    const assets = referenced.filter((path) => path.startsWith("/assets/"));
    const version = /^\/assets\/([A-Za-z0-9_-]{16})\//.exec(assets[0]!)?.[1];
    expect(version).toBeString();
    expect(assets).toEqual(expect.arrayContaining(["app.js", "style.css", "uPlot.iife.min.js", "uPlot.min.css"].map((name) => `/assets/${version}/${name}`)));
    for (const path of assets) {
      expect(path).toStartWith(`/assets/${version}/`);
      const response = await fetch(`${panel.url}${path}`);
      expect(response.status, path).toBe(200);
      expect(response.headers.get("content-type"), path).toBe(path.endsWith(".css") ? "text/css; charset=utf-8" : "text/javascript; charset=utf-8");
      expect(response.headers.get("cache-control"), path).toBe("public, max-age=31536000, immutable");
      expectSecurityHeaders(response);
      const body = await response.text();
      expect(body.length, path).toBeGreaterThan(50);
      // Unversioned, or under a version not this build's (a page from before an upgrade): the same asset, revalidated at each use.
      const name = path.slice(`/assets/${version}/`.length);
      for (const other of [`/assets/${name}`, `/assets/${"A".repeat(16)}/${name}`]) {
        const plain = await fetch(`${panel.url}${other}`);
        expect(plain.headers.get("cache-control"), other).toBe("no-cache");
        expect(await plain.text(), other).toBe(body);
        const etag = plain.headers.get("etag")!;
        expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
        // An unchanged asset is not sent again.
        const again = await fetch(`${panel.url}${other}`, { headers: { "if-none-match": etag } });
        expect(again.status, other).toBe(304);
      }
    }
    // The page itself is revalidated at every load, so an upgraded panel's page (naming its new version) is seen at once.
    const page = await fetch(`${panel.url}/`);
    expect(page.headers.get("cache-control")).toBe("no-cache");
    expect((await fetch(`${panel.url}/`, { headers: { "if-none-match": page.headers.get("etag")! } })).status).toBe(304);
    // The uPlot served is the installed library, byte for byte.
    const uplot = await (await fetch(`${panel.url}/assets/${version}/uPlot.iife.min.js`)).text();
    expect(uplot).toBe(readFileSync(join(repoRoot, "node_modules/uplot/dist/uPlot.iife.min.js"), "utf8"));
  });

  test("every module the UI imports is served too (the app loads whole)", async () => {
    const seen = new Set<string>();
    const queue = ["app.js"];
    while (queue.length > 0) {
      const name = queue.shift()!;
      if (seen.has(name)) continue;
      seen.add(name);
      const response = await fetch(`${panel.url}/assets/${name}`);
      expect(response.status, name).toBe(200);
      const source = await response.text();
      expect(source, `${name} must not parse strings as HTML`).not.toMatch(/\.innerHTML\s*=|insertAdjacentHTML|document\.write|outerHTML\s*=/);
      for (const match of source.matchAll(/^import\b[^"']*["']\.\/([^"']+)["']/gm)) queue.push(match[1]!);
    }
    expect([...seen]).toEqual(expect.arrayContaining(["app.js", "api.js", "dom.js", "wizard.js", "manage.js", "jobs.js", "charts.js", "settings.js", "help.js", "markdown.js", "live.js"]));
  });

  test("index.html preloads every module of the app (modulepreload), each served as JavaScript from this origin", async () => {
    const html = await (await fetch(`${panel.url}/`)).text();
    const preloads = [...html.matchAll(/<link\b([^>]*)>/g)].map((match) => match[1]!).filter((attrs) => /\brel="modulepreload"/.test(attrs)).map((attrs) => /\bhref="([^"]+)"/.exec(attrs)?.[1]);
    expect(preloads.length).toBeGreaterThan(0);
    for (const path of preloads) {
      expect(path).toMatch(/^\/assets\/[A-Za-z0-9_-]{16}\/[a-z-]+\.js$/);
      const response = await fetch(`${panel.url}${path}`);
      expect(response.status, path).toBe(200);
      expect(response.headers.get("content-type"), path).toBe("text/javascript; charset=utf-8");
      expectSecurityHeaders(response);
    }
    // Exactly the modules app.js imports, directly or not: a module left out is fetched late again, one named but not imported is wasted.
    const imported = new Set<string>();
    const queue = ["app.js"];
    while (queue.length > 0) {
      const name = queue.shift()!;
      const source = await (await fetch(`${panel.url}/assets/${name}`)).text();
      for (const match of source.matchAll(/^import\b[^"']*["']\.\/([^"']+)["']/gm)) {
        if (!imported.has(match[1]!)) queue.push(match[1]!);
        imported.add(match[1]!);
      }
    }
    expect(preloads.map((path) => path!.replace(/^\/assets\/[^/]+\//, "")).sort()).toEqual([...imported].filter((name) => name !== "app.js").sort());
    expect(new Set(preloads).size).toBe(preloads.length);
  });

  test("unknown assets answer 404; other paths outside /api get the page; unknown /api paths answer 404 JSON", async () => {
    for (const path of ["/assets/unknown.js", "/assets/", "/assets/%2e%2e%2fstatic.ts", "/assets/..%2F..%2Fstatic.ts"]) {
      const response = await fetch(`${panel.url}${path}`);
      expect(response.status, path).toBe(404);
      expect(await response.text(), path).not.toContain("import ");
    }
    // "/assets/../static.ts" is "/static.ts" once the URL is normalized: the page, never a file.
    for (const path of ["/manage", "/wizard/step/2", "/index.html", "/assets/../static.ts"]) {
      const response = await fetch(`${panel.url}${path}`);
      expect(response.status, path).toBe(200);
      expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(await response.text()).toMatch(/<script type="module" src="\/assets\/[A-Za-z0-9_-]{16}\/app\.js">/);
    }
    const api = await fetch(`${panel.url}/api/no-such-thing`);
    expect(api.status).toBe(404);
    expect(api.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(((await api.json()) as { error: { code: string } }).error.code).toBe("NOT_FOUND");
  });
});

describe("help pages", () => {
  test("GET /api/help lists the README and the docs with their titles", async () => {
    const answer = await viewer.get("/api/help");
    expect(answer.status).toBe(200);
    const pages = answer.body.pages as { name: string; title: string }[];
    expect(pages.map((page) => page.name)).toEqual(expect.arrayContaining(["readme", "panel", "pipeline"]));
    expect(pages.find((page) => page.name === "readme")!.title).toBe("druvaa");
    expect(pages.find((page) => page.name === "panel")!.title).toBe("The panel and managed components");
  });

  test("the step-by-step guide and the administrator's guide come first; GET /api/help/guide returns docs/guide.md", async () => {
    const pages = (await viewer.get("/api/help")).body.pages as { name: string; title: string }[];
    expect(pages.map((page) => page.name).slice(0, 3)).toEqual(["guide", "admin", "readme"]);
    const guide = await viewer.get("/api/help/guide");
    expect(guide.status).toBe(200);
    expect(guide.body).toMatchObject({ ok: true, name: "guide" });
    expect(guide.body.markdown).toBe(readFileSync(join(repoRoot, "docs/guide.md"), "utf8"));
  });

  test("every page of docs/ is a help page (installing, error codes and the rest), with its text", async () => {
    const docs = readdirSync(join(import.meta.dir, "..", "..", "docs")).filter((file) => file.endsWith(".md")).map((file) => file.slice(0, -3));
    expect(docs).toEqual(expect.arrayContaining(["guide", "admin", "install", "errors", "panel", "pipeline"]));
    const listed = ((await viewer.get("/api/help")).body.pages as { name: string }[]).map((page) => page.name);
    expect(listed).toEqual(expect.arrayContaining(docs));
    for (const name of docs) {
      const page = await viewer.get(`/api/help/${name}`);
      expect({ name, markdown: page.body.markdown }).toEqual({ name, markdown: readFileSync(join(import.meta.dir, "..", "..", "docs", `${name}.md`), "utf8") });
    }
  });

  test("GET /api/help/panel returns docs/panel.md as markdown", async () => {
    const answer = await viewer.get("/api/help/panel");
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ ok: true, name: "panel", title: "The panel and managed components" });
    expect(answer.body.markdown).toBe(readFileSync(join(repoRoot, "docs/panel.md"), "utf8"));
  });

  test("an unknown page answers 404; a name with ../ or other path characters is refused", async () => {
    const unknown = await viewer.get("/api/help/no-such-page");
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("NOT_FOUND");
    for (const name of ["..%2Fpackage", "..%2F..%2Fetc%2Fpasswd", "..%2Fpanel", "panel.md", "PANEL%00"]) {
      const answer = await viewer.get(`/api/help/${name}`);
      expect(answer.status, name).toBe(400);
      expect(answer.body.error.code).toBe("BAD_FIELD");
      expect(answer.body.error.message).toContain("name:");
      expect(JSON.stringify(answer.body)).not.toContain("markdown");
    }
    // A bare ".." is resolved by URL normalization before routing: /api/help/.. is /api, not a page.
    expect((await viewer.get("/api/help/%2E%2E")).status).toBe(404);
  });

  test("help needs a session", async () => {
    const anonymous = new ApiClient(panel.url);
    const answer = await anonymous.get("/api/help/panel");
    expect(answer.status).toBe(401);
    expect(answer.body.error.code).toBe("NOT_LOGGED_IN");
  });
});
