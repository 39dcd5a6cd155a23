// The DR-Panel: a single page on the panel's JSON API (docs/panel.md), hash-routed, no framework.
// All data is rendered with DOM APIs and textContent (dom.js): never innerHTML.
//
// Stable selectors for browser tests:
//   login            #login-user  #login-password  #login-submit   (refusal: #login-error)
//   password change  #pw-current  #pw-new  #pw-confirm  #pw-submit  (#pw-result on success); shown
//                    alone while GET /api/session says mustChangePassword
//   field errors     .field-error[data-error-for="FIELD"] next to each input (FIELD = the API's field
//                    name, e.g. "new", "name", "pair.devicePath"); "_form" for errors naming no field
//   help bubbles     button.help-bubble[data-help-toggle=FIELD] (title = the text) toggling .help-note
//   header           #session-user  #alert-badge[data-count]  #top-help  #logout  #live-state[data-state]
//   menu             [data-testid=nav-wizard|nav-new|nav-manage|nav-settings|nav-help] (viewers: no
//                    wizard/new); sub-items nav-new-wrl|-changemap|-pair|-component,
//                    nav-manage-pairs|-jobs|-components|-alerts|-charts|-transactions|-activity,
//                    nav-settings-account|-mail|-digest|-users (users: admin only)
//   wizard           #wiz-step[data-step=1..5]  #wiz-back  #wiz-next  #wiz-finish (Enter = next)
//                    1: #wiz-pair-name #wiz-client #wiz-device-path #wiz-probe #wiz-probe-result[data-kind]
//                       #wiz-device-name #wiz-export
//                    2: #wiz-staging #wiz-wrl-mode(existing|new) #wiz-wrl-existing #wiz-wrl-name
//                       #wiz-wrl-paths #wiz-wrl-size #wiz-staging-address #wiz-replica-address
//                       #wiz-sizing-write #wiz-sizing-outage #wiz-sizing #wiz-sizing-result
//                    3: #wiz-replica #wiz-replica-path #wiz-replica-size
//                    4: #wiz-initial-sync #wiz-compression #wiz-rate-limit #wiz-rpo #wiz-changemap
//                    5: #wiz-review dd[data-review=LABEL]
//                    outcome: #wiz-result[data-tx-state=committed|aborted], #wiz-done on success, the
//                    transaction's li[data-component][data-result]; a refusal returns to its field's step
//   new              forms #new-component #new-wrl #new-changemap #new-pair; submit #FORM-submit,
//                    outcome #FORM-result and #FORM-tx; inputs #new-component-name|-role|-control,
//                    #new-wrl-name|-staging|-paths|-size|-replica|-staging-address|-replica-address|
//                    -compression|-rate-limit|-rpo, #new-changemap-name|-client|-path,
//                    #new-pair-name|-client|-device-path|-device-name|-export|-wrl|-replica|
//                    -replica-path|-replica-size|-changemap|-initial-sync|-rate-limit; #wrls li[data-wrl] button[data-action=delete-wrl]
//   manage           #pairs tr[data-pair=NAME][data-state][data-enabled] td[data-field=name|client|wrl|
//                    replica|state|lagMs|rpoMs|wrlFillRatio|throughputBytesPerSecond|resync|
//                    configVersion] (text formatted, data-value raw); in the row (operators+ only)
//                    button[data-action=start|stop|split|join|resync|verify|snapshot|restore|failover|
//                    failback|delete]; #action-result[data-outcome=ok|error|pending] (a job started:
//                    #action-jobs-link to the Jobs section)
//                    #jobs[data-loaded] tr[data-job=ID][data-component=NAME][data-state][data-kind]
//                    td[data-field=kind|pair|component|state|startedAtMs|endedAtMs|exitCode|outcome]
//                    (state: data-value running|done|failed, a .badge); #jobs-empty, #jobs-refresh,
//                    #jobs-unreachable, #jobs-error
//                    #components tr[data-component=NAME][data-status=reachable|unreachable]
//                    td[data-field=status], button[data-action=delete-component]
//                    #alerts li[data-alert-code=CODE][data-component=NAME] (.open / .cleared),
//                    #alerts-show-cleared; #transactions [data-txid][data-tx-state];
//                    #activity tr[data-activity=ACTION]; #charts .chart[data-series=NAME] canvas,
//                    #chart-range #chart-add
//   dialog           #confirm-dialog (a modal <dialog>; never window.confirm): #confirm-input (type
//                    the name: pair split/restore/failover/failback/delete, delete-component,
//                    delete-wrl, delete-user, delete-recipient), #confirm-to (restore),
//                    #confirm-export (failover, snapshot), #confirm-at (failover, restore),
//                    #confirm-force (restore: overwrite an existing target),
//                    #confirm-keep (failback), #confirm-ok,
//                    #confirm-cancel; a refusal shows in the dialog (.field-error)
//   settings         account: the #pw-… form; #mail-settings (#mail-host #mail-port #mail-from
//                    #mail-starttls #mail-auth-user #mail-auth-password #mail-enabled);
//                    #mail-recipients li[data-recipient=ADDRESS]; #mail-recipient (#recipient-address
//                    #recipient-codes #recipient-components #recipient-cleared); #mail-test
//                    (#mail-test-to); #digest (#digest-enabled #digest-weekday #digest-hour)
//                    #digest-send #digest-send-result #digest-info; admin: #users tr[data-user=NAME],
//                    #user-add (#user-name #user-role #user-password #user-must-change)
//   help             #help-list a[data-help=NAME]; #help-page[data-help=NAME] (rendered markdown; #/help
//                    opens the step-by-step guide)
//   loaded markers   #wizard[data-ready] (choices loaded), #pairs[data-loaded], #components[data-loaded]
//                    and [data-status-loaded] (live status shown), #help-page[data-loaded]
import { get, post, sessionEvents, setCsrfToken } from "./api.js";
import { h, replace, setText } from "./dom.js";
import { Form } from "./forms.js";
import { Live } from "./live.js";
import { renderHelp } from "./help.js";
import { renderManage } from "./manage.js";
import { renderNew } from "./newpage.js";
import { renderSettings } from "./settings.js";
import { renderWizard } from "./wizard.js";

