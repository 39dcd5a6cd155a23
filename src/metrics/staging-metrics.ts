/**
 * The staging server's GET /status (src/roles/staging/server.ts, core.ts, relay.ts) as metric
 * families. Labels: `wrl` (the WRL's name, --wrl NAME=…), `peer` (the replica's address, as
 * --replica gave it), `device`, `client` (a client's node id).
 *
 * Status field → family (fields absent from the status are not emitted):
 *   stopping                               druvaa_staging_stopping
 *   wrls[].sizeBytes / usedBytes /         druvaa_staging_wrl_size_bytes / _used_bytes /
 *     freeBytes / fillRatio                  _free_bytes / _fill_ratio
 *   wrls[].headLsn / tailLsn               druvaa_staging_wrl_head_lsn / _tail_lsn
 *   wrls[].recordCount / pendingAppends    druvaa_staging_wrl_records / _pending_appends
 *   wrls[].lagBytes / lagSeconds           druvaa_staging_wrl_lag_bytes / _lag_seconds
 *   wrls[].rpoSeconds, else lagSeconds     druvaa_staging_wrl_rpo_seconds (what a loss of the
 *                                            primary site now costs: the age of the oldest write
 *                                            the replica has not acknowledged)
 *   wrls[].appendedBytes                   druvaa_staging_wrl_appended_bytes_total
 *   wrls[].ackedBytes                      druvaa_staging_wrl_acked_bytes_total
 *   wrls[].appendedRecords                 druvaa_staging_wrl_appended_records_total  (not yet)
 *   wrls[].rpo {targetSeconds, state,      druvaa_staging_wrl_rpo_target_seconds, _rpo_state{state},
 *     drainEtaSeconds}                       _rpo_drain_eta_seconds (--rpo; relay-rpo.ts)
 *   wrls[].rateLimit {bytesPerSecond,      druvaa_staging_relay_rate_limit_bytes_per_second,
 *     waitedMs}                              _rate_limit_wait_seconds_total (--rate-limit)
 *   wrls[].schedule {open}                 druvaa_staging_relay_schedule_open (--schedule)
 *   wrls[].replica.connected / appliedLsn  druvaa_staging_relay_connected / _applied_lsn
 *     / inflightShipments                    / _inflight_shipments
 *   wrls[].replica.shipmentsShipped        druvaa_staging_relay_shipments_total (resends included)
 *   wrls[].replica.bytesShipped            druvaa_staging_relay_wire_bytes_total (payload bytes on
 *                                            the wire, after compression, frame headers not counted)
 *   wrls[].replica.compression {mode,      druvaa_staging_relay_compression_mode{mode},
 *     level, rawBytes, compressionRatio,     _compression_level, _raw_bytes_total (before
 *     compressedShipments, compressMs}       compression), _compression_ratio (raw / wire),
 *                                            _compressed_shipments_total, _compress_seconds_total
 *   wrls[].replica.reconnects              druvaa_staging_relay_reconnects_total       (not yet)
 *   wrls[].replica.recordsShipped          druvaa_staging_relay_shipped_records_total (not yet)
 *   wrls[].replica.lastError {code, at}    druvaa_staging_relay_last_error_info / _timestamp_seconds
 *   wrls[].devices[].sizeBytes / connected druvaa_staging_device_size_bytes / _connected
 *   clients[] (count; per node id: inflightWrites, devices)
 *                                          druvaa_staging_clients, druvaa_staging_client_inflight_writes,
 *                                            druvaa_staging_client_devices
 */
import type { Labels, MetricSet } from "./prometheus.ts";
import { asObject, emitFields, emitLastError, emitStateSet, numberField, objectList, stringField, type FieldMetric, type StatusObject } from "./status-fields.ts";

