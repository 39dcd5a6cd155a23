// Manage → Jobs: the restore and failback jobs the panel started on client agents (GET /api/jobs:
// every client agent's GET /jobs, newest first). Jobs are not on the live stream, so the list is
// read when Manage opens, right after an action started a job, on Refresh, every jobsRunningPollMs
// while a job runs and every jobsIdlePollMs otherwise (a job another operator started shows up);
// one request at a time, and none once the page is closed. Rows are updated in place.
// Not guaranteed: a job an agent dropped (it keeps its last 20) or an agent restarted since (jobs
// are kept in its memory) is no longer listed; its log stays on the client host.
import { get } from "./api.js";
import { describe, formatBytes, formatMs, formatTime, h, replace, setText } from "./dom.js";

const jobsRunningPollMs = 2_000;
const jobsIdlePollMs = 30_000;

const columns = [
  ["kind", "Kind"],
  ["pair", "Pair"],
  ["component", "Client host"],
  ["state", "State"],
  ["startedAtMs", "Started"],
  ["endedAtMs", "Ended"],
  ["exitCode", "Exit code"],
  ["outcome", "Outcome"],
];

const stateLabels = { running: "running", done: "done", failed: "failed" };

const number = (value, digits) => (typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "?");

/** A finished job's result (the command's --json output) as lines a user reads. */
export function resultLines(job) {
  const result = job.result;
  if (result === null || typeof result !== "object") return [];
  if (job.kind === "restore" && typeof result.sha256 === "string") {
    return [
      `restored ${result.device ?? "the device"} to ${result.to ?? "?"}${result.created ? " (created)" : ""}: ${formatBytes(result.sizeBytes)} at LSN ${result.appliedLsn ?? "?"} in ${number(result.seconds, 1)} s (${number(result.megabytesPerSecond, 1)} MB/s)`,
      `sha256 ${result.sha256} (verified)`,
      ...(result.targetSizeBytes > result.sizeBytes ? [`the target has ${formatBytes(result.targetSizeBytes)}: bytes past ${formatBytes(result.sizeBytes)} were left as they were`] : []),
    ];
  }
  if (job.kind === "failback" && typeof result.direction === "string") {
    const direction = result.direction === "dr-to-primary" ? "DR side → original primary" : "original primary → DR side";
    return [
      `${result.dryRun ? "would fail back" : "failed back"} ${direction}${result.splitBrain ? ` (split brain resolved: kept the ${result.keep === "dr" ? "DR side's" : "primary's"} writes)` : ""}`,
      `${result.dryRun ? "would send" : "sent"} ${formatBytes(result.sentBytes)} (${number(result.sentPercent, 2)} % of the volume) in ${result.ranges ?? "?"} range(s)${result.dryRun ? "; nothing changed" : `; both sides at generation ${result.generation ?? "?"}`}`,
    ];
  }
  const { ok: _ok, error: _error, ...rest } = result;
  return Object.keys(rest).length === 0 ? [] : [describe(rest)];
}

/** What to do from the panel after a refusal whose hint names the command's flags. */
const panelRetry = {
  "failback:SPLIT_BRAIN": "From the panel: Failback again on the pair, choosing which side's writes to keep.",
  "restore:TARGET_EXISTS": "From the panel: Restore again to a new path, or with \"Overwrite an existing target\" ticked.",
};

/** The outcome cell's content: the error (code, message, hint) of a failed job, the result of a done one. */
function outcomeOf(job) {
  const log = job.logPath ? h("div", { class: "job-log muted" }, `log on ${job.component}: ${job.logPath}`) : null;
  if (job.state === "failed") {
    const error = job.error ?? { code: "JOB_FAILED", message: "the job failed" };
    const retry = panelRetry[`${job.kind}:${error.code}`] ?? null;
    return [
      h("div", { class: "job-error" }, h("strong", { class: "job-error-code", "data-error-code": error.code ?? "" }, error.code ?? "ERROR"), ": ", error.message ?? ""),
      error.hint ? h("div", { class: "job-hint" }, error.hint) : null,
      retry === null ? null : h("div", { class: "job-hint" }, retry),
      log,
    ];
  }
  if (job.state === "done") return [...resultLines(job).map((line) => h("div", { class: "job-result" }, line)), log];
  return [h("div", { class: "muted" }, `${job.kind} under way on ${job.component}`), log];
}

function cellOf(job, field, nowMs) {
  switch (field) {
    case "kind": return [job.kind ?? "?", job.kind ?? ""];
    case "pair": return [job.pair ?? job.attachment ?? "–", job.pair ?? job.attachment ?? ""];
    case "component": return [job.component ?? "–", job.component ?? ""];
    case "startedAtMs": return [formatTime(job.startedAtMs), job.startedAtMs ?? ""];
    case "endedAtMs": {
      if (job.endedAtMs === null || job.endedAtMs === undefined) return [job.state === "running" ? `running for ${formatMs(Math.max(0, nowMs - job.startedAtMs))}` : "–", ""];
      return [`${formatTime(job.endedAtMs)} (took ${formatMs(job.endedAtMs - job.startedAtMs)})`, job.endedAtMs];
    }
    case "exitCode": return [job.exitCode === null || job.exitCode === undefined ? "–" : String(job.exitCode), job.exitCode ?? ""];
    default: return [describe(job[field]), ""];
  }
}

