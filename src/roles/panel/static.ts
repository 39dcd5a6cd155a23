/**
 * The DR-Panel web UI (src/roles/panel/ui/) and the help pages (docs/guide.md, docs/admin.md, the
 * repository's README and the other docs/*.md), imported as text so `bun build --compile` embeds
 * them in the binary: the panel serves them from memory and never from the file system, so no
 * request path can name a file.
 *
 *   GET /                      index.html (also every other path outside /api and /assets: the SPA's routes)
 *   GET /assets/VERSION/NAME   the UI's scripts and styles, and uPlot's, as index.html names them:
 *                              VERSION is a hash of every asset, so the browser keeps them
 *                              (immutable) until an upgraded panel serves a page naming another
 *   GET /assets/NAME           the same, revalidated (ETag, 304) at each use; unknown → 404
 *   GET /api/help              [viewer] {pages: [{name, title}]}
 *   GET /api/help/NAME         [viewer] {name, title, markdown}; unknown → 404, a bad name → 400
 *
 * Every answer carries a strict Content-Security-Policy (scripts and styles from this origin only:
 * no inline script, no style attributes, no framing), nosniff and no-referrer. The page is
 * revalidated at every load (ETag, 304 when unchanged) and names its assets under this build's
 * VERSION, so a reload needs no request for them, and an upgraded panel is never mixed with an old
 * UI (its page names a new VERSION; the modules import each other by relative paths, so they stay
 * under their page's). An asset asked for under another VERSION (a page from before an upgrade) is
 * today's, revalidated.
 */
import { createHash } from "node:crypto";
import readmeMd from "../../../README.md" with { type: "text" };
import guideMd from "../../../docs/guide.md" with { type: "text" };
import adminMd from "../../../docs/admin.md" with { type: "text" };
import panelMd from "../../../docs/panel.md" with { type: "text" };
import pipelineMd from "../../../docs/pipeline.md" with { type: "text" };
import installMd from "../../../docs/install.md" with { type: "text" };
import errorsMd from "../../../docs/errors.md" with { type: "text" };
import uplotJs from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import uplotCss from "uplot/dist/uPlot.min.css" with { type: "text" };
import { ApiError, jsonAnswer } from "./http.ts";
import indexHtmlBundle from "./ui/index.html" with { type: "text" };
import styleCss from "./ui/style.css" with { type: "text" };
import actionsJs from "./ui/actions.js" with { type: "text" };
import apiJs from "./ui/api.js" with { type: "text" };
import appJs from "./ui/app.js" with { type: "text" };
import chartsJs from "./ui/charts.js" with { type: "text" };
import confirmJs from "./ui/confirm.js" with { type: "text" };
import domJs from "./ui/dom.js" with { type: "text" };
import formsJs from "./ui/forms.js" with { type: "text" };
import helpJs from "./ui/help.js" with { type: "text" };
import jobsJs from "./ui/jobs.js" with { type: "text" };
import listsJs from "./ui/lists.js" with { type: "text" };
import liveJs from "./ui/live.js" with { type: "text" };
import manageJs from "./ui/manage.js" with { type: "text" };
import markdownJs from "./ui/markdown.js" with { type: "text" };
import newpageJs from "./ui/newpage.js" with { type: "text" };
import recipientsJs from "./ui/recipients.js" with { type: "text" };
import settingsJs from "./ui/settings.js" with { type: "text" };
import wizardFieldsJs from "./ui/wizard-fields.js" with { type: "text" };
import wizardJs from "./ui/wizard.js" with { type: "text" };

const indexHtml = indexHtmlBundle as unknown as string;

/** Scripts and styles from this origin only; nothing inline; no framing; fetches and EventSource to this origin. */
export const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const securityHeaders = {
  "content-security-policy": contentSecurityPolicy,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
};

interface Asset {
  body: string;
  type: string;
  etag: string;
}

