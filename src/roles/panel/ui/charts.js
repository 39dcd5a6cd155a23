// Charts with uPlot (loaded as a classic script: window.uPlot). One chart per series, from
// GET /api/metrics/series and GET /api/metrics. Live: on a status event a chart fetches only the
// points after its last one (at most every chartRefreshMs) and appends them; charts are never
// rebuilt for an update.
import { get } from "./api.js";
import { formatBytes, formatMs, formatRate, formatRatio, h, replace } from "./dom.js";

const chartRefreshMs = 10_000;
const chartsShownMax = 8;
const pointsKeptMax = 2000;
const ranges = [["900000", "last 15 min"], ["3600000", "last hour"], ["21600000", "last 6 hours"], ["86400000", "last day"], ["604800000", "last week"]];
/** Which series are shown first: one of each kind the brief asks for, in this order. */
const kinds = [/throughput|bytesPerSecond/i, /lag/i, /rpo/i, /fill/i, /compression/i, /resync/i];

function formatterOf(unit) {
  const u = String(unit ?? "").toLowerCase();
  if (u.includes("/s")) return formatRate;
  if (u === "bytes" || u === "b") return formatBytes;
  if (u === "ms") return formatMs;
  if (u === "ratio") return formatRatio;
  return (value) => (value === null || value === undefined ? "–" : Number(value).toLocaleString(undefined, { maximumFractionDigits: 2 }));
}

function pickDefault(series) {
  const chosen = [];
  for (const kind of kinds) {
    const match = series.find((item) => kind.test(item.name) && !chosen.includes(item));
    if (match) chosen.push(match);
  }
  for (const item of series) if (chosen.length < chartsShownMax / 2 && !chosen.includes(item)) chosen.push(item);
  return chosen.slice(0, chartsShownMax);
}

class Chart {
  constructor(series, rangeMs, onRemove) {
    this.series = series;
    this.rangeMs = rangeMs;
    this.lastMs = 0;
    this.fetchedAtMs = 0;
    this.busy = false;
    this.xs = [];
    this.ys = [];
    this.plotBox = h("div", { class: "plot" });
    this.note = h("div", { class: "muted chart-note" });
    this.element = h("div", { class: "chart", "data-series": series.name, "data-testid": "chart" },
      h("div", { class: "chart-head" }, h("span", { class: "chart-title" }, `${series.name} (${series.unit ?? ""})`), h("button", { type: "button", class: "small", title: "Remove this chart", onclick: onRemove }, "×")),
      this.plotBox, this.note);
  }

  async load() {
    const toMs = Date.now();
    const fromMs = toMs - this.rangeMs;
    this.busy = true; // no append while the first load is under way
    this.fetchedAtMs = toMs;
    try {
      const answer = await get(`/api/metrics?series=${encodeURIComponent(this.series.name)}&fromMs=${fromMs}&toMs=${toMs}`);
      this.xs = answer.points.map(([t]) => t / 1000);
      this.ys = answer.points.map(([, v]) => v);
      this.lastMs = answer.points.length > 0 ? answer.points[answer.points.length - 1][0] : fromMs;
      this.draw();
    } finally {
      this.busy = false;
    }
  }

  draw() {
    if (typeof window.uPlot !== "function") {
      this.note.textContent = "The charting library did not load.";
      return;
    }
    this.note.textContent = this.xs.length === 0 ? "No points in this range yet." : "";
    const format = formatterOf(this.series.unit);
    if (this.plot === undefined) {
      const width = Math.max(300, this.element.clientWidth - 16 || 600);
      this.plot = new window.uPlot({
        width,
        height: 180,
        legend: { show: true },
        // The x axis always spans the chosen range up to now, so one point (or none) still reads as a time line.
        scales: { x: { time: true, range: () => [(Date.now() - this.rangeMs) / 1000, Date.now() / 1000] } },
        series: [{}, { label: this.series.name.split("/").pop(), stroke: "#2b6cb0", width: 1.5, value: (_u, v) => format(v) }],
        axes: [{}, { size: 80, values: (_u, splits) => splits.map(format) }],
      }, [this.xs, this.ys], this.plotBox);
    } else {
      this.plot.setData([this.xs, this.ys]);
    }
  }

