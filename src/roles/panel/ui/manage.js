// Manage: the pairs and components tables (updated in place from the live feed: only cells whose
// text changed are touched, and only rows in view), the restore/failback jobs (jobs.js), open
// alerts, charts, transactions and the activity log. Every section is on the one page;
// #/manage/SECTION scrolls to it.
import { del, get, seg } from "./api.js";
import { actionButtons } from "./actions.js";
import { confirmByName } from "./confirm.js";
import { describe, formatBytes, formatMs, formatRate, formatRatio, h, replace, setText } from "./dom.js";
import { renderCharts } from "./charts.js";
import { section } from "./forms.js";
import { jobList } from "./jobs.js";
import { activityList, alertList, transactionList } from "./lists.js";

const pairColumns = [
  ["name", "Pair"],
  ["client", "Client / device"],
  ["wrl", "Staging / WRL"],
  ["replica", "Replica"],
  ["state", "State"],
  ["lagMs", "Lag"],
  ["rpoMs", "RPO"],
  ["wrlFillRatio", "WRL fill"],
  ["throughputBytesPerSecond", "Throughput"],
  ["resync", "Resync"],
  ["configVersion", "Config"],
];

/** Cells whose text changes with the live feed: their text sits in a size-contained box (.live), so an update re-lays out that box only, not the table. */
const liveFields = new Set(["state", "lagMs", "rpoMs", "wrlFillRatio", "throughputBytesPerSecond", "resync", "configVersion"]);

/** The text and raw value of one live cell. */
function pairCell(pair, field) {
  switch (field) {
    case "name": return [pair.name, pair.name];
    case "client": return [`${pair.client}: ${pair.deviceName} ${pair.devicePath} (${formatBytes(pair.deviceSizeBytes)})`, pair.client];
    case "wrl": return [`${pair.staging ?? "?"} / ${pair.wrl}`, pair.wrl];
    case "replica": return [`${pair.replica}: ${pair.replicaDevicePath}`, pair.replica];
    case "state": return [pair.state ?? "–", pair.state ?? ""];
    case "lagMs": return [formatMs(pair.lagMs), pair.lagMs ?? ""];
    case "rpoMs": return [formatMs(pair.rpoMs), pair.rpoMs ?? ""];
    case "wrlFillRatio": return [formatRatio(pair.wrlFillRatio), pair.wrlFillRatio ?? ""];
    case "throughputBytesPerSecond": return [formatRate(pair.throughputBytesPerSecond), pair.throughputBytesPerSecond ?? ""];
    case "resync": {
      const resync = pair.resync;
      if (!resync || !resync.totalBytes) return ["–", ""];
      const ratio = resync.doneBytes / resync.totalBytes;
      return [`${formatRatio(ratio)} of ${formatBytes(resync.totalBytes)}`, ratio];
    }
    case "configVersion": {
      const version = pair.configVersion;
      if (!version) return ["–", ""];
      return [version.decided === version.acked ? `v${version.decided}` : `v${version.acked} → v${version.decided}`, `${version.acked}/${version.decided}`];
    }
    default: return [describe(pair[field]), ""];
  }
}

