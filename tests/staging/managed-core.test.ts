/**
 * The running StagingCore's WRL map changes (what `druvaa staging serve --managed` does at commit,
 * managed.ts): a WRL added while another one is busy is reachable by clients at once and relays to
 * its replica; a WRL's relay settings change without its clients noticing; a WRL removed refuses
 * new attaches and its holder's writes, while the other WRL keeps serving and relaying.
 */
import { expect, test } from "bun:test";
import { WriteLog } from "../../src/wrl/write-log.ts";
import { StagingCore } from "../../src/roles/staging/core.ts";
import { MemoryDeviceStateStore } from "../../src/roles/staging/state.ts";
import { CoreClient, FakeReplica, KiB, MiB, WrlDisk, applyTo, bytes, waitFor } from "./helpers.ts";

test("addWrl, changeRelay, removeWrl on a running core leave the other WRL's client and relay undisturbed", async () => {
  const fastWrl = await WrlDisk.memory(2 * MiB).create();
  const bulkWrl = await WriteLog.create([WrlDisk.memory(2 * MiB).device()], { uuid: "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9" });
  const fastReplica = await FakeReplica.create({ d0: 1 * MiB });
  const bulkReplica = await FakeReplica.create({ d0: 1 * MiB });
  const core = await StagingCore.open({ wrls: [{ name: "fast", wrl: fastWrl, devicePaths: ["/wrl/fast"], replicaAddress: "replica-fast:6003", dialReplica: fastReplica.dial }], store: new MemoryDeviceStateStore() });
  try {
    core.start();
    const a = new CoreClient(core, "host-a");
    const b = new CoreClient(core, "host-b");
    expect((await a.attach("fast", "d0", 1 * MiB)).accepted).toBe(true);
    expect(await b.attach("bulk", "d0", 1 * MiB)).toMatchObject({ accepted: false, error: { code: "WRL_UNKNOWN" } });
    const fastModel = new Uint8Array(1 * MiB);
    const bulkModel = new Uint8Array(1 * MiB);
    let seed = 0;
    const writeFast = async () => {
      const data = bytes(8 * KiB, ++seed);
      const offset = (seed % 11) * 8 * KiB;
      expect((await a.write("fast", "d0", offset, data)).type).toBe("writeAck");
      applyTo(fastModel, offset, data);
    };
    // Writes to fast are in flight while bulk is added.
    const busy = Promise.all([writeFast(), writeFast(), writeFast()]);
    await core.addWrl({ name: "bulk", wrl: bulkWrl, devicePaths: ["/wrl/bulk"], replicaAddress: "replica-bulk:6003", dialReplica: bulkReplica.dial });
    await busy;
    expect(core.wrlNames()).toEqual(["fast", "bulk"]);
    expect((await b.attach("bulk", "d0", 1 * MiB)).accepted).toBe(true);
    for (let index = 0; index < 6; index += 1) {
      const data = bytes(4 * KiB, 100 + index);
      expect((await b.write("bulk", "d0", index * 16 * KiB, data)).type).toBe("writeAck");
      applyTo(bulkModel, index * 16 * KiB, data);
      await writeFast();
    }
    await waitFor(() => core.status().wrls.every((wrl) => wrl.replica.appliedLsn === wrl.headLsn && wrl.headLsn > 0), "both WRLs drained");
    expect(Buffer.from(bulkReplica.image("d0")).equals(Buffer.from(bulkModel))).toBe(true);

    // New relay settings for bulk: its client stays attached, its records still arrive.
    await core.changeRelay({ name: "bulk", wrl: bulkWrl, devicePaths: ["/wrl/bulk"], replicaAddress: "replica-bulk:6003", dialReplica: bulkReplica.dial, targets: { rpoTargetSeconds: 60 } });
    expect(core.status().wrls.find((wrl) => wrl.name === "bulk")!.rpo.targetSeconds).toBe(60);
    const late = bytes(4 * KiB, 200);
    expect((await b.write("bulk", "d0", 512 * KiB, late)).type).toBe("writeAck");
    applyTo(bulkModel, 512 * KiB, late);
    await waitFor(() => core.status().wrls.every((wrl) => wrl.replica.appliedLsn === wrl.headLsn), "bulk drained after its relay changed");
    expect(Buffer.from(bulkReplica.image("d0")).equals(Buffer.from(bulkModel))).toBe(true);

    // bulk removed: its holder's writes and new attaches are refused; fast goes on.
    await core.removeWrl("bulk");
    expect(core.wrlNames()).toEqual(["fast"]);
    expect(await b.write("bulk", "d0", 0, bytes(4 * KiB, 300))).toMatchObject({ type: "writeNack", code: "DEVICE_UNKNOWN" });
    expect(await new CoreClient(core, "host-c").attach("bulk", "d0", 1 * MiB)).toMatchObject({ accepted: false, error: { code: "WRL_UNKNOWN" } });
    await writeFast();
    await waitFor(() => core.status().wrls[0]!.replica.appliedLsn === core.status().wrls[0]!.headLsn, "fast drained");
    expect(Buffer.from(fastReplica.image("d0")).equals(Buffer.from(fastModel))).toBe(true);
    expect(Buffer.from(bulkReplica.image("d0")).equals(Buffer.from(bulkModel))).toBe(true);
  } finally {
    await core.stop(1_000);
    await Promise.all([fastWrl.close(), bulkWrl.close()]);
  }
});
