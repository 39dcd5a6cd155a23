// Mail recipients with their filters: alert codes and components ("*" = all), and whether they
// also get a mail when an alert clears.
import { del, get, post, seg } from "./api.js";
import { confirmByName } from "./confirm.js";
import { h, replace } from "./dom.js";
import { Form } from "./forms.js";

const listText = (list) => (list === "*" ? "all" : list.join(", "));
const listValue = (text) => (text === "" || text === "*" ? "*" : text.split(/[\s,]+/).filter((item) => item !== ""));

export function mailRecipientsSection(isAdmin) {
  const list = h("ul", { id: "mail-recipients", "data-testid": "mail-recipients" });
  const load = async () => {
    const { recipients } = await get("/api/settings/mail/recipients");
    replace(list, recipients.length === 0 ? h("li", { class: "muted" }, "No recipients yet.") : recipients.map((recipient) => h("li", { "data-recipient": recipient.address },
      h("strong", {}, recipient.address), ` — codes: ${listText(recipient.codes)}; components: ${listText(recipient.components)}${recipient.cleared ? "; also when cleared" : ""} `,
      isAdmin ? h("button", { type: "button", class: "small destructive", "data-action": "delete-recipient", onclick: () => confirmByName({
        name: recipient.address,
        what: "address",
        title: `Stop mailing ${recipient.address}?`,
        why: "It gets no more alert mails or digests.",
        submitLabel: "Remove",
        run: async () => {
          await del(`/api/settings/mail/recipients/${seg(recipient.address)}`);
          await load();
        },
      }) }, "Remove") : null)));
  };
  const form = new Form({
    id: "mail-recipient", submitLabel: "Add recipient", disabled: !isAdmin,
    fields: [
      { name: "address", id: "recipient-address", label: "Address", placeholder: "ops@example.com", check: (v) => (/^[^\s@]+@[^\s@]+$/.test(v) ? undefined : "must be an email address") },
      { name: "codes", id: "recipient-codes", label: "Alert codes", placeholder: "* (all), or e.g. COMPONENT_UNREACHABLE, RPO_MISSED", help: "Which alerts this address gets: * for all, or a list of codes (COMPONENT_UNREACHABLE, WRL_FILL_HIGH, RPO_MISSED, CLIENT_DISCONNECTED, APPLY_FAILED, CONFIG_APPLY_FAILED, CONFIG_BEHIND)." },
      { name: "components", id: "recipient-components", label: "Components", placeholder: "* (all), or e.g. staging1, replica1" },
      { name: "cleared", id: "recipient-cleared", label: "Also mail when an alert clears", type: "checkbox" },
    ],
    onSubmit: async (values) => {
      await post("/api/settings/mail/recipients", { address: values.address, codes: listValue(values.codes), components: listValue(values.components), cleared: values.cleared });
      await load();
      return `recipient ${values.address} saved`;
    },
  });
  load().catch((failure) => form.showFailure(failure));
  return [h("h3", {}, "Recipients"), list, form.element];
}
