/**
 * GET /metrics of real role processes: replica, staging and a client (with a change map) started
 * as the end-to-end tests do (tests/e2e/helpers.ts), writes through the client's NBD export, then
 * every control port's /metrics parsed strictly. The values must agree with what was written and
 * with each other: the client's counters count our writes, staging's head LSN covers them, and
 * once drained the replica's applied LSN is staging's head LSN. Processes are stopped in
 * afterAll (and killed at exit by the helpers) even when a check fails. No timing assertions.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { connectNbd } from "../../src/nbd/client.ts";
import { MiB, startSystem, type Role, type System } from "../e2e/helpers.ts";
import { parseExposition, sampleValue, type ParsedFamily } from "./exposition-parser.ts";

const writeCount = 24;
const writeBytes = 64 * 1024;
let system: System;

async function scrape(role: Role): Promise<Map<string, ParsedFamily>> {
  const control = role === "client" ? system.clientControl : role === "staging" ? system.stagingControl : system.replicaControl;
  const response = await fetch(`http://${control}/metrics`);
  const text = await response.text();
  if (response.status !== 200) throw new Error(`${role} /metrics answered ${response.status}: ${text}`);
  expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  return parseExposition(text);
}

function expectCommon(metrics: Map<string, ParsedFamily>, role: Role): void {
  expect(sampleValue(metrics, "druvaa_up")).toBe(1);
  expect(sampleValue(metrics, "druvaa_info", { role })).toBe(1);
  expect(metrics.get("druvaa_info")!.samples[0]!.labels.version).toMatch(/^\d+\.\d+\.\d+/);
  expect(sampleValue(metrics, "process_resident_memory_bytes")).toBeGreaterThan(MiB);
  const started = sampleValue(metrics, "process_start_time_seconds");
  expect(started).toBeLessThanOrEqual(Date.now() / 1000);
  expect(started).toBeGreaterThan(Date.now() / 1000 - 3600);
  expect(sampleValue(metrics, "process_cpu_seconds_total")).toBeGreaterThan(0);
}

beforeAll(async () => {
  system = await startSystem({ sizeBytes: 8 * MiB, changeMap: true });
});

afterAll(async () => {
  await system?.stop();
});

describe("GET /metrics of real client, staging and replica processes", () => {
  test("after writes through the client, every role's metrics parse strictly and agree with the writes and each other", async () => {
    const nbd = await connectNbd(system.exportAddress, "disk0");
    try {
      for (let index = 0; index < writeCount; index += 1) await nbd.write(index * 2 * writeBytes, randomBytes(writeBytes));
    } finally {
      await nbd.close();
    }

    // Before the drain: every write was acked, so it is in the WRL (head) whatever the relay did.
    const staging = await scrape("staging");
    expectCommon(staging, "staging");
    const wrl = { wrl: system.wrlName };
    const headLsn = sampleValue(staging, "druvaa_staging_wrl_head_lsn", wrl);
    expect(headLsn).toBeGreaterThanOrEqual(writeCount);
    const fill = sampleValue(staging, "druvaa_staging_wrl_fill_ratio", wrl);
    expect(fill).toBeGreaterThanOrEqual(0);
    expect(fill).toBeLessThanOrEqual(1);
    expect(sampleValue(staging, "druvaa_staging_wrl_used_bytes", wrl)).toBeLessThanOrEqual(sampleValue(staging, "druvaa_staging_wrl_size_bytes", wrl));
    expect(sampleValue(staging, "druvaa_staging_wrl_lag_bytes", wrl)).toBeGreaterThanOrEqual(0);
    expect(sampleValue(staging, "druvaa_staging_wrl_rpo_seconds", wrl)).toBeGreaterThanOrEqual(0);

    await system.waitDrained(60);

    const drained = await scrape("staging");
    expect(sampleValue(drained, "druvaa_staging_wrl_head_lsn", wrl)).toBe(headLsn);
    expect(sampleValue(drained, "druvaa_staging_relay_applied_lsn", wrl)).toBe(headLsn);
    expect(sampleValue(drained, "druvaa_staging_relay_connected", wrl)).toBe(1);
    // Records are freed just after the ack (advanceTail is asynchronous): only their bound holds.
    expect(sampleValue(drained, "druvaa_staging_wrl_records", wrl)).toBeLessThanOrEqual(headLsn);
    expect(sampleValue(drained, "druvaa_staging_wrl_lag_bytes", wrl)).toBe(0);
    expect(sampleValue(drained, "druvaa_staging_wrl_lag_seconds", wrl)).toBe(0);
    expect(sampleValue(drained, "druvaa_staging_wrl_rpo_seconds", wrl)).toBe(0);
    expect(sampleValue(drained, "druvaa_staging_device_connected", { ...wrl, device: "disk0" })).toBe(1);
    expect(sampleValue(drained, "druvaa_staging_clients")).toBe(1);
    // The relay's shipment counters are newer than the rest of the status: checked where present.
    if (drained.has("druvaa_staging_relay_raw_bytes_total")) {
      expect(sampleValue(drained, "druvaa_staging_relay_raw_bytes_total", wrl)).toBeGreaterThanOrEqual(writeCount * writeBytes);
      expect(sampleValue(drained, "druvaa_staging_relay_wire_bytes_total", wrl)).toBeGreaterThan(0);
      expect(sampleValue(drained, "druvaa_staging_relay_shipments_total", wrl)).toBeGreaterThanOrEqual(1);
      // Random data does not compress: the ratio stays near 1 (shipments that do not shrink travel as they are).
      expect(sampleValue(drained, "druvaa_staging_relay_compression_ratio", wrl)).toBeGreaterThanOrEqual(1);
      expect(sampleValue(drained, "druvaa_staging_relay_compression_ratio", wrl)).toBeLessThan(1.1);
    }

    const client = await scrape("client");
    expectCommon(client, "client");
    const device = { device: "disk0" };
    expect(sampleValue(client, "druvaa_client_writes_total", device)).toBe(writeCount);
    expect(sampleValue(client, "druvaa_client_written_bytes_total", device)).toBe(writeCount * writeBytes);
    expect(sampleValue(client, "druvaa_client_failed_writes_total", device)).toBe(0);
    expect(sampleValue(client, "druvaa_client_acked_lsn", device)).toBe(headLsn);
    expect(sampleValue(client, "druvaa_client_staging_connected", { peer: system.stagingListen })).toBe(1);
    expect(sampleValue(client, "druvaa_client_staging_reconnects_total", { peer: system.stagingListen })).toBe(0);
    expect(sampleValue(client, "druvaa_client_mode", { mode: "connected" })).toBe(1);
    expect(sampleValue(client, "druvaa_client_dirty_bytes", device)).toBe(0);
    expect(sampleValue(client, "druvaa_client_activity_log_slots")).toBeGreaterThanOrEqual(sampleValue(client, "druvaa_client_activity_log_active_slots"));

    const replica = await scrape("replica");
    expectCommon(replica, "replica");
    expect(sampleValue(replica, "druvaa_replica_applied_lsn", wrl)).toBe(headLsn);
    expect(sampleValue(replica, "druvaa_replica_staging_connected", wrl)).toBe(1);
    expect(sampleValue(replica, "druvaa_replica_device_consistent", device)).toBe(1);
    expect(sampleValue(replica, "druvaa_replica_device_size_bytes", device)).toBe(8 * MiB);
    expect(sampleValue(replica, "druvaa_replica_resync_state", { ...wrl, state: "none" })).toBe(1);
    expect(sampleValue(replica, "druvaa_replica_last_applied_timestamp_seconds", wrl)).toBeLessThanOrEqual(Date.now() / 1000);
    system.assertAlive();
  }, 120_000);
});
