/**
 * `druvaa resync` (also installed as `drresync`): asks a client (its control port) to resync now
 * and waits until every device is in sync again: connected, no dirty block left in the change
 * map, every write acknowledged by staging, no extent left to verify after a crash. Exit 0 only then; 5 (timeout) if it is not in sync by
 * --timeout (e.g. staging still unreachable), 4 if the client has no change map. Progress on a
 * TTY; --json for scripts and cron. A client running with TLS wants an admin certificate
 * (--tls-cert/--tls-key/--tls-ca): its control port is HTTPS (control-client.ts).
 */
import { command, jsonFlag, output } from "../cli-support.ts";
import { DruvaaError, exitCodes } from "../errors.ts";
import { formatBytes, parseDurationMs } from "../units.ts";
import { controlToolArgs, resolveControlToolSecurity } from "../roles/link-security.ts";
import type { PreparedTls } from "../tls/transport-tls.ts";
import { controlRequest, fetchStatus } from "./status-format.ts";

const pollMs = 500;
const clientControlPort = 6007;

interface ClientModeView {
  role: string;
  mode?: string;
  changeMap?: boolean;
  dirtyBytes?: number | null;
  unackedWrites?: number;
  disconnectReason?: string | null;
  resync?: { sentBytes: number; remainingBytes: number } | null;
  lastResync?: { outcome: string; sentBytes: number; seconds: number } | null;
  devices?: { name: string; dirtyBytes: number | null }[];
  /** After a crash: extents being verified are not known to be in sync (crash-recovery.ts). */
  crashRecovery?: { inProgress: boolean; totalBytes: number; checkedBytes: number } | null;
}

async function postResync(connect: string, tls: PreparedTls | undefined): Promise<void> {
  const response = await controlRequest(connect, "/resync", { method: "POST" }, clientControlPort, tls);
  if (response.ok) return;
  const body = (await response.json().catch(() => ({}))) as { error?: { code?: string; message?: string; hint?: string } };
  const code = body.error?.code ?? "RESYNC_REFUSED";
  if (response.status === 404) throw new DruvaaError("NOT_A_CLIENT", `${connect} is not a druvaa client's control port (no POST /resync)`, "Give the client's control port (druvaa client attach --control, default 6007)", exitCodes.usage);
  throw new DruvaaError(code, body.error?.message ?? `${connect} refused the resync (HTTP ${response.status})`, body.error?.hint, code === "NO_CHANGEMAP" ? exitCodes.refused : exitCodes.failure);
}

function inSync(status: ClientModeView): boolean {
  return status.mode === "connected" && (status.dirtyBytes ?? 0) === 0 && (status.unackedWrites ?? 0) === 0 && status.crashRecovery?.inProgress !== true;
}

export default command({
  meta: { name: "resync", description: "Resync a client's dirty blocks to staging now and wait until it is in sync (exit 0 only then)" },
  args: {
    connect: { type: "string", valueHint: "HOST:PORT", default: "127.0.0.1:6007", description: "the client's control port (default 127.0.0.1:6007)" },
    timeout: { type: "string", valueHint: "DURATION", default: "1h", description: "give up (exit 5) if not in sync by then" },
    ...controlToolArgs,
    json: jsonFlag,
  },
  examples: [
    "druvaa resync --connect 127.0.0.1:6007",
    "drresync --connect 127.0.0.1:6007 --timeout 30m --json   # from cron: exit 0 only when in sync",
    "drresync --connect 127.0.0.1:6007 --tls-cert /etc/druvaa/tls/ops.pem --tls-key /etc/druvaa/tls/ops.key --tls-ca /etc/druvaa/tls/ca.pem   # a client running with TLS",
  ],
  async run({ args }) {
    const timeoutMs = parseDurationMs(args.timeout, "--timeout");
    const tls = await resolveControlToolSecurity(args);
    const started = performance.now();
    const first = (await fetchStatus(args.connect, clientControlPort, tls)) as ClientModeView;
    if (first.role !== "client") throw new DruvaaError("NOT_A_CLIENT", `${args.connect} is a ${first.role}'s control port, not a client's`, "Give the client's control port (druvaa client attach --control, default 6007)", exitCodes.usage);
    await postResync(args.connect, tls);
    const tty = !args.json && process.stderr.isTTY === true;
    let status = first;
    for (;;) {
      status = (await fetchStatus(args.connect, clientControlPort, tls)) as ClientModeView;
      if (inSync(status)) break;
      const elapsedMs = performance.now() - started;
      if (elapsedMs > timeoutMs) {
        const recovering = status.crashRecovery?.inProgress === true ? `, crash recovery verifying (${formatBytes(status.crashRecovery.checkedBytes)} of ${formatBytes(status.crashRecovery.totalBytes)})` : "";
        const why = status.mode === "disconnected" ? `still disconnected (${status.disconnectReason ?? "staging unreachable"})` : `${status.mode}, ${formatBytes(status.dirtyBytes ?? 0)} dirty, ${status.unackedWrites ?? 0} write(s) unacknowledged${recovering}`;
        if (tty) process.stderr.write("\n");
        throw new DruvaaError("TIMEOUT", `not in sync after ${args.timeout}: ${why}`, "Check staging (druvaa status --connect STAGING:6002) and the client's log; run again later", exitCodes.timeout);
      }
      if (tty) process.stderr.write(`\rresync: ${status.mode}, ${formatBytes(status.dirtyBytes ?? 0)} left, ${formatBytes(status.resync?.sentBytes ?? 0)} sent   `);
      await Bun.sleep(pollMs);
    }
    if (tty) process.stderr.write("\n");
    const seconds = (performance.now() - started) / 1000;
    output(
      args.json,
      { ok: true, inSync: true, mode: status.mode, dirtyBytes: status.dirtyBytes ?? 0, lastResync: status.lastResync ?? null, crashRecovery: status.crashRecovery ?? null, seconds, devices: (status.devices ?? []).map((d) => ({ name: d.name, dirtyBytes: d.dirtyBytes })) },
      () => `in sync: ${status.lastResync ? `${formatBytes(status.lastResync.sentBytes)} resynced` : "nothing was dirty"} (${seconds.toFixed(1)} s)`,
    );
  },
});
