/**
 * Online verify and initial sync in the client (verify.ts, verify-runs.ts, initial-sync.ts),
 * against the in-process system of verify-fakes.ts: real ClientCore and ProbeChannel, a staging
 * that logs in arrival order and acks late, a replica that applies in LSN order behind it and
 * answers probes from its own image at the probe's point of the log.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DruvaaError } from "../../src/errors.ts";
import { InitialSync } from "../../src/roles/client/initial-sync.ts";
import { ClientStateFile, type InitialSyncRecord } from "../../src/roles/client/state.ts";
import { planProbes, RangeList, subtractRanges } from "../../src/roles/client/verify-ranges.ts";
import { FakeSystem, KiB, MiB, prng, type FakeSystemOptions } from "./verify-fakes.ts";

const systems: FakeSystem[] = [];
afterEach(async () => {
  for (const system of systems.splice(0)) await system.stop();
});

async function system(options: FakeSystemOptions): Promise<FakeSystem> {
  const started = await FakeSystem.start(options);
  systems.push(started);
  return started;
}

/** A random image (seeded), so equal-by-accident blocks cannot hide a bug. */
function randomImage(sizeBytes: number, seed: number): Uint8Array {
  const random = prng(seed);
  const image = new Uint8Array(sizeBytes);
  for (let i = 0; i < sizeBytes; i += 4) new DataView(image.buffer).setUint32(i, Math.floor(random() * 2 ** 32));
  return image;
}

function refusalOf(fn: () => unknown): DruvaaError {
  try {
    fn();
  } catch (error) {
    if (error instanceof DruvaaError) return error;
    throw error;
  }
  throw new Error("expected a refusal");
}

describe("verify ranges", () => {
  test("probes cover the range in whole blocks; a tail shorter than a block gets the largest block that divides it", () => {
    expect(planProbes(0, 3 * MiB, 64 * KiB, MiB)).toEqual([0, 1, 2].map((i) => ({ offset: i * MiB, length: MiB, blockBytes: 64 * KiB })));
    expect(planProbes(0, MiB + 3 * 512, 64 * KiB, MiB)).toEqual([{ offset: 0, length: MiB, blockBytes: 64 * KiB }, { offset: MiB, length: 1536, blockBytes: 512 }]);
    // 512-byte blocks: at most 2 × 1024 blocks per probe (the replica lists up to 1024 ranges), so an outcome never gives up listing.
    expect(planProbes(0, 8 * MiB, 512, 8 * MiB)[0]!.length).toBe(MiB);
    expect(planProbes(0, 8 * MiB, 4 * KiB, 8 * MiB)[0]!.length).toBe(8 * MiB);
  });

  test("subtracting ranges and merging a pass's ranges", () => {
    expect(subtractRanges([{ offset: 0, length: 100 }, { offset: 200, length: 50 }], [{ offset: 10, length: 10 }, { offset: 90, length: 120 }])).toEqual([
      { offset: 0, length: 10 }, { offset: 20, length: 70 }, { offset: 210, length: 40 },
    ]);
    const list = new RangeList(2);
    list.add([{ offset: 8, length: 4 }, { offset: 0, length: 4 }, { offset: 4, length: 4 }, { offset: 100, length: 1 }, { offset: 200, length: 1 }]);
    expect(list.list()).toEqual([{ offset: 0, length: 12 }, { offset: 100, length: 1 }]);
    expect(list.truncated).toBe(true);
    expect(list.bytes).toBe(14);
  });
});

