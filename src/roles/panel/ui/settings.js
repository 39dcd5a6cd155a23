// Settings: the user's own password; email notification (SMTP settings, recipients with filters,
// a test mail); the weekly digest; users and roles (admin only). Non-admins see the settings
// read-only (their change buttons disabled; the server refuses them anyway).
import { del, get, post, put, seg } from "./api.js";
import { confirmByName } from "./confirm.js";
import { formatTime, h, replace } from "./dom.js";
import { checkName, Form, required, section } from "./forms.js";
import { mailRecipientsSection } from "./recipients.js";

const weekdays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

function mailSettingsForm(isAdmin) {
  const form = new Form({
    id: "mail-settings", submitLabel: "Save mail settings", disabled: !isAdmin,
    fields: [
      { name: "host", id: "mail-host", label: "SMTP server", placeholder: "mail.example.com", check: required },
      { name: "port", id: "mail-port", label: "Port", type: "number", value: "587", help: "Usually 587 (submission, STARTTLS) or 25.", check: (v) => (/^\d{1,5}$/.test(v) && Number(v) >= 1 && Number(v) <= 65535 ? undefined : "must be a whole number from 1 to 65535") },
      { name: "from", id: "mail-from", label: "From address", placeholder: "druvaa@example.com", check: (v) => (/^[^\s@]+@[^\s@]+$/.test(v) ? undefined : "must be an email address") },
      { name: "starttls", id: "mail-starttls", label: "STARTTLS", type: "select", options: [["if-offered", "if offered"], ["required", "required"], ["never", "never"]] },
      { name: "authUser", id: "mail-auth-user", label: "SMTP user (optional)" },
      { name: "authPassword", id: "mail-auth-password", label: "SMTP password", type: "password", autocomplete: "new-password", help: "Write-only: leave empty to keep the stored one for the same user." },
      { name: "enabled", id: "mail-enabled", label: "Send alert mails", type: "checkbox", value: true },
    ],
    onSubmit: async (values) => {
      const body = { host: values.host, port: Number(values.port), from: values.from, starttls: values.starttls, enabled: values.enabled };
      if (values.authUser !== "") body.authUser = values.authUser;
      if (values.authPassword !== "") body.authPassword = values.authPassword;
      const answer = await put("/api/settings/mail", body);
      form.input("authPassword").value = "";
      form.input("authPassword").placeholder = answer.settings?.authPasswordSet ? "(set; empty keeps it)" : "";
      return "mail settings saved";
    },
  });
  get("/api/settings/mail").then(({ settings }) => {
    if (settings === null) return;
    form.input("host").value = settings.host;
    form.input("port").value = String(settings.port);
    form.input("from").value = settings.from;
    form.input("starttls").value = settings.starttls;
    form.input("authUser").value = settings.authUser ?? "";
    form.input("authPassword").placeholder = settings.authPasswordSet ? "(set; empty keeps it)" : "";
    form.input("enabled").checked = settings.enabled;
  }, (failure) => form.showFailure(failure));
  return form;
}

function testMailForm(isAdmin) {
  return new Form({
    id: "mail-test", submitLabel: "Send test mail", disabled: !isAdmin,
    fields: [{ name: "to", id: "mail-test-to", label: "Send a test mail to", placeholder: "ops@example.com", check: required }],
    onSubmit: async (values) => {
      const answer = await post("/api/settings/mail/test", values);
      return `sent: the SMTP server said ${answer.smtp?.reply ?? "OK"}`;
    },
  });
}