const wrlFields: readonly FieldMetric[] = [
  { name: "druvaa_staging_wrl_size_bytes", type: "gauge", help: "Data space of the WRL", fields: ["sizeBytes"] },
  { name: "druvaa_staging_wrl_used_bytes", type: "gauge", help: "Bytes of the WRL holding records not yet freed (not yet acknowledged by the replica)", fields: ["usedBytes"] },
  { name: "druvaa_staging_wrl_free_bytes", type: "gauge", help: "Bytes of the WRL free for new records", fields: ["freeBytes"] },
  { name: "druvaa_staging_wrl_fill_ratio", type: "gauge", help: "Used share of the WRL, 0 to 1 (writes are refused with WRL_FULL at 1)", fields: ["fillRatio"] },
  { name: "druvaa_staging_wrl_head_lsn", type: "gauge", help: "LSN of the last record appended to the WRL (0: none); grows by one per record", fields: ["headLsn"] },
  { name: "druvaa_staging_wrl_tail_lsn", type: "gauge", help: "LSN up to which the WRL freed its records (the replica has them)", fields: ["tailLsn"] },
  { name: "druvaa_staging_wrl_records", type: "gauge", help: "Records in the WRL not yet freed", fields: ["recordCount"] },
  { name: "druvaa_staging_wrl_pending_appends", type: "gauge", help: "Appends issued and not yet durable", fields: ["pendingAppends"] },
  { name: "druvaa_staging_wrl_lag_bytes", type: "gauge", help: "Bytes of records the replica has not acknowledged yet", fields: ["lagBytes"] },
  { name: "druvaa_staging_wrl_lag_seconds", type: "gauge", help: "Age of the oldest record the replica has not acknowledged yet (0 when drained)", fields: ["lagSeconds"] },
  { name: "druvaa_staging_wrl_rpo_seconds", type: "gauge", help: "Recovery point now: the writes of the last this many seconds would be lost with the primary site (age of the oldest record not at the replica)", fields: ["rpoSeconds", "lagSeconds"] },
  { name: "druvaa_staging_wrl_appended_bytes_total", type: "counter", help: "Bytes of client writes appended to the WRL since the server started", fields: ["appendedBytes"] },
  { name: "druvaa_staging_wrl_appended_records_total", type: "counter", help: "Records appended to the WRL since the server started", fields: ["appendedRecords"] },
  { name: "druvaa_staging_wrl_acked_bytes_total", type: "counter", help: "Bytes of records the replica acknowledged since the server started", fields: ["ackedBytes"] },
];

const rpoStates = ["ok", "at-risk", "missed"];

/** --rpo, --rate-limit and --schedule of one WRL (src/roles/staging/core-status.ts). */
function wrlTargets(metrics: MetricSet, wrlStatus: StatusObject, wrl: string): void {
  const rpo = asObject(wrlStatus.rpo);
  if (rpo !== undefined) {
    const target = numberField(rpo, "targetSeconds");
    if (target !== undefined) {
      metrics.gauge("druvaa_staging_wrl_rpo_target_seconds", "The --rpo target of the WRL").set({ wrl }, target);
      emitStateSet(metrics, "druvaa_staging_wrl_rpo_state", "The RPO against its target (1 for the current state)", { wrl }, "state", rpoStates, stringField(rpo, "state"));
    }
    const eta = numberField(rpo, "drainEtaSeconds");
    if (eta !== undefined) metrics.gauge("druvaa_staging_wrl_rpo_drain_eta_seconds", "Seconds until the backlog is gone at the recent net drain rate (absent while it does not shrink)").set({ wrl }, eta);
  }
  const rate = asObject(wrlStatus.rateLimit);
  const rateBytes = rate === undefined ? undefined : numberField(rate, "bytesPerSecond");
  if (rate !== undefined && rateBytes !== undefined) {
    metrics.gauge("druvaa_staging_relay_rate_limit_bytes_per_second", "The --rate-limit the relay paces its frames to").set({ wrl }, rateBytes);
    const waited = numberField(rate, "waitedMs");
    if (waited !== undefined) metrics.counter("druvaa_staging_relay_rate_limit_wait_seconds_total", "Time the relay waited for the rate limit").set({ wrl }, waited / 1000);
  }
  const schedule = asObject(wrlStatus.schedule);
  const open = schedule === undefined ? undefined : numberField(schedule, "open");
  if (open !== undefined) metrics.gauge("druvaa_staging_relay_schedule_open", "1 while the --schedule allows shipping").set({ wrl }, open);
}

const relayFields: readonly FieldMetric[] = [
  { name: "druvaa_staging_relay_connected", type: "gauge", help: "1 while the relay has a session with the replica", fields: ["connected"] },
  { name: "druvaa_staging_relay_applied_lsn", type: "gauge", help: "Last LSN the replica acknowledged as durable", fields: ["appliedLsn"] },
  { name: "druvaa_staging_relay_inflight_shipments", type: "gauge", help: "Shipments sent to the replica and not answered yet", fields: ["inflightShipments"] },
  { name: "druvaa_staging_relay_reconnects_total", type: "counter", help: "Sessions with the replica after the first", fields: ["reconnects"] },
  { name: "druvaa_staging_relay_shipments_total", type: "counter", help: "Shipments sent to the replica (resends after a reconnect included)", fields: ["shipmentsShipped"] },
  { name: "druvaa_staging_relay_wire_bytes_total", type: "counter", help: "Payload bytes of the shipments put on the wire (after compression; frame headers not counted; resends included)", fields: ["bytesShipped"] },
  { name: "druvaa_staging_relay_shipped_records_total", type: "counter", help: "Records shipped to the replica", fields: ["recordsShipped"] },
];

