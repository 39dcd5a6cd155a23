/**
 * The client's GET /status (src/roles/client/attach.ts: StagingLink, ClientCore devices and
 * modes, activity log, crash recovery, verify, initial sync) as metric families. Labels:
 * `peer` (the staging address, --staging), `device` (the export name), `run` (a verify run id).
 *
 * Status field → family (fields absent from the status are not emitted):
 *   staging.connected / reconnects         druvaa_client_staging_connected / _reconnects_total
 *   staging.wireBytes                      druvaa_client_staging_wire_bytes_total        (not yet)
 *   staging.compressionRatio               druvaa_client_staging_compression_ratio      (not yet)
 *   staging.lastError {code, at}           druvaa_client_staging_last_error_info / _timestamp_seconds
 *   devices[].sizeBytes / ackedLsn         druvaa_client_device_size_bytes / druvaa_client_acked_lsn
 *   devices[].writes / bytesWritten /      druvaa_client_writes_total / _written_bytes_total /
 *     zeroedBytes / failedWrites             _zeroed_bytes_total / _failed_writes_total
 *   devices[].inflightWrites / dirtyBytes  druvaa_client_inflight_writes / _dirty_bytes
 *   devices[].bytesSent                    druvaa_client_sent_bytes_total               (not yet)
 *   devices[].compressionRatio             druvaa_client_compression_ratio              (not yet)
 *   devices[].wrl, path                    druvaa_client_device_info{device, wrl, path}
 *   unackedWrites                          druvaa_client_unacked_writes
 *   mode / disconnectedSeconds             druvaa_client_mode{mode} / _disconnected_seconds
 *   resyncSetsOpen (length)                druvaa_client_resync_sets_open
 *   resync {sentBytes, remainingBytes,     druvaa_client_resync_running, _resync_sent_bytes,
 *     seconds} | null                        _resync_remaining_bytes, _resync_elapsed_seconds,
 *                                            _resync_progress_ratio (sent / (sent + remaining))
 *   lastResync {outcome, sentBytes, seconds}  druvaa_client_last_resync_outcome{outcome},
 *                                            _last_resync_sent_bytes, _last_resync_duration_seconds
 *   activityLog {…}                        druvaa_client_activity_log_* (table below)
 *   crashRecovery {…}                      druvaa_client_crash_recovery_* (table below)
 *   verify[] {id, device, checkedBytes,    druvaa_client_verify_checked_bytes / _total_bytes /
 *     totalBytes, differingBytes}            _differing_bytes {device, run}
 *   initialSync.devices[] {name, state,    druvaa_client_initial_sync_state{device, state},
 *     doneBytes, totalBytes}                 _initial_sync_done_bytes / _total_bytes
 */
import type { MetricSet } from "./prometheus.ts";
import { asObject, emitFields, emitLastError, emitStateSet, numberField, objectList, stringField, type FieldMetric, type StatusObject } from "./status-fields.ts";

const linkFields: readonly FieldMetric[] = [
  { name: "druvaa_client_staging_connected", type: "gauge", help: "1 while the client has a session with staging", fields: ["connected"] },
  { name: "druvaa_client_staging_reconnects_total", type: "counter", help: "Sessions with staging after the first", fields: ["reconnects"] },
  { name: "druvaa_client_staging_wire_bytes_total", type: "counter", help: "Bytes sent to staging on the wire (after compression)", fields: ["wireBytes"] },
  { name: "druvaa_client_staging_compression_ratio", type: "gauge", help: "Compression ratio of the writes sent to staging, as the client reports it", fields: ["compressionRatio"] },
];

const deviceFields: readonly FieldMetric[] = [
  { name: "druvaa_client_device_size_bytes", type: "gauge", help: "Size of the primary device", fields: ["sizeBytes"] },
  { name: "druvaa_client_acked_lsn", type: "gauge", help: "Highest LSN staging acknowledged for the device's writes (0: none yet)", fields: ["ackedLsn"] },
  { name: "druvaa_client_writes_total", type: "counter", help: "NBD writes, TRIMs and WRITE_ZEROES completed successfully", fields: ["writes"] },
  { name: "druvaa_client_written_bytes_total", type: "counter", help: "Data bytes of the completed NBD writes", fields: ["bytesWritten"] },
  { name: "druvaa_client_zeroed_bytes_total", type: "counter", help: "Bytes zeroed by TRIM and WRITE_ZEROES", fields: ["zeroedBytes"] },
  { name: "druvaa_client_failed_writes_total", type: "counter", help: "NBD write requests answered with an error", fields: ["failedWrites"] },
  { name: "druvaa_client_inflight_writes", type: "gauge", help: "NBD write requests between admission and reply", fields: ["inflightWrites"] },
  { name: "druvaa_client_dirty_bytes", type: "gauge", help: "Bytes marked dirty in the change map and not yet resynced", fields: ["dirtyBytes"] },
  { name: "druvaa_client_sent_bytes_total", type: "counter", help: "Bytes of the device's writes sent to staging", fields: ["bytesSent"] },
  { name: "druvaa_client_compression_ratio", type: "gauge", help: "Compression ratio of the device's writes, as the client reports it", fields: ["compressionRatio"] },
];

