/**
 * What the metric history reads from each role's GET /status (src/roles/panel/history-derive.ts),
 * with statuses shaped as docs/pipeline.md "Status" and docs/panel.md (a client host agent) give
 * them: client write throughput per device from its byte counter, resync and initial-sync
 * progress, replica apply rate, and nothing made up for fields a status lacks.
 */
import { describe, expect, test } from "bun:test";
import { CounterMemory, deriveSamples, unitOf } from "../../src/roles/panel/history-derive.ts";
import type { ComponentStatus } from "../../src/roles/panel/monitor.ts";

const client = (status: Record<string, unknown>): ComponentStatus => ({ name: "cli1", role: "client", control: "c", reachable: true, status: { role: "client", ...status } });
const replica = (status: Record<string, unknown>): ComponentStatus => ({ name: "dr1", role: "replica", control: "r", reachable: true, status: { role: "replica", ...status } });
const values = (samples: { series: string; value: number }[]) => Object.fromEntries(samples.map((sample) => [sample.series, sample.value]));

describe("samples from statuses", () => {
  test("client: per-device write rate, resync and initial-sync progress, dirty bytes; an agent's attachments", () => {
    const counters = new CounterMemory();
    const device = (bytesWritten: number) => ({ name: "disk0", bytesWritten });
    expect(values(deriveSamples([client({ devices: [device(1000)], dirtyBytes: null })], counters, 10_000))).toEqual({});
    const second = deriveSamples([client({ devices: [device(5000)], dirtyBytes: 4096, resync: { sentBytes: 300, remainingBytes: 100 }, initialSync: { progress: { doneBytes: 50, totalBytes: 200 } } })], counters, 12_000);
    expect(values(second)).toEqual({ "cli1/device/disk0/writeBytesPerSecond": 2000, "cli1/dirtyBytes": 4096, "cli1/resync/progressRatio": 0.75, "cli1/initialSync/progressRatio": 0.25 });
    expect(second.every((sample) => sample.component === "cli1")).toBe(true);
    // A client host agent: the same per attachment (a stopped one has no status).
    const agent = (bytes: number) => client({ attachments: [{ name: "pair-db", state: "running", status: { mode: "connected", devices: [device(bytes)] } }, { name: "pair-off", state: "stopped", status: null }] });
    deriveSamples([agent(0)], counters, 20_000);
    expect(values(deriveSamples([agent(10_000)], counters, 21_000))).toEqual({ "cli1/attachment/pair-db/device/disk0/writeBytesPerSecond": 10_000 });
  });

  test("replica: apply rate from appliedLsn, queued shipments; an unreachable component and names with '/' give nothing", () => {
    const counters = new CounterMemory();
    deriveSamples([replica({ wrls: [{ name: "fast", appliedLsn: 100 }], queuedShipments: 0 })], counters, 0);
    expect(values(deriveSamples([replica({ wrls: [{ name: "fast", appliedLsn: 600 }, { name: "a/b", appliedLsn: 1 }], queuedShipments: 2 })], counters, 500))).toEqual({ "dr1/wrl/fast/appliedLsnPerSecond": 1000, "dr1/queuedShipments": 2 });
    expect(deriveSamples([{ name: "dr1", role: "replica", control: "r", reachable: false, error: { code: "X", message: "down" } }], counters, 1000)).toEqual([]);
    expect([unitOf("a/b/lagMs"), unitOf("a/b/fillRatio"), unitOf("a/writeBytesPerSecond"), unitOf("a/appliedLsnPerSecond"), unitOf("a/dirtyBytes"), unitOf("a/queuedShipments")]).toEqual(["ms", "ratio", "bytes/s", "1/s", "bytes", "count"]);
  });
});