  /** Appends the points after the last one (no rebuild). */
  async append() {
    const nowMs = Date.now();
    if (this.busy || nowMs - this.fetchedAtMs < chartRefreshMs) return;
    this.busy = true;
    try {
      const answer = await get(`/api/metrics?series=${encodeURIComponent(this.series.name)}&fromMs=${this.lastMs + 1}&toMs=${nowMs}`);
      this.fetchedAtMs = nowMs;
      const fresh = answer.points.filter(([t]) => t > this.lastMs);
      if (fresh.length === 0) return;
      for (const [t, v] of fresh) {
        this.xs.push(t / 1000);
        this.ys.push(v);
      }
      this.lastMs = fresh[fresh.length - 1][0];
      const oldestS = (nowMs - this.rangeMs) / 1000;
      let drop = 0;
      while (drop < this.xs.length && (this.xs[drop] < oldestS || this.xs.length - drop > pointsKeptMax)) drop += 1;
      if (drop > 0) {
        this.xs.splice(0, drop);
        this.ys.splice(0, drop);
      }
      this.draw();
    } catch {
      // The next status event tries again.
    } finally {
      this.busy = false;
    }
  }

  resize() {
    this.plot?.setSize({ width: Math.max(300, this.element.clientWidth - 16), height: 180 });
  }

  destroy() {
    this.plot?.destroy();
  }
}

/** Fills `container` with the chart controls and charts; returns the cleanup. */
export function renderCharts(container, ctx) {
  const charts = new Map();
  const grid = h("div", { class: "chart-grid" });
  const range = h("select", { id: "chart-range", "data-testid": "chart-range" }, ranges.map(([value, label]) => h("option", { value, selected: value === "3600000" }, label)));
  const picker = h("select", { id: "chart-add", "data-testid": "chart-add" });
  const note = h("p", { class: "muted", id: "charts-note" });
  let known = [];

  const add = (series) => {
    if (charts.has(series.name)) return;
    const chart = new Chart(series, Number(range.value), () => {
      chart.destroy();
      chart.element.remove();
      charts.delete(series.name);
    });
    charts.set(series.name, chart);
    grid.append(chart.element);
    chart.load().catch((failure) => {
      chart.note.textContent = `could not load: ${failure.message}`;
    });
  };
  const reload = () => {
    const shown = [...charts.values()].map((chart) => chart.series);
    for (const chart of charts.values()) chart.destroy();
    charts.clear();
    grid.replaceChildren();
    for (const series of shown) add(series);
  };
  range.addEventListener("change", reload);
  picker.addEventListener("change", () => {
    const series = known.find((item) => item.name === picker.value);
    if (series) add(series);
    picker.value = "";
  });
  replace(container, h("div", { class: "toolbar" }, h("label", { for: "chart-range" }, "Range "), range, h("label", { for: "chart-add" }, " Add chart "), picker), note, grid);

  get("/api/metrics/series").then((answer) => {
    known = answer.series;
    replace(picker, h("option", { value: "" }, "— pick a series —"), known.map((series) => h("option", { value: series.name }, `${series.name} (${series.unit ?? ""})`)));
    note.textContent = known.length === 0 ? "No metrics yet: series appear once components report." : "";
    for (const series of pickDefault(known)) add(series);
  }, (failure) => {
    note.textContent = `metrics: ${failure.message}`;
  });

  const onResize = () => {
    for (const chart of charts.values()) chart.resize();
  };
  window.addEventListener("resize", onResize);
  const offStatus = ctx.live?.on("status", () => {
    for (const chart of charts.values()) void chart.append();
  });
  return () => {
    offStatus?.();
    window.removeEventListener("resize", onResize);
    for (const chart of charts.values()) chart.destroy();
  };
}
