// The Wizard: a new pair in five steps, sent as one transaction (POST /api/wizard). Each step's
// fields are checked before moving on; the server's refusal jumps back to the step of the field it
// names and shows the message there, with every component's reason from the transaction.
import { ApiFailure, get, post } from "./api.js";
import { formatBytes, h, parseSize, replace } from "./dom.js";
import { checkName, Form, required, setOptions } from "./forms.js";
import { transactionView } from "./lists.js";
import { wizardFields } from "./wizard-fields.js";

const steps = [
  ["Client host and device", ["pair.name", "pair.client", "pair.devicePath", "pair.deviceName", "pair.export"]],
  ["Staging server and WRL", ["wrl.staging", "wrlMode", "pair.wrl", "wrl.name", "wrl.paths", "wrl.sizeBytes", "wrl.stagingAddress", "wrl.replicaAddress", "sizing.writeBytesPerSecond", "sizing.outageSeconds"]],
  ["Replica", ["pair.replica", "pair.replicaDevicePath", "pair.replicaSizeBytes"]],
  ["Options", ["pair.initialSync", "wrl.compression", "pair.rateLimit", "wrl.rpo", "changemap.path"]],
  ["Review", []],
];

const firstNumber = (answer, patterns) => {
  for (const pattern of patterns) for (const [key, value] of Object.entries(answer)) if (pattern.test(key) && typeof value === "number") return value;
  return undefined;
};

/** The wizard's request body from the form's values. */
function requestOf(values) {
  const newWrl = values.wrlMode === "new";
  const pair = {
    name: values["pair.name"], client: values["pair.client"], deviceName: values["pair.deviceName"], devicePath: values["pair.devicePath"], export: values["pair.export"],
    wrl: newWrl ? values["wrl.name"] : values["pair.wrl"], replica: values["pair.replica"], replicaDevicePath: values["pair.replicaDevicePath"], initialSync: values["pair.initialSync"],
  };
  if (values["pair.replicaSizeBytes"] !== "") pair.replicaSizeBytes = parseSize(values["pair.replicaSizeBytes"]);
  if (values["pair.rateLimit"] !== "") pair.rateLimit = values["pair.rateLimit"];
  const body = { pair };
  if (values["changemap.path"] !== "") {
    body.changemap = { name: `${values["pair.name"]}-map`, client: values["pair.client"], path: values["changemap.path"] };
    pair.changemap = body.changemap.name;
  }
  if (newWrl) {
    body.wrl = { name: values["wrl.name"], staging: values["wrl.staging"], paths: values["wrl.paths"].split(/[\s,]+/).filter((path) => path !== ""), sizeBytes: parseSize(values["wrl.sizeBytes"]), replica: values["pair.replica"] };
    for (const key of ["compression", "rpo", "stagingAddress", "replicaAddress"]) if (values[`wrl.${key}`] !== "") body.wrl[key] = values[`wrl.${key}`];
  }
  return body;
}