describe("verify pass", () => {
  test("equal images: nothing differs, every byte checked, one probe per chunk, only digests logged", async () => {
    const image = randomImage(4 * MiB, 7);
    const sys = await system({ sizeBytes: 4 * MiB, primaryImage: image, replicaImage: image, tuning: { chunkBytes: MiB } });
    const run = sys.verifier.start({ device: "disk0" });
    await run.finished;
    const view = run.view();
    expect(view).toMatchObject({ state: "done", differing: [], differingBytes: 0, checkedBytes: 4 * MiB, totalBytes: 4 * MiB, blockBytes: 64 * KiB });
    expect(sys.probeRecords().map((r) => [r.message.offset, r.message.length, r.payload!.length])).toEqual([0, 1, 2, 3].map((i) => [i * MiB, MiB, 16 * 32]));
    expect(sys.dataRecords()).toEqual([]);
  });

  test("a block changed behind the replica's back is reported exactly (change-map block 4 KiB), and a device tail in smaller blocks", async () => {
    const sizeBytes = 2 * MiB + 3 * 512; // a tail shorter than a block
    const image = randomImage(sizeBytes, 11);
    const replica = image.slice();
    replica[MiB + 12 * KiB + 100]! ^= 0xff;
    replica[sizeBytes - 1]! ^= 0x01;
    const sys = await system({ sizeBytes, primaryImage: image, replicaImage: replica, changeMapBlockBytes: 4 * KiB, tuning: { chunkBytes: 512 * KiB } });
    const run = sys.verifier.start({ device: "disk0" });
    await run.finished;
    expect(run.view()).toMatchObject({ state: "done", blockBytes: 4 * KiB, checkedBytes: sizeBytes, differingBytes: 4 * KiB + 512 });
    expect(run.view().differing).toEqual([{ offset: MiB + 12 * KiB, length: 4 * KiB }, { offset: sizeBytes - 512, length: 512 }]);
  });

  test("a sub-range: only it is probed (rounded out to whole blocks)", async () => {
    const replica = new Uint8Array(4 * MiB);
    replica[100]! = 1; // outside the range: not reported
    replica[2 * MiB + 5]! = 1;
    const sys = await system({ sizeBytes: 4 * MiB, replicaImage: replica });
    const run = sys.verifier.start({ device: "disk0", offset: 2 * MiB + 4096, length: 4096 });
    await run.finished;
    expect(run.view()).toMatchObject({ offset: 2 * MiB, length: 64 * KiB, differing: [{ offset: 2 * MiB, length: 64 * KiB }] });
  });

  for (const seed of [1, 2, 3]) {
    test(`concurrent overlapping writes never cause a false report, while a real difference elsewhere is still found (seed ${seed})`, async () => {
      const sizeBytes = 8 * MiB;
      const image = randomImage(sizeBytes, seed);
      const replica = image.slice();
      const corruptAt = 7 * MiB + 20 * KiB; // the writers stay below 6 MiB
      replica[corruptAt + 7]! ^= 0x55;
      const sys = await system({ sizeBytes, primaryImage: image, replicaImage: replica, changeMapBlockBytes: 4 * KiB, ackDelayMsMax: 3, applyBatch: 4, seed, tuning: { chunkBytes: 256 * KiB, probesInflight: 3, hashSliceBytes: 16 * KiB } });
      const random = prng(seed * 7919);
      let writing = true;
      let writes = 0;
      const writer = async () => {
        while (writing) {
          const length = (1 + Math.floor(random() * 16)) * 4 * KiB;
          const offset = Math.floor(random() * ((6 * MiB - length) / 512)) * 512; // not block aligned: probes and writes overlap partly
          await sys.export.write(offset, randomImage(length, Math.floor(random() * 1e9)), false);
          writes += 1;
        }
      };
      const writers = [writer(), writer(), writer(), writer()];
      const run = sys.verifier.start({ device: "disk0" });
      await run.finished;
      writing = false;
      await Promise.all(writers);
      console.log(`seed ${seed}: ${writes} writes during the pass, ${run.view().probes} probes`);
      expect(writes).toBeGreaterThan(50);
      expect(run.view()).toMatchObject({ state: "done", differing: [{ offset: corruptAt, length: 4 * KiB }], skippedDirtyBytes: 0 });
      // The fake is not lenient: every outcome it computed is exactly that block.
      expect(sys.outcomes.flatMap((outcome) => outcome.differing)).toEqual([{ offset: corruptAt, length: 4 * KiB }]);
      await sys.drained();
      const primary = sys.primary.snapshot();
      primary[corruptAt + 7]! ^= 0x55;
      expect(Buffer.from(sys.replica).equals(Buffer.from(primary))).toBe(true);
    }, 30_000);
  }

  test("outcomes lost on the way back: the chunk is probed again and the pass completes", async () => {
    const sys = await system({ sizeBytes: MiB, tuning: { chunkBytes: 256 * KiB, reportTimeoutMs: 100 } });
    sys.dropReports = true;
    const run = sys.verifier.start({ device: "disk0" });
    await Bun.sleep(150);
    sys.dropReports = false;
    await run.finished;
    expect(run.view()).toMatchObject({ state: "done", differing: [], checkedBytes: MiB });
    expect(run.view().reprobes).toBeGreaterThan(0);
  });

  test("probes refused (WRL full) are retried; the range is released meanwhile, so writes go on", async () => {
    const sys = await system({ sizeBytes: MiB, tuning: { chunkBytes: MiB } });
    sys.refuseProbes = "WRL_FULL";
    const run = sys.verifier.start({ device: "disk0" });
    await Bun.sleep(60);
    expect(run.view().state).toBe("running");
    await sys.export.write(0, new Uint8Array(4096).fill(3), false); // not stuck behind the probe
    sys.refuseProbes = undefined;
    await run.finished;
    expect(run.view()).toMatchObject({ state: "done", differing: [] });
    expect(run.view().retries).toBeGreaterThan(0);
  });

  test("the link drops in the middle: the pass waits and finishes after the reconnect, with no false report", async () => {
    const image = randomImage(4 * MiB, 5);
    const sys = await system({ sizeBytes: 4 * MiB, primaryImage: image, replicaImage: image, tuning: { chunkBytes: 256 * KiB, reportTimeoutMs: 300 } });
    const run = sys.verifier.start({ device: "disk0" });
    await Bun.sleep(5);
    sys.disconnect();
    await Bun.sleep(100);
    expect(run.view().state).toBe("running");
    sys.connect();
    await run.finished;
    expect(run.view()).toMatchObject({ state: "done", differing: [], checkedBytes: 4 * MiB });
  }, 15_000);

  test("refusals: unknown device, repair without a change map, disconnected mode, no staging link, a second run of a device", async () => {
    const plain = await system({ sizeBytes: MiB });
    expect(refusalOf(() => plain.verifier.start({ device: "nope" }))).toMatchObject({ code: "DEVICE_UNKNOWN", exitCode: 4 });
    expect(refusalOf(() => plain.verifier.start({ device: "disk0", repair: true }))).toMatchObject({ code: "NO_CHANGEMAP", exitCode: 4 });
    expect(refusalOf(() => plain.verifier.start({ device: "disk0", offset: 100 }))).toMatchObject({ code: "USAGE", exitCode: 2 });
    const first = plain.verifier.start({ device: "disk0" });
    expect(refusalOf(() => plain.verifier.start({ device: "disk0" }))).toMatchObject({ code: "VERIFY_BUSY", exitCode: 4 });
    await first.finished;
    plain.disconnect();
    expect(refusalOf(() => plain.verifier.start({ device: "disk0" }))).toMatchObject({ code: "STAGING_UNREACHABLE", exitCode: 4 });
    const mapped = await system({ sizeBytes: MiB, changeMapBlockBytes: 4 * KiB });
    mapped.disconnect();
    expect(mapped.core.mode).toBe("disconnected");
    expect(refusalOf(() => mapped.verifier.start({ device: "disk0" }))).toMatchObject({ code: "DISCONNECTED", exitCode: 4 });
  });
});

