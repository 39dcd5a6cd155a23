/**
 * The recovery tools' requests to a replica's control port (points, snapshots, failover): the
 * answer's JSON, or its error as a DruvaaError with the exit code a script expects (3 not found,
 * 4 refused, 2 usage, 1 otherwise).
 */
import { replicaControlPortDefault } from "../../constants.ts";
import { controlRequest } from "../../commands/status-format.ts";
import { DruvaaError, exitCodes } from "../../errors.ts";
import type { PreparedTls } from "../../tls/transport-tls.ts";

const notFoundCodes = new Set(["NOT_FOUND", "DEVICE_UNKNOWN", "SNAPSHOT_UNKNOWN", "POINT_UNKNOWN", "WRL_UNKNOWN"]);
const refusedCodes = new Set([
  "POINT_OUTSIDE_RETENTION", "POINT_IN_FUTURE", "REPLICA_INCONSISTENT", "REPLICA_NOT_SEEDED", "SHUTTING_DOWN", "NO_HISTORY", "FAILED_OVER", "FAILOVER_REFUSED", "DEVICE_RESYNCING",
  "NOT_FAILED_OVER", "FAILOVER_NOT_SERVED", "FAILBACK_IN_PROGRESS", "FAILBACK_NOT_BEGUN", "FAILBACK_COMPLETING", "FAILBACK_LSN", "NBD_ADDRESS_IN_USE", "NET_ADDRESS_IN_USE", "SNAPSHOT_LOST",
]);

export async function replicaControl<T>(connect: string, path: string, tls: PreparedTls | undefined, body?: unknown): Promise<T> {
  const init: RequestInit = body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
  const response = await controlRequest(connect, path, init, replicaControlPortDefault, tls);
  const parsed = (await response.json().catch(() => undefined)) as (T & { error?: { code?: string; message?: string; hint?: string } }) | undefined;
  if (response.ok && parsed !== undefined) return parsed;
  const error = parsed?.error;
  if (response.status === 404 && error?.code === "NOT_FOUND" && error.message?.includes("no such endpoint")) {
    throw new DruvaaError("NOT_A_REPLICA", `${connect} is not a druvaa replica's control port (no ${path.split("?")[0]})`, `Give the replica's control port (druvaa replica apply --control, default ${replicaControlPortDefault}); is it this druvaa release?`, exitCodes.usage);
  }
  const code = error?.code ?? "REPLICA_REFUSED";
  const exitCode = code === "USAGE" ? exitCodes.usage : notFoundCodes.has(code) ? exitCodes.notFound : refusedCodes.has(code) ? exitCodes.refused : exitCodes.failure;
  throw new DruvaaError(code, error?.message ?? `the replica answered HTTP ${response.status}`, error?.hint, exitCode);
}