const asset = (body: string, type: string): Asset => ({ body, type, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"` });
const js = "text/javascript; charset=utf-8";
const css = "text/css; charset=utf-8";

/** /assets/NAME → its content. The UI's ES modules import each other by these names. */
const assets = new Map<string, Asset>([
  ["app.js", asset(appJs, js)],
  ["actions.js", asset(actionsJs, js)],
  ["api.js", asset(apiJs, js)],
  ["charts.js", asset(chartsJs, js)],
  ["confirm.js", asset(confirmJs, js)],
  ["dom.js", asset(domJs, js)],
  ["forms.js", asset(formsJs, js)],
  ["help.js", asset(helpJs, js)],
  ["jobs.js", asset(jobsJs, js)],
  ["lists.js", asset(listsJs, js)],
  ["live.js", asset(liveJs, js)],
  ["manage.js", asset(manageJs, js)],
  ["markdown.js", asset(markdownJs, js)],
  ["newpage.js", asset(newpageJs, js)],
  ["recipients.js", asset(recipientsJs, js)],
  ["settings.js", asset(settingsJs, js)],
  ["wizard-fields.js", asset(wizardFieldsJs, js)],
  ["wizard.js", asset(wizardJs, js)],
  ["style.css", asset(styleCss, css)],
  ["uPlot.iife.min.js", asset(uplotJs, js)],
  ["uPlot.min.css", asset(uplotCss, css)],
]);
/** This build's assets, hashed together: the VERSION of /assets/VERSION/NAME. */
export const assetsVersion = createHash("sha256").update([...assets].map(([name, item]) => `${name}\0${item.etag}`).join("\0")).digest("base64url").slice(0, 16);
const versionPattern = /^([A-Za-z0-9_-]{16})\/(.+)$/s;
/** The page, its /assets/ references put under this build's VERSION. */
const index = asset(indexHtml.replaceAll('"/assets/', `"/assets/${assetsVersion}/`), "text/html; charset=utf-8");
const immutable = "public, max-age=31536000, immutable";

function answer(request: Request, item: Asset, cacheControl = "no-cache"): Response {
  const headers = { ...securityHeaders, "content-type": item.type, "cache-control": cacheControl, etag: item.etag };
  if (request.headers.get("if-none-match") === item.etag) return new Response(null, { status: 304, headers });
  return new Response(item.body, { status: 200, headers });
}

/** GET of a path outside /api: an asset, 404 for an unknown one, else the single page. */
export function staticAnswer(request: Request, path: string): Response {
  if (path.startsWith("/assets/")) {
    const rest = path.slice("/assets/".length);
    const versioned = versionPattern.exec(rest);
    const item = assets.get(versioned === null ? rest : versioned[2]!);
    if (item === undefined) return jsonAnswer({ ok: false, error: { code: "NOT_FOUND", message: `no such asset: ${path}` } }, 404, securityHeaders);
    return answer(request, item, versioned?.[1] === assetsVersion ? immutable : "no-cache");
  }
  if (path === "/favicon.ico") return new Response(null, { status: 404, headers: securityHeaders });
  return answer(request, index);
}

export interface HelpPage {
  name: string;
  title: string;
  markdown: string;
}

const titleOf = (markdown: string, fallback: string) => /^#\s+(.+?)\s*$/m.exec(markdown)?.[1] ?? fallback;

/** The help pages: the step-by-step guide and the administrator's guide first, then the README, then the other docs/*.md (docs/NAME.md is page NAME). */
export const helpPages: readonly HelpPage[] = [
  ["guide", guideMd],
  ["admin", adminMd],
  ["readme", readmeMd],
  ["install", installMd],
  ["errors", errorsMd],
  ["panel", panelMd],
  ["pipeline", pipelineMd],
].map(([name, markdown]) => ({ name: name!, title: titleOf(markdown!, name!), markdown: markdown! }));

const helpNamePattern = /^[a-z0-9][a-z0-9-]{0,63}$/;

export function helpList(): unknown {
  return { ok: true, pages: helpPages.map(({ name, title }) => ({ name, title })) };
}

export function helpPage(name: string): unknown {
  if (!helpNamePattern.test(name)) throw new ApiError(400, "BAD_FIELD", `name: is not a help page name: ${JSON.stringify(name.slice(0, 80))}`, "GET /api/help lists the pages");
  const page = helpPages.find((item) => item.name === name);
  if (page === undefined) throw new ApiError(404, "NOT_FOUND", `no help page "${name}"`, "GET /api/help lists the pages");
  return { ok: true, ...page };
}