const resyncFields: readonly FieldMetric[] = [
  { name: "druvaa_client_resync_sent_bytes", type: "gauge", help: "Bytes the running resync pass has sent", fields: ["sentBytes"] },
  { name: "druvaa_client_resync_remaining_bytes", type: "gauge", help: "Dirty bytes the running resync pass has still to send", fields: ["remainingBytes"] },
  { name: "druvaa_client_resync_elapsed_seconds", type: "gauge", help: "Time since the running resync pass started", fields: ["seconds"] },
];

const lastResyncFields: readonly FieldMetric[] = [
  { name: "druvaa_client_last_resync_sent_bytes", type: "gauge", help: "Bytes the last finished resync pass sent", fields: ["sentBytes"] },
  { name: "druvaa_client_last_resync_duration_seconds", type: "gauge", help: "How long the last finished resync pass took", fields: ["seconds"] },
];

const activityFields: readonly FieldMetric[] = [
  { name: "druvaa_client_activity_log_extent_bytes", type: "gauge", help: "Size of one activity-log extent", fields: ["extentBytes"] },
  { name: "druvaa_client_activity_log_slots", type: "gauge", help: "Slots of the activity log", fields: ["slotsMax"] },
  { name: "druvaa_client_activity_log_active_slots", type: "gauge", help: "Activity-log slots in use", fields: ["activeSlots"] },
  { name: "druvaa_client_activity_log_active_extents", type: "gauge", help: "Extents a write may enter without a log write", fields: ["activeExtents"] },
  { name: "druvaa_client_activity_log_writes_total", type: "counter", help: "Activity-log writes (each one flush)", fields: ["writes"] },
  { name: "druvaa_client_activity_log_data_flushes_total", type: "counter", help: "Flushes of the primaries before slots left the activity log", fields: ["dataFlushes"] },
  { name: "druvaa_client_activity_log_waits_for_room_total", type: "counter", help: "New slots that waited because every slot had a write in flight", fields: ["waitsForRoom"] },
  { name: "druvaa_client_activity_log_recovered_extents", type: "gauge", help: "Extents recovered from an unclean shutdown at start", fields: ["recoveredExtents"] },
];

const crashRecoveryFields: readonly FieldMetric[] = [
  { name: "druvaa_client_crash_recovery_in_progress", type: "gauge", help: "1 while some extent of the crash recovery is not known to be in sync", fields: ["inProgress"] },
  { name: "druvaa_client_crash_recovery_extents", type: "gauge", help: "Extents the crash recovery covers", fields: ["extents"] },
  { name: "druvaa_client_crash_recovery_verified_extents", type: "gauge", help: "Extents the crash recovery verified", fields: ["verifiedExtents"] },
  { name: "druvaa_client_crash_recovery_total_bytes", type: "gauge", help: "Bytes the crash recovery covers", fields: ["totalBytes"] },
  { name: "druvaa_client_crash_recovery_checked_bytes", type: "gauge", help: "Bytes whose comparison with the replica came back", fields: ["checkedBytes"] },
  { name: "druvaa_client_crash_recovery_differing_bytes", type: "gauge", help: "Bytes found different from the replica", fields: ["differingBytes"] },
  { name: "druvaa_client_crash_recovery_marked_bytes", type: "gauge", help: "Bytes marked dirty whole instead of verified", fields: ["markedBytes"] },
  { name: "druvaa_client_crash_recovery_elapsed_seconds", type: "gauge", help: "Time the crash recovery has taken", fields: ["seconds"] },
];

const verifyFields: readonly FieldMetric[] = [
  { name: "druvaa_client_verify_checked_bytes", type: "gauge", help: "Bytes a verify run in progress has compared", fields: ["checkedBytes"] },
  { name: "druvaa_client_verify_total_bytes", type: "gauge", help: "Bytes a verify run in progress compares", fields: ["totalBytes"] },
  { name: "druvaa_client_verify_differing_bytes", type: "gauge", help: "Bytes a verify run in progress found different", fields: ["differingBytes"] },
];

