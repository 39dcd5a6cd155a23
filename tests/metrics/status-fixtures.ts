/**
 * Role statuses as the control ports answer GET /status, for the mapping tests. The first of each
 * role was copied from a real run (tests/e2e startSystem with a change map, 20 writes of 64 KiB
 * of one byte value each, staging caught before the replica acknowledged the last shipments;
 * the relay's shipment counters and compression are from a later run, with --compression auto,
 * the default, after the relay gained them); the variants change what
 * that run did not show (disconnected and resyncing client, replica resync sets, seeds) following
 * the status types (src/roles/client/types.ts, src/roles/replica/core-status.ts, docs/pipeline.md).
 * Each is a fresh object per call, so a test may change it.
 */

export function stagingStatus(): Record<string, any> {
  return {
    role: "staging",
    nodeId: "vm",
    version: "0.1.0",
    uptimeSeconds: 0.204,
    addresses: { listen: "127.0.0.1:40013", control: "127.0.0.1:44201" },
    stopping: false,
    wrls: [
      {
        name: "wrl0",
        uuid: "0f4c9be3-f965-40e3-b145-64698fcaec28",
        devicePaths: ["/tmp/druvaa-e2e-SDRCyi/wrl.img"],
        sizeBytes: 67043328,
        usedBytes: 348160,
        freeBytes: 66695168,
        fillRatio: 0.005193059628543499,
        headLsn: 21,
        tailLsn: 16,
        recordCount: 5,
        pendingAppends: 0,
        lagBytes: 312076,
        lagSeconds: 0.066,
        replica: {
          address: "127.0.0.1:34913",
          connected: true,
          appliedLsn: 16,
          lastError: null,
          inflightShipments: 5,
          replicaDevices: [{ name: "disk0", sizeBytes: 8388608 }],
          shipmentsShipped: 21,
          bytesShipped: 400,
          compression: { mode: "auto", level: 1, rawBytes: 1310720, wireBytes: 400, compressionRatio: 3276.8, compressedShipments: 20, compressMs: 9.424 },
        },
        devices: [{ name: "disk0", sizeBytes: 8388608, clientNodeId: "vm", connected: true }],
      },
    ],
    clients: [{ nodeId: "vm", address: "127.0.0.1:47218", inflightWrites: 0, devices: [{ wrl: "wrl0", name: "disk0" }] }],
  };
}

export function clientStatus(): Record<string, any> {
  return {
    role: "client",
    nodeId: "vm",
    version: "0.1.0",
    uptimeSeconds: 0.116,
    staging: { address: "127.0.0.1:40013", connected: true, lastError: null, reconnects: 0 },
    devices: [
      {
        name: "disk0",
        path: "/tmp/druvaa-e2e-SDRCyi/primary-disk0.img",
        sizeBytes: 8388608,
        wrl: "wrl0",
        ackedLsn: 21,
        writes: 20,
        bytesWritten: 1310720,
        zeroedBytes: 0,
        inflightWrites: 0,
        failedWrites: 0,
        dirtyBytes: 0,
        export: "nbd+unix:///disk0?socket=%2Ftmp%2Fdruvaa-e2e-SDRCyi%2Fexport.sock",
        wrlUuid: "0f4c9be3-f965-40e3-b145-64698fcaec28",
      },
    ],
    inflightWrites: 0,
    unackedWrites: 0,
    mode: "connected",
    changeMap: true,
    disconnectedSeconds: 0,
    disconnectReason: null,
    dirtyBytes: 0,
    resyncSetsOpen: [],
    resync: null,
    lastResync: { outcome: "done", sentBytes: 0, seconds: 0.01 },
    activityLog: { path: "/tmp/druvaa-e2e-SDRCyi/changemap.img.activity", extentBytes: 4194304, slotsMax: 256, activeSlots: 1, activeExtents: 1, writes: 2, dataFlushes: 0, waitsForRoom: 0, recoveredExtents: 0 },
    crashRecovery: { state: "none", inProgress: false, extents: 0, totalBytes: 0, verifiedExtents: 0, verifiedBytes: 0, checkedBytes: 0, differingBlocks: 0, differingBytes: 0, markedBytes: 0, reason: null, seconds: 0 },
    verify: [],
    initialSync: {
      mode: "none",
      state: "none",
      progress: null,
      note: null,
      devices: [{ name: "disk0", mode: "none", state: "none", doneBytes: 0, totalBytes: 8388608, verifyRun: null, error: null }],
    },
  };
}

