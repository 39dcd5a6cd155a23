/**
 * The replica's GET /status (src/roles/replica/server.ts, core-status.ts, seed-runs.ts) as metric
 * families. Labels: `device`, and `wrl` with `wrl_uuid` (a replica may know two WRLs of one name:
 * a WRL re-created at staging gets a new uuid).
 *
 * Status field → family (fields absent from the status are not emitted):
 *   devices[].sizeBytes / declaredSizeBytes  druvaa_replica_device_size_bytes / _declared_size_bytes
 *   devices[].consistent                   druvaa_replica_device_consistent
 *   devices[].path                         druvaa_replica_device_info{device, path}
 *   wrls[].appliedLsn / lastAppliedAt      druvaa_replica_applied_lsn / _last_applied_timestamp_seconds
 *   wrls[].stagingConnected                druvaa_replica_staging_connected
 *   wrls[].bytesReceived                   druvaa_replica_received_bytes_total          (not yet)
 *   wrls[].appliedBytes                    druvaa_replica_applied_bytes_total           (not yet)
 *   wrls[].appliedRecords                  druvaa_replica_applied_records_total         (not yet)
 *   wrls[].compressionRatio                druvaa_replica_compression_ratio             (not yet)
 *   wrls[].resync {state, firstLsn,        druvaa_replica_resync_state{state} ("none" when
 *     loggedLsn, openDevices,                absent), _resync_first_lsn, _resync_logged_lsn,
 *     endedDevices, records, bytes,          _resync_open_devices, _resync_ended_devices,
 *     devices (unbuffered)}                  _resync_records, _resync_bytes
 *   applying / restores / queuedShipments  druvaa_replica_applying / _restores / _queued_shipments
 *   rsWrl {sizeBytes, usedBytes,           druvaa_replica_rs_wrl_size_bytes / _used_bytes /
 *     freeBytes, maxPayloadBytes}            _free_bytes / _max_payload_bytes, _fill_ratio (used/size)
 *   setApply {wrl, restoresWaiting} | null druvaa_replica_set_applying, _set_apply_restores_waiting
 *   seeds[] {device, state, copiedBytes,   druvaa_replica_seed_state{device, state},
 *     skippedBytes, totalBytes}              _seed_copied_bytes / _skipped_bytes / _total_bytes
 */
import type { MetricSet } from "./prometheus.ts";
import { asObject, emitFields, emitStateSet, numberField, objectList, stringField, timestampSeconds, type FieldMetric, type StatusObject } from "./status-fields.ts";

const deviceFields: readonly FieldMetric[] = [
  { name: "druvaa_replica_device_size_bytes", type: "gauge", help: "Size of the replica device", fields: ["sizeBytes"] },
  { name: "druvaa_replica_device_declared_size_bytes", type: "gauge", help: "Size staging declared for the device (the primary's)", fields: ["declaredSizeBytes"] },
  { name: "druvaa_replica_device_consistent", type: "gauge", help: "1 while the device is at a consistent point (0 after a failed apply, or during an unbuffered resync)", fields: ["consistent"] },
];

const wrlFields: readonly FieldMetric[] = [
  { name: "druvaa_replica_applied_lsn", type: "gauge", help: "Last LSN of the WRL applied and durable on the replica devices", fields: ["appliedLsn"] },
  { name: "druvaa_replica_staging_connected", type: "gauge", help: "1 while a staging relay of the WRL is connected", fields: ["stagingConnected"] },
  { name: "druvaa_replica_received_bytes_total", type: "counter", help: "Bytes of shipments received from staging on the wire", fields: ["bytesReceived"] },
  { name: "druvaa_replica_applied_bytes_total", type: "counter", help: "Record bytes applied to the replica devices", fields: ["appliedBytes"] },
  { name: "druvaa_replica_applied_records_total", type: "counter", help: "Records applied to the replica devices", fields: ["appliedRecords"] },
  { name: "druvaa_replica_compression_ratio", type: "gauge", help: "Compression ratio of the shipments received, as the replica reports it", fields: ["compressionRatio"] },
];

const resyncFields: readonly FieldMetric[] = [
  { name: "druvaa_replica_resync_first_lsn", type: "gauge", help: "First LSN of the open resync set", fields: ["firstLsn"] },
  { name: "druvaa_replica_resync_logged_lsn", type: "gauge", help: "LSN through which the resync set is logged in the replica WRL", fields: ["loggedLsn"] },
  { name: "druvaa_replica_resync_records", type: "gauge", help: "Records in the resync set", fields: ["records"] },
  { name: "druvaa_replica_resync_bytes", type: "gauge", help: "Bytes in the resync set", fields: ["bytes"] },
];

