/**
 * Role status → metric families (src/metrics/role-metrics.ts and the per-role mappings): every
 * role's real status shape renders to text the strict parser accepts, with the values of the
 * status fields they come from; fields absent from a status are not emitted; fields other
 * developers may add (compression ratio, byte counters, relay reconnects) are picked up when
 * they appear; a status of the wrong shape fails loudly.
 */
import { describe, expect, test } from "bun:test";
import { DruvaaError } from "../../src/errors.ts";
import { renderRoleMetrics, type ProcessSnapshot } from "../../src/metrics/role-metrics.ts";
import { parseExposition, sampleValue, type ParsedFamily } from "./exposition-parser.ts";
import { clientStatus, replicaStatus, resyncingClientStatus, resyncingReplicaStatus, stagingStatus } from "./status-fixtures.ts";

const processInfo: ProcessSnapshot = { residentMemoryBytes: 52_428_800, startTimeSeconds: 1_796_000_000.25, cpuSeconds: 1.5 };
const metricsOf = (status: unknown): Map<string, ParsedFamily> => parseExposition(renderRoleMetrics(status, processInfo));

describe("common families", () => {
  test.each([["client", clientStatus()], ["staging", stagingStatus()], ["replica", replicaStatus()]])("%s: druvaa_up, druvaa_info, uptime and process metrics", (role, status) => {
    const metrics = metricsOf(status);
    expect(sampleValue(metrics, "druvaa_up")).toBe(1);
    expect(metrics.get("druvaa_info")!.samples).toEqual([{ name: "druvaa_info", labels: { role, version: "0.1.0", node_id: "vm" }, value: 1 }]);
    expect(sampleValue(metrics, "druvaa_uptime_seconds")).toBe(status.uptimeSeconds);
    expect(sampleValue(metrics, "process_resident_memory_bytes")).toBe(52_428_800);
    expect(sampleValue(metrics, "process_start_time_seconds")).toBe(1_796_000_000.25);
    expect(sampleValue(metrics, "process_cpu_seconds_total")).toBe(1.5);
    for (const family of metrics.values()) {
      expect(family.name).toMatch(/^(druvaa|process)_/);
      expect(family.help?.length ?? 0).toBeGreaterThan(0);
      if (!family.name.startsWith("process_")) expect(family.name.startsWith(`druvaa_${role}_`) || ["druvaa_up", "druvaa_info", "druvaa_uptime_seconds"].includes(family.name)).toBe(true);
    }
  });

  test("a status without a role fails with BAD_STATUS; an unknown role gets the common families only", () => {
    for (const bad of [null, [], "text", { nodeId: "x" }, { role: 7 }]) {
      let error: unknown;
      try {
        renderRoleMetrics(bad, processInfo);
      } catch (caught) {
        error = caught;
      }
      expect(error instanceof DruvaaError && error.code === "BAD_STATUS").toBe(true);
    }
    const metrics = metricsOf({ role: "panel", nodeId: "p1", version: "0.2.0", wrls: [{ name: "x", fillRatio: 1 }] });
    expect([...metrics.keys()]).toEqual(["druvaa_up", "druvaa_info", "process_resident_memory_bytes", "process_start_time_seconds", "process_cpu_seconds_total"]);
  });
});

