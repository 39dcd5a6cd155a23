/**
 * Staging while the replica's devices of a WRL are failed over, and its failback routes: a real
 * StagingCore and StagingServer (control port over HTTP, data port over TCP with a real client
 * transport), a WRL on a memory disk that outlives restarts, and a scripted replica
 * (failover-replica.ts) that refuses the WRL with FAILED_OVER, holds shipments, or accepts them.
 */
import { afterEach, describe, expect, spyOn, test } from "bun:test";
import { logger } from "../../src/log.ts";
import type { WriteMessage } from "../../src/protocol/messages.ts";
import { StagingCore } from "../../src/roles/staging/core.ts";
import { wrlAppendOf } from "../../src/roles/staging/records.ts";
import { StagingServer } from "../../src/roles/staging/server.ts";
import { MemoryDeviceStateStore } from "../../src/roles/staging/state.ts";
import type { WriteLog } from "../../src/wrl/write-log.ts";
import { FailoverReplica } from "./failover-replica.ts";
import { bytes, KiB, MiB, WrlDisk, waitFor } from "./helpers.ts";
import { TestClient } from "./test-client.ts";

const d0Bytes = 1 * MiB;
const d1Bytes = 256 * KiB;
const anyPort = { kind: "tcp" as const, host: "127.0.0.1", port: 0 };

interface Staging {
  core: StagingCore;
  server: StagingServer;
  wrl: WriteLog;
  control: string;
  client: TestClient;
  stop(): Promise<void>;
}

const running = new Set<Staging>();

afterEach(async () => {
  for (const staging of [...running]) await staging.stop();
});

/** Staging over `disk` (created or reopened) relaying to `replica`, with a client attached to d0 and d1. */
async function startStaging(disk: WrlDisk, replica: FailoverReplica, store: MemoryDeviceStateStore, create: boolean): Promise<Staging> {
  const wrl = create ? await disk.create() : await disk.open();
  const core = await StagingCore.open({ wrls: [{ name: "w0", wrl, devicePaths: ["/wrl/w0.img"], replicaAddress: "replica.test:6003", dialReplica: replica.dial }], store });
  const server = await StagingServer.start({ core, nodeId: "staging-failback", listen: anyPort, control: anyPort });
  core.start();
  const client = await TestClient.connect(server.addresses.listen, "failback-client");
  expect(await client.attach("w0", "d0", d0Bytes)).toMatchObject({ accepted: true });
  expect(await client.attach("w0", "d1", d1Bytes)).toMatchObject({ accepted: true });
  let stopped: Promise<void> | undefined;
  const staging: Staging = {
    core,
    server,
    wrl,
    control: server.addresses.control,
    client,
    stop() {
      stopped ??= (async () => {
        running.delete(staging);
        client.connection.abort();
        await server.stop();
        await wrl.close();
      })();
      return stopped;
    },
  };
  running.add(staging);
  return staging;
}

async function write(staging: Staging, device: string, offset: number, data: Uint8Array | undefined, zeroLength = 0): Promise<void> {
  const answer = await staging.client.write("w0", device, offset, data, zeroLength);
  expect(answer.type).toBe("writeAck");
}

/** A verify probe or a checkpoint record as the core would log it (they write nothing to a device); returns its payload bytes. */
async function appendMarker(staging: Staging, message: Partial<WriteMessage>, payload: Uint8Array): Promise<number> {
  const base: WriteMessage = { type: "write", reqId: 1, device: "d0", wrl: "w0", epoch: 1_000, offset: 0, length: 0 };
  const record = wrlAppendOf({ ...base, ...message }, payload);
  const result = await staging.wrl.append(record);
  if (!result.ok) throw new Error(`marker not logged: ${result.reason}`);
  return record.data.length; // a checkpoint's payload is its label
}

async function get(staging: Staging, path: string): Promise<{ status: number; body: any }> {
  const response = await fetch(`http://${staging.control}${path}`);
  return { status: response.status, body: await response.json() };
}

