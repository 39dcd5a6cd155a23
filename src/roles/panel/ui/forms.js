// Forms with a label, an optional "?" help bubble and an error slot per field. The server decides:
// client-side checks only catch the obvious before a round trip, and every refusal from the server
// is shown next to the field it names (.field-error[data-error-for=NAME]) or above the buttons.
import { ApiFailure } from "./api.js";
import { h, helpBubble, replace } from "./dom.js";

export const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const checkName = (value) => (namePattern.test(value) ? undefined : "must be 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit");
export const required = (value) => (value === "" || value === undefined ? "is required" : undefined);

function optionsOf(options) {
  return options.map((option) => (Array.isArray(option) ? option : [option, option]));
}

function control(spec) {
  const common = { id: spec.id, name: spec.name, "data-testid": spec.testid ?? spec.id, "aria-describedby": `${spec.id}-error` };
  if (spec.type === "select") {
    return h("select", common, optionsOf(spec.options ?? []).map(([value, label]) => h("option", { value, selected: String(spec.value ?? "") === String(value) }, label)));
  }
  if (spec.type === "textarea") return h("textarea", { ...common, rows: spec.rows ?? 3, placeholder: spec.placeholder, value: spec.value ?? "" });
  if (spec.type === "checkbox") return h("input", { ...common, type: "checkbox", checked: spec.value === true });
  return h("input", { ...common, type: spec.type ?? "text", value: spec.value ?? "", placeholder: spec.placeholder, autocomplete: spec.autocomplete ?? "off", ...(spec.type === "number" ? { step: "any" } : {}) });
}

/** Fills a <select> with options, keeping the current choice when it is still offered. */
export function setOptions(select, options, emptyLabel) {
  const current = select.value;
  const list = optionsOf(options);
  replace(select, emptyLabel === undefined ? null : h("option", { value: "" }, emptyLabel), list.map(([value, label]) => h("option", { value }, label)));
  if (list.some(([value]) => String(value) === current)) select.value = current;
}

export class Form {
  /**
   * fields: [{name, label, id, type?, options?, value?, placeholder?, help?, check?(value, values)}]
   * onSubmit(values) → a text to show on success (or nothing); it may throw an ApiFailure.
   */
  constructor({ id, fields, submitLabel, onSubmit, disabled = false, submitId = `${id}-submit`, extraButtons = [] }) {
    this.fields = new Map();
    this.onSubmit = onSubmit;
    this.formError = h("div", { class: "form-error field-error", "data-error-for": "_form", id: `${id}-error`, role: "alert", hidden: true });
    this.result = h("div", { class: "form-result", id: `${id}-result`, "data-testid": `${id}-result`, role: "status" });
    this.submit = h("button", { type: "submit", id: submitId, "data-testid": submitId, disabled }, submitLabel);
    this.element = h("form", { id, "data-testid": id, novalidate: true, onsubmit: (event) => { event.preventDefault(); void this.run(); } });
    for (const spec of fields) this.element.append(this.row(spec));
    this.element.append(this.formError, h("div", { class: "buttons" }, this.submit, extraButtons), this.result);
  }

  row(spec) {
    const input = control(spec);
    const error = h("div", { class: "field-error", "data-error-for": spec.name, id: `${spec.id}-error`, role: "alert", hidden: true });
    const bubble = spec.help === undefined ? null : helpBubble(spec.help, spec.name);
    this.fields.set(spec.name, { spec, input, error });
    const label = h("label", { for: spec.id }, spec.label);
    return h("div", { class: `field${spec.type === "checkbox" ? " field-checkbox" : ""}`, "data-field-row": spec.name }, label, bubble?.button, input, bubble?.note, error);
  }

  input(name) {
    return this.fields.get(name)?.input;
  }

  values() {
    const values = {};
    for (const [name, { spec, input }] of this.fields) values[name] = spec.type === "checkbox" ? input.checked : input.value.trim();
    return values;
  }

  clearErrors() {
    for (const { input, error } of this.fields.values()) {
      error.hidden = true;
      error.textContent = "";
      input.removeAttribute("aria-invalid");
    }
    this.formError.hidden = true;
    this.formError.textContent = "";
    this.result.textContent = "";
  }

  /** The field entry a server's field path names: exact, then its last name segment. */
  lookup(field) {
    if (field === undefined) return undefined;
    if (this.fields.has(field)) return this.fields.get(field);
    const last = field.replace(/\[\d+\]/g, "").split(".").pop();
    for (const [name, entry] of this.fields) if (name === last || name.split(".").pop() === last) return entry;
    return undefined;
  }

  /** Shows `message` next to `field` (or above the buttons when no field matches); returns true when it named one. */
  showError(field, message, hint) {
    const entry = this.lookup(field);
    const text = hint ? `${message} — ${hint}` : message;
    if (entry === undefined) {
      this.formError.textContent = text;
      this.formError.hidden = false;
      return false;
    }
    entry.error.textContent = text;
    entry.error.hidden = false;
    entry.input.setAttribute("aria-invalid", "true");
    return true;
  }

  showFailure(failure) {
    if (failure instanceof ApiFailure) return this.showError(failure.field, failure.message, failure.hint);
    this.showError(undefined, String(failure?.message ?? failure));
    return false;
  }

  /** Client-side checks; true when all pass. */
  check(values) {
    let ok = true;
    for (const [name, { spec }] of this.fields) {
      const problem = spec.check?.(values[name], values);
      if (problem !== undefined) {
        this.showError(name, `${spec.label}: ${problem}`); // the label the user sees, not the API's field name
        ok = false;
      }
    }
    return ok;
  }

  async run() {
    this.clearErrors();
    const values = this.values();
    if (!this.check(values)) return;
    this.submit.disabled = true;
    try {
      const message = await this.onSubmit(values);
      if (typeof message === "string") this.result.textContent = message;
    } catch (failure) {
      this.showFailure(failure);
    } finally {
      this.submit.disabled = false;
    }
  }
}

/** A section with a heading, for pages built of several forms and tables. */
export function section(id, title, ...children) {
  return h("section", { id, class: "card", "data-testid": id }, h("h2", {}, title), children);
}