const rsWrlFields: readonly FieldMetric[] = [
  { name: "druvaa_replica_rs_wrl_size_bytes", type: "gauge", help: "Data space of the replica WRL (RS-WRL, buffers resync sets)", fields: ["sizeBytes"] },
  { name: "druvaa_replica_rs_wrl_used_bytes", type: "gauge", help: "Used bytes of the replica WRL", fields: ["usedBytes"] },
  { name: "druvaa_replica_rs_wrl_free_bytes", type: "gauge", help: "Free bytes of the replica WRL", fields: ["freeBytes"] },
  { name: "druvaa_replica_rs_wrl_max_payload_bytes", type: "gauge", help: "Largest record payload the replica WRL takes", fields: ["maxPayloadBytes"] },
];

const seedFields: readonly FieldMetric[] = [
  { name: "druvaa_replica_seed_copied_bytes", type: "gauge", help: "Bytes the media seed copied", fields: ["copiedBytes"] },
  { name: "druvaa_replica_seed_skipped_bytes", type: "gauge", help: "Bytes the media seed skipped (replication wrote them since the media point)", fields: ["skippedBytes"] },
  { name: "druvaa_replica_seed_total_bytes", type: "gauge", help: "Bytes the media seed covers", fields: ["totalBytes"] },
];

const resyncStates = ["none", "open", "applying", "unbuffered"];
const seedStates = ["awaiting", "seeding", "done", "failed"];

export function replicaMetrics(metrics: MetricSet, status: StatusObject): void {
  for (const device of objectList(status, "devices")) {
    const name = stringField(device, "name");
    if (name === undefined) continue;
    emitFields(metrics, device, { device: name }, deviceFields);
    const path = stringField(device, "path");
    if (path !== undefined) metrics.gauge("druvaa_replica_device_info", "A replica device and its path (always 1)").set({ device: name, path }, 1);
  }
  for (const wrlStatus of objectList(status, "wrls")) {
    const name = stringField(wrlStatus, "name");
    const uuid = stringField(wrlStatus, "uuid");
    if (name === undefined && uuid === undefined) continue;
    const labels = { wrl: name ?? "", wrl_uuid: uuid ?? "" };
    emitFields(metrics, wrlStatus, labels, wrlFields);
    const appliedAt = timestampSeconds(wrlStatus.lastAppliedAt);
    if (appliedAt !== undefined) metrics.gauge("druvaa_replica_last_applied_timestamp_seconds", "When the WRL's last shipment was applied (seconds since the epoch)").set(labels, appliedAt);
    const resync = asObject(wrlStatus.resync);
    emitStateSet(metrics, "druvaa_replica_resync_state", "Resync of the WRL (1 for the current state; unbuffered: devices not at a consistent point until it ends)", labels, "state", resyncStates, resync === undefined ? "none" : stringField(resync, "state"));
    if (resync === undefined) continue;
    emitFields(metrics, resync, labels, resyncFields);
    const open = resync.openDevices ?? resync.devices;
    if (Array.isArray(open)) metrics.gauge("druvaa_replica_resync_open_devices", "Devices whose resync is under way (set not ended)").set(labels, open.length);
    if (Array.isArray(resync.endedDevices)) metrics.gauge("druvaa_replica_resync_ended_devices", "Devices whose part of the resync set ended").set(labels, resync.endedDevices.length);
  }
  const applying = numberField(status, "applying");
  if (applying !== undefined) metrics.gauge("druvaa_replica_applying", "1 while a shipment is being applied").set({}, applying);
  const restores = numberField(status, "restores");
  if (restores !== undefined) metrics.gauge("druvaa_replica_restores", "Restores in progress").set({}, restores);
  const queued = numberField(status, "queuedShipments");
  if (queued !== undefined) metrics.gauge("druvaa_replica_queued_shipments", "Shipments received and waiting to be applied").set({}, queued);
  const rsWrl = asObject(status.rsWrl);
  if (rsWrl !== undefined) {
    emitFields(metrics, rsWrl, {}, rsWrlFields);
    const size = numberField(rsWrl, "sizeBytes");
    const used = numberField(rsWrl, "usedBytes");
    if (size !== undefined && used !== undefined && size > 0) metrics.gauge("druvaa_replica_rs_wrl_fill_ratio", "Used share of the replica WRL, 0 to 1").set({}, used / size);
  }
  if ("setApply" in status) {
    const setApply = asObject(status.setApply);
    metrics.gauge("druvaa_replica_set_applying", "1 while a resync set is being applied").set({}, setApply === undefined ? 0 : 1);
    const waiting = setApply === undefined ? undefined : numberField(setApply, "restoresWaiting");
    if (waiting !== undefined) metrics.gauge("druvaa_replica_set_apply_restores_waiting", "Restores waiting for the resync set being applied").set({}, waiting);
  }
  for (const seed of objectList(status, "seeds")) {
    const device = stringField(seed, "device");
    if (device === undefined) continue;
    emitStateSet(metrics, "druvaa_replica_seed_state", "State of the device's media seed (1 for the current one)", { device }, "state", seedStates, stringField(seed, "state"));
    emitFields(metrics, seed, { device }, seedFields);
  }
}