describe("repair", () => {
  test("marks exactly the differing blocks, resyncs only them, and the replica equals the primary again", async () => {
    const sizeBytes = 4 * MiB;
    const image = randomImage(sizeBytes, 21);
    const replica = image.slice();
    for (const at of [100 * KiB, 104 * KiB, 3 * MiB + 4 * KiB]) replica[at + 1]! ^= 0xff;
    const sys = await system({ sizeBytes, primaryImage: image, replicaImage: replica, changeMapBlockBytes: 4 * KiB, tuning: { chunkBytes: MiB } });
    const run = sys.verifier.start({ device: "disk0", repair: true });
    await run.passEnded;
    const expected = [{ offsetBytes: 100 * KiB, lengthBytes: 8 * KiB }, { offsetBytes: 3 * MiB + 4 * KiB, lengthBytes: 4 * KiB }];
    expect([...sys.region!.dirtyRanges()]).toEqual(expected);
    await run.finished;
    expect(run.view()).toMatchObject({ state: "done", repairedBytes: 12 * KiB, differingBytes: 12 * KiB });
    expect(sys.dataRecords().map((r) => ({ kind: r.message.kind, offsetBytes: r.message.offset, lengthBytes: r.message.length }))).toEqual(expected.map((range) => ({ kind: "resync", ...range })));
    expect(sys.region!.dirtyBytes).toBe(0);
    await sys.drained();
    expect(Buffer.from(sys.replica).equals(Buffer.from(image))).toBe(true);
  });
});