const initialSyncFields: readonly FieldMetric[] = [
  { name: "druvaa_client_initial_sync_done_bytes", type: "gauge", help: "Bytes the device's initial sync has done", fields: ["doneBytes"] },
  { name: "druvaa_client_initial_sync_total_bytes", type: "gauge", help: "Bytes the device's initial sync covers", fields: ["totalBytes"] },
];

const modes = ["connected", "disconnected", "resyncing"];
const resyncOutcomes = ["done", "interrupted"];
const crashRecoveryStates = ["none", "verifying", "resyncing", "done", "failed", "stopped"];
const initialSyncStates = ["none", "waiting", "marking", "verifying", "resyncing", "done", "failed"];

export function clientMetrics(metrics: MetricSet, status: StatusObject): void {
  const link = asObject(status.staging);
  if (link !== undefined) {
    const labels = { peer: stringField(link, "address") ?? "" };
    emitFields(metrics, link, labels, linkFields);
    emitLastError(metrics, "druvaa_client_staging", "link to staging", labels, link.lastError);
  }
  for (const device of objectList(status, "devices")) {
    const name = stringField(device, "name");
    if (name === undefined) continue;
    emitFields(metrics, device, { device: name }, deviceFields);
    metrics.gauge("druvaa_client_device_info", "A served device: its WRL and primary path (always 1)").set({ device: name, wrl: stringField(device, "wrl") ?? "", path: stringField(device, "path") ?? "" }, 1);
  }
  const unacked = numberField(status, "unackedWrites");
  if (unacked !== undefined) metrics.gauge("druvaa_client_unacked_writes", "Writes sent to staging and not acknowledged yet").set({}, unacked);
  emitStateSet(metrics, "druvaa_client_mode", "Replication mode (1 for the current one)", {}, "mode", modes, stringField(status, "mode"));
  const disconnected = numberField(status, "disconnectedSeconds");
  if (disconnected !== undefined) metrics.gauge("druvaa_client_disconnected_seconds", "Since when writes have not all been logged at staging (0 when connected): at least this much would be lost with the client").set({}, disconnected);
  if (Array.isArray(status.resyncSetsOpen)) metrics.gauge("druvaa_client_resync_sets_open", "Devices whose resync set may still be open at the replica").set({}, status.resyncSetsOpen.length);
  resyncMetrics(metrics, status);
  const activity = asObject(status.activityLog);
  if (activity !== undefined) emitFields(metrics, activity, {}, activityFields);
  const recovery = asObject(status.crashRecovery);
  if (recovery !== undefined) {
    emitStateSet(metrics, "druvaa_client_crash_recovery_state", "State of the crash recovery (1 for the current one)", {}, "state", crashRecoveryStates, stringField(recovery, "state"));
    emitFields(metrics, recovery, {}, crashRecoveryFields);
  }
  for (const run of objectList(status, "verify")) {
    const id = numberField(run, "id");
    const device = stringField(run, "device");
    if (id === undefined || device === undefined) continue;
    emitFields(metrics, run, { device, run: String(id) }, verifyFields);
  }
  for (const device of objectList(asObject(status.initialSync) ?? {}, "devices")) {
    const name = stringField(device, "name");
    if (name === undefined) continue;
    emitStateSet(metrics, "druvaa_client_initial_sync_state", "State of the device's initial sync (1 for the current one)", { device: name }, "state", initialSyncStates, stringField(device, "state"));
    emitFields(metrics, device, { device: name }, initialSyncFields);
  }
}

function resyncMetrics(metrics: MetricSet, status: StatusObject): void {
  if ("resync" in status) {
    const resync = asObject(status.resync);
    metrics.gauge("druvaa_client_resync_running", "1 while a resync pass sends dirty blocks to staging").set({}, resync === undefined ? 0 : 1);
    if (resync !== undefined) {
      emitFields(metrics, resync, {}, resyncFields);
      const sent = numberField(resync, "sentBytes");
      const remaining = numberField(resync, "remainingBytes");
      if (sent !== undefined && remaining !== undefined && sent + remaining > 0) metrics.gauge("druvaa_client_resync_progress_ratio", "Share of the running resync pass sent, 0 to 1").set({}, sent / (sent + remaining));
    }
  }
  const last = asObject(status.lastResync);
  if (last === undefined) return;
  emitStateSet(metrics, "druvaa_client_last_resync_outcome", "Outcome of the last finished resync pass (1 for it)", {}, "outcome", resyncOutcomes, stringField(last, "outcome"));
  emitFields(metrics, last, {}, lastResyncFields);
}
