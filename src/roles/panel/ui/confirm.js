// The one modal dialog of the panel (#confirm-dialog): destructive changes ask the user to type
// the name of what they change (#confirm-input), and actions that need more (a failover's export)
// ask for it here. The server checks again whatever the page does.
import { h, replace } from "./dom.js";
import { Form } from "./forms.js";

function dialog() {
  let element = document.getElementById("confirm-dialog");
  if (element === null) {
    element = h("dialog", { id: "confirm-dialog", "data-testid": "confirm-dialog" });
    document.body.append(element);
  }
  return element;
}

/**
 * Opens the dialog with `fields` (Form specs); onSubmit(values) runs on OK and closes the dialog
 * when it succeeds; a refusal is shown in the dialog next to its field.
 */
export function openDialog({ title, why, warning = true, fields, submitLabel, onSubmit }) {
  const element = dialog();
  const cancel = h("button", { type: "button", id: "confirm-cancel", "data-testid": "confirm-cancel", onclick: () => element.close() }, "Cancel");
  const form = new Form({
    id: "confirm",
    submitId: "confirm-ok",
    submitLabel,
    extraButtons: [cancel],
    fields,
    onSubmit: async (values) => {
      await onSubmit(values);
      element.close();
    },
  });
  replace(element, h("h2", {}, title), h("p", { class: warning ? "warning" : "muted" }, why), form.element);
  if (element.open) element.close();
  element.showModal();
  form.input(fields[0].name)?.focus();
  return form;
}

/** The field that asks to type `name` exactly. */
export function typeNameField(name, what) {
  return { name: "confirm", id: "confirm-input", label: `Type the ${what} name "${name}" to confirm`, autocomplete: "off", check: (value) => (value === name ? undefined : `type "${name}" exactly`) };
}

/** Asks to type `name`, then runs `run()` (which may throw an ApiFailure, shown in the dialog). */
export function confirmByName({ name, what, title, why, submitLabel, run }) {
  return openDialog({ title, why, fields: [typeNameField(name, what)], submitLabel, onSubmit: () => run() });
}