export function renderWizard(page, ctx) {
  let step = 0;
  let wrls = [];
  const back = h("button", { type: "button", id: "wiz-back", "data-testid": "wiz-back", onclick: () => go(step - 1) }, "Back");
  const next = h("button", { type: "button", id: "wiz-next", "data-testid": "wiz-next", onclick: () => nextStep() }, "Next");
  const result = h("div", { id: "wiz-result", "data-testid": "wiz-result", role: "status" });
  const review = h("dl", { id: "wiz-review", "data-testid": "wiz-review" });
  const probeResult = h("span", { id: "wiz-probe-result", "data-testid": "wiz-probe-result", class: "muted" });
  const sizingResult = h("span", { id: "wiz-sizing-result", "data-testid": "wiz-sizing-result", class: "muted" });
  let primarySizeBytes;

  const form = new Form({
    id: "wizard",
    submitId: "wiz-finish",
    submitLabel: "Finish",
    extraButtons: [back, next],
    fields: wizardFields({ checkName, required, parseSize }),
    onSubmit: async (values) => {
      replace(result);
      try {
        const answer = await post("/api/wizard", requestOf(values));
        replace(result, h("p", { class: "ok", id: "wiz-done" }, `Pair "${values["pair.name"]}" is set up.`, " ", h("a", { href: "#/manage/pairs" }, "Manage it")), answer.tx ? transactionView(answer.tx) : null);
        result.dataset.txState = answer.tx?.state ?? "committed";
      } catch (failure) {
        if (failure instanceof ApiFailure && failure.body?.tx) {
          result.dataset.txState = failure.body.tx.state ?? "aborted";
          replace(result, h("p", { class: "form-error" }, `Refused: ${failure.message}`), transactionView(failure.body.tx));
        } else {
          result.dataset.txState = "";
        }
        throw failure; // shown next to its field, and the wizard goes to that field's step
      }
    },
  });
  const originalShowError = form.showError.bind(form);
  form.showError = (field, message, hint) => {
    const named = originalShowError(field, message, hint);
    const entry = form.lookup(field);
    if (entry !== undefined) {
      const index = steps.findIndex(([, names]) => names.includes(entry.spec.name));
      if (index >= 0 && index < step) go(index, false);
    }
    return named;
  };

  // Each step's rows in a fieldset; Back/Next/Finish and the form's error stay below.
  const fieldsets = steps.map(([title, names], index) => {
    const fieldset = h("fieldset", { class: "wiz-step", "data-step": index + 1, hidden: index !== 0 }, h("legend", {}, `Step ${index + 1} of ${steps.length}: ${title}`));
    for (const name of names) fieldset.append(form.element.querySelector(`[data-field-row="${CSS.escape(name)}"]`));
    return fieldset;
  });
  fieldsets[0].querySelector('[data-field-row="pair.devicePath"]').append(h("button", { type: "button", id: "wiz-probe", "data-testid": "wiz-probe", onclick: () => void probe() }, "Probe size"), probeResult);
  fieldsets[1].querySelector('[data-field-row="sizing.outageSeconds"]').append(h("button", { type: "button", id: "wiz-sizing", "data-testid": "wiz-sizing", onclick: () => void sizing() }, "Compute sizes"), sizingResult);
  fieldsets[4].append(review);
  form.element.prepend(...fieldsets);
  // Enter in a field before the last step moves on instead of finishing.
  form.element.addEventListener("submit", (event) => {
    if (step === steps.length - 1) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    nextStep();
  }, true);
  const stepLabel = h("p", { id: "wiz-step", "data-testid": "wiz-step", "data-step": "1" });

  const input = (name) => form.input(name);
  const syncWrlMode = () => {
    const isNew = input("wrlMode").value === "new";
    for (const name of ["wrl.name", "wrl.paths", "wrl.sizeBytes", "wrl.stagingAddress", "wrl.replicaAddress", "sizing.writeBytesPerSecond", "sizing.outageSeconds", "wrl.compression", "wrl.rpo"]) form.element.querySelector(`[data-field-row="${name}"]`).hidden = !isNew;
    form.element.querySelector('[data-field-row="pair.wrl"]').hidden = isNew;
    sizingResult.hidden = !isNew;
  };
  const syncWrlChoices = () => {
    const staging = input("wrl.staging").value;
    setOptions(input("pair.wrl"), wrls.filter((wrl) => staging === "" || wrl.staging === staging).map((wrl) => [wrl.name, `${wrl.name} (${formatBytes(wrl.sizeBytes)}, ${wrl.pairs?.length ?? 0} pairs)`]), "— pick a WRL —");
  };
  input("wrlMode").addEventListener("change", syncWrlMode);
  input("wrl.staging").addEventListener("change", syncWrlChoices);
  input("pair.wrl").addEventListener("change", () => {
    const chosen = wrls.find((wrl) => wrl.name === input("pair.wrl").value);
    if (chosen !== undefined) input("pair.replica").value = chosen.replica;
  });
  input("pair.name").addEventListener("change", () => {
    const changemapPath = input("changemap.path");
    if (changemapPath.value === "" && input("pair.name").value !== "") changemapPath.value = `/var/lib/druvaa/${input("pair.name").value}.map`;
  });
  input("pair.devicePath").addEventListener("change", () => {
    const deviceName = input("pair.deviceName");
    if (deviceName.value === "") deviceName.value = input("pair.devicePath").value.split("/").pop().replace(/[^A-Za-z0-9._-]/g, "") || "";
  });

  async function probe() {
    const values = form.values();
    probeResult.textContent = "probing…";
    for (const name of ["pair.client", "pair.devicePath"]) {
      const entry = form.fields.get(name);
      entry.error.hidden = true;
      entry.input.removeAttribute("aria-invalid");
    }
    try {
      const answer = await get(`/api/probe?component=${encodeURIComponent(values["pair.client"])}&path=${encodeURIComponent(values["pair.devicePath"])}`);
      primarySizeBytes = answer.sizeBytes ?? undefined;
      const what = { block: "block device", file: "image file", missing: "not found", other: "not a device or file" }[answer.kind] ?? String(answer.kind ?? "device");
      probeResult.dataset.kind = String(answer.kind ?? "");
      probeResult.dataset.sizeBytes = answer.sizeBytes === null || answer.sizeBytes === undefined ? "" : String(answer.sizeBytes);
      probeResult.textContent = answer.sizeBytes === null || answer.sizeBytes === undefined ? what : `${what}: ${formatBytes(answer.sizeBytes)} (${answer.sizeBytes} bytes)${answer.inUse ? `, in use: ${answer.inUse}` : ""}`;
    } catch (failure) {
      probeResult.textContent = "";
      form.showError(failure.field === "component" ? "pair.client" : "pair.devicePath", failure.message, failure.hint);
    }
  }

  async function sizing() {
    const values = form.values();
    const write = parseSize(values["sizing.writeBytesPerSecond"]);
    const outage = Number(values["sizing.outageSeconds"]);
    if (primarySizeBytes === undefined) await probe();
    const query = new URLSearchParams({ writeBytesPerSecond: String(write ?? 0), outageSeconds: String(Number.isFinite(outage) ? Math.round(outage) : 0) });
    if (primarySizeBytes) query.set("primarySizeBytes", String(primarySizeBytes));
    try {
      const answer = await get(`/api/sizing?${query}`);
      const wrlBytes = firstNumber(answer, [/^stagingWrlSizeBytes$/, /^wrlSizeBytes$/, /wrl.*SizeBytes/i]);
      const replicaBytes = firstNumber(answer, [/^replicaDeviceSizeBytes$/, /^replicaSizeBytes$/, /replica.*Device.*Bytes/i]);
      if (wrlBytes !== undefined) input("wrl.sizeBytes").value = String(wrlBytes);
      if (replicaBytes !== undefined && input("pair.replicaSizeBytes").value === "") input("pair.replicaSizeBytes").value = String(replicaBytes);
      sizingResult.textContent = `WRL ${formatBytes(wrlBytes)}, replica device ${formatBytes(replicaBytes)}`;
    } catch (failure) {
      sizingResult.textContent = "";
      form.showFailure(failure);
    }
  }

  function stepValid(index) {
    form.clearErrors();
    const values = form.values();
    let ok = true;
    for (const name of steps[index][1]) {
      const entry = form.fields.get(name);
      if (form.element.querySelector(`[data-field-row="${CSS.escape(name)}"]`).hidden) continue;
      const problem = entry.spec.check?.(values[name], values);
      if (problem !== undefined) {
        form.showError(name, `${entry.spec.label}: ${problem}`);
        ok = false;
      }
    }
    return ok;
  }

  function fillReview() {
    const body = requestOf(form.values());
    const rows = [
      ["Pair", body.pair.name], ["Client host", body.pair.client], ["Device", `${body.pair.deviceName} = ${body.pair.devicePath}${primarySizeBytes ? ` (${formatBytes(primarySizeBytes)})` : ""}`], ["Export", body.pair.export],
      ["WRL", body.wrl ? `new "${body.wrl.name}" on ${body.wrl.staging}: ${body.wrl.paths.join(", ")} (${formatBytes(body.wrl.sizeBytes)})` : `existing "${body.pair.wrl}"`],
      ["Replica", `${body.pair.replica}: ${body.pair.replicaDevicePath}${body.pair.replicaSizeBytes ? ` (${formatBytes(body.pair.replicaSizeBytes)})` : ""}`],
      ["Initial sync", body.pair.initialSync], ["Compression", body.wrl ? (body.wrl.compression ?? "default (auto)") : "(the WRL's)"], ["Rate limit", body.pair.rateLimit ?? "none"], ["RPO", body.wrl ? (body.wrl.rpo ?? "none") : "(the WRL's)"],
      ["Change map", body.changemap ? `${body.changemap.name}: ${body.changemap.path}` : "default"],
    ];
    replace(review, rows.map(([label, value]) => [h("dt", {}, label), h("dd", { "data-review": label }, String(value ?? ""))]));
  }

  function go(index, validate = true) {
    if (index < 0 || index >= steps.length) return;
    if (validate && index > step) {
      for (let i = step; i < index; i += 1) if (!stepValid(i)) return go(i, false);
    }
    step = index;
    if (step === steps.length - 1) fillReview();
    fieldsets.forEach((fieldset, i) => { fieldset.hidden = i !== step; });
    stepLabel.dataset.step = String(step + 1);
    stepLabel.textContent = `Step ${step + 1} of ${steps.length}: ${steps[step][0]}`;
    back.disabled = step === 0;
    next.hidden = step === steps.length - 1;
    form.submit.hidden = step !== steps.length - 1;
  }
  const nextStep = () => go(step + 1);

  replace(page, h("h1", {}, "Wizard: set up replication"), h("p", { class: "muted" }, "Pick the client host and its device, the staging server and its write log (WRL), the replica, then the options. Finish sends everything as one transaction: every component takes it, or none does."), stepLabel, form.element, result);
  go(0, false);
  syncWrlMode();

  Promise.all([get("/api/components"), get("/api/wrls").catch(() => ({ wrls: [] }))]).then(([{ components }, answer]) => {
    wrls = answer.wrls;
    const of = (role) => components.filter((component) => component.role === role).map((component) => [component.name, `${component.name} (${component.control})`]);
    setOptions(input("pair.client"), of("client"), "— pick a client host —");
    setOptions(input("wrl.staging"), of("staging"), "— pick a staging server —");
    setOptions(input("pair.replica"), of("replica"), "— pick a replica server —");
    syncWrlChoices();
    if (wrls.length === 0) {
      input("wrlMode").value = "new";
      syncWrlMode();
    }
    form.element.dataset.ready = "true";
  }, (failure) => form.showFailure(failure));
}