describe("staging", () => {
  const wrl = { wrl: "wrl0" };
  const relay = { wrl: "wrl0", peer: "127.0.0.1:34913" };

  test("WRL fill, LSNs, records, lag and RPO, relay, devices and clients come from the status fields", () => {
    const metrics = metricsOf(stagingStatus());
    const expected: [string, Record<string, string>, number][] = [
      ["druvaa_staging_stopping", {}, 0],
      ["druvaa_staging_wrl_size_bytes", wrl, 67043328],
      ["druvaa_staging_wrl_used_bytes", wrl, 348160],
      ["druvaa_staging_wrl_free_bytes", wrl, 66695168],
      ["druvaa_staging_wrl_fill_ratio", wrl, 0.005193059628543499],
      ["druvaa_staging_wrl_head_lsn", wrl, 21],
      ["druvaa_staging_wrl_tail_lsn", wrl, 16],
      ["druvaa_staging_wrl_records", wrl, 5],
      ["druvaa_staging_wrl_pending_appends", wrl, 0],
      ["druvaa_staging_wrl_lag_bytes", wrl, 312076],
      ["druvaa_staging_wrl_lag_seconds", wrl, 0.066],
      ["druvaa_staging_wrl_rpo_seconds", wrl, 0.066],
      ["druvaa_staging_relay_connected", relay, 1],
      ["druvaa_staging_relay_applied_lsn", relay, 16],
      ["druvaa_staging_relay_inflight_shipments", relay, 5],
      ["druvaa_staging_relay_shipments_total", relay, 21],
      ["druvaa_staging_relay_wire_bytes_total", relay, 400],
      ["druvaa_staging_relay_raw_bytes_total", relay, 1310720],
      ["druvaa_staging_relay_compression_ratio", relay, 3276.8],
      ["druvaa_staging_relay_compression_level", relay, 1],
      ["druvaa_staging_relay_compression_mode", { ...relay, mode: "auto" }, 1],
      ["druvaa_staging_relay_compression_mode", { ...relay, mode: "off" }, 0],
      ["druvaa_staging_relay_compressed_shipments_total", relay, 20],
      ["druvaa_staging_relay_compress_seconds_total", relay, 0.009424],
      ["druvaa_staging_device_size_bytes", { wrl: "wrl0", device: "disk0" }, 8388608],
      ["druvaa_staging_device_connected", { wrl: "wrl0", device: "disk0", client: "vm" }, 1],
      ["druvaa_staging_clients", {}, 1],
      ["druvaa_staging_client_inflight_writes", { client: "vm" }, 0],
      ["druvaa_staging_client_devices", { client: "vm" }, 1],
    ];
    for (const [name, labels, value] of expected) expect({ name, labels, value: sampleValue(metrics, name, labels) }).toEqual({ name, labels, value });
    for (const absent of ["druvaa_staging_relay_reconnects_total", "druvaa_staging_relay_shipped_records_total", "druvaa_staging_relay_last_error_info", "druvaa_staging_wrl_appended_bytes_total"]) {
      expect(metrics.has(absent)).toBe(false);
    }
  });

  test("--rpo, --rate-limit and --schedule: target, state, ETA, pacing and window as their own families", () => {
    const status = stagingStatus();
    Object.assign(status.wrls[0], {
      ackedBytes: 1048576,
      rpo: { targetSeconds: 30, rpoSeconds: 18, trend: "rising", drainEtaSeconds: null, state: "at-risk" },
      rateLimit: { bytesPerSecond: 2_500_000, burstBytes: 250_000, scope: "server", frameBytes: 4_000_000, waitedMs: 1500 },
      schedule: { schedule: "Mon-Fri 19:00-07:00 UTC", open: false, nextChangeAt: "2026-12-04T19:00:00.000Z" },
    });
    const metrics = metricsOf(status);
    expect(sampleValue(metrics, "druvaa_staging_wrl_acked_bytes_total", wrl)).toBe(1048576);
    expect(sampleValue(metrics, "druvaa_staging_wrl_rpo_target_seconds", wrl)).toBe(30);
    expect(sampleValue(metrics, "druvaa_staging_wrl_rpo_state", { ...wrl, state: "at-risk" })).toBe(1);
    expect(sampleValue(metrics, "druvaa_staging_wrl_rpo_state", { ...wrl, state: "ok" })).toBe(0);
    expect(metrics.has("druvaa_staging_wrl_rpo_drain_eta_seconds")).toBe(false); // not draining: no ETA
    expect(sampleValue(metrics, "druvaa_staging_relay_rate_limit_bytes_per_second", wrl)).toBe(2_500_000);
    expect(sampleValue(metrics, "druvaa_staging_relay_rate_limit_wait_seconds_total", wrl)).toBe(1.5);
    expect(sampleValue(metrics, "druvaa_staging_relay_schedule_open", wrl)).toBe(0);
  });

  test("a staging from before the relay counted shipments (no counters, no compression) has none of those families", () => {
    const status = stagingStatus();
    for (const key of ["shipmentsShipped", "bytesShipped", "compression"]) delete status.wrls[0].replica[key];
    const metrics = metricsOf(status);
    for (const absent of ["druvaa_staging_relay_shipments_total", "druvaa_staging_relay_wire_bytes_total", "druvaa_staging_relay_raw_bytes_total", "druvaa_staging_relay_compression_ratio", "druvaa_staging_relay_compression_mode", "druvaa_staging_relay_compress_seconds_total"]) {
      expect(metrics.has(absent)).toBe(false);
    }
    expect(sampleValue(metrics, "druvaa_staging_relay_applied_lsn", relay)).toBe(16);
  });

  test("compression off has no level; fields still to come are mapped when present; lastError gives its code and time", () => {
    const status = stagingStatus();
    Object.assign(status.wrls[0].replica.compression, { mode: "off", level: null, compressionRatio: 1 });
    Object.assign(status.wrls[0].replica, { recordsShipped: 16, reconnects: 3, connected: false, lastError: { code: "NET_CLOSED", message: "the replica closed the connection", at: "2026-12-04T16:58:47.500Z" } });
    Object.assign(status.wrls[0], { rpoSeconds: 0.5, appendedBytes: 1310720, appendedRecords: 21 });
    const metrics = metricsOf(status);
    expect(sampleValue(metrics, "druvaa_staging_relay_compression_mode", { ...relay, mode: "off" })).toBe(1);
    expect(metrics.has("druvaa_staging_relay_compression_level")).toBe(false);
    expect(sampleValue(metrics, "druvaa_staging_relay_compression_ratio", relay)).toBe(1);
    expect(sampleValue(metrics, "druvaa_staging_relay_shipped_records_total", relay)).toBe(16);
    expect(sampleValue(metrics, "druvaa_staging_relay_reconnects_total", relay)).toBe(3);
    expect(sampleValue(metrics, "druvaa_staging_relay_connected", relay)).toBe(0);
    expect(sampleValue(metrics, "druvaa_staging_relay_last_error_info", { ...relay, code: "NET_CLOSED" })).toBe(1);
    expect(sampleValue(metrics, "druvaa_staging_relay_last_error_timestamp_seconds", relay)).toBe(Date.parse("2026-12-04T16:58:47.500Z") / 1000);
    expect(sampleValue(metrics, "druvaa_staging_wrl_rpo_seconds", wrl)).toBe(0.5);
    expect(sampleValue(metrics, "druvaa_staging_wrl_lag_seconds", wrl)).toBe(0.066);
    expect(sampleValue(metrics, "druvaa_staging_wrl_appended_bytes_total", wrl)).toBe(1310720);
    expect(sampleValue(metrics, "druvaa_staging_wrl_appended_records_total", wrl)).toBe(21);
    for (const counter of ["druvaa_staging_relay_wire_bytes_total", "druvaa_staging_relay_raw_bytes_total", "druvaa_staging_relay_shipments_total"]) expect(metrics.get(counter)!.type).toBe("counter");
    // A relay that reports a flat ratio instead of the compression object.
    delete status.wrls[0].replica.compression;
    status.wrls[0].replica.compressionRatio = 2.5;
    expect(sampleValue(metricsOf(status), "druvaa_staging_relay_compression_ratio", relay)).toBe(2.5);
  });

  test("two sessions of one node id (a reconnect overlapping) are one series; fields of the wrong type are skipped", () => {
    const status = stagingStatus();
    status.clients.push({ nodeId: "vm", address: "127.0.0.1:47300", inflightWrites: 3, devices: [] });
    status.wrls.push({ name: "w\"1\\", sizeBytes: "big", usedBytes: null, fillRatio: Number.NaN, headLsn: 4, replica: null, devices: [{ name: "d1", connected: false }] });
    const metrics = metricsOf(status);
    expect(sampleValue(metrics, "druvaa_staging_clients")).toBe(2);
    expect(sampleValue(metrics, "druvaa_staging_client_inflight_writes", { client: "vm" })).toBe(3);
    const odd = { wrl: 'w"1\\' };
    expect(sampleValue(metrics, "druvaa_staging_wrl_head_lsn", odd)).toBe(4);
    for (const name of ["druvaa_staging_wrl_size_bytes", "druvaa_staging_wrl_used_bytes", "druvaa_staging_wrl_fill_ratio"]) expect(metrics.get(name)!.samples.map((sample) => sample.labels.wrl)).toEqual(["wrl0"]);
    expect(sampleValue(metrics, "druvaa_staging_device_connected", { ...odd, device: "d1", client: "" })).toBe(0);
  });
});