describe("initial sync", () => {
  const uuid = "0f0e0d0c-0b0a-4908-8706-050403020100";

  function initialSync(sys: FakeSystem, mode: "network" | "checksum" | "media" | "none", records: { initialSyncs: InitialSyncRecord[] }) {
    let saves = 0;
    const sync = new InitialSync({ mode, devices: [{ name: "disk0", path: "/mem/disk0", wrl: "wrl0", device: sys.primary, discardReadsZeros: true, changeMap: sys.region! }], wrlUuidOf: () => uuid, records, persist: async () => void (saves += 1), verifier: sys.verifier, core: sys.core, pollMs: 10 });
    return { sync, saves: () => saves };
  }

  test("network: the whole device is marked once and sent by the resync; after a restart marked complete nothing is marked or sent again", async () => {
    const image = randomImage(2 * MiB, 31);
    const sys = await system({ sizeBytes: 2 * MiB, primaryImage: image, changeMapBlockBytes: 4 * KiB });
    const records = { initialSyncs: [] as InitialSyncRecord[] };
    const first = initialSync(sys, "network", records);
    first.sync.start();
    await first.sync.settled;
    expect(records.initialSyncs).toMatchObject([{ device: "disk0", wrlUuid: uuid, mode: "network", state: "done" }]);
    expect(first.saves()).toBe(2); // marked, then done
    expect(sys.dataRecords().reduce((sum, r) => sum + r.message.length, 0)).toBe(2 * MiB);
    await sys.drained();
    expect(Buffer.from(sys.replica).equals(Buffer.from(image))).toBe(true);

    const restarted = await system({ sizeBytes: 2 * MiB, primaryImage: image, replicaImage: image, changeMapBlockBytes: 4 * KiB });
    const second = initialSync(restarted, "network", records);
    second.sync.start();
    await second.sync.settled;
    expect(restarted.region!.dirtyBytes).toBe(0);
    expect(restarted.log).toEqual([]);
    expect(second.sync.status()).toMatchObject({ mode: "network", state: "done", progress: { doneBytes: 2 * MiB, totalBytes: 2 * MiB } });
  });

  test("network, restarted while marked: what is still dirty is sent, nothing is marked again", async () => {
    const image = randomImage(2 * MiB, 41);
    const sys = await system({ sizeBytes: 2 * MiB, primaryImage: image, changeMapBlockBytes: 4 * KiB });
    await sys.region!.markDirty(MiB, 64 * KiB); // what the previous run had not sent yet
    const records: { initialSyncs: InitialSyncRecord[] } = { initialSyncs: [{ device: "disk0", wrlUuid: uuid, mode: "network", state: "marked", at: new Date().toISOString() }] };
    const { sync } = initialSync(sys, "network", records);
    sys.core.requestResync();
    sync.start();
    await sync.settled;
    expect(sys.dataRecords().map((r) => [r.message.offset, r.message.length])).toEqual([[MiB, 64 * KiB]]);
    expect(records.initialSyncs[0]!.state).toBe("done");
  });

  test("checksum: only the differing blocks travel; the pair is then recorded done", async () => {
    const image = randomImage(4 * MiB, 51);
    const stale = image.slice();
    for (const at of [0, 2 * MiB + 8 * KiB]) stale[at]! ^= 1;
    const sys = await system({ sizeBytes: 4 * MiB, primaryImage: image, replicaImage: stale, changeMapBlockBytes: 4 * KiB });
    const records = { initialSyncs: [] as InitialSyncRecord[] };
    const { sync } = initialSync(sys, "checksum", records);
    sync.start();
    await sync.settled;
    expect(sys.dataRecords().map((r) => [r.message.offset, r.message.length])).toEqual([[0, 4 * KiB], [2 * MiB + 8 * KiB, 4 * KiB]]);
    expect(records.initialSyncs).toMatchObject([{ mode: "checksum", state: "done" }]);
    await sys.drained();
    expect(Buffer.from(sys.replica).equals(Buffer.from(image))).toBe(true);
  });

  test("media and none: the client sends nothing; media is recorded done at once, none not at all", async () => {
    const sys = await system({ sizeBytes: MiB, changeMapBlockBytes: 4 * KiB });
    const records = { initialSyncs: [] as InitialSyncRecord[] };
    const none = initialSync(sys, "none", records);
    none.sync.start();
    await none.sync.settled;
    expect(records.initialSyncs).toEqual([]);
    expect(none.sync.status()).toMatchObject({ mode: "none", state: "none", progress: null });
    const media = initialSync(sys, "media", records);
    media.sync.start();
    await media.sync.settled;
    expect(records.initialSyncs).toMatchObject([{ mode: "media", state: "done" }]);
    expect(media.sync.status().note).toContain("druvaa replica seed");
    expect(sys.log).toEqual([]);
  });

  test("the client state file keeps the records across a restart, and refuses malformed ones", async () => {
    const dir = mkdtempSync(join(tmpdir(), "druvaa-initial-sync-"));
    try {
      const describe = () => ({ nodeId: "n", staging: "s", devices: [] });
      const file = await ClientStateFile.open(dir, describe);
      expect(file.initialSyncs).toEqual([]);
      file.initialSyncs = [{ device: "disk0", wrlUuid: uuid, mode: "network", state: "done", at: "2024-01-01T00:00:00.000Z" }];
      await file.save(5, describe());
      const reopened = await ClientStateFile.open(dir, describe);
      expect(reopened.initialSyncs).toEqual(file.initialSyncs);
      expect(reopened.startEpoch).toBeGreaterThan(5);
      const path = join(dir, "client-state.json");
      writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, "utf8")), initialSyncs: [{ device: "disk0", mode: "sideways" }] }));
      const refused = await ClientStateFile.open(dir, describe).then(() => undefined, (error: unknown) => error);
      expect(refused).toMatchObject({ code: "STATE_CORRUPT" });
      expect(String((refused as Error).message)).toContain("initialSyncs");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
