/** Printing role status (the control port's GET /status); fetching it is control-client.ts's. */
import { formatBytes } from "../units.ts";

export { controlRequest, fetchStatus } from "./control-client.ts";

export interface ErrorStatus { code: string; message: string; hint?: string; at?: string }
export interface RoleStatus { role: string; nodeId?: string; version?: string; uptimeSeconds?: number; [key: string]: unknown }
export interface StagingWrlStatus {
  name: string; uuid?: string; sizeBytes: number; usedBytes: number; fillRatio?: number; headLsn: number; tailLsn: number;
  lagBytes?: number; lagSeconds?: number;
  rateLimit?: { bytesPerSecond?: number; scope?: string; waitedMs?: number } | null;
  schedule?: { schedule?: string; open?: boolean; nextChangeAt?: string | null } | null;
  rpo?: { targetSeconds?: number | null; rpoSeconds?: number; trend?: string; drainEtaSeconds?: number | null; state?: string };
  replica?: { address?: string; connected?: boolean; appliedLsn?: number; lastError?: ErrorStatus | null; compression?: CompressionStatus };
  devices?: { name: string; sizeBytes?: number; clientNodeId?: string; connected?: boolean }[];
}
export interface CompressionStatus { mode?: string; level?: number | null; rawBytes?: number; wireBytes?: number; compressionRatio?: number }
export interface StagingEvent { at?: string; wrl?: string; message?: string }
export interface StagingStatus extends RoleStatus { role: "staging"; wrls: StagingWrlStatus[]; events?: StagingEvent[] }

const lsn = (value: unknown) => (typeof value === "number" ? String(value) : "-");
const errorText = (error: ErrorStatus | null | undefined) => (error ? `  error: ${error.code}: ${error.message}` : "");

