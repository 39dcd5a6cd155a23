// New: register a component, create a WRL, a change map, a pair — one form each, every change one
// transaction on the components it touches (its outcome shown under the form).
import { ApiFailure, del, get, post, seg } from "./api.js";
import { confirmByName } from "./confirm.js";
import { formatBytes, h, parseSize, replace } from "./dom.js";
import { checkName, Form, required, section, setOptions } from "./forms.js";
import { transactionView } from "./lists.js";
import { compressionChoices, initialSyncModes } from "./wizard-fields.js";

const sizeCheck = (value) => (value === "" ? "is required" : parseSize(value) === undefined ? "must be a size such as 10GiB or a number of bytes" : undefined);
const optional = (body, values, pairs) => {
  for (const [key, name] of pairs) if (values[name] !== "") body[key] = values[name];
  return body;
};

/** Sends a change; shows its transaction (committed or refused, with reasons) in `txBox`. */
async function change(txBox, send, done) {
  replace(txBox);
  try {
    const answer = await send();
    if (answer.tx) replace(txBox, transactionView(answer.tx));
    return done(answer);
  } catch (failure) {
    if (failure instanceof ApiFailure && failure.body?.tx) replace(txBox, transactionView(failure.body.tx));
    throw failure;
  }
}

export function renderNew(page, ctx) {
  const boxes = Object.fromEntries(["wrl", "changemap", "pair", "component"].map((key) => [key, h("div", { class: "tx-box", id: `new-${key}-tx`, "data-testid": `new-${key}-tx` })]));
  const wrlList = h("ul", { id: "wrls", "data-testid": "wrls" });

  const component = new Form({
    id: "new-component", submitLabel: "Register component",
    fields: [
      { name: "name", id: "new-component-name", label: "Name", placeholder: "staging1", help: "The panel's name for this host's druvaa role.", check: checkName },
      { name: "role", id: "new-component-role", label: "Role", type: "select", options: ["client", "staging", "replica"], help: "client: the production host; staging: logs writes; replica: keeps the copy." },
      { name: "control", id: "new-component-control", label: "Control address", placeholder: "10.0.0.5:6002", help: "HOST:PORT of the component's control port (client 6007, staging 6002, replica 6004 by default).", check: required },
    ],
    onSubmit: (values) => change(boxes.component, () => post("/api/components", values), () => { void loadChoices(); return `component "${values.name}" registered`; }),
  });

  const wrl = new Form({
    id: "new-wrl", submitLabel: "Create WRL",
    fields: [
      { name: "name", id: "new-wrl-name", label: "Name", placeholder: "fast", check: checkName },
      { name: "staging", id: "new-wrl-staging", label: "Staging server", type: "select", options: [], check: required },
      { name: "paths", id: "new-wrl-paths", label: "Device paths", type: "textarea", rows: 2, placeholder: "/var/lib/druvaa/wrl/fast.img", help: "One a line: the primary first, then secondaries. A missing primary is created.", check: required },
      { name: "sizeBytes", id: "new-wrl-size", label: "Size", placeholder: "10GiB", help: "GET /api/sizing (the Wizard's Compute sizes) suggests one.", check: sizeCheck },
      { name: "replica", id: "new-wrl-replica", label: "Replica server", type: "select", options: [], check: required },
      { name: "stagingAddress", id: "new-wrl-staging-address", label: "Staging data address (optional)", placeholder: "10.0.0.5:6001", help: "Where clients reach the staging server; empty: learnt from its status." },
      { name: "replicaAddress", id: "new-wrl-replica-address", label: "Replica data address (optional)", placeholder: "10.0.0.9:6003", help: "Where the staging server reaches the replica; empty: learnt from its status (it must be running)." },
      { name: "compression", id: "new-wrl-compression", label: "Compression", type: "select", options: compressionChoices },
      { name: "rateLimit", id: "new-wrl-rate-limit", label: "Rate limit", placeholder: "20MiB/s" },
      { name: "rpo", id: "new-wrl-rpo", label: "RPO", placeholder: "30s", help: "An alert is raised when the replica lags more than this." },
    ],
    onSubmit: (values) => {
      const body = optional({ name: values.name, staging: values.staging, paths: values.paths.split(/[\s,]+/).filter((p) => p !== ""), sizeBytes: parseSize(values.sizeBytes), replica: values.replica }, values, [["stagingAddress", "stagingAddress"], ["replicaAddress", "replicaAddress"], ["compression", "compression"], ["rateLimit", "rateLimit"], ["rpo", "rpo"]]);
      return change(boxes.wrl, () => post("/api/wrls", body), () => { void loadChoices(); return `WRL "${values.name}" created`; });
    },
  });

  const changemap = new Form({
    id: "new-changemap", submitLabel: "Add change map",
    fields: [
      { name: "name", id: "new-changemap-name", label: "Name", placeholder: "pair-db-map", check: checkName },
      { name: "client", id: "new-changemap-client", label: "Client host", type: "select", options: [], check: required },
      { name: "path", id: "new-changemap-path", label: "Path on the client", placeholder: "/var/lib/druvaa/pair-db.map", help: "Created on the host with the first pair that uses it.", check: required },
    ],
    onSubmit: (values) => change(boxes.changemap, () => post("/api/changemaps", values), () => { void loadChoices(); return `change map "${values.name}" added`; }),
  });

  const pair = new Form({
    id: "new-pair", submitLabel: "Create pair",
    fields: [
      { name: "name", id: "new-pair-name", label: "Pair name", check: checkName },
      { name: "client", id: "new-pair-client", label: "Client host", type: "select", options: [], check: required },
      { name: "devicePath", id: "new-pair-device-path", label: "Device path", placeholder: "/dev/sdb", check: required },
      { name: "deviceName", id: "new-pair-device-name", label: "Device name", placeholder: "disk0", check: checkName },
      { name: "export", id: "new-pair-export", label: "Export", placeholder: "unix:/run/druvaa/disk0.sock", help: "Where the client serves the protected device (NBD).", check: required },
      { name: "wrl", id: "new-pair-wrl", label: "WRL", type: "select", options: [], check: required },
      { name: "replica", id: "new-pair-replica", label: "Replica server", type: "select", options: [], check: required },
      { name: "replicaDevicePath", id: "new-pair-replica-path", label: "Replica device path", check: required },
      { name: "replicaSizeBytes", id: "new-pair-replica-size", label: "Replica device size (optional)", placeholder: "10GiB", check: (v) => (v === "" ? undefined : sizeCheck(v)) },
      { name: "changemap", id: "new-pair-changemap", label: "Change map (optional)", type: "select", options: [] },
      { name: "initialSync", id: "new-pair-initial-sync", label: "Initial sync", type: "select", options: initialSyncModes },
      { name: "rateLimit", id: "new-pair-rate-limit", label: "Rate limit (optional)", placeholder: "50MiB/s" },
    ],
    onSubmit: (values) => {
      const body = optional({ name: values.name, client: values.client, deviceName: values.deviceName, devicePath: values.devicePath, export: values.export, wrl: values.wrl, replica: values.replica, replicaDevicePath: values.replicaDevicePath, initialSync: values.initialSync }, values, [["changemap", "changemap"], ["rateLimit", "rateLimit"]]);
      if (values.replicaSizeBytes !== "") body.replicaSizeBytes = parseSize(values.replicaSizeBytes);
      return change(boxes.pair, () => post("/api/pairs", body), () => `pair "${values.name}" created`);
    },
  });

  async function loadChoices() {
    try {
      const [{ components }, wrls, maps] = await Promise.all([get("/api/components"), get("/api/wrls").catch(() => ({ wrls: [] })), get("/api/changemaps").catch(() => ({ changemaps: [] }))]);
      const of = (role) => components.filter((c) => c.role === role).map((c) => [c.name, `${c.name} (${c.control})`]);
      setOptions(wrl.input("staging"), of("staging"), "— pick —");
      setOptions(wrl.input("replica"), of("replica"), "— pick —");
      setOptions(changemap.input("client"), of("client"), "— pick —");
      setOptions(pair.input("client"), of("client"), "— pick —");
      setOptions(pair.input("replica"), of("replica"), "— pick —");
      setOptions(pair.input("wrl"), wrls.wrls.map((w) => [w.name, `${w.name} on ${w.staging}`]), "— pick —");
      setOptions(pair.input("changemap"), (maps.changemaps ?? []).map((m) => [m.name, `${m.name} (${m.client}: ${m.path})`]), "(none: the default)");
      replace(wrlList, wrls.wrls.length === 0 ? h("li", { class: "muted" }, "No WRLs yet.") : wrls.wrls.map((w) => h("li", { "data-wrl": w.name },
        `${w.name} on ${w.staging}: ${(w.paths ?? []).join(", ")} (${formatBytes(w.sizeBytes)}) → ${w.replica}; pairs: ${(w.pairs ?? []).join(", ") || "none"} `,
        h("button", { type: "button", class: "small destructive", "data-action": "delete-wrl", onclick: () => removeWrl(w.name) }, "Delete"))));
    } catch (failure) {
      component.showFailure(failure);
    }
  }

  function removeWrl(name) {
    confirmByName({
      name,
      what: "WRL",
      title: `Delete WRL "${name}"?`,
      why: "It is removed from its staging server's configuration (refused while a pair uses it).",
      submitLabel: "Delete",
      run: async () => {
        await change(boxes.wrl, () => del(`/api/wrls/${seg(name)}`), () => undefined);
        wrl.result.textContent = `WRL "${name}" deleted`;
        await loadChoices();
      },
    });
  }

  replace(page, h("h1", {}, "New"),
    section("section-component", "Register a component", h("p", { class: "muted" }, "Every host runs one druvaa role; register each with its control address first."), component.element, boxes.component),
    section("section-wrl", "Write log (WRL) on a staging server", wrl.element, boxes.wrl, h("h3", {}, "Existing WRLs"), wrlList),
    section("section-changemap", "Change map on a client host", changemap.element, boxes.changemap),
    section("section-pair", "Replication pair", pair.element, boxes.pair));
  void loadChoices();
}
