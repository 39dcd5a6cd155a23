// The Manage page's lists: alerts (open first), transactions (the two-phase commits, with every
// component's result and the reasons of a refusal) and the activity log. Each has refresh().
import { get } from "./api.js";
import { describe, formatTime, h, replace } from "./dom.js";

function refreshButton(id, refresh) {
  return h("button", { type: "button", class: "small", id, "data-testid": id, onclick: () => void refresh() }, "Refresh");
}

export function alertList() {
  const list = h("ul", { id: "alerts", "data-testid": "alerts", class: "alerts" });
  const showCleared = h("input", { type: "checkbox", id: "alerts-show-cleared" });
  const error = h("div", { class: "form-error", role: "alert", hidden: true });
  const refresh = async () => {
    try {
      const { alerts } = await get("/api/alerts");
      const shown = alerts.filter((alert) => showCleared.checked || alert.clearedAt === null);
      replace(list, shown.length === 0 ? h("li", { class: "muted", id: "alerts-none" }, "No open alerts.") : shown.map((alert) =>
        h("li", { "data-alert-code": alert.code, "data-component": alert.component, "data-alert-id": alert.id, class: alert.clearedAt === null ? "open" : "cleared" },
          h("span", { class: "code" }, alert.code),
          h("span", { class: "component" }, alert.component),
          h("span", { class: "message" }, alert.message),
          h("span", { class: "time" }, alert.clearedAt === null ? `since ${formatTime(alert.raisedAt)}` : `cleared ${formatTime(alert.clearedAt)}`))));
      error.hidden = true;
    } catch (failure) {
      error.hidden = false;
      error.textContent = `alerts: ${failure.message}`;
    }
  };
  showCleared.addEventListener("change", () => void refresh());
  const element = h("div", {}, h("div", { class: "toolbar" }, refreshButton("alerts-refresh", refresh), h("label", { for: "alerts-show-cleared" }, showCleared, " show cleared")), error, list);
  return { element, refresh };
}

function reasonsOf(tx) {
  const reasons = tx.reasons;
  if (reasons === null || reasons === undefined) return [];
  if (Array.isArray(reasons)) return reasons.map((reason) => (reason && typeof reason === "object" && reason.component ? [reason.component, describe(reason.error ?? reason.reason ?? reason)] : [undefined, describe(reason)]));
  if (typeof reasons === "object") return Object.entries(reasons).map(([component, reason]) => [component, describe(reason)]);
  return [[undefined, describe(reasons)]];
}

/** One transaction's outcome: its state, each component's result, the reasons of a refusal. */
export function transactionView(tx) {
  const reasons = reasonsOf(tx);
  return h("div", { class: `tx tx-${tx.state}`, "data-txid": tx.txid, "data-tx-state": tx.state },
    h("div", { class: "tx-head" }, h("strong", { class: "tx-state" }, tx.state ?? "?"), " ", tx.summary ?? "", tx.time ? ` — ${formatTime(tx.time)}` : "", tx.user ? ` by ${tx.user}` : ""),
    h("ul", { class: "tx-components" }, (tx.components ?? []).map((component) => {
      const reason = reasons.find(([name]) => name === component.component);
      return h("li", { "data-component": component.component, "data-result": typeof component.result === "string" ? component.result : describe(component.result) }, `${component.component} v${component.version}: ${describe(component.result)}`, reason ? ` — ${reason[1]}` : "");
    })),
    reasons.filter(([name]) => name === undefined || !(tx.components ?? []).some((component) => component.component === name)).map(([name, text]) => h("p", { class: "tx-reason", "data-component": name ?? "" }, name ? `${name}: ${text}` : text)));
}

export function transactionList() {
  const list = h("div", { id: "transactions", "data-testid": "transactions" });
  const refresh = async () => {
    try {
      const { transactions } = await get("/api/transactions?limit=20");
      replace(list, transactions.length === 0 ? h("p", { class: "muted" }, "No transactions yet.") : transactions.map(transactionView));
    } catch (failure) {
      replace(list, h("p", { class: "form-error" }, `transactions: ${failure.message}`));
    }
  };
  // The caller reads it first (Manage: once the pairs are shown).
  return { element: h("div", {}, h("div", { class: "toolbar" }, refreshButton("transactions-refresh", refresh)), list), refresh };
}

export function activityList() {
  const body = h("tbody", {});
  const refresh = async () => {
    try {
      const { activity } = await get("/api/activity?limit=50");
      replace(body, activity.map((entry) => h("tr", { "data-activity": entry.action }, h("td", {}, formatTime(entry.time)), h("td", {}, entry.user), h("td", {}, entry.action), h("td", { class: "detail" }, describe(entry.detail)))));
    } catch (failure) {
      replace(body, h("tr", {}, h("td", { colspan: "4", class: "form-error" }, `activity: ${failure.message}`)));
    }
  };
  // The caller reads it first (Manage: once the pairs are shown).
  const table = h("table", { id: "activity", "data-testid": "activity" }, h("thead", {}, h("tr", {}, h("th", {}, "Time"), h("th", {}, "User"), h("th", {}, "Action"), h("th", {}, "Detail"))), body);
  return { element: h("div", {}, h("div", { class: "toolbar" }, refreshButton("activity-refresh", refresh)), h("div", { class: "table-wrap" }, table)), refresh };
}