describe("client", () => {
  const peer = { peer: "127.0.0.1:40013" };
  const device = { device: "disk0" };

  test("device counters, link, mode, resync and activity log come from the status fields", () => {
    const metrics = metricsOf(clientStatus());
    const expected: [string, Record<string, string>, number][] = [
      ["druvaa_client_staging_connected", peer, 1],
      ["druvaa_client_staging_reconnects_total", peer, 0],
      ["druvaa_client_device_size_bytes", device, 8388608],
      ["druvaa_client_acked_lsn", device, 21],
      ["druvaa_client_writes_total", device, 20],
      ["druvaa_client_written_bytes_total", device, 1310720],
      ["druvaa_client_zeroed_bytes_total", device, 0],
      ["druvaa_client_failed_writes_total", device, 0],
      ["druvaa_client_inflight_writes", device, 0],
      ["druvaa_client_dirty_bytes", device, 0],
      ["druvaa_client_device_info", { device: "disk0", wrl: "wrl0", path: "/tmp/druvaa-e2e-SDRCyi/primary-disk0.img" }, 1],
      ["druvaa_client_unacked_writes", {}, 0],
      ["druvaa_client_mode", { mode: "connected" }, 1],
      ["druvaa_client_mode", { mode: "disconnected" }, 0],
      ["druvaa_client_mode", { mode: "resyncing" }, 0],
      ["druvaa_client_disconnected_seconds", {}, 0],
      ["druvaa_client_resync_sets_open", {}, 0],
      ["druvaa_client_resync_running", {}, 0],
      ["druvaa_client_last_resync_outcome", { outcome: "done" }, 1],
      ["druvaa_client_last_resync_outcome", { outcome: "interrupted" }, 0],
      ["druvaa_client_last_resync_sent_bytes", {}, 0],
      ["druvaa_client_last_resync_duration_seconds", {}, 0.01],
      ["druvaa_client_activity_log_slots", {}, 256],
      ["druvaa_client_activity_log_active_extents", {}, 1],
      ["druvaa_client_activity_log_writes_total", {}, 2],
      ["druvaa_client_crash_recovery_state", { state: "none" }, 1],
      ["druvaa_client_crash_recovery_in_progress", {}, 0],
      ["druvaa_client_initial_sync_state", { device: "disk0", state: "none" }, 1],
      ["druvaa_client_initial_sync_total_bytes", device, 8388608],
    ];
    for (const [name, labels, value] of expected) expect({ name, labels, value: sampleValue(metrics, name, labels) }).toEqual({ name, labels, value });
    for (const absent of ["druvaa_client_resync_sent_bytes", "druvaa_client_resync_progress_ratio", "druvaa_client_verify_checked_bytes", "druvaa_client_staging_last_error_info", "druvaa_client_compression_ratio", "druvaa_client_sent_bytes_total"]) {
      expect(metrics.has(absent)).toBe(false);
    }
  });

  test("resyncing after a disconnect: reconnects, progress of the pass, the verify run, the link's last error", () => {
    const metrics = metricsOf(resyncingClientStatus());
    expect(sampleValue(metrics, "druvaa_client_staging_reconnects_total", peer)).toBe(2);
    expect(sampleValue(metrics, "druvaa_client_staging_last_error_info", { ...peer, code: "NET_CLOSED" })).toBe(1);
    expect(sampleValue(metrics, "druvaa_client_mode", { mode: "resyncing" })).toBe(1);
    expect(sampleValue(metrics, "druvaa_client_mode", { mode: "connected" })).toBe(0);
    expect(sampleValue(metrics, "druvaa_client_disconnected_seconds")).toBe(12.5);
    expect(sampleValue(metrics, "druvaa_client_dirty_bytes", device)).toBe(3 * 1048576);
    expect(sampleValue(metrics, "druvaa_client_resync_running")).toBe(1);
    expect(sampleValue(metrics, "druvaa_client_resync_sent_bytes")).toBe(1048576);
    expect(sampleValue(metrics, "druvaa_client_resync_remaining_bytes")).toBe(3 * 1048576);
    expect(sampleValue(metrics, "druvaa_client_resync_elapsed_seconds")).toBe(1.5);
    expect(sampleValue(metrics, "druvaa_client_resync_progress_ratio")).toBe(0.25);
    expect(sampleValue(metrics, "druvaa_client_resync_sets_open")).toBe(1);
    expect(sampleValue(metrics, "druvaa_client_last_resync_outcome", { outcome: "interrupted" })).toBe(1);
    expect(sampleValue(metrics, "druvaa_client_verify_checked_bytes", { device: "disk0", run: "3" })).toBe(4194304);
    expect(sampleValue(metrics, "druvaa_client_verify_differing_bytes", { device: "disk0", run: "3" })).toBe(4096);
  });

  test("without a change map (no activity log, no crash recovery) those families are absent", () => {
    const status = clientStatus();
    Object.assign(status, { changeMap: false, dirtyBytes: null, lastResync: null, activityLog: null, crashRecovery: null });
    status.devices[0].dirtyBytes = null;
    const metrics = metricsOf(status);
    for (const absent of ["druvaa_client_dirty_bytes", "druvaa_client_last_resync_outcome", "druvaa_client_activity_log_slots", "druvaa_client_crash_recovery_state"]) expect(metrics.has(absent)).toBe(false);
    expect(sampleValue(metrics, "druvaa_client_writes_total", device)).toBe(20);
  });
});

