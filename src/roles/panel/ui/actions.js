// Pair actions (POST /api/pairs/NAME/actions {action, confirm?, …}; DELETE /api/pairs/NAME).
// Destructive ones open a dialog where the user types the pair's name; the server checks `confirm`
// again for restore, failover and failback whatever the page does.
import { del, post, seg } from "./api.js";
import { openDialog, typeNameField } from "./confirm.js";
import { describe, h, replace } from "./dom.js";

export const pairActions = [
  ["start", "Start", "Start replicating (enable the pair)"],
  ["stop", "Stop", "Stop the pair; its state is kept"],
  ["split", "Split", "Freeze the replica at its last consistent point (every pair of this WRL): staging keeps logging the writes"],
  ["join", "Join", "End the split: staging relays what it logged meanwhile and the replica catches up"],
  ["resync", "Resync", "Copy the blocks that differ to the replica"],
  ["verify", "Verify", "Compare primary and replica checksums"],
  ["snapshot", "Fast snapshot", "Take a snapshot of the replica now and serve it as an export"],
  ["restore", "Restore", "Copy the replica (now or at a point in time) to a path on the client host"],
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

/**
 * A link to Manage → Jobs. Manage shows every section on one page: when the Jobs section is
 * there, the link scrolls to it (no re-render: the outcome line stays); otherwise it navigates.
 */
function jobsLink() {
  return h("a", {
    href: "#/manage/jobs",
    id: "action-jobs-link",
    "data-testid": "action-jobs-link",
    onclick: (event) => {
      const jobs = document.getElementById("section-jobs");
      if (jobs === null) return;
      event.preventDefault();
      jobs.scrollIntoView({ block: "start" });
    },
  }, "Manage → Jobs");
}

/** The outcome line's content: text, with a link to the Jobs section when the action started a job. */
function outcomeText(pair, action, answer) {
  const tx = answer?.tx;
  const job = answer?.job;
  const parts = [];
  if (tx && typeof tx === "object") parts.push(`transaction ${tx.txid ?? ""} ${tx.state ?? ""}`.trim());
  if (answer?.result !== undefined) parts.push(describe(answer.result));
  const rest = parts.length === 0 ? "" : ` — ${parts.join(" — ")}`;
  if (job) return [`${action} ${pair}: job ${job.id ?? ""} ${job.state ?? "started"} on the client host; follow it in `, jobsLink(), rest];
  return `${action} ${pair}: done${rest}`;
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
  if (action === "restore") {
    fields.push({ name: "to", id: "confirm-to", label: "Restore to (path on the client host)", placeholder: "/var/lib/druvaa/restore/disk0.img", help: "An absolute path on the client host: a new image file or a spare block device (not the pair's own device while the pair runs). The client host's agent runs druvaa restore into it.", check: (v) => (v.startsWith("/") ? undefined : "must be an absolute path") });
    fields.push({ name: "at", id: "confirm-at", label: "Point in time (optional)", help: "A checkpoint label, an LSN, an ISO time or -15m within the replica's retention; empty: the latest." });
    fields.push({ name: "force", id: "confirm-force", label: "Overwrite an existing target", type: "checkbox", help: "Without it the restore refuses a file that is not empty or a block device (druvaa restore --force). A target mounted, in use or too small is refused either way." });
  }
  if (action === "failback") {
    fields.push({ name: "keep", id: "confirm-keep", label: "If both sides were written", type: "select", options: [["", "refuse (show both sides' writes)"], ["dr", "keep the DR side's writes"], ["primary", "keep the primary's writes"]], help: "Split brain: failback refuses unless you say which side's writes to keep." });
  }
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
      for (const key of ["confirm", "to", "export", "at", "keep", "force"]) if (values[key]) extra[key] = values[key];
      const answer = await send(pair, action, extra);
      resultLine(status, outcomeText(pair, action, answer), "ok");
      onDone?.(answer);
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
          const answer = await send(pair, action, {});
          resultLine(status, outcomeText(pair, action, answer), "ok");
          onDone?.(answer);
        } catch (failure) {
          resultLine(status, `${action} ${pair} refused: ${failure.message}${failure.hint ? ` — ${failure.hint}` : ""}`, "error");
        } finally {
          button.disabled = false;
        }
      },
    }, label));
}
