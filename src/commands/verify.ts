/**
 * `druvaa verify`: asks a client (its control port) to compare one of its devices with the
 * replica's copy by block hashes, at the same point of the write order, while the device is in
 * use (src/roles/client/verify.ts), follows the run (progress on a TTY) and prints the differing
 * ranges. With --repair the client marks them dirty and resyncs them.
 *
 * Exit codes, for cron: 0 equal (with --repair: repaired and resynced), 1 differences found and
 * not repaired (or the run failed), 2 usage, 4 refused (no such device, the client disconnected
 * or not connected to staging, --repair without a change map, a verify of that device already
 * running), 5 not finished by --timeout (the run is cancelled). A client running with TLS wants an
 * admin certificate (--tls-cert/--tls-key/--tls-ca): its control port is HTTPS (control-client.ts).
 */
import { command, jsonFlag, output, setExitCode } from "../cli-support.ts";
import { DruvaaError, exitCodes, usageError } from "../errors.ts";
import { formatBytes, parseDurationMs, parseSizeBytes } from "../units.ts";
import { controlToolArgs, resolveControlToolSecurity } from "../roles/link-security.ts";
import type { PreparedTls } from "../tls/transport-tls.ts";
import { controlRequest } from "./status-format.ts";
import type { VerifyRunView } from "../roles/client/verify-runs.ts";

const pollMs = 250;
const clientControlPort = 6007;

/** Error codes of the client that mean "refused" (exit 4). */
const refusedCodes = new Set(["DEVICE_UNKNOWN", "NO_CHANGEMAP", "DISCONNECTED", "STAGING_UNREACHABLE", "VERIFY_BUSY"]);

/** What GET /verify?id= answers. */
type RunView = VerifyRunView;

async function request(connect: string, tls: PreparedTls | undefined, path: string, body?: unknown): Promise<RunView> {
  const init: RequestInit = body === undefined ? {} : { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } };
  const response = await controlRequest(connect, path, init, clientControlPort, tls);
  const parsed = (await response.json().catch(() => undefined)) as (RunView & { error?: RunView["error"] }) | undefined;
  if (response.ok && parsed !== undefined) return parsed;
  if (response.status === 404 && parsed?.error?.code === "NOT_FOUND") {
    throw new DruvaaError("NOT_A_CLIENT", `${connect} is not a druvaa client's control port (no ${path.split("?")[0]})`, "Give the client's control port (druvaa client attach --control, default 6007)", exitCodes.usage);
  }
  const error = parsed?.error;
  const code = error?.code ?? "VERIFY_FAILED";
  const exitCode = code === "USAGE" ? exitCodes.usage : refusedCodes.has(code) ? exitCodes.refused : exitCodes.failure;
  throw new DruvaaError(code, error?.message ?? `${connect} answered HTTP ${response.status}`, error?.hint, exitCode);
}

function progressLine(run: RunView): string {
  const percent = run.totalBytes === 0 ? 100 : (100 * run.checkedBytes) / run.totalBytes;
  const what = run.state === "resyncing" ? `resyncing ${formatBytes(run.repairedBytes)} that differed` : `${formatBytes(run.checkedBytes)} of ${formatBytes(run.totalBytes)} (${percent.toFixed(0)} %)`;
  return `\rverify ${run.device}: ${what}, ${formatBytes(run.differingBytes)} differing, ${run.mbPerSecond.toFixed(0)} MB/s   `;
}

function describe(run: RunView): string {
  const summary = `${formatBytes(run.checkedBytes)} checked in ${run.seconds.toFixed(1)} s (${run.mbPerSecond.toFixed(0)} MB/s)`;
  const lines = [run.differing.length === 0 && run.differingBytes === 0
    ? `${run.device}: equal; ${summary}`
    : `${run.device}: ${run.differing.length} differing range(s), ${formatBytes(run.differingBytes)}; ${summary}`];
  for (const range of run.differing) lines.push(`  offset ${range.offset} (${formatBytes(range.offset)})  length ${range.length} (${formatBytes(range.length)})`);
  if (run.differingTruncated) lines.push("  ... (more ranges than a run keeps; all of them count in the bytes above)");
  if (run.skippedDirtyBytes > 0) lines.push(`  ${formatBytes(run.skippedDirtyBytes)} not compared: dirty in the change map, waiting for a resync`);
  if (run.repair && run.differingBytes > 0) lines.push(`repaired: ${formatBytes(run.repairedBytes)} marked dirty and resynced`);
  return lines.join("\n");
}

