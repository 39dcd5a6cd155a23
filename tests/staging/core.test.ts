/**
 * StagingCore without sockets: attach refusals, the write path (durable before acked), WRL full,
 * zero writes, shutdown. WRLs live on in-memory or simulated disks; the replica is a real
 * ReplicaCore behind an in-memory link.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { DruvaaError } from "../../src/errors.ts";
import { WriteLog } from "../../src/wrl/write-log.ts";
import { recordFlags } from "../../src/protocol/messages.ts";
import { StagingCore } from "../../src/roles/staging/core.ts";
import { MemoryDeviceStateStore, type WrlDevicesState } from "../../src/roles/staging/state.ts";
import { CoreClient, FakeReplica, KiB, MiB, WrlDisk, applyTo, bytes, waitFor, type WriteAnswer } from "./helpers.ts";
import { closeTrackedFixtures, trackedFixture } from "./fixture.ts";

const uuid = "5a1f0c3e-7b2d-4e8f-9a6b-1c0d2e3f4a5b";

afterEach(closeTrackedFixtures);

/** A store whose saves wait for release(), or fail. */
class GatedStore extends MemoryDeviceStateStore {
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  fail = false;
  hold(): void {
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }
  release(): void {
    this.#open?.();
    this.#gate = undefined;
  }
  override async save(state: WrlDevicesState): Promise<void> {
    if (this.#gate !== undefined) await this.#gate;
    if (this.fail) throw new DruvaaError("NO_SPACE", "state dir: no space left on device");
    return super.save(state);
  }
}

describe("attach", () => {
  test("refuses an unknown WRL, a device bigger than the replica's, a device another client holds; the same node may take its device back", async () => {
    const f = await trackedFixture();
    f.core.start();
    await waitFor(() => f.core.status().wrls[0]!.replica.replicaDevices !== null, "the relay to hear the replica's devices");
    const a = new CoreClient(f.core, "client-a", "10.0.0.1:4000");

    const unknown = await a.attach("nope", "d0", 1 * MiB);
    expect(unknown).toMatchObject({ accepted: false, error: { code: "WRL_UNKNOWN" } });
    expect(unknown.error!.message).toContain("w0");

    const longName = await a.attach("w0", "d".repeat(65), 1 * MiB);
    expect(longName).toMatchObject({ accepted: false, error: { code: "DEVICE_NAME_INVALID" } });

    const tooBig = await a.attach("w0", "d0", 2 * MiB);
    expect(tooBig).toMatchObject({ accepted: false, error: { code: "DEVICE_TOO_BIG" } });
    expect(tooBig.error!.message).toContain(String(2 * MiB));
    expect(tooBig.error!.message).toContain(String(1 * MiB));

    expect(await a.attach("w0", "d0", 1 * MiB)).toEqual({ type: "attachAck", device: "d0", wrl: "w0", accepted: true, wrlUuid: uuid });
    const b = new CoreClient(f.core, "client-b", "10.0.0.2:4000");
    const busy = await b.attach("w0", "d0", 1 * MiB);
    expect(busy).toMatchObject({ accepted: false, error: { code: "DEVICE_BUSY" } });
    expect(busy.error!.message).toContain("client-a");
    // TLS: a client whose certificate names other devices is refused before anything is saved.
    const certified = new CoreClient(f.core, "client-c", "10.0.0.3:4000", { role: "client", name: "db3", devices: ["d9"], serial: "1f", hosts: [], notAfter: new Date(), fingerprint: "" });
    const notAllowed = await certified.attach("w0", "d1", 1 * MiB);
    expect(notAllowed).toMatchObject({ accepted: false, error: { code: "DEVICE_NOT_ALLOWED" } });
    expect(notAllowed.error!.message).toContain("does not allow device d1");
    f.core.closeSession(certified.session);

    // client-a reconnects before its old connection was noticed gone: it takes the device over,
    // and the old connection may no longer write it.
    const again = new CoreClient(f.core, "client-a", "10.0.0.1:4001");
    expect((await again.attach("w0", "d0", 1 * MiB)).accepted).toBe(true);
    expect(await a.write("w0", "d0", 0, bytes(4 * KiB, 1))).toMatchObject({ type: "writeNack", code: "DEVICE_UNKNOWN" });
    expect(await again.write("w0", "d0", 0, bytes(4 * KiB, 1))).toMatchObject({ type: "writeAck", lsn: 1 });

    // Once that client is gone, another may attach the device.
    again.close();
    expect((await b.attach("w0", "d0", 1 * MiB)).accepted).toBe(true);
    const status = f.core.status();
    expect(status.wrls[0]!.devices).toEqual([{ name: "d0", sizeBytes: 1 * MiB, clientNodeId: "client-b", connected: true }]);
    expect(status.clients.map((client) => client.nodeId).sort()).toEqual(["client-a", "client-b"]);
  });

  test("the attached device is saved before the ack; a failed save refuses the attach and frees the name", async () => {
    const store = new GatedStore();
    const f = await trackedFixture({ store });
    const a = new CoreClient(f.core, "client-a");
    store.hold();
    let answered = false;
    const pending = a.attach("w0", "d1", 256 * KiB).then((ack) => {
      answered = true;
      return ack;
    });
    await Bun.sleep(20);
    expect(answered).toBe(false);
    expect(store.saved.size).toBe(0);
    store.release();
    expect((await pending).accepted).toBe(true);
    expect(store.saved.get("w0")!.devices).toMatchObject([{ name: "d1", sizeBytes: 256 * KiB, logicalBlockSizeBytes: 512, clientNodeId: "client-a" }]);

    store.fail = true;
    const refused = await a.attach("w0", "d0", 1 * MiB);
    expect(refused).toMatchObject({ accepted: false, error: { code: "IO_ERROR" } });
    expect(refused.error!.message).toContain("no space");
    store.fail = false;
    const b = new CoreClient(f.core, "client-b");
    expect((await b.attach("w0", "d0", 1 * MiB)).accepted).toBe(true);
  });
});

describe("write", () => {
  test("only attached devices, inside the device, aligned; acks carry LSNs in issue order", async () => {
    const f = await trackedFixture();
    const a = new CoreClient(f.core);
    expect(await a.write("w0", "d0", 0, bytes(4 * KiB, 1))).toMatchObject({ type: "writeNack", code: "DEVICE_UNKNOWN" });
    await a.attach("w0", "d0", 1 * MiB);
    expect(await a.write("w0", "d0", 1 * MiB - 2 * KiB, bytes(4 * KiB, 2))).toMatchObject({ type: "writeNack", code: "OUT_OF_RANGE" });
    expect(await a.write("w0", "d0", 100, bytes(4 * KiB, 3))).toMatchObject({ type: "writeNack", code: "OUT_OF_RANGE" });
    expect(await a.write("w0", "d1", 0, bytes(4 * KiB, 4))).toMatchObject({ type: "writeNack", code: "DEVICE_UNKNOWN" });
    const answers = await Promise.all([0, 1, 2, 3].map((index) => a.write("w0", "d0", index * 8 * KiB, bytes(8 * KiB, 10 + index))));
    expect(answers.map((answer) => (answer.type === "writeAck" ? answer.lsn : answer.code))).toEqual([1, 2, 3, 4]);
    // The WRL holds the bytes that were sent, although the receive buffer was reused after the
    // write was handed over (the core copies them out).
    const records = await f.wrl.read(1);
    expect(records.map((record) => [record.lsn, record.device, record.offset, record.type])).toEqual([[1, "d0", 0, "write"], [2, "d0", 8 * KiB, "write"], [3, "d0", 16 * KiB, "write"], [4, "d0", 24 * KiB, "write"]]);
    for (const [index, record] of records.entries()) expect(Buffer.from(record.data).equals(Buffer.from(bytes(8 * KiB, 10 + index)))).toBe(true);
  });

  test("a write is acked only once durable: nothing is acked while flushes are held, and a crash keeps every acked record", async () => {
    const disk = WrlDisk.sim(4 * MiB, 20261122);
    const f = await trackedFixture({ disk });
    const a = new CoreClient(f.core);
    await a.attach("w0", "d0", 1 * MiB);
    disk.holdFlushes();
    const first = [0, 1, 2, 3, 4].map((index) => a.write("w0", "d0", index * 4 * KiB, bytes(4 * KiB, index)));
    await Bun.sleep(30);
    expect(a.answers.filter((answer) => answer.type === "writeAck")).toHaveLength(0);
    disk.releaseFlushes();
    const acked = new Map<number, Uint8Array>();
    for (const [index, answer] of (await Promise.all(first)).entries()) {
      expect(answer.type).toBe("writeAck");
      if (answer.type === "writeAck") acked.set(answer.lsn, bytes(4 * KiB, index));
    }
    for (let index = 5; index < 25; index += 1) {
      const answer = await a.write("w0", "d0", index * 4 * KiB, bytes(4 * KiB, index));
      if (answer.type === "writeAck") acked.set(answer.lsn, bytes(4 * KiB, index));
    }
    // Some writes in flight when the power goes: they may or may not survive; acked ones must.
    for (let index = 25; index < 30; index += 1) void a.write("w0", "d0", index * 4 * KiB, bytes(4 * KiB, index));
    disk.kill();
    const reopened = await disk.open();
    try {
      const records = [];
      for (let next = 1; next <= reopened.info().headLsn; ) {
        const batch = await reopened.read(next);
        records.push(...batch);
        next = batch[batch.length - 1]!.lsn + 1;
      }
      for (const [lsn, data] of acked) {
        const record = records.find((candidate) => candidate.lsn === lsn);
        expect(record).toBeDefined();
        expect(Buffer.from(record!.data).equals(Buffer.from(data))).toBe(true);
      }
    } finally {
      await reopened.close();
    }
  });

  test("WRL full: writes are refused with WRL_FULL, writing nothing, until the relay frees space; every acked write reaches the replica", async () => {
    const f = await trackedFixture({ disk: WrlDisk.memory(1 * MiB) });
    f.replica.holding = true;
    f.core.start();
    const a = new CoreClient(f.core);
    await a.attach("w0", "d0", 1 * MiB);
    const model = new Uint8Array(1 * MiB);
    let full: WriteAnswer | undefined;
    let index = 0;
    for (; index < 200 && full === undefined; index += 1) {
      const offset = (index % 64) * 16 * KiB;
      const data = bytes(16 * KiB, index);
      const answer = await a.write("w0", "d0", offset, data);
      if (answer.type === "writeAck") applyTo(model, offset, data);
      else full = answer;
    }
    expect(full).toMatchObject({ type: "writeNack", code: "WRL_FULL" });
    const info = f.wrl.info();
    expect(info.headLsn).toBe(index - 1); // the refused write took no LSN
    expect(f.core.status().wrls[0]!.fillRatio).toBeGreaterThan(0.9);

    f.replica.release();
    await f.drained();
    for (let more = 0; more < 10; more += 1) {
      const offset = more * 16 * KiB;
      const data = bytes(16 * KiB, 1000 + more);
      expect((await a.write("w0", "d0", offset, data)).type).toBe("writeAck");
      applyTo(model, offset, data);
    }
    await f.drained();
    expect(Buffer.from(f.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
  });

  test("zero writes become ZERO records: shipped with the zero flag and no payload; the range reads zeros at the replica", async () => {
    const f = await trackedFixture();
    f.core.start();
    const a = new CoreClient(f.core);
    await a.attach("w0", "d0", 1 * MiB);
    const model = new Uint8Array(1 * MiB);
    const data = bytes(64 * KiB, 7);
    expect((await a.write("w0", "d0", 0, data)).type).toBe("writeAck");
    applyTo(model, 0, data);
    const zero = await a.write("w0", "d0", 16 * KiB, undefined, 32 * KiB);
    expect(zero.type).toBe("writeAck");
    applyTo(model, 16 * KiB, undefined, 32 * KiB);
    await f.drained();
    const zeroRecords = f.replica.shipments.flatMap((ship) => ship.records).filter((record) => (record.flags & recordFlags.zero) !== 0);
    expect(zeroRecords).toEqual([{ lsn: 2, epoch: 2, device: "d0", offset: 16 * KiB, length: 32 * KiB, flags: recordFlags.zero }]);
    expect(Buffer.from(f.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
  });

  test("stop: writes in flight are answered, later ones refused with SHUTTING_DOWN, attaches too", async () => {
    const disk = WrlDisk.memory(4 * MiB);
    const f = await trackedFixture({ disk });
    const a = new CoreClient(f.core);
    await a.attach("w0", "d0", 1 * MiB);
    disk.holdFlushes();
    const inflight = [0, 1, 2].map((index) => a.write("w0", "d0", index * 4 * KiB, bytes(4 * KiB, index)));
    const stopping = f.core.stop(5_000);
    expect(await a.write("w0", "d0", 64 * KiB, bytes(4 * KiB, 9))).toMatchObject({ type: "writeNack", code: "SHUTTING_DOWN" });
    expect(await new CoreClient(f.core, "late").attach("w0", "d1", 256 * KiB)).toMatchObject({ accepted: false, error: { code: "SHUTTING_DOWN" } });
    disk.releaseFlushes();
    await stopping;
    expect((await Promise.all(inflight)).map((answer) => answer.type)).toEqual(["writeAck", "writeAck", "writeAck"]);
  });
});


test("several WRLs: each is its own consistency group with its own replica; a device name may be used in each", async () => {
  const disks = [WrlDisk.memory(2 * MiB), WrlDisk.memory(2 * MiB)];
  const wrls = [await disks[0]!.create(), await writeLogWithUuid(disks[1]!)];
  const replicas = [await FakeReplica.create({ d0: 1 * MiB }), await FakeReplica.create({ d0: 1 * MiB })];
  const store = new MemoryDeviceStateStore();
  const core = await StagingCore.open({
    wrls: ["fast", "bulk"].map((name, index) => ({ name, wrl: wrls[index]!, devicePaths: [`/wrl/${name}`], replicaAddress: `replica-${name}:6003`, dialReplica: replicas[index]!.dial })),
    store,
  });
  try {
    core.start();
    const a = new CoreClient(core, "host-a");
    const b = new CoreClient(core, "host-b");
    expect((await a.attach("fast", "d0", 1 * MiB)).accepted).toBe(true);
    expect((await b.attach("bulk", "d0", 1 * MiB)).accepted).toBe(true);
    const models = [new Uint8Array(1 * MiB), new Uint8Array(1 * MiB)];
    for (let index = 0; index < 20; index += 1) {
      const client = index % 2 === 0 ? a : b;
      const data = bytes(8 * KiB, index);
      const offset = (index % 7) * 8 * KiB;
      expect((await client.write(index % 2 === 0 ? "fast" : "bulk", "d0", offset, data)).type).toBe("writeAck");
      applyTo(models[index % 2]!, offset, data);
    }
    // A client may not write a device it attached in the other WRL.
    expect(await a.write("bulk", "d0", 0, bytes(4 * KiB, 99))).toMatchObject({ type: "writeNack", code: "DEVICE_UNKNOWN" });
    await waitFor(() => core.status().wrls.every((wrl) => wrl.replica.appliedLsn === 10 && wrl.tailLsn === 10), "both WRLs drained");
    for (const [index, replica] of replicas.entries()) expect(Buffer.from(replica.image("d0")).equals(Buffer.from(models[index]!))).toBe(true);
    expect([...store.saved.keys()].sort()).toEqual(["bulk", "fast"]);
  } finally {
    await core.stop(1_000);
    await Promise.all(wrls.map((wrl) => wrl.close()));
  }
});

/** A second WRL needs a uuid of its own (WrlDisk.create uses a fixed one). */
function writeLogWithUuid(disk: WrlDisk): Promise<WriteLog> {
  return WriteLog.create([disk.device()], { uuid: "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9" });
}
