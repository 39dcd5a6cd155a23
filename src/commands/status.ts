/**
 * `druvaa status --connect HOST:PORT`: reads any role's control port (GET /status) and prints it.
 * `--wait-drained` (against a staging control port) waits until everything logged when the
 * command started has been applied at the replica: the scripting primitive for "is my DR copy
 * current?". A role running with TLS serves its control port over HTTPS to admin and panel
 * certificates: give this tool one with --tls-cert/--tls-key/--tls-ca (control-client.ts).
 */
import { command, jsonFlag, output } from "../cli-support.ts";
import { DruvaaError, exitCodes, usageError } from "../errors.ts";
import { formatBytes, parseDurationMs } from "../units.ts";
import { controlToolArgs, resolveControlToolSecurity } from "../roles/link-security.ts";
import { fetchStatus, formatStatus, type StagingStatus } from "./status-format.ts";

export default command({
  meta: { name: "status", description: "Show the live status of a client, staging server or replica (its control port)" },
  args: {
    connect: { type: "string", valueHint: "HOST:PORT", required: true, description: "the role's control port (client 6007, staging 6002, replica 6004)" },
    "wait-drained": { type: "boolean", description: "wait until everything logged so far is applied at the replica (staging control port), then exit 0" },
    timeout: { type: "string", valueHint: "SECONDS", default: "600", description: "with --wait-drained: give up after this long (exit 5)" },
    ...controlToolArgs,
    json: jsonFlag,
  },
  examples: [
    "druvaa status --connect 127.0.0.1:6002",
    "druvaa status --connect staging.example:6002 --json",
    "druvaa status --connect 127.0.0.1:6002 --wait-drained --timeout 300 && echo 'replica is current'",
    "druvaa status --connect 10.0.0.5:6002 --tls-cert tls/ops.pem --tls-key tls/ops.key --tls-ca tls/ca.pem   # a role running with TLS: HTTPS, admin certificate",
  ],
  async run({ args }) {
    const tls = await resolveControlToolSecurity(args);
    const first = await fetchStatus(args.connect, undefined, tls);
    if (!args["wait-drained"]) {
      output(args.json, first, () => formatStatus(first));
      return;
    }
    if (first.role !== "staging") throw usageError(`--wait-drained needs a staging control port; ${args.connect} is a ${String(first.role)}`, "Point --connect at the staging server's control port (default 6002)");
    const timeoutMs = parseDurationMs(args.timeout, "--timeout");
    const targets = new Map((first as StagingStatus).wrls.map((wrl) => [wrl.name, wrl.headLsn]));
    const deadline = Date.now() + timeoutMs;
    const tty = process.stderr.isTTY && !args.json;
    for (;;) {
      const status = (await fetchStatus(args.connect, undefined, tls)) as StagingStatus;
      const pending = status.wrls.filter((wrl) => (wrl.replica?.appliedLsn ?? 0) < (targets.get(wrl.name) ?? 0));
      if (pending.length === 0) {
        if (tty) process.stderr.write("\n");
        output(args.json, { ok: true, drained: true, wrls: status.wrls.map((w) => ({ name: w.name, headLsn: w.headLsn, appliedLsn: w.replica?.appliedLsn ?? 0 })) }, () => "drained: everything logged has been applied at the replica");
        return;
      }
      if (tty) {
        const lag = pending.map((w) => `${w.name}: lag ${formatBytes(w.lagBytes ?? 0)}, ${(w.lagSeconds ?? 0).toFixed(1)} s${w.replica?.lastError ? ` (${w.replica.lastError.message})` : ""}`).join("; ");
        process.stderr.write(`\rwaiting for the replica… ${lag}   `);
      }
      if (Date.now() >= deadline) {
        if (tty) process.stderr.write("\n");
        const detail = pending.map((w) => `${w.name} applied ${w.replica?.appliedLsn ?? 0} of ${targets.get(w.name)}${w.replica?.lastError ? ` — ${w.replica.lastError.message}` : ""}`).join("; ");
        throw new DruvaaError("TIMEOUT", `not drained after ${args.timeout}: ${detail}`, "Check the relay with: druvaa status --connect STAGING:6002", exitCodes.timeout);
      }
      await Bun.sleep(200);
    }
  },
});