function digestSection(isAdmin) {
  const info = h("p", { id: "digest-info", class: "muted" });
  const form = new Form({
    id: "digest", submitLabel: "Save schedule", disabled: !isAdmin,
    fields: [
      { name: "enabled", id: "digest-enabled", label: "Send a weekly digest", type: "checkbox" },
      { name: "weekday", id: "digest-weekday", label: "Day", type: "select", options: weekdays.map((day, index) => [String(index), day]) },
      { name: "hour", id: "digest-hour", label: "Hour (UTC)", type: "select", options: Array.from({ length: 24 }, (_, hour) => [String(hour), `${String(hour).padStart(2, "0")}:00`]), help: "The digest goes to every mail recipient: a week's alerts, lag and throughput." },
    ],
    onSubmit: async (values) => {
      const answer = await put("/api/settings/digest", { enabled: values.enabled, weekday: Number(values.weekday), hour: Number(values.hour) });
      show(answer.digest);
      return "digest schedule saved";
    },
  });
  const show = (digest) => {
    if (!digest) return;
    form.input("enabled").checked = digest.enabled;
    form.input("weekday").value = String(digest.weekday);
    form.input("hour").value = String(digest.hour);
    info.textContent = `Last sent: ${digest.lastSentMs ? formatTime(digest.lastSentMs) : "never"}; next: ${digest.enabled && digest.nextMs ? formatTime(digest.nextMs) : "—"}`;
  };
  get("/api/settings/digest").then((answer) => show(answer.digest), (failure) => form.showFailure(failure));
  const sent = h("span", { id: "digest-send-result", role: "status" });
  const send = h("button", { type: "button", id: "digest-send", "data-testid": "digest-send", disabled: !isAdmin, onclick: async () => {
    send.disabled = true;
    sent.textContent = "sending…";
    try {
      await post("/api/settings/digest/send");
      sent.textContent = "digest sent";
    } catch (failure) {
      sent.textContent = `not sent: ${failure.message}`;
    } finally {
      send.disabled = false;
    }
  } }, "Send digest now");
  return [info, form.element, h("div", { class: "buttons" }, send, sent)];
}

function usersSection(ctx) {
  const body = h("tbody", {});
  const status = h("div", { role: "status", id: "users-result" });
  const load = async () => {
    const { users } = await get("/api/users");
    replace(body, users.map((user) => h("tr", { "data-user": user.name },
      h("td", {}, user.name), h("td", { "data-field": "role" }, user.role), h("td", {}, user.mustChangePassword ? "must change password" : ""), h("td", {}, formatTime(user.createdAt)),
      h("td", {}, user.name === ctx.session.user ? "(you)" : h("button", { type: "button", class: "small destructive", "data-action": "delete-user", onclick: () => confirmByName({
        name: user.name,
        what: "user",
        title: `Remove user "${user.name}"?`,
        why: "Their sessions end at once.",
        submitLabel: "Remove",
        run: async () => {
          await del(`/api/users/${seg(user.name)}`);
          status.textContent = `user ${user.name} removed`;
          await load();
        },
      }) }, "Remove")))));
  };
  const form = new Form({
    id: "user-add", submitLabel: "Add user",
    fields: [
      { name: "name", id: "user-name", label: "Name", check: checkName },
      { name: "role", id: "user-role", label: "Role", type: "select", options: [["viewer", "viewer: sees everything, changes nothing"], ["operator", "operator: also configures and runs actions"], ["admin", "admin: also users and settings"]] },
      { name: "password", id: "user-password", label: "Initial password", type: "password", autocomplete: "new-password", help: "At least 10 characters; the user must change it at the first login unless unticked below.", check: (v) => (v.length < 10 ? "must be at least 10 characters" : undefined) },
      { name: "mustChangePassword", id: "user-must-change", label: "Must change it at the first login", type: "checkbox", value: true },
    ],
    onSubmit: async (values) => {
      await post("/api/users", values);
      form.input("password").value = "";
      await load();
      return `user "${values.name}" added`;
    },
  });
  load().catch((failure) => form.showFailure(failure));
  return [h("div", { class: "table-wrap" }, h("table", { id: "users", "data-testid": "users" }, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Role"), h("th", {}, ""), h("th", {}, "Created"), h("th", {}, ""))), body)), status, h("h3", {}, "Add a user"), form.element];
}

export function renderSettings(page, ctx) {
  const isAdmin = ctx.can("admin");
  const account = ctx.passwordForm(async () => {
    for (const name of ["current", "new", "confirm"]) account.input(name).value = "";
    return "password changed; your other sessions were ended";
  });
  const readOnly = isAdmin ? null : h("p", { class: "notice" }, "Only an admin can change these settings.");
  replace(page, h("h1", {}, "Settings"),
    section("section-account", `Account: ${ctx.session.user} (${ctx.session.role})`, account.element),
    section("section-mail", "Email notification", readOnly, mailSettingsForm(isAdmin).element, mailRecipientsSection(isAdmin), h("h3", {}, "Test mail"), testMailForm(isAdmin).element),
    section("section-digest", "Weekly digest", readOnly, digestSection(isAdmin)),
    isAdmin ? section("section-users", "Users and roles", usersSection(ctx)) : null);
}