describe("replica", () => {
  const wrl0 = { wrl: "wrl0", wrl_uuid: "0f4c9be3-f965-40e3-b145-64698fcaec28" };

  test("devices, applied LSN and time, connections and queues come from the status fields", () => {
    const metrics = metricsOf(replicaStatus());
    const expected: [string, Record<string, string>, number][] = [
      ["druvaa_replica_device_size_bytes", { device: "disk0" }, 8388608],
      ["druvaa_replica_device_declared_size_bytes", { device: "disk0" }, 8388608],
      ["druvaa_replica_device_consistent", { device: "disk0" }, 1],
      ["druvaa_replica_device_info", { device: "disk0", path: "/tmp/druvaa-e2e-SDRCyi/replica-disk0.img" }, 1],
      ["druvaa_replica_applied_lsn", wrl0, 21],
      ["druvaa_replica_last_applied_timestamp_seconds", wrl0, Date.parse("2026-12-04T16:58:47.402Z") / 1000],
      ["druvaa_replica_staging_connected", wrl0, 1],
      ["druvaa_replica_resync_state", { ...wrl0, state: "none" }, 1],
      ["druvaa_replica_resync_state", { ...wrl0, state: "open" }, 0],
      ["druvaa_replica_applying", {}, 0],
      ["druvaa_replica_restores", {}, 0],
      ["druvaa_replica_queued_shipments", {}, 0],
      ["druvaa_replica_set_applying", {}, 0],
    ];
    for (const [name, labels, value] of expected) expect({ name, labels, value: sampleValue(metrics, name, labels) }).toEqual({ name, labels, value });
    for (const absent of ["druvaa_replica_rs_wrl_size_bytes", "druvaa_replica_resync_records", "druvaa_replica_seed_state", "druvaa_replica_received_bytes_total", "druvaa_replica_compression_ratio"]) expect(metrics.has(absent)).toBe(false);
  });

  test("resync sets (open, unbuffered), the RS-WRL, the set being applied and a media seed", () => {
    const metrics = metricsOf(resyncingReplicaStatus());
    const wrl1 = { wrl: "wrl1", wrl_uuid: "5d0d3f0c-2f7e-4f43-9f0e-6d1f2f6b7a11" };
    expect(sampleValue(metrics, "druvaa_replica_resync_state", { ...wrl0, state: "open" })).toBe(1);
    expect(sampleValue(metrics, "druvaa_replica_resync_state", { ...wrl0, state: "none" })).toBe(0);
    expect(sampleValue(metrics, "druvaa_replica_resync_records", wrl0)).toBe(19);
    expect(sampleValue(metrics, "druvaa_replica_resync_bytes", wrl0)).toBe(1245184);
    expect(sampleValue(metrics, "druvaa_replica_resync_logged_lsn", wrl0)).toBe(40);
    expect(sampleValue(metrics, "druvaa_replica_resync_open_devices", wrl0)).toBe(1);
    expect(sampleValue(metrics, "druvaa_replica_resync_ended_devices", wrl0)).toBe(0);
    expect(sampleValue(metrics, "druvaa_replica_resync_state", { ...wrl1, state: "unbuffered" })).toBe(1);
    expect(sampleValue(metrics, "druvaa_replica_resync_open_devices", wrl1)).toBe(1);
    expect(metrics.get("druvaa_replica_last_applied_timestamp_seconds")!.samples.map((sample) => sample.labels.wrl)).toEqual(["wrl0"]);
    expect(sampleValue(metrics, "druvaa_replica_device_consistent", { device: "disk1" })).toBe(0);
    expect(metrics.get("druvaa_replica_device_declared_size_bytes")!.samples.map((sample) => sample.labels.device)).toEqual(["disk0"]);
    expect(sampleValue(metrics, "druvaa_replica_rs_wrl_size_bytes")).toBe(33554432);
    expect(sampleValue(metrics, "druvaa_replica_rs_wrl_fill_ratio")).toBe(0.25);
    expect(sampleValue(metrics, "druvaa_replica_set_applying")).toBe(1);
    expect(sampleValue(metrics, "druvaa_replica_set_apply_restores_waiting")).toBe(1);
    expect(sampleValue(metrics, "druvaa_replica_seed_state", { device: "disk1", state: "seeding" })).toBe(1);
    expect(sampleValue(metrics, "druvaa_replica_seed_copied_bytes", { device: "disk1" })).toBe(4194304);
    expect(sampleValue(metrics, "druvaa_replica_seed_total_bytes", { device: "disk1" })).toBe(16777216);
  });

  test("a WRL re-created under the same name (new uuid) is two series, not a duplicate", () => {
    const status = replicaStatus();
    status.wrls.push({ ...status.wrls[0], uuid: "11111111-2222-4333-8444-555555555555", appliedLsn: 3 });
    const metrics = metricsOf(status);
    expect(metrics.get("druvaa_replica_applied_lsn")!.samples.map((sample) => sample.value)).toEqual([21, 3]);
  });
});