class JobsTable {
  constructor() {
    this.rows = new Map();
    this.body = h("tbody", {});
    this.empty = h("p", { class: "muted", id: "jobs-empty", hidden: true }, "No jobs yet. A pair's Restore and Failback (Manage → Pairs) run as jobs on its client host, listed here with their outcome.");
    this.table = h("table", { id: "jobs", "data-testid": "jobs" }, h("thead", {}, h("tr", {}, columns.map(([, label]) => h("th", {}, label)))), this.body);
  }

  update(jobs, nowMs) {
    const seen = new Set();
    for (const job of jobs) {
      const key = `${job.component}\u0000${job.id}`;
      seen.add(key);
      let row = this.rows.get(key);
      if (row === undefined) {
        const cells = new Map(columns.map(([field]) => [field, h("td", { "data-field": field })]));
        row = { tr: h("tr", { "data-job": job.id, "data-component": job.component ?? "" }, [...cells.values()]), cells, outcomeKey: null };
        this.rows.set(key, row);
      }
      for (const [field, cell] of row.cells) {
        if (field === "outcome") continue;
        if (field === "state") {
          const state = job.state ?? "unknown";
          if (cell.dataset.value !== state) replace(cell, h("span", { class: `badge badge-${state}` }, stateLabels[state] ?? state));
          cell.dataset.value = state;
          continue;
        }
        const [text, value] = cellOf(job, field, nowMs);
        setText(cell, text);
        if (cell.dataset.value !== String(value)) cell.dataset.value = String(value);
      }
      // The outcome is rebuilt only when the job moved on (its state or end changed).
      const outcomeKey = `${job.state}:${job.endedAtMs}`;
      if (row.outcomeKey !== outcomeKey) {
        replace(row.cells.get("outcome"), outcomeOf(job));
        row.outcomeKey = outcomeKey;
      }
      row.tr.dataset.state = job.state ?? "";
      row.tr.dataset.kind = job.kind ?? "";
      this.body.append(row.tr); // in the answer's order: newest first
    }
    for (const [key, row] of this.rows) {
      if (!seen.has(key)) {
        row.tr.remove();
        this.rows.delete(key);
      }
    }
    this.empty.hidden = this.rows.size > 0;
    this.table.dataset.loaded = "true";
  }
}

/** The Jobs section: {element, refresh(), close()}; `startNow: false` leaves the first read to the caller's refresh(). */
export function jobList({ startNow = true } = {}) {
  const table = new JobsTable();
  const error = h("div", { class: "form-error", id: "jobs-error", role: "alert", hidden: true });
  const unreachable = h("div", { class: "notice", id: "jobs-unreachable", hidden: true });
  const polling = h("span", { class: "muted", id: "jobs-polling" });
  let timer = null;
  let inFlight = null;
  let again = false;
  let closed = false;

  const schedule = (running) => {
    clearTimeout(timer);
    if (closed) return;
    timer = setTimeout(() => void refresh(), running ? jobsRunningPollMs : jobsIdlePollMs);
    setText(polling, running ? `a job is running: refreshed every ${jobsRunningPollMs / 1000} s` : "");
  };

  async function load() {
    let running = false;
    try {
      const answer = await get("/api/jobs");
      if (closed) return;
      table.update(answer.jobs, Date.now());
      running = answer.jobs.some((job) => job.state === "running");
      error.hidden = true;
      const missing = answer.unreachable ?? [];
      unreachable.hidden = missing.length === 0;
      replace(unreachable, missing.length === 0 ? null : `Jobs not shown: ${missing.map((entry) => `${entry.component} did not answer (${describe(entry.error)})`).join("; ")}`);
    } catch (failure) {
      if (closed) return;
      error.hidden = false;
      setText(error, `jobs: ${failure.message}${failure.hint ? ` — ${failure.hint}` : ""}`);
    }
    schedule(running);
  }

  /** Reads the list now (a refresh asked for while one is in flight runs once it ends). */
  async function refresh() {
    if (closed) return;
    if (inFlight !== null) {
      again = true;
      return await inFlight;
    }
    inFlight = load().finally(() => {
      inFlight = null;
    });
    await inFlight;
    if (again && !closed) {
      again = false;
      await refresh();
    }
  }

  const refreshButton = h("button", { type: "button", class: "small", id: "jobs-refresh", "data-testid": "jobs-refresh", onclick: () => void refresh() }, "Refresh");
  const element = h("div", {}, h("div", { class: "toolbar" }, refreshButton, polling), error, unreachable, h("div", { class: "table-wrap" }, table.table), table.empty);
  if (startNow) void refresh();
  return {
    element,
    refresh,
    close: () => {
      closed = true;
      clearTimeout(timer);
    },
  };
}