export function formatStatus(status: RoleStatus): string {
  const lines = [`${status.role} ${status.nodeId ?? ""}  (druvaa ${status.version ?? "?"}, up ${Math.round(status.uptimeSeconds ?? 0)} s)`];
  if (status.role === "staging") {
    for (const wrl of (status as StagingStatus).wrls) {
      lines.push(`  WRL ${wrl.name}: ${formatBytes(wrl.usedBytes)} of ${formatBytes(wrl.sizeBytes)} used (${((wrl.fillRatio ?? 0) * 100).toFixed(1)} %), head LSN ${wrl.headLsn}, tail LSN ${wrl.tailLsn}`);
      const replica = wrl.replica;
      lines.push(`    replica ${replica?.address ?? "?"}: ${replica?.connected ? "connected" : "not connected"}, applied LSN ${lsn(replica?.appliedLsn)}, lag ${formatBytes(wrl.lagBytes ?? 0)} / ${(wrl.lagSeconds ?? 0).toFixed(1)} s${errorText(replica?.lastError)}`);
      const shipped = shippedText(replica?.compression);
      if (shipped !== "") lines.push(`    ${shipped}`);
      for (const line of targetLines(wrl)) lines.push(`    ${line}`);
      for (const device of wrl.devices ?? []) lines.push(`    device ${device.name} from ${device.clientNodeId ?? "?"}: ${device.connected ? "connected" : "not connected"}`);
    }
    const events = (status as StagingStatus).events ?? [];
    if (events.length > 0) lines.push("  recent events:", ...events.slice(-stagingEventsShown).map((event) => `    ${event.at ?? "?"} ${event.message ?? ""}`));
  } else if (status.role === "client" && status.agent === true) {
    // A client host's agent (druvaa client agent): one line per attachment, then its child's own lines.
    const managed = status.managed as { version?: number; applied?: { error?: ErrorStatus } } | undefined;
    lines.push(`  client agent: config version ${managed?.version ?? 0}${errorText(managed?.applied?.error)}`);
    for (const attachment of (status.attachments as Record<string, unknown>[] | undefined) ?? []) {
      const exit = attachment.lastExit as { code?: number | null; signal?: string | null } | null | undefined;
      lines.push(`  attachment ${attachment.name}: ${attachment.state}${attachment.pid ? `, pid ${attachment.pid}` : ""}, ${attachment.restarts ?? 0} restart(s)${exit ? `, last exit ${exit.signal ?? `code ${exit.code}`}` : ""}`);
      const child = attachment.status as RoleStatus | null | undefined;
      if (child) lines.push(...formatStatus(child).split("\n").slice(1).map((line) => `  ${line}`));
    }
  } else if (status.role === "client") {
    const staging = status.staging as { address?: string; connected?: boolean; lastError?: ErrorStatus | null } | undefined;
    lines.push(`  staging ${staging?.address ?? "?"}: ${staging?.connected ? "connected" : "not connected"}${errorText(staging?.lastError)}`);
    for (const device of (status.devices as Record<string, unknown>[] | undefined) ?? []) {
      lines.push(`  device ${device.name} (${device.path}, ${formatBytes(Number(device.sizeBytes ?? 0))}) → WRL ${device.wrl}: ${device.writes ?? 0} writes, ${formatBytes(Number(device.bytesWritten ?? 0))}, acked LSN ${lsn(device.ackedLsn)}, ${device.inflightWrites ?? 0} in flight`);
    }
    const activity = status.activityLog as { path?: string; activeExtents?: number; extentBytes?: number; writes?: number; recoveredExtents?: number } | null | undefined;
    if (activity) lines.push(`  activity log ${activity.path}: ${activity.activeExtents ?? 0} active extent(s) of ${formatBytes(Number(activity.extentBytes ?? 0))}, ${activity.writes ?? 0} log write(s)${activity.recoveredExtents ? `, ${activity.recoveredExtents} extent(s) recovered after a crash` : ""}`);
    const recovery = status.crashRecovery as { state?: string; extents?: number; verifiedExtents?: number; checkedBytes?: number; totalBytes?: number; differingBlocks?: number; differingBytes?: number; markedBytes?: number } | null | undefined;
    if (recovery && recovery.state !== "none") {
      lines.push(`  crash recovery: ${recovery.state}, ${recovery.verifiedExtents ?? 0} of ${recovery.extents ?? 0} extent(s) verified (${formatBytes(Number(recovery.checkedBytes ?? 0))} of ${formatBytes(Number(recovery.totalBytes ?? 0))} checked), ${recovery.differingBlocks ?? 0} block(s) (${formatBytes(Number(recovery.differingBytes ?? 0))}) differed${recovery.markedBytes ? `, ${formatBytes(recovery.markedBytes)} marked dirty whole` : ""}`);
    }
    const initial = status.initialSync as { mode?: string; state?: string; progress?: { doneBytes: number; totalBytes: number } | null; note?: string | null } | undefined;
    if (initial !== undefined && initial.mode !== "none") {
      const progress = initial.progress ? `, ${formatBytes(initial.progress.doneBytes)} of ${formatBytes(initial.progress.totalBytes)}` : "";
      lines.push(`  initial sync ${initial.mode}: ${initial.state}${progress}${initial.note ? ` (${initial.note})` : ""}`);
    }
    for (const run of (status.verify as { id: number; device: string; state: string; checkedBytes: number; totalBytes: number }[] | undefined) ?? []) {
      lines.push(`  verify ${run.id} of ${run.device}: ${run.state}, ${formatBytes(run.checkedBytes)} of ${formatBytes(run.totalBytes)} checked`);
    }
  } else if (status.role === "replica") {
    for (const device of (status.devices as Record<string, unknown>[] | undefined) ?? []) lines.push(`  device ${device.name}: ${device.path} (${formatBytes(Number(device.sizeBytes ?? 0))})`);
    const rsWrl = status.rsWrl as { path?: string; sizeBytes?: number; usedBytes?: number } | null | undefined;
    if (rsWrl) lines.push(`  replica WRL ${rsWrl.path}: ${formatBytes(Number(rsWrl.usedBytes ?? 0))} of ${formatBytes(Number(rsWrl.sizeBytes ?? 0))} used`);
    for (const wrl of (status.wrls as Record<string, unknown>[] | undefined) ?? []) {
      lines.push(`  WRL ${wrl.name} (${wrl.uuid}): applied LSN ${lsn(wrl.appliedLsn)}${wrl.lastAppliedAt ? ` at ${wrl.lastAppliedAt}` : ""}, staging ${wrl.stagingConnected ? "connected" : "not connected"}${resyncText(wrl.resync)}`);
    }
    lines.push(...recoveryLines(status));
  } else {
    lines.push(JSON.stringify(status, null, 2));
  }
  return lines.join("\n");
}

/** A relay's shipped bytes and compression, for the human status line ("" from an older staging). */
function shippedText(compression: CompressionStatus | undefined): string {
  if (compression === undefined || typeof compression.rawBytes !== "number" || typeof compression.wireBytes !== "number") return "";
  const setting = compression.mode === "off" ? "compression off" : compression.level === 0 ? "zstd auto, paused: the link keeps up" : `zstd ${compression.mode === "auto" ? "auto, " : ""}level ${compression.level ?? "?"}`;
  return `shipped ${formatBytes(compression.wireBytes)} for ${formatBytes(compression.rawBytes)} of data (${setting}, ratio ${(compression.compressionRatio ?? 1).toFixed(2)})`;
}

/** Events the human status shows (the newest; --json has all the server keeps). */
const stagingEventsShown = 5;

