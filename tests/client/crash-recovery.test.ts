/**
 * Checksum-first crash recovery (crash-recovery.ts) with the real ClientCore, ProbeChannel,
 * change map and activity log, and a fake staging + replica in the same process: staging logs
 * every frame in arrival order and acks it; the replica applies the log in LSN order (holding a
 * resync set until its resyncEnd) and, at a probe, compares its image at exactly that point and
 * reports the differing blocks back.
 *
 * The crashed run is set up by hand: its active extents durably in the activity log, a few
 * blocks differing between primary and replica inside some of them (written locally and never
 * logged; logged at staging and not written locally, still unapplied at the replica), the other
 * active extents equal. Shown: only the differing blocks travel, the replica ends equal to the
 * primary; a crash (or a clean stop) while verifying recovers the extents again; a disconnect
 * while verifying marks what is not verified dirty whole.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { ActivityLog, type ActiveRange } from "../../src/changemap/activity-log.ts";
import { ChangeMap, changeMapLayoutBytes } from "../../src/changemap/index.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { logger } from "../../src/log.ts";
import type { WriteMessage } from "../../src/protocol/messages.ts";
import { withActivityLog } from "../../src/roles/client/activity-export.ts";
import { recoverAndStart, resyncSetsOpenAtStart } from "../../src/roles/client/activity-setup.ts";
import { ClientCore, type ClientDevice } from "../../src/roles/client/core.ts";
import { CrashRecovery } from "../../src/roles/client/crash-recovery.ts";
import { ProbeChannel } from "../../src/roles/client/verify-link.ts";
import { compareDigests, holdForSets } from "./verify-fakes.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const volumeBytes = 32 * MiB;
const extentBytes = 4 * MiB;
const blockBytes = 4 * KiB;
const names = ["disk0", "disk1"];
const specs = names.map((name) => ({ name, volumeSizeBytes: volumeBytes }));
/** The crashed run's active extents (region, extent index). */
const active: [string, number][] = [["disk0", 0], ["disk0", 2], ["disk0", 3], ["disk0", 5], ["disk1", 1], ["disk1", 7]];
const activeBytes = active.length * extentBytes;

/** A memory device that outlives its owner's close() (the next "process" opens it again). */
class KeptDevice extends MemoryDevice {
  override async close(): Promise<void> {}
}

async function copyOf(device: MemoryDevice): Promise<KeptDevice> {
  return new KeptDevice(device.sizeBytes, device.name, 512, await device.read(0, device.sizeBytes));
}

interface LoggedRecord {
  lsn: number;
  message: WriteMessage;
  payload: Uint8Array | undefined;
  connection: number;
}

/** Staging (logs and acks) and the replica (applies in LSN order, answers probes). */
class FakeStagingReplica {
  readonly log: LoggedRecord[] = [];
  readonly replicas: Map<string, Uint8Array>;
  /** While set, the replica applies nothing (it lags). */
  paused = false;
  #appliedUpTo = 0;
  #held = new Map<string, LoggedRecord[]>();
  #connection = 0;
  #peer: ProbeChannel | undefined;
  readonly #timer: ReturnType<typeof setInterval>;

  constructor(replicas: Map<string, Uint8Array>) {
    this.replicas = replicas;
    this.#timer = setInterval(() => this.#applyAll(), 1);
  }