const rank = { viewer: 0, operator: 1, admin: 2 };
const root = document.getElementById("app");
const state = { session: null, live: null, cleanup: null, openAlerts: 0 };

const menu = [
  { key: "wizard", label: "Wizard", role: "operator", items: [] },
  { key: "new", label: "New", role: "operator", items: [["wrl", "WRL"], ["changemap", "Change map"], ["pair", "Pair"], ["component", "Component"]] },
  { key: "manage", label: "Manage", role: "viewer", items: [["pairs", "Pairs"], ["jobs", "Jobs"], ["components", "Components"], ["alerts", "Alerts"], ["charts", "Charts"], ["transactions", "Transactions"], ["activity", "Activity"]] },
  { key: "settings", label: "Settings", role: "viewer", items: [["account", "Account"], ["mail", "Email notification"], ["digest", "Weekly digest"], ["users", "Users and roles"]] },
  { key: "help", label: "Help", role: "viewer", items: [] },
];

const can = (role) => state.session !== null && rank[state.session.role] >= rank[role];

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter((part) => part !== "").map((part) => decodeURIComponent(part));
  const page = menu.some((entry) => entry.key === parts[0]) ? parts[0] : "manage";
  return { page, sub: parts[1], rest: parts.slice(1) };
}

function loginPage() {
  stopLive();
  const form = new Form({
    id: "login",
    submitLabel: "Log in",
    fields: [
      { name: "user", id: "login-user", label: "User name", autocomplete: "username", help: "The first-run account is admin / druvaa; you must change that password at the first login." },
      { name: "password", id: "login-password", label: "Password", type: "password", autocomplete: "current-password" },
    ],
    onSubmit: async (values) => {
      const answer = await post("/api/login", values);
      setCsrfToken(answer.csrfToken);
      await boot();
    },
  });
  replace(root, h("main", { class: "login", id: "login-page" }, h("h1", {}, "druvaa DR-Panel"), h("p", { class: "muted" }, "Log in to configure and watch replication."), form.element));
  form.input("user").focus();
}

/** The password form; `forced`: the first-run change, before anything else is reachable. */
export function passwordForm(onDone) {
  return new Form({
    id: "pw",
    submitLabel: "Change password",
    fields: [
      { name: "current", id: "pw-current", label: "Current password", type: "password", autocomplete: "current-password", check: (v) => (v === "" ? "is required" : undefined) },
      { name: "new", id: "pw-new", label: "New password", type: "password", autocomplete: "new-password", help: "At least 10 characters; a passphrase of a few words is good.", check: (v) => (v.length < 10 ? "must be at least 10 characters" : undefined) },
      { name: "confirm", id: "pw-confirm", label: "New password again", type: "password", autocomplete: "new-password", check: (v, all) => (v !== all.new ? "does not match the new password" : undefined) },
    ],
    onSubmit: async (values) => {
      await post("/api/password", { current: values.current, new: values.new });
      return await onDone();
    },
  });
}

function forcedPasswordPage() {
  stopLive();
  const form = passwordForm(async () => {
    await boot();
  });
  replace(root, h("main", { class: "login", id: "password-page" }, h("h1", {}, "Change your password"), h("p", {}, `User "${state.session.user}" must choose a new password before using the panel.`), form.element, h("button", { type: "button", id: "logout", class: "link", onclick: logout }, "Log out")));
  form.input("current").focus();
}