/** The client after staging went away and came back: resyncing, one verify run going. */
export function resyncingClientStatus(): Record<string, any> {
  const status = clientStatus();
  status.staging = { address: "127.0.0.1:40013", connected: true, lastError: { code: "NET_CLOSED", message: "staging closed the connection", at: "2026-12-04T16:58:47.500Z" }, reconnects: 2 };
  status.devices[0].dirtyBytes = 3 * 1048576;
  Object.assign(status, {
    mode: "resyncing",
    disconnectedSeconds: 12.5,
    disconnectReason: "staging closed the connection",
    dirtyBytes: 3 * 1048576,
    resyncSetsOpen: ["disk0"],
    resync: { sentBytes: 1048576, remainingBytes: 3 * 1048576, seconds: 1.5 },
    lastResync: { outcome: "interrupted", sentBytes: 65536, seconds: 0.2 },
    verify: [{ id: 3, device: "disk0", state: "running", checkedBytes: 4194304, totalBytes: 8388608, differingBytes: 4096 }],
  });
  return status;
}

export function replicaStatus(): Record<string, any> {
  return {
    role: "replica",
    nodeId: "vm",
    version: "0.1.0",
    uptimeSeconds: 0.398,
    addresses: { listen: "127.0.0.1:34913", restore: "127.0.0.1:45917", control: "127.0.0.1:40471" },
    devices: [{ name: "disk0", path: "/tmp/druvaa-e2e-SDRCyi/replica-disk0.img", sizeBytes: 8388608, declaredSizeBytes: 8388608, consistent: true }],
    wrls: [{ name: "wrl0", uuid: "0f4c9be3-f965-40e3-b145-64698fcaec28", appliedLsn: 21, lastAppliedAt: "2026-12-04T16:58:47.402Z", stagingConnected: true }],
    applying: false,
    restores: 0,
    queuedShipments: 0,
    rsWrl: null,
    setApply: null,
    seeds: [],
  };
}

/** A replica with an RS-WRL: one WRL's resync set open, another's without RS-WRL (unbuffered), a seed going. */
export function resyncingReplicaStatus(): Record<string, any> {
  const status = replicaStatus();
  status.devices.push({ name: "disk1", path: "/dev/sdc", sizeBytes: 16777216, declaredSizeBytes: null, consistent: false });
  status.wrls[0].resync = { state: "open", firstLsn: 22, loggedLsn: 40, openDevices: ["disk0"], endedDevices: [], records: 19, bytes: 1245184 };
  status.wrls.push({ name: "wrl1", uuid: "5d0d3f0c-2f7e-4f43-9f0e-6d1f2f6b7a11", appliedLsn: 7, lastAppliedAt: null, stagingConnected: false, resync: { state: "unbuffered", devices: ["disk1"] } });
  status.rsWrl = { path: "/srv/rs-wrl.img", uuid: "8a3c6b54-44a4-4d9c-a4bd-6c2b4f0e9e10", sizeBytes: 33554432, usedBytes: 8388608, freeBytes: 25165824, maxPayloadBytes: 1048576 };
  status.setApply = { wrl: "wrl0", firstLsn: 22, lastLsn: 40, restoresWaiting: 1 };
  status.seeds = [{ device: "disk1", state: "seeding", copiedBytes: 4194304, skippedBytes: 65536, totalBytes: 16777216 }];
  return status;
}