class PairsTable {
  constructor(ctx, status, onChange) {
    this.ctx = ctx;
    this.status = status;
    this.onChange = onChange;
    this.rows = new Map();
    // A live update fills only the rows in view (and none while the tab is hidden): the others keep
    // their newest pair and are filled as they come into view (or the tab is shown again), so each
    // poll round lays out and paints what is seen, whatever the number of pairs.
    this.inView = new Set();
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const row = this.rows.get(entry.target.dataset.pair);
        if (row === undefined) continue;
        if (entry.isIntersecting) {
          this.inView.add(row);
          if (!document.hidden) this.fill(row);
        } else {
          this.inView.delete(row);
        }
      }
    }, { rootMargin: "200px 0px" });
    this.onVisibility = () => {
      if (!document.hidden) for (const row of this.inView) this.fill(row);
    };
    document.addEventListener("visibilitychange", this.onVisibility);
    this.body = h("tbody", {});
    this.empty = h("p", { class: "muted", id: "pairs-empty" }, "No pairs yet: the Wizard sets one up.");
    const actions = ctx.can("operator") ? h("th", {}, "Actions") : null;
    this.element = h("div", { class: "table-wrap" }, h("table", { id: "pairs", "data-testid": "pairs" }, h("thead", {}, h("tr", {}, pairColumns.map(([, label]) => h("th", {}, label)), actions)), this.body), this.empty);
  }

  update(pairs) {
    const seen = new Set();
    // New rows go into a fragment, attached once (the first load builds every row: one layout, not one per row).
    const added = document.createDocumentFragment();
    for (const pair of pairs) {
      seen.add(pair.name);
      let row = this.rows.get(pair.name);
      if (row === undefined) {
        const cells = new Map(pairColumns.map(([field]) => [field, h("td", { "data-field": field })]));
        const texts = new Map([...cells].map(([field, cell]) => [field, liveFields.has(field) ? cell.appendChild(h("span", { class: "live" })) : cell]));
        const tr = h("tr", { "data-pair": pair.name }, [...cells.values()]);
        if (this.ctx.can("operator")) tr.append(h("td", { class: "actions" }, h("div", { class: "action-buttons" }, actionButtons(pair.name, this.ctx, this.status, this.onChange))));
        row = { tr, cells, texts, pair, filled: null };
        this.rows.set(pair.name, row);
        added.append(tr);
        this.observer.observe(tr);
      }
      row.pair = pair;
      // A new row is filled at once (the first load shows every row); then only while in view.
      if (row.filled === null || (this.inView.has(row) && !document.hidden)) this.fill(row);
    }
    this.body.append(added);
    for (const [name, row] of this.rows) {
      if (!seen.has(name)) {
        this.observer.unobserve(row.tr);
        this.inView.delete(row);
        row.tr.remove();
        this.rows.delete(name);
      }
    }
    this.empty.hidden = this.rows.size > 0;
    this.element.querySelector("table").dataset.loaded = "true";
    performance.mark("druvaa:pairs-updated"); // for profiling (bench/panel.ts --timeline)
  }

  /** Shows the row's newest pair (only the cells whose text or value changed are touched). */
  fill(row) {
    const pair = row.pair;
    if (row.filled === pair) return;
    row.filled = pair;
    for (const [field, cell] of row.cells) {
      const [text, value] = pairCell(pair, field);
      setText(row.texts.get(field), text);
      if (cell.dataset.value !== String(value)) cell.dataset.value = String(value);
    }
    if (row.tr.dataset.state !== pair.state) row.tr.dataset.state = pair.state ?? "";
    const enabled = String(pair.enabled !== false);
    if (row.tr.dataset.enabled !== enabled) row.tr.dataset.enabled = enabled;
  }

  close() {
    this.observer.disconnect();
    document.removeEventListener("visibilitychange", this.onVisibility);
  }
}

function componentStatusText(status) {
  if (status === undefined) return ["…", "unknown"];
  if (status.reachable) {
    const version = status.status?.version;
    return [`reachable${version ? ` (${version})` : ""}`, "reachable"];
  }
  return [`unreachable: ${status.error?.message ?? "no answer"}`, "unreachable"];
}