/** From the relay's `compression` object (src/roles/staging/compression.ts CompressionStatus). */
const compressionFields: readonly FieldMetric[] = [
  { name: "druvaa_staging_relay_compression_level", type: "gauge", help: "zstd level shipments are compressed at now (absent when compression is off)", fields: ["level"] },
  { name: "druvaa_staging_relay_raw_bytes_total", type: "counter", help: "Payload bytes of the shipments before compression (resends included)", fields: ["rawBytes"] },
  { name: "druvaa_staging_relay_compression_ratio", type: "gauge", help: "Raw bytes over wire bytes of every shipment so far (1: nothing saved, 3: the link carried a third)", fields: ["compressionRatio"] },
  { name: "druvaa_staging_relay_compressed_shipments_total", type: "counter", help: "Shipments sent compressed", fields: ["compressedShipments"] },
];

const compressionModes = ["off", "fixed", "auto"];

export function stagingMetrics(metrics: MetricSet, status: StatusObject): void {
  const stopping = numberField(status, "stopping");
  if (stopping !== undefined) metrics.gauge("druvaa_staging_stopping", "1 while the server shuts down (new writes are refused)").set({}, stopping);
  for (const wrlStatus of objectList(status, "wrls")) {
    const wrl = stringField(wrlStatus, "name");
    if (wrl === undefined) continue;
    emitFields(metrics, wrlStatus, { wrl }, wrlFields);
    wrlTargets(metrics, wrlStatus, wrl);
    const relay = asObject(wrlStatus.replica);
    if (relay !== undefined) {
      const labels = { wrl, peer: stringField(relay, "address") ?? "" };
      emitFields(metrics, relay, labels, relayFields);
      relayCompression(metrics, relay, labels);
      emitLastError(metrics, "druvaa_staging_relay", "relay to the replica", labels, relay.lastError);
    }
    for (const device of objectList(wrlStatus, "devices")) {
      const name = stringField(device, "name");
      if (name === undefined) continue;
      const size = numberField(device, "sizeBytes");
      if (size !== undefined) metrics.gauge("druvaa_staging_device_size_bytes", "Size of a device attached to the WRL, as its client declared it").set({ wrl, device: name }, size);
      const connected = numberField(device, "connected");
      if (connected !== undefined) metrics.gauge("druvaa_staging_device_connected", "1 while the client holding the device is connected").set({ wrl, device: name, client: stringField(device, "clientNodeId") ?? "" }, connected);
    }
  }
  if (!Array.isArray(status.clients)) return;
  const clients = objectList(status, "clients");
  metrics.gauge("druvaa_staging_clients", "Client connections").set({}, clients.length);
  // A node reconnecting may briefly hold two sessions: one sample per node id, summed.
  const byNode = new Map<string, { inflightWrites: number; devices: number }>();
  for (const client of clients) {
    const nodeId = stringField(client, "nodeId") ?? "";
    const entry = byNode.get(nodeId) ?? { inflightWrites: 0, devices: 0 };
    entry.inflightWrites += numberField(client, "inflightWrites") ?? 0;
    entry.devices += objectList(client, "devices").length;
    byNode.set(nodeId, entry);
  }
  for (const [client, entry] of byNode) {
    metrics.gauge("druvaa_staging_client_inflight_writes", "Writes of the client being appended (not yet acknowledged)").set({ client }, entry.inflightWrites);
    metrics.gauge("druvaa_staging_client_devices", "Devices the client has attached").set({ client }, entry.devices);
  }
}

function relayCompression(metrics: MetricSet, relay: StatusObject, labels: Labels): void {
  const compression = asObject(relay.compression);
  if (compression === undefined) {
    // A relay reporting a flat ratio instead of the compression object.
    emitFields(metrics, relay, labels, compressionFields.filter((spec) => spec.name === "druvaa_staging_relay_compression_ratio"));
    return;
  }
  emitStateSet(metrics, "druvaa_staging_relay_compression_mode", "The --compression setting (1 for the one in use)", labels, "mode", compressionModes, stringField(compression, "mode"));
  emitFields(metrics, compression, labels, compressionFields);
  const compressMs = numberField(compression, "compressMs");
  if (compressMs !== undefined) metrics.counter("druvaa_staging_relay_compress_seconds_total", "Wall time spent compressing shipments").set(labels, compressMs / 1000);
}