async function post(staging: Staging, path: string, body: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`http://${staging.control}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json() };
}

function relayStatus(staging: Staging): any {
  return staging.core.status().wrls[0]!;
}

const devices = [{ name: "d0", sizeBytes: d0Bytes }, { name: "d1", sizeBytes: d1Bytes }];

/** The writes of the failback scenario; returns the payload bytes logged. */
async function scenarioWrites(staging: Staging): Promise<number> {
  let payloadBytes = 0;
  const data = async (device: string, offset: number, length: number, seed: number) => {
    await write(staging, device, offset, bytes(length, seed));
    payloadBytes += length;
  };
  await data("d0", 0, 8 * KiB, 1);
  await data("d0", 4 * KiB, 8 * KiB, 2); // overlaps the first: one range 0..12K
  await write(staging, "d0", 64 * KiB, undefined, 4 * KiB); // ZERO
  await data("d1", 4 * KiB, 4 * KiB, 3);
  payloadBytes += await appendMarker(staging, { kind: "verify", offset: 100 * KiB, length: 4 * KiB, verifyBlockBytes: 4 * KiB }, new Uint8Array(32));
  await data("d0", 12 * KiB, 4 * KiB, 4); // touches 0..12K: one range 0..16K
  payloadBytes += await appendMarker(staging, { kind: "checkpoint", label: "before-failover" }, new Uint8Array(0));
  await write(staging, "d0", 200 * KiB, undefined, 8 * KiB); // ZERO
  await data("d0", 300 * KiB, 4 * KiB, 5);
  return payloadBytes;
}

const scenarioRanges = [
  { device: "d0", offset: 0, length: 16 * KiB },
  { device: "d0", offset: 64 * KiB, length: 4 * KiB },
  { device: "d0", offset: 200 * KiB, length: 8 * KiB },
  { device: "d0", offset: 300 * KiB, length: 4 * KiB },
  { device: "d1", offset: 4 * KiB, length: 4 * KiB },
];

describe("relay: a replica whose devices were failed over", () => {
  for (const mode of ["failed-over", "failed-over-at-ship"] as const) {
    test(`${mode}: records stay, status shows it, retries every ~5 s without spinning, warns once`, async () => {
      const warn = spyOn(logger("staging:relay:w0"), "warn");
      try {
        const replica = new FailoverReplica(devices);
        replica.mode = mode;
        const staging = await startStaging(WrlDisk.memory(4 * MiB), replica, new MemoryDeviceStateStore(), true);
        await write(staging, "d0", 0, bytes(4 * KiB, 1));
        await waitFor(() => relayStatus(staging).replica.failedOverSince !== null, "the relay to see FAILED_OVER");
        const status = relayStatus(staging);
        expect(status.replica.lastError).toMatchObject({ code: "FAILED_OVER" });
        expect(status.replica.lastError.hint).toContain("druvaa failback");
        expect(status.replica.connected).toBe(false);
        // Writes keep being logged and wake the relay, but the retry waits its slow backoff.
        const resumesBefore = replica.resumes.length;
        const shipmentsBefore = replica.shipments.length;
        const started = Date.now();
        for (let index = 1; Date.now() - started < 2_000; index += 1) {
          await write(staging, "d0", index * 4 * KiB, bytes(4 * KiB, index + 1));
          await Bun.sleep(100);
        }
        expect(replica.resumes.length - resumesBefore).toBeLessThanOrEqual(1);
        expect(replica.shipments.length - shipmentsBefore).toBeLessThanOrEqual(1);
        // Nothing was freed: every record waits in the WRL.
        const held = relayStatus(staging);
        expect(held.tailLsn).toBe(0);
        expect(held.recordCount).toBe(held.headLsn);
        expect(held.replica.appliedLsn).toBe(0);
        // The next try comes about 5 s after the first, and does not warn again.
        await waitFor(() => replica.resumes.length >= 2, "a second try", 10_000);
        expect(replica.resumes[1]! - replica.resumes[0]!).toBeGreaterThanOrEqual(4_500);
        await Bun.sleep(100);
        const failedOverWarnings = warn.mock.calls.filter((call) => String(call[0]).includes("failed over (druvaa failover)"));
        expect(failedOverWarnings.length).toBe(1);
        expect(String(failedOverWarnings[0]![0])).toContain("records wait here until druvaa failback");
        expect(String(failedOverWarnings[0]![0])).toContain("WRL w0");
        // The replica takes the WRL again (failback done): the episode ends, the records flow.
        replica.mode = "accepting";
        await waitFor(() => relayStatus(staging).tailLsn === relayStatus(staging).headLsn, "the records to drain", 10_000);
        expect(relayStatus(staging).replica.failedOverSince).toBeNull();
      } finally {
        warn.mockRestore();
      }
    }, 30_000);
  }
});

describe("GET /wrl/pending and POST /wrl/discard", () => {
  test("pending lists exactly the merged ranges of the records the replica never acknowledged; unknown WRL and bad requests are refused", async () => {
    const replica = new FailoverReplica(devices);
    const staging = await startStaging(WrlDisk.memory(4 * MiB), replica, new MemoryDeviceStateStore(), true);
    const payloadBytes = await scenarioWrites(staging);
    const { status, body } = await get(staging, "/wrl/pending?wrl=w0");
    expect(status).toBe(200);
    expect(body).toEqual({ wrl: "w0", wrlUuid: staging.wrl.info().uuid, ackedLsn: 0, headLsn: 9, records: 9, bytes: payloadBytes, ranges: scenarioRanges, rangeBytes: 36 * KiB, coarse: false });

    const unknown = await get(staging, "/wrl/pending?wrl=nope");
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: "WRL_UNKNOWN" });
    expect(unknown.body.error.message).toContain("nope");
    expect(unknown.body.error.hint).toContain("w0");
    const unnamed = await get(staging, "/wrl/pending");
    expect(unnamed.status).toBe(400);
    expect(unnamed.body.error).toMatchObject({ code: "USAGE" });
    const badBody = await post(staging, "/wrl/discard", { wrl: "w0" });
    expect(badBody.status).toBe(400);
    expect(badBody.body.error).toMatchObject({ code: "USAGE" });
    const fractional = await post(staging, "/wrl/discard", { wrl: "w0", throughLsn: 2.5 });
    expect(fractional.status).toBe(400);
    const unknownDiscard = await post(staging, "/wrl/discard", { wrl: "nope", throughLsn: 1 });
    expect(unknownDiscard.status).toBe(404);
    expect(unknownDiscard.body.error).toMatchObject({ code: "WRL_UNKNOWN" });

    // Above the head: refused, nothing changes.
    const beyond = await post(staging, "/wrl/discard", { wrl: "w0", throughLsn: 10 });
    expect(beyond.status).toBe(409);
    expect(beyond.body.error).toMatchObject({ code: "DISCARD_BEYOND_HEAD" });
    expect(beyond.body.error.message).toContain("LSN 9");
    expect(beyond.body.error.hint).toContain("GET /wrl/pending");
    expect((await get(staging, "/wrl/pending?wrl=w0")).body).toMatchObject({ ackedLsn: 0, records: 9, ranges: scenarioRanges });
    // At or below the acknowledged point: nothing to do.
    expect((await post(staging, "/wrl/discard", { wrl: "w0", throughLsn: 0 })).body).toEqual({ wrl: "w0", discardedRecords: 0, discardedBytes: 0, ackedLsn: 0 });
  });

  test("discard drops the records durably: pending stays empty across restarts, nothing is resent, new writes flow", async () => {
    const disk = WrlDisk.memory(4 * MiB);
    const store = new MemoryDeviceStateStore();
    const replica = new FailoverReplica(devices);
    let staging = await startStaging(disk, replica, store, true);
    const payloadBytes = await scenarioWrites(staging);
    // A restart before the discard: the pending records are read back from the WRL device.
    await staging.stop();
    staging = await startStaging(disk, replica, store, false);
    expect((await get(staging, "/wrl/pending?wrl=w0")).body).toMatchObject({ ackedLsn: 0, headLsn: 9, records: 9, bytes: payloadBytes, ranges: scenarioRanges });

    // Part, then the rest (as failback may do once it has made the primary equal to the replica).
    expect((await post(staging, "/wrl/discard", { wrl: "w0", throughLsn: 4 })).body).toEqual({ wrl: "w0", discardedRecords: 4, discardedBytes: 20 * KiB, ackedLsn: 4 });
    expect((await get(staging, "/wrl/pending?wrl=w0")).body).toMatchObject({ ackedLsn: 4, records: 5, ranges: [{ device: "d0", offset: 12 * KiB, length: 4 * KiB }, { device: "d0", offset: 200 * KiB, length: 8 * KiB }, { device: "d0", offset: 300 * KiB, length: 4 * KiB }] });
    const rest = await post(staging, "/wrl/discard", { wrl: "w0", throughLsn: 9 });
    expect(rest.body).toEqual({ wrl: "w0", discardedRecords: 5, discardedBytes: payloadBytes - 20 * KiB, ackedLsn: 9 });
    expect((await get(staging, "/wrl/pending?wrl=w0")).body).toMatchObject({ ackedLsn: 9, headLsn: 9, records: 0, bytes: 0, ranges: [], rangeBytes: 0 });
    expect(relayStatus(staging)).toMatchObject({ tailLsn: 9, recordCount: 0, lagBytes: 0, usedBytes: 0, replica: { appliedLsn: 9 } });
    expect((await post(staging, "/wrl/discard", { wrl: "w0", throughLsn: 9 })).body).toEqual({ wrl: "w0", discardedRecords: 0, discardedBytes: 0, ackedLsn: 9 });
    expect(replica.shipments).toEqual([]);

    // Restart with a replica that takes the WRL again from LSN 9 (failback aligned it).
    await staging.stop();
    replica.mode = "accepting";
    replica.appliedLsn = 9;
    staging = await startStaging(disk, replica, store, false);
    expect((await get(staging, "/wrl/pending?wrl=w0")).body).toMatchObject({ ackedLsn: 9, records: 0, ranges: [] });
    await write(staging, "d0", 500 * KiB, bytes(4 * KiB, 9));
    await write(staging, "d1", 0, bytes(4 * KiB, 10));
    await waitFor(() => relayStatus(staging).tailLsn === 11, "the new records to be acknowledged");
    expect(Math.min(...replica.shipments.map((shipment) => shipment.firstLsn))).toBe(10);
    expect(replica.shipments.at(-1)!.lastLsn).toBe(11);
    expect(relayStatus(staging).replica.lastError).toBeNull();
  });

  test("discard during a live session drops what was in flight; the relay resumes after throughLsn at once", async () => {
    const replica = new FailoverReplica(devices);
    replica.mode = "holding";
    const staging = await startStaging(WrlDisk.memory(4 * MiB), replica, new MemoryDeviceStateStore(), true);
    for (let index = 0; index < 4; index += 1) await write(staging, "d0", index * 8 * KiB, bytes(8 * KiB, index));
    await waitFor(() => replica.shipments.some((shipment) => shipment.lastLsn === 4), "the records to be in flight");
    expect(relayStatus(staging).replica.inflightShipments).toBeGreaterThan(0);
    const dialsBefore = replica.dials;
    // Failback made the primary equal to the replica and aligned the replica at LSN 4.
    replica.mode = "accepting";
    replica.appliedLsn = 4;
    const shipmentsBefore = replica.shipments.length;
    expect((await post(staging, "/wrl/discard", { wrl: "w0", throughLsn: 4 })).body).toEqual({ wrl: "w0", discardedRecords: 4, discardedBytes: 32 * KiB, ackedLsn: 4 });
    // A new session at once (no backoff), resuming after LSN 4.
    await waitFor(() => replica.dials > dialsBefore && relayStatus(staging).replica.connected, "a new session", 2_000);
    await write(staging, "d0", 100 * KiB, bytes(4 * KiB, 7));
    await waitFor(() => relayStatus(staging).tailLsn === 5, "LSN 5 to be acknowledged");
    expect(replica.shipments.slice(shipmentsBefore)).toEqual([{ firstLsn: 5, lastLsn: 5 }]);
    expect(relayStatus(staging).replica).toMatchObject({ lastError: null, appliedLsn: 5, inflightShipments: 0 });
  });
});