async function logout() {
  try {
    await post("/api/logout");
  } catch {
    // Gone already: the login page is right either way.
  }
  state.session = null;
  setCsrfToken(null);
  location.hash = "";
  loginPage();
}

function stopLive() {
  state.live?.close();
  state.live = null;
}

function setBadge(count) {
  const badge = document.getElementById("alert-badge");
  if (badge === null) return;
  state.openAlerts = count;
  setText(badge, count === 0 ? "no open alerts" : `${count} open alert${count === 1 ? "" : "s"}`);
  badge.dataset.count = String(count);
  badge.classList.toggle("alerting", count > 0);
}

function shell() {
  const nav = h("nav", { id: "menu", "aria-label": "Main menu" });
  const liveState = h("span", { id: "live-state", "data-state": "connecting", title: "Live updates" }, "connecting…");
  const header = h("header", { id: "top" },
    h("span", { class: "brand" }, "druvaa DR-Panel"),
    h("span", { class: "spacer" }),
    liveState,
    h("a", { id: "alert-badge", href: "#/manage/alerts", "data-testid": "alert-badge", "data-count": "0" }, "alerts…"),
    h("span", { id: "session-user" }, `${state.session.user} (${state.session.role})`),
    h("a", { href: "#/help", id: "top-help" }, "Help"),
    h("button", { type: "button", id: "logout", "data-testid": "logout", class: "link", onclick: logout }, "Log out"));
  const page = h("main", { id: "page", tabindex: "-1" });
  replace(root, header, h("div", { id: "body" }, nav, page));
  state.live = new Live({
    onState: (text) => {
      liveState.dataset.state = text;
      setText(liveState, text === "open" ? "live" : text);
    },
    onStatus: (data) => {
      const open = data?.alerts?.open;
      if (typeof open === "number") setBadge(open);
      else if (Array.isArray(open)) setBadge(open.length);
    },
    onAlert: () => void refreshBadge(),
    // A refused stream may mean the session ended: asking for it shows the login page if so.
    onClosed: () => void get("/api/session").catch(() => undefined),
  });
  void refreshBadge();
}

async function refreshBadge() {
  try {
    const answer = await get("/api/alerts");
    setBadge(answer.alerts.filter((alert) => alert.clearedAt === null).length);
  } catch {
    // The badge keeps its last count; the live feed will try again.
  }
}

function renderMenu(route) {
  const nav = document.getElementById("menu");
  const groups = menu.filter((entry) => can(entry.role)).map((entry) => {
    const active = entry.key === route.page;
    const items = active && entry.items.length > 0
      ? h("ul", { class: "sub" }, entry.items.filter(([key]) => key !== "users" || can("admin")).map(([key, label]) => h("li", {}, h("a", { href: `#/${entry.key}/${key}`, "data-testid": `nav-${entry.key}-${key}`, class: route.sub === key ? "active" : "" }, label))))
      : null;
    return h("li", { class: active ? "open" : "" }, h("a", { href: `#/${entry.key}`, "data-testid": `nav-${entry.key}`, id: `nav-${entry.key}`, class: active ? "active" : "" }, entry.label), items);
  });
  replace(nav, h("ul", {}, groups));
}

function route() {
  if (state.session === null || state.session.mustChangePassword) return;
  const current = parseRoute();
  const entry = menu.find((item) => item.key === current.page);
  renderMenu(current);
  state.cleanup?.();
  state.cleanup = null;
  document.getElementById("confirm-dialog")?.remove();
  const page = document.getElementById("page");
  page.replaceChildren();
  const ctx = { session: state.session, can, live: state.live, sub: current.sub, rest: current.rest, passwordForm, refreshBadge };
  if (!can(entry.role)) {
    page.append(h("p", { class: "notice", id: "forbidden" }, `The ${entry.label} pages need the ${entry.role} role; you are ${state.session.role}.`));
    return;
  }
  const renderers = { wizard: renderWizard, new: renderNew, manage: renderManage, settings: renderSettings, help: renderHelp };
  const cleanup = renderers[current.page](page, ctx);
  state.cleanup = typeof cleanup === "function" ? cleanup : null;
  if (current.sub !== undefined) document.getElementById(`section-${current.sub}`)?.scrollIntoView({ block: "start" });
}

async function boot() {
  let session;
  try {
    session = await get("/api/session");
  } catch {
    state.session = null;
    loginPage();
    return;
  }
  state.session = session;
  setCsrfToken(session.csrfToken);
  if (session.mustChangePassword) {
    forcedPasswordPage();
    return;
  }
  if (state.live === null) shell();
  route();
}

sessionEvents.onLoggedOut = () => {
  if (state.session !== null) {
    state.session = null;
    loginPage();
  }
};
sessionEvents.onPasswordChangeRequired = () => void boot();
window.addEventListener("hashchange", route);
void boot();