  connect(peer: ProbeChannel): void {
    this.#connection += 1;
    const connection = this.#connection;
    this.#peer = peer;
    peer.linkUp({ send: (message, payload) => this.#receive(connection, message, payload) });
  }

  /** The connection drops: acks and outcomes not delivered yet are lost. */
  disconnect(): void {
    this.#connection += 1;
    this.#peer?.linkDown();
  }

  /** A record the crashed run got logged (no connection of a live process). */
  loggedBefore(message: Omit<WriteMessage, "type" | "reqId">, payload: Uint8Array): void {
    this.log.push({ lsn: this.log.length + 1, message: { type: "write", reqId: 0, ...message }, payload, connection: 0 });
  }

  #receive(connection: number, message: WriteMessage, payload: Uint8Array | undefined): void {
    if (connection !== this.#connection) return;
    const lsn = this.log.length + 1;
    this.log.push({ lsn, message, payload: payload?.slice(), connection });
    queueMicrotask(() => connection === this.#connection && this.#peer!.handleReply({ type: "writeAck", reqId: message.reqId, lsn }));
  }

  #applyAll(): void {
    while (!this.paused && this.#appliedUpTo < this.log.length) {
      const record = this.log[this.#appliedUpTo]!;
      this.#appliedUpTo += 1;
      holdForSets(record, this.#held, (each) => this.#process(each));
    }
  }

  #process(record: LoggedRecord): void {
    const { message, payload } = record;
    const image = this.replicas.get(message.device)!;
    if (message.kind === "resyncEnd") return;
    if (message.kind === "verify") {
      const differing = compareDigests(image, message.offset, message.length, message.verifyBlockBytes!, payload!);
      if (record.connection !== this.#connection) return; // its connection is gone: nobody hears it
      queueMicrotask(() => record.connection === this.#connection && this.#peer!.handleVerifyReport({ type: "verifyReport", wrl: message.wrl, device: message.device, lsn: record.lsn, offset: message.offset, length: message.length, differing }));
      return;
    }
    if (message.zero === true) image.fill(0, message.offset, message.offset + message.length);
    else if (message.length > 0) image.set(payload!, message.offset);
  }

  /** Bytes of data (ordered writes and resync chunks) logged by live connections. */
  dataBytesSent(): number {
    return this.log.filter((r) => r.connection > 0 && (r.message.kind === undefined || r.message.kind === "resync")).reduce((sum, r) => sum + r.message.length, 0);
  }

  probes(): LoggedRecord[] {
    return this.log.filter((r) => r.message.kind === "verify");
  }

  async drained(): Promise<void> {
    while (this.#appliedUpTo < this.log.length || this.#held.size > 0) await Bun.sleep(2);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/** The disks a crashed run leaves: primaries, change map, activity log (and staging's WRL, replicas). */
interface Crashed {
  primaries: MemoryDevice[];
  mapDevice: KeptDevice;
  logDevice: KeptDevice;
  peers: FakeStagingReplica;
  ranges: ActiveRange[];
}

function pattern(seed: number): Uint8Array {
  const image = new Uint8Array(volumeBytes);
  const view = new DataView(image.buffer);
  for (let at = 0; at < image.length; at += 4) view.setUint32(at, (Math.imul(at + 1, 2654435761) ^ seed) >>> 0);
  return image;
}

async function crashedRun(): Promise<Crashed> {
  const images = names.map((_, index) => pattern(index + 1));
  const primaries = names.map((name, index) => new MemoryDevice(volumeBytes, name, 512, images[index]!.slice()));
  const peers = new FakeStagingReplica(new Map(names.map((name, index) => [name, images[index]!.slice()])));
  peers.paused = true; // the crashed run's last records are not applied yet
  const mapDevice = new KeptDevice(changeMapLayoutBytes(specs, blockBytes), "map", 512);
  await (await ChangeMap.create(mapDevice, { regions: specs, blockSizeBytes: blockBytes })).sync();
  const map = await ChangeMap.open(mapDevice);
  const logDevice = new KeptDevice(ActivityLog.sizeBytes(), "activity", 512);
  const log = await ActivityLog.open(logDevice, { changeMapUuid: map.uuid, regions: specs });
  await log.start();
  // Not at an extent's first byte: a write there after an active extent counts as a stream (more extents).
  for (const [region, extent] of active) (await log.enter(region, extent * extentBytes + 64 * KiB, blockBytes))();
  // Written locally, never logged: one block of disk0's extent 2 and the last block of disk1.
  await primaries[0]!.write(2 * extentBytes + 12 * KiB, new Uint8Array(blockBytes).fill(0x5a));
  await primaries[1]!.write(volumeBytes - blockBytes, new Uint8Array(blockBytes).fill(0xa5));
  // Logged at staging, never written locally (SIGKILL before the local write): two blocks of extent 3.
  peers.loggedBefore({ device: "disk0", wrl: "wrl0", epoch: 7, offset: 3 * extentBytes + 4 * KiB, length: 8 * KiB }, new Uint8Array(8 * KiB).fill(0x33));
  const ranges = active.map(([region, extent]) => ({ region, offsetBytes: extent * extentBytes, lengthBytes: extentBytes }));
  return { primaries, mapDevice: await copyOf(mapDevice), logDevice: await copyOf(logDevice), peers, ranges };
}

const running: { stop(): void }[] = [];
afterEach(() => {
  for (const each of running.splice(0)) each.stop();
});

/** One client process on the crashed run's disks, as attach starts it (the link tried first). */
async function startProcess(disks: { primaries: MemoryDevice[]; mapDevice: KeptDevice; logDevice: KeptDevice }, peers: FakeStagingReplica | undefined, options: { coldMs?: number; passesMax?: number } = {}) {
  const map = await ChangeMap.open(disks.mapDevice);
  const log = await ActivityLog.open(disks.logDevice, { changeMapUuid: map.uuid, regions: specs, ...(options.coldMs === undefined ? {} : { coldMs: options.coldMs }) });
  const devices: ClientDevice[] = names.map((name, index) => ({ name, path: `/mem/${name}`, wrl: "wrl0", device: disks.primaries[index]!, discardReadsZeros: true, changeMap: map.region(name) }));
  const core = new ClientCore({ devices, ackTimeoutMs: 60_000, resyncSetsOpen: resyncSetsOpenAtStart(log, devices) });
  const probes = new ProbeChannel(core, { ackTimeoutMs: 5_000 });
  const ranges = await recoverAndStart(log, map, devices, logger("test:client"), "activity");
  const recovery = new CrashRecovery({ ranges, devices, core, probes, release: (range) => void log.releaseRecovered(range), blockBytesOf: () => blockBytes, extentBytes, pollMs: 5, tuning: { retryMs: 5 }, ...(options.passesMax === undefined ? {} : { passesMax: options.passesMax }) });
  if (peers === undefined) core.linkDown();
  else peers.connect(probes);
  await recovery.start();
  const exports = core.exports().map((exp, index) => withActivityLog(exp, log, names[index]!));
  const process = { map, log, core, probes, recovery, ranges, exports, stop: () => (recovery.stop(), probes.stop(), core.abort()) };
  running.push(process);
  return process;
}

function byPlace(a: ActiveRange, b: ActiveRange): number {
  return a.region.localeCompare(b.region) || a.offsetBytes - b.offsetBytes;
}

async function until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await Bun.sleep(2);
  }
}

async function expectReplicasEqualPrimaries(crashed: Crashed): Promise<void> {
  await crashed.peers.drained();
  for (const [index, name] of names.entries()) {
    const primary = await crashed.primaries[index]!.read(0, volumeBytes);
    expect({ name, equal: Buffer.from(crashed.peers.replicas.get(name)!).equals(Buffer.from(primary)) }).toEqual({ name, equal: true });
  }
}

describe("checksum-first crash recovery", () => {
  test("after a crash only the differing blocks travel, not the active extents; the replica ends equal to the primary", async () => {
    const crashed = await crashedRun();
    running.push(crashed.peers);
    const client = await startProcess(crashed, crashed.peers);
    expect(client.ranges).toEqual(crashed.ranges);
    // Nothing marked up front: the extents are being verified, and the client is not in sync yet.
    expect(client.map.region("disk0").dirtyBytes + client.map.region("disk1").dirtyBytes).toBe(0);
    expect(client.recovery.status()).toMatchObject({ state: "verifying", inProgress: true, extents: 6, totalBytes: activeBytes });
    // Five passes (disk0 {0}, {2,3}, {5}; disk1 {1}, {7}), four at a time: four probes wait for the replica.
    await until("the probes are logged", () => crashed.peers.probes().length >= 4);
    // The application writes meanwhile, over a block that differs (its probe is logged already).
    const written = new Uint8Array(blockBytes).fill(0x77);
    await client.exports[0]!.write(2 * extentBytes + 12 * KiB, written, false);
    crashed.peers.paused = false;
    await client.recovery.settled;

    const status = client.recovery.status();
    console.log(`crash recovery: ${status.verifiedExtents} extents (${activeBytes / MiB} MiB) verified, ${status.differingBlocks} blocks (${status.differingBytes / KiB} KiB) differed; ${crashed.peers.dataBytesSent() / KiB} KiB of data sent`);
    expect(status).toMatchObject({ state: "done", inProgress: false, verifiedExtents: 6, verifiedBytes: activeBytes, differingBlocks: 4, differingBytes: 16 * KiB, markedBytes: 0 });
    expect(crashed.peers.dataBytesSent()).toBe(16 * KiB + written.length); // the resync's blocks, and the application's write
    await expectReplicasEqualPrimaries(crashed);
    expect(crashed.peers.replicas.get("disk0")!.subarray(2 * extentBytes + 12 * KiB, 2 * extentBytes + 16 * KiB)).toEqual(written);
    // Every pin was released: a clean shutdown now leaves nothing to recover.
    expect(await client.log.closeClean(client.core.modeStatus().resyncSetsOpen)).toBe(true);
  });

  test("a crash, or a clean stop, while verifying leaves the extents in the activity log: the next start recovers them again", async () => {
    const crashed = await crashedRun();
    running.push(crashed.peers);
    // Every extent idle goes cold at the next log write, unless pinned; every pass probing at once.
    const first = await startProcess(crashed, crashed.peers, { coldMs: 0, passesMax: 8 });
    await until("the probes are logged", () => crashed.peers.probes().length >= 5);
    expect(first.recovery.status()).toMatchObject({ inProgress: true, verifiedExtents: 0 });
    // A write to a new extent rewrites the log: only pinned (and busy) extents stay in it.
    await first.exports[0]!.write(6 * extentBytes + 64 * KiB, new Uint8Array(blockBytes).fill(0x66), false);
    const recoveredAgain = [...crashed.ranges, { region: "disk0", offsetBytes: 6 * extentBytes, lengthBytes: extentBytes }];
    // SIGKILL now: what is on the disks. (The replica has not answered a single probe.)
    const afterCrash = { primaries: crashed.primaries, mapDevice: await copyOf(crashed.mapDevice), logDevice: await copyOf(crashed.logDevice) };
    // SIGTERM instead: the log cannot be closed clean while extents are pinned.
    first.recovery.stop();
    expect(await first.log.closeClean([])).toBe(false);
    const afterStop = await ActivityLog.open(await copyOf(crashed.logDevice), { changeMapUuid: first.map.uuid, regions: specs });
    expect(afterStop.recovery).toMatchObject({ clean: false });
    expect(afterStop.recovery.ranges.toSorted(byPlace)).toEqual(recoveredAgain.toSorted(byPlace));
    first.stop();

    crashed.peers.disconnect(); // the dead process's connection
    const second = await startProcess(afterCrash, crashed.peers);
    expect(second.ranges.toSorted(byPlace)).toEqual(recoveredAgain.toSorted(byPlace));
    crashed.peers.paused = false;
    await second.recovery.settled;
    expect(second.recovery.status()).toMatchObject({ state: "done", verifiedExtents: 7, differingBlocks: 4, markedBytes: 0 });
    expect(crashed.peers.dataBytesSent()).toBe(16 * KiB + blockBytes); // the resync's blocks, and the first process's write
    await expectReplicasEqualPrimaries(crashed);
  });

  test("the client goes disconnected while verifying: every extent not verified is marked dirty whole, then resynced", async () => {
    const crashed = await crashedRun();
    running.push(crashed.peers);
    const client = await startProcess(crashed, crashed.peers);
    await until("the probes are logged", () => crashed.peers.probes().length >= 4);
    crashed.peers.disconnect();
    await until("the fallback marked the extents", () => client.recovery.status().markedBytes === activeBytes);
    expect(client.recovery.status()).toMatchObject({ inProgress: false, verifiedExtents: 0 });
    // Durable: a crash now finds them in the change map.
    const reopened = await ChangeMap.open(await copyOf(crashed.mapDevice));
    for (const name of names) {
      const expected = active.filter(([region]) => region === name).map(([, extent]) => extent * extentBytes);
      expect([...reopened.region(name).dirtyRanges()].flatMap((r) => Array.from({ length: r.lengthBytes / extentBytes }, (_, i) => r.offsetBytes + i * extentBytes))).toEqual(expected);
    }
    crashed.peers.paused = false;
    crashed.peers.connect(client.probes);
    await client.recovery.settled;
    expect(client.recovery.status()).toMatchObject({ state: "done", markedBytes: activeBytes });
    expect(crashed.peers.dataBytesSent()).toBe(activeBytes);
    await expectReplicasEqualPrimaries(crashed);
  });

  test("staging not connected at start: the extents are marked dirty before the devices are exported", async () => {
    const crashed = await crashedRun();
    running.push(crashed.peers);
    const client = await startProcess(crashed, undefined);
    expect(client.recovery.status()).toMatchObject({ inProgress: false, markedBytes: activeBytes, reason: "staging is not connected" });
    const reopened = await ChangeMap.open(await copyOf(crashed.mapDevice));
    expect(reopened.region("disk0").dirtyBytes + reopened.region("disk1").dirtyBytes).toBe(activeBytes);
    expect(crashed.peers.probes()).toEqual([]);
    crashed.peers.paused = false;
    crashed.peers.connect(client.probes);
    await client.recovery.settled;
    expect(crashed.peers.dataBytesSent()).toBe(activeBytes);
    await expectReplicasEqualPrimaries(crashed);
  });
});