class ComponentsTable {
  constructor(ctx, onDelete) {
    this.ctx = ctx;
    this.onDelete = onDelete;
    this.rows = new Map();
    this.body = h("tbody", {});
    this.empty = h("p", { class: "muted" }, "No components yet: register one under New → Component.");
    this.element = h("div", { class: "table-wrap" }, h("table", { id: "components", "data-testid": "components" }, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Role"), h("th", {}, "Control address"), h("th", {}, "Status"), ctx.can("operator") ? h("th", {}, "") : null)), this.body), this.empty);
  }

  /** `components`: from GET /api/components or /api/status (with `reachable`); a list without status keeps the status shown. */
  update(components) {
    const seen = new Set();
    for (const component of components) {
      seen.add(component.name);
      let row = this.rows.get(component.name);
      if (row === undefined) {
        const cells = { role: h("td", { "data-field": "role" }), control: h("td", { "data-field": "control" }), status: h("td", { "data-field": "status" }, "…") };
        const remove = this.ctx.can("operator")
          ? h("td", {}, h("button", { type: "button", "data-action": "delete-component", class: "destructive", onclick: () => this.onDelete(component.name) }, "Remove"))
          : null;
        const tr = h("tr", { "data-component": component.name }, h("td", { "data-field": "name" }, component.name), cells.role, cells.control, cells.status, remove);
        row = { tr, cells };
        this.rows.set(component.name, row);
        this.body.append(tr);
      }
      setText(row.cells.role, component.role);
      setText(row.cells.control, component.control);
      if ("reachable" in component) {
        this.element.querySelector("table").dataset.statusLoaded = "true";
        const [text, value] = componentStatusText(component);
        setText(row.cells.status, text);
        if (row.cells.status.dataset.value !== value) row.cells.status.dataset.value = value;
        if (row.tr.dataset.status !== value) row.tr.dataset.status = value;
      }
    }
    for (const [name, row] of this.rows) {
      if (!seen.has(name)) {
        row.tr.remove();
        this.rows.delete(name);
      }
    }
    this.empty.hidden = this.rows.size > 0;
    this.element.querySelector("table").dataset.loaded = "true";
  }
}

export function renderManage(page, ctx) {
  const status = h("div", { id: "action-result", "data-testid": "action-result", role: "status", class: "status-line" });
  const loadError = h("div", { class: "form-error", id: "manage-error", role: "alert", hidden: true });
  const showLoadError = (failure) => {
    loadError.hidden = false;
    setText(loadError, `could not load: ${failure.message}`);
  };
  const alerts = alertList();
  const transactions = transactionList();
  const activity = activityList();
  const jobs = jobList({ startNow: false });
  // The charts (uPlot, a request per series) start once the pairs are shown, so they do not
  // compete with the first render of the table (or after chartsDelayMaxMs if the pairs do not come).
  let stopCharts = () => {};
  let chartsTimer = null;
  let closed = false;
  const startCharts = () => {
    if (closed || chartsTimer === undefined) return;
    clearTimeout(chartsTimer);
    chartsTimer = undefined;
    stopCharts = renderCharts(charts, ctx);
  };
  // The other sections (components, alerts, jobs, transactions, activity) load once the pairs are
  // shown (or after secondaryDelayMaxMs): their requests would otherwise delay the pairs' answer.
  let secondaryStarted = false;
  const startSecondary = () => {
    if (secondaryStarted || closed) return;
    secondaryStarted = true;
    get("/api/components").then((answer) => {
      components.update(answer.components);
      return get("/api/status");
    }).then((answer) => components.update(answer.components), showLoadError);
    void alerts.refresh();
    void jobs.refresh();
    void transactions.refresh();
    void activity.refresh();
  };
  // After the next frame is painted (a task queued from requestAnimationFrame runs once it is):
  // the rows show before the other sections' answers and the charts take the main thread.
  const afterPaint = (fn) => requestAnimationFrame(() => setTimeout(fn, 0));
  const showPairs = (list) => {
    pairs.update(list);
    if (!secondaryStarted) afterPaint(startSecondary);
    if (chartsTimer !== undefined) afterPaint(startCharts);
  };
  const refreshPairs = async () => {
    try {
      showPairs((await get("/api/pairs")).pairs);
    } catch (failure) {
      showLoadError(failure);
    }
    void transactions.refresh();
    void activity.refresh();
  };
  // After an action: the pairs again, and the jobs when it started one (restore, failback).
  const afterAction = (answer) => {
    if (answer?.job !== undefined) void jobs.refresh();
    return refreshPairs();
  };
  const pairs = new PairsTable(ctx, status, afterAction);
  const components = new ComponentsTable(ctx, (name) => confirmByName({
    name,
    what: "component",
    title: `Remove component "${name}"?`,
    why: "The panel stops managing and watching it; the host itself is not changed.",
    submitLabel: "Remove",
    run: async () => {
      await del(`/api/components/${seg(name)}`);
      status.dataset.outcome = "ok";
      setText(status, `component ${name} removed`);
      components.update((await get("/api/components")).components);
    },
  }));
  const charts = h("div", { id: "charts", "data-testid": "charts" });
  replace(page,
    h("h1", {}, "Manage"),
    loadError,
    status,
    section("section-pairs", "Pairs", pairs.element),
    section("section-jobs", "Jobs", jobs.element),
    section("section-components", "Components", components.element),
    section("section-alerts", "Alerts", alerts.element),
    section("section-charts", "Charts", charts),
    section("section-transactions", "Transactions", transactions.element),
    section("section-activity", "Activity log", activity.element));

  // The live feed's newest status carries the pairs (described from the panel's last poll round):
  // shown at once; GET /api/pairs (a fresh status fetch) only when it has none yet.
  const last = ctx.live?.last.status;
  if (Array.isArray(last?.pairs)) showPairs(last.pairs);
  else void get("/api/pairs").then((answer) => showPairs(answer.pairs), (failure) => {
    showLoadError(failure);
    startSecondary();
  });
  const secondaryDelayMaxMs = 1_000;
  const secondaryTimer = setTimeout(startSecondary, secondaryDelayMaxMs);
  const chartsDelayMaxMs = 1_500;
  chartsTimer = setTimeout(startCharts, chartsDelayMaxMs);

  // Each status event carries the pairs (live.ts, PairStates.fromRound). One without them (a round
  // whose pairs could not be described): re-read GET /api/pairs, at most one request in flight and
  // one every pairsRefreshMs.
  let pairsFetchedMs = 0;
  let pairsInFlight = false;
  const pairsRefreshMs = 3_000;
  const offStatus = ctx.live?.on("status", (data) => {
    if (Array.isArray(data?.pairs)) showPairs(data.pairs);
    else if (!pairsInFlight && Date.now() - pairsFetchedMs >= pairsRefreshMs) {
      pairsInFlight = true;
      pairsFetchedMs = Date.now();
      get("/api/pairs").then((answer) => showPairs(answer.pairs), () => undefined).finally(() => { pairsInFlight = false; });
    }
    if (Array.isArray(data?.components)) components.update(data.components);
  });
  const offAlert = ctx.live?.on("alert", () => void alerts.refresh());
  // The last status seen before this page opened: no blank tables while waiting for the next round.
  if (Array.isArray(last?.components)) components.update(last.components);
  return () => {
    closed = true;
    clearTimeout(chartsTimer);
    clearTimeout(secondaryTimer);
    offStatus?.();
    offAlert?.();
    stopCharts();
    jobs.close();
    pairs.close();
  };
}
