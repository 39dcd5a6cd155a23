/**
 * `druvaa checkpoint`: marks an application-consistent point in the write order. Freeze the
 * application or file system first (fsfreeze --freeze /mnt/data), run it, then thaw: the client
 * (its control port, POST /checkpoint) sends a checkpoint record per device through staging's
 * write log, after every write the application saw complete, and it reaches the replica at that
 * place of the order (src/roles/client/checkpoint.ts). Prints each device's LSN.
 *
 * Exit codes: 0 logged for every device, 1 failed (staging refused it for another reason), 2
 * usage (bad label), 4 refused (no such device; CHECKPOINT_UNAVAILABLE: the client is disconnected,
 * resyncing or not connected to staging, so the point could not flow through the log: retry once
 * it is connected). A client running with TLS wants an admin certificate (--tls-cert/--tls-key/
 * --tls-ca): its control port is HTTPS (control-client.ts).
 */
import { command, jsonFlag, output } from "../cli-support.ts";
import { DruvaaError, exitCodes, usageError } from "../errors.ts";
import { checkpointLabelAmbiguityHint, checkpointLabelRule, newCheckpointLabelProblem } from "../protocol/checkpoint-label.ts";
import { controlToolArgs, resolveControlToolSecurity } from "../roles/link-security.ts";
import type { CheckpointResult } from "../roles/client/checkpoint.ts";
import { controlRequest } from "./status-format.ts";

const clientControlPort = 6007;
/** Longer than the client waits for staging's ack (clientVerifyAckTimeoutMs), so its answer comes first. */
const requestTimeoutMs = 30_000;

/** Error codes of the client that mean "refused" (exit 4). */
const refusedCodes = new Set(["DEVICE_UNKNOWN", "CHECKPOINT_UNAVAILABLE"]);

async function postCheckpoint(connect: string, body: Record<string, string>, tls: Parameters<typeof controlRequest>[4]): Promise<CheckpointResult> {
  const init: RequestInit = { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" }, signal: AbortSignal.timeout(requestTimeoutMs) };
  const response = await controlRequest(connect, "/checkpoint", init, clientControlPort, tls);
  const parsed = (await response.json().catch(() => undefined)) as (Partial<CheckpointResult> & { error?: { code?: string; message?: string; hint?: string } }) | undefined;
  if (response.ok && parsed !== undefined && Array.isArray(parsed.checkpoints)) return parsed as CheckpointResult;
  if (response.status === 404 && parsed?.error?.code === "NOT_FOUND") {
    throw new DruvaaError("NOT_A_CLIENT", `${connect} is not a druvaa client's control port (no POST /checkpoint)`, "Give the client's control port (druvaa client attach --control, default 6007)", exitCodes.usage);
  }
  const code = parsed?.error?.code ?? "CHECKPOINT_FAILED";
  const exitCode = code === "USAGE" ? exitCodes.usage : refusedCodes.has(code) ? exitCodes.refused : exitCodes.failure;
  throw new DruvaaError(code, parsed?.error?.message ?? `${connect} answered HTTP ${response.status}`, parsed?.error?.hint, exitCode);
}

export default command({
  meta: { name: "checkpoint", description: "Mark an application-consistent point (after fsfreeze) that flows through the write log to the replica" },
  args: {
    client: { type: "string", valueHint: "HOST:PORT", default: "127.0.0.1:6007", description: "the client's control port (default port 6007)" },
    label: { type: "string", valueHint: "NAME", required: true, description: `the checkpoint's name: ${checkpointLabelRule}` },
    device: { type: "string", valueHint: "NAME", description: "only this device (export name); default: every device of the client" },
    ...controlToolArgs,
    json: jsonFlag,
  },
  examples: [
    "fsfreeze --freeze /mnt/db && druvaa checkpoint --client 127.0.0.1:6007 --label nightly-2026-01-31; fsfreeze --unfreeze /mnt/db",
    "druvaa checkpoint --client app1:6007 --label before-upgrade --device disk0 --json",
    "druvaa checkpoint --client app1:6007 --label pre-patch --tls-cert tls/ops.pem --tls-key tls/ops.key --tls-ca tls/ca.pem   # a client running with TLS",
  ],
  async run({ args }) {
    const problem = newCheckpointLabelProblem(args.label);
    if (problem !== undefined) throw usageError(`--label ${args.label}: not a valid checkpoint label: ${problem}`, `Use ${checkpointLabelRule}; ${checkpointLabelAmbiguityHint}, e.g. --label before-upgrade`);
    const body: Record<string, string> = { label: args.label };
    if (args.device !== undefined) body.device = args.device;
    const tls = await resolveControlToolSecurity(args);
    const result = await postCheckpoint(args.client, body, tls);
    output(args.json, { ok: true, label: result.label, checkpoints: result.checkpoints }, () =>
      [`checkpoint ${result.label}:`, ...result.checkpoints.map((entry) => `  ${entry.device}: after LSN ${entry.lsn} of WRL ${entry.wrl}`)].join("\n"));
  },
});
