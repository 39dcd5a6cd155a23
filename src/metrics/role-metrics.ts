/**
 * GET /metrics of every role: its GET /status JSON (discriminated by `role`, see statusHeader in
 * src/roles/server-support.ts) as Prometheus text, plus process metrics. The per-role mappings,
 * with the table of which status field gives which family, are in client-metrics.ts,
 * staging-metrics.ts and replica-metrics.ts; an unknown role gets the common families only.
 *
 * Common families (every role):
 *   druvaa_up                              1: the role answered its status (a failure answers 500)
 *   druvaa_info{role, version, node_id}    1; from role, version, nodeId
 *   druvaa_uptime_seconds                  uptimeSeconds (since the role's server started)
 *   process_resident_memory_bytes          process.memoryUsage().rss
 *   process_start_time_seconds             performance.timeOrigin
 *   process_cpu_seconds_total              process.cpuUsage(), user + system
 * (the process_* names are the ones every Prometheus client library uses, so stock dashboards
 * work). Not guaranteed: that two scrapes see one consistent status (each renders a fresh one).
 */
import { DruvaaError } from "../errors.ts";
import { clientMetrics } from "./client-metrics.ts";
import { MetricSet } from "./prometheus.ts";
import { replicaMetrics } from "./replica-metrics.ts";
import { stagingMetrics } from "./staging-metrics.ts";
import { asObject, numberField, stringField, type StatusObject } from "./status-fields.ts";

export interface ProcessSnapshot {
  residentMemoryBytes: number;
  /** Seconds since the epoch. */
  startTimeSeconds: number;
  /** User + system CPU time used. */
  cpuSeconds: number;
}

/** The running process's figures (tests pass their own). */
export function processSnapshot(): ProcessSnapshot {
  const cpu = process.cpuUsage();
  return {
    residentMemoryBytes: process.memoryUsage().rss,
    startTimeSeconds: performance.timeOrigin / 1000,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  };
}

/**
 * The metric families of a role status. Throws BAD_STATUS when `status` is not a status object
 * with a string `role` (the /metrics route then answers 500).
 */
export function roleMetrics(status: unknown, processInfo: ProcessSnapshot = processSnapshot()): MetricSet {
  const object = asObject(status);
  const role = object === undefined ? undefined : stringField(object, "role");
  if (object === undefined || role === undefined) throw new DruvaaError("BAD_STATUS", "the role's status is not an object with a role", "This is a bug in druvaa: the /status route answered something else");
  const metrics = new MetricSet();
  commonMetrics(metrics, object, role, processInfo);
  if (role === "client") clientMetrics(metrics, object);
  else if (role === "staging") stagingMetrics(metrics, object);
  else if (role === "replica") replicaMetrics(metrics, object);
  return metrics;
}

/** roleMetrics, as the text GET /metrics answers. */
export function renderRoleMetrics(status: unknown, processInfo?: ProcessSnapshot): string {
  return roleMetrics(status, processInfo).render();
}

function commonMetrics(metrics: MetricSet, status: StatusObject, role: string, processInfo: ProcessSnapshot): void {
  metrics.gauge("druvaa_up", "1: the role is up and answered its status").set({}, 1);
  metrics.gauge("druvaa_info", "The role, its druvaa version and node id (always 1)").set({ role, version: stringField(status, "version") ?? "", node_id: stringField(status, "nodeId") ?? "" }, 1);
  const uptime = numberField(status, "uptimeSeconds");
  if (uptime !== undefined) metrics.gauge("druvaa_uptime_seconds", "Time since the role's server started").set({}, uptime);
  metrics.gauge("process_resident_memory_bytes", "Resident memory size in bytes.").set({}, processInfo.residentMemoryBytes);
  metrics.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.").set({}, processInfo.startTimeSeconds);
  metrics.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.").set({}, processInfo.cpuSeconds);
}