/** A bandwidth for people: bits per second, as --rate-limit takes it. */
function formatBitRate(bytesPerSecond: number): string {
  const bits = bytesPerSecond * 8;
  const [scale, unit] = bits >= 1e9 ? [1e9, "Gbit/s"] : bits >= 1e6 ? [1e6, "Mbit/s"] : [1e3, "kbit/s"];
  return `${Number((bits / scale).toPrecision(3))} ${unit}`;
}

/** A WRL's rate limit, schedule and RPO lines (none of them from an older staging). */
function targetLines(wrl: StagingWrlStatus): string[] {
  const lines: string[] = [];
  const rate = wrl.rateLimit;
  if (rate && typeof rate.bytesPerSecond === "number") {
    lines.push(`rate limit ${formatBitRate(rate.bytesPerSecond)}${rate.scope === "server" ? " (shared by the server's WRLs)" : " (this WRL's own)"}, ${((rate.waitedMs ?? 0) / 1000).toFixed(1)} s waited for it`);
  }
  const schedule = wrl.schedule;
  if (schedule) {
    const next = schedule.nextChangeAt ? `, ${schedule.open ? "closes" : "opens"} at ${schedule.nextChangeAt}` : "";
    lines.push(`schedule "${schedule.schedule ?? "?"}": ${schedule.open ? "open" : "closed, the WRL buffers"}${next}`);
  }
  const rpo = wrl.rpo;
  if (rpo && typeof rpo.rpoSeconds === "number") {
    const target = typeof rpo.targetSeconds === "number" ? `, target ${rpo.targetSeconds} s: ${rpo.state ?? "?"}` : ", no target";
    const eta = rpo.drainEtaSeconds === null ? "not draining" : typeof rpo.drainEtaSeconds === "number" ? (rpo.drainEtaSeconds === 0 ? "nothing to drain" : `drained in ~${Math.ceil(rpo.drainEtaSeconds)} s`) : "";
    lines.push(`RPO ${rpo.rpoSeconds.toFixed(1)} s${target} (${rpo.trend ?? "?"}${eta === "" ? "" : `, ${eta}`})`);
  }
  return lines;
}

/** A replica WRL's resync, for the human status line. */
function resyncText(resync: unknown): string {
  if (typeof resync !== "object" || resync === null) return "";
  const r = resync as { state?: string; firstLsn?: number; loggedLsn?: number; openDevices?: string[]; devices?: string[]; bytes?: number };
  if (r.state === "unbuffered") return `; resync WITHOUT a replica WRL (devices ${(r.devices ?? []).join(", ")}): not at a consistent point until it ends`;
  const open = (r.openDevices ?? []).length > 0 ? `, waiting for the end of ${(r.openDevices ?? []).join(", ")}` : "";
  return `; resync set ${r.state === "applying" ? "being applied" : "open"} since LSN ${lsn(r.firstLsn)}, logged through LSN ${lsn(r.loggedLsn)} (${formatBytes(Number(r.bytes ?? 0))})${open}`;
}

/** The replica's point-in-time journal, snapshots and failovers, for the human status. */
function recoveryLines(status: RoleStatus): string[] {
  const lines: string[] = [];
  const history = status.history as { journal: { directory: string; bytes: number; chunks: number; retentionSeconds: number; droppedChunks: number } | null; snapshots: { id: number; device: string; lsn: number; label?: string; export?: string }[] } | null | undefined;
  const journal = history?.journal;
  if (journal) lines.push(`  journal ${journal.directory}: ${formatBytes(journal.bytes)}, ${journal.chunks} step(s), retention ${journal.retentionSeconds / 3600} h${journal.droppedChunks > 0 ? `, ${journal.droppedChunks} oldest dropped` : ""}`);
  for (const snapshot of history?.snapshots ?? []) lines.push(`  snapshot ${snapshot.id} of ${snapshot.device} at LSN ${snapshot.lsn}${snapshot.label ? ` (${snapshot.label})` : ""}${snapshot.export ? `: ${snapshot.export}` : ""}`);
  for (const failover of (status.failovers as { wrl: string; phase: string; served: boolean; generation: string; atLsn: number; failback: { keep: string } | null; uris: Record<string, string> }[] | undefined) ?? []) {
    const where = Object.entries(failover.uris).map(([name, uri]) => `${name} ${uri}`).join(", ");
    lines.push(`  FAILED OVER: WRL ${failover.wrl} at LSN ${failover.atLsn}, generation ${failover.generation}, ${failover.served ? `served read-write (${where})` : `not served (phase ${failover.phase})`}${failover.failback ? `; failback keeping the ${failover.failback.keep} side's data under way` : ""}`);
  }
  return lines;
}