export default command({
  meta: { name: "verify", description: "Compare a client device with its replica by block hashes while it is in use; print the ranges that differ (--repair: resync them)" },
  args: {
    device: { type: "string", valueHint: "NAME", required: true, description: "the client's device (export name) to verify" },
    connect: { type: "string", valueHint: "HOST:PORT", default: "127.0.0.1:6007", description: "the client's control port (default port 6007)" },
    repair: { type: "boolean", description: "mark the differing blocks dirty in the change map and resync them (needs a client with --changemap)" },
    offset: { type: "string", valueHint: "SIZE", description: "verify from here (default 0), e.g. 10GiB" },
    length: { type: "string", valueHint: "SIZE", description: "verify this much (default: to the end of the device)" },
    timeout: { type: "string", valueHint: "DURATION", default: "1h", description: "give up (exit 5, the run is cancelled) if not finished by then" },
    ...controlToolArgs,
    json: jsonFlag,
  },
  examples: [
    "druvaa verify --device disk0                               # exit 0: equal, 1: differences (listed)",
    "druvaa verify --device disk0 --connect app1:6007 --repair  # resync what differs; exit 0 once repaired",
    "druvaa verify --device db --offset 10GiB --length 1GiB --json",
    "druvaa verify --device disk0 --connect app1:6007 --tls-cert tls/ops.pem --tls-key tls/ops.key --tls-ca tls/ca.pem   # a client running with TLS",
    "# crontab: integrity patrol every Sunday at 03:00, mail on differences or errors",
    "0 3 * * 0  druvaa verify --device disk0 --timeout 6h --json >>/var/log/druvaa-verify.log || echo \"druvaa verify exit $?\" | mail -s 'druvaa verify disk0' root",
  ],
  async run({ args }) {
    const timeoutMs = parseDurationMs(args.timeout, "--timeout");
    if (timeoutMs <= 0) throw usageError(`--timeout ${args.timeout}: must be more than 0`, "e.g. --timeout 30m");
    const body: Record<string, unknown> = { device: args.device, repair: args.repair === true };
    if (args.offset !== undefined) body.offset = parseSizeBytes(args.offset, "--offset");
    if (args.length !== undefined) body.length = parseSizeBytes(args.length, "--length");
    const tls = await resolveControlToolSecurity(args);
    const started = performance.now();
    let run = await request(args.connect, tls, "/verify", body);
    const tty = !args.json && process.stderr.isTTY === true;
    while (run.state === "running" || run.state === "resyncing") {
      if (performance.now() - started > timeoutMs) {
        await request(args.connect, tls, "/verify/cancel", { id: run.id }).catch(() => undefined);
        if (tty) process.stderr.write("\n");
        throw new DruvaaError("TIMEOUT", `verify of ${run.device} not finished after ${args.timeout}: ${formatBytes(run.checkedBytes)} of ${formatBytes(run.totalBytes)} checked${run.state === "resyncing" ? ", resyncing what differed" : ""}; cancelled`, "Is the replica far behind or unreachable? Check: druvaa status --connect STAGING:6002; give a longer --timeout", exitCodes.timeout);
      }
      if (tty) process.stderr.write(progressLine(run));
      await Bun.sleep(pollMs);
      run = await request(args.connect, tls, `/verify?id=${run.id}`);
    }
    if (tty) process.stderr.write("\n");
    if (run.state !== "done") {
      const error = run.error ?? { code: "VERIFY_FAILED", message: `verify ${run.id} ended ${run.state}` };
      throw new DruvaaError(error.code, `verify of ${run.device} ${run.state}: ${error.message}`, error.hint, exitCodes.failure);
    }
    const equal = run.differingBytes === 0;
    output(
      args.json,
      {
        ok: true, id: run.id, device: run.device, equal, repaired: run.repair && !equal, checkedBytes: run.checkedBytes, differing: run.differing, differingBytes: run.differingBytes,
        differingTruncated: run.differingTruncated, skippedDirtyBytes: run.skippedDirtyBytes, seconds: run.seconds, mbPerSecond: run.mbPerSecond,
      },
      () => describe(run),
    );
    setExitCode(equal || run.repair ? exitCodes.ok : exitCodes.failure);
  },
});
