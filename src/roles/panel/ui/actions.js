// Pair actions (POST /api/pairs/NAME/actions {action, confirm?, …}; DELETE /api/pairs/NAME).
// Destructive ones open a dialog where the user types the pair's name; the server checks `confirm`
// again for restore, failover and failback whatever the page does.
import { del, post, seg } from "./api.js";
import { openDialog, typeNameField } from "./confirm.js";
import { describe, h, replace } from "./dom.js";

export const pairActions = [
  ["start", "Start", "Start replicating (enable the pair)"],
  ["stop", "Stop", "Stop the pair; its state is kept"],
  ["split", "Split", "Stop applying to the replica so it can be used; writes are tracked for a later join"],
  ["join", "Join", "Rejoin a split pair: resync what changed"],
  ["resync", "Resync", "Copy the blocks that differ to the replica"],
  ["verify", "Verify", "Compare primary and replica checksums"],
  ["snapshot", "Fast snapshot", "Take a snapshot of the replica now and serve it as an export"],
  ["restore", "Restore", "Restore the primary from the replica (overwrites the primary)"],
  ["failover", "Failover", "Serve the replica as the production device"],
  ["failback", "Failback", "Return production to the primary"],
  ["delete", "Delete", "Stop the pair and remove it from every component"],
];

/** Actions that ask for the pair's name first. */
export const confirmedActions = new Set(["split", "restore", "failover", "failback", "delete"]);

function resultLine(status, text, kind) {
  status.dataset.outcome = kind;
  replace(status, text);
}

function outcomeText(pair, action, answer) {
  const tx = answer?.tx;
  const parts = [`${action} ${pair}: done`];
  if (tx && typeof tx === "object") parts.push(`transaction ${tx.txid ?? ""} ${tx.state ?? ""}`.trim());
  if (answer?.result !== undefined) parts.push(describe(answer.result));
  return parts.join(" — ");
}

async function send(pair, action, extra) {
  if (action === "delete") return await del(`/api/pairs/${seg(pair)}`);
  return await post(`/api/pairs/${seg(pair)}/actions`, { action, ...extra });
}

/** Actions that open the dialog: to type the pair's name, or to give the fields the action needs. */
const dialogActions = new Set([...confirmedActions, "snapshot"]);

function askConfirm(pair, action, label, why, status, onDone) {
  const fields = [];
  if (confirmedActions.has(action)) fields.push(typeNameField(pair, "pair"));
  if (action === "restore") fields.push({ name: "to", id: "confirm-to", label: "Restore to (snapshot name or time)", help: "A snapshot name, or a time (ISO 8601) within the replica's retention.", check: (v) => (v === "" ? "is required" : undefined) });
  if (action === "failover" || action === "snapshot") {
    fields.push({ name: "export", id: "confirm-export", label: action === "snapshot" ? "Export the snapshot as" : "Export the replica as", placeholder: "unix:/run/druvaa/replica.sock or 10.0.0.9:10809", help: "Where the replica server serves the device (NBD) for the application to use.", check: (v) => (v === "" ? "is required" : undefined) });
  }
  if (action === "failover") fields.push({ name: "at", id: "confirm-at", label: "Point in time (optional)", help: "Fail over to an earlier consistent point; empty: the latest." });
  openDialog({
    title: `${label}: pair "${pair}"`,
    why,
    warning: confirmedActions.has(action),
    submitLabel: label,
    fields,
    onSubmit: async (values) => {
      const extra = {};
      for (const key of ["confirm", "to", "export", "at"]) if (values[key]) extra[key] = values[key];
      const answer = await send(pair, action, extra);
      resultLine(status, outcomeText(pair, action, answer), "ok");
      onDone?.();
    },
  });
}

/** The action buttons of one pair's row (none for viewers). */
export function actionButtons(pair, ctx, status, onDone) {
  if (!ctx.can("operator")) return [];
  return pairActions.map(([action, label, why]) =>
    h("button", {
      type: "button",
      class: `action${confirmedActions.has(action) ? " destructive" : ""}`,
      "data-action": action,
      title: why,
      onclick: async (event) => {
        if (dialogActions.has(action)) {
          askConfirm(pair, action, label, why, status, onDone);
          return;
        }
        const button = event.currentTarget;
        button.disabled = true;
        resultLine(status, `${action} ${pair}…`, "pending");
        try {
          resultLine(status, outcomeText(pair, action, await send(pair, action, {})), "ok");
          onDone?.();
        } catch (failure) {
          resultLine(status, `${action} ${pair} refused: ${failure.message}${failure.hint ? ` — ${failure.hint}` : ""}`, "error");
        } finally {
          button.disabled = false;
        }
      },
    }, label));
}
