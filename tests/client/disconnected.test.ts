/**
 * Disconnected mode and resync in ClientCore (modes.ts, resync.ts) with MemoryDevices, a change
 * map on a memory device and a fake staging link: the application's writes never fail or wait
 * for a dead staging, every such write is marked in the change map before it completes, and a
 * resync sends exactly the dirty blocks' current bytes, clearing bits only after staging acked.
 */
import { describe, expect, test } from "bun:test";
import { ChangeMap, changeMapLayoutBytes } from "../../src/changemap/index.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import type { NbdExport } from "../../src/nbd/backend.ts";
import { ClientCore } from "../../src/roles/client/core.ts";
import { Clock, FakeSender, filled, settle, track } from "./core-helpers.ts";

const KiB = 1024;
const volumeBytes = 1024 * KiB;

async function setup(ackTimeoutMs = 1000) {
  const map = await ChangeMap.create(new MemoryDevice(changeMapLayoutBytes([{ name: "disk0", volumeSizeBytes: volumeBytes }], 4096)), { regions: [{ name: "disk0", volumeSizeBytes: volumeBytes }] });
  const region = map.region("disk0");
  const device = new MemoryDevice(volumeBytes, "disk0", 512);
  const clock = new Clock();
  const core = new ClientCore({ devices: [{ name: "disk0", path: "/mem/disk0", wrl: "wrl0", device, discardReadsZeros: true, changeMap: region }], timers: clock, ackTimeoutMs });
  const exp = core.exports()[0] as NbdExport;
  let lsn = 0;
  const ack = (reqId: number) => core.handleReply({ type: "writeAck", reqId, lsn: (lsn += 1) });
  return { map, region, device, clock, core, exp, ack };
}

describe("disconnected mode", () => {
  test("with the link down a write completes locally at once, its blocks durably dirty; the reconnect resyncs them and clears the bits", async () => {
    const { region, device, clock, core, exp, ack } = await setup();
    core.linkUp(new FakeSender());
    core.linkDown();
    expect(core.mode).toBe("disconnected");
    const data = filled(8 * KiB, 0x3c);
    await exp.write(64 * KiB, data, false);
    expect(await device.read(64 * KiB, 8 * KiB)).toEqual(data);
    expect([...region.dirtyRanges()]).toEqual([{ offsetBytes: 64 * KiB, lengthBytes: 8 * KiB }]);

    const link = new FakeSender();
    core.linkUp(link);
    await settle();
    expect(core.mode).toBe("resyncing");
    expect(link.sent.map((s) => ({ offset: s.message.offset, length: s.message.length }))).toEqual([{ offset: 64 * KiB, length: 8 * KiB }]);
    expect(link.sent[0]!.payload).toEqual(data);
    expect(region.dirtyBytes).toBe(8 * KiB); // not cleared before staging acked
    ack(link.sent[0]!.message.reqId);
    await settle();
    expect(region.dirtyBytes).toBe(0);
    // The device is clean and its last chunk acked: the resync set ends, and only its ack ends the pass.
    expect(link.sent[1]!.message).toMatchObject({ kind: "resyncEnd", device: "disk0", offset: 0, length: 0 });
    expect(core.mode).toBe("resyncing");
    ack(link.sent[1]!.message.reqId);
    await settle();
    expect(core.mode).toBe("connected");
    expect(core.modeStatus()).toMatchObject({ mode: "connected", dirtyBytes: 0, lastResync: { outcome: "done", sentBytes: 8 * KiB } });
    await clock.advance(0);
  });

  test("a write staging never acknowledges completes after the ack timeout, marked dirty; later writes do not wait at all", async () => {
    const { region, device, clock, core, exp } = await setup(1000);
    const link = new FakeSender();
    core.linkUp(link);
    const first = track(exp.write(0, filled(4 * KiB, 0x11), false));
    await settle();
    expect(link.sent.length).toBe(1);
    await clock.advance(500);
    expect(first.done).toBe(false);
    await clock.advance(800);
    await first.promise;
    expect(core.mode).toBe("disconnected");
    expect(await device.read(0, 4 * KiB)).toEqual(filled(4 * KiB, 0x11));
    await exp.write(512 * KiB, filled(4 * KiB, 0x22), false);
    expect(link.sent.length).toBe(1); // not sent: staging is not taking writes
    expect([...region.dirtyRanges()]).toEqual([{ offsetBytes: 0, lengthBytes: 4 * KiB }, { offsetBytes: 512 * KiB, lengthBytes: 4 * KiB }]);
    // A late ack for the diverted write changes nothing.
    core.handleReply({ type: "writeAck", reqId: link.sent[0]!.message.reqId, lsn: 1 });
    expect(region.dirtyBytes).toBe(8 * KiB);
  });

  test("WRL full: the refused write completes locally and is dirty; the retry resyncs the newest bytes once the WRL takes them", async () => {
    const { region, device, clock, core, exp, ack } = await setup();
    const link = new FakeSender();
    core.linkUp(link);
    const write = exp.write(128 * KiB, filled(4 * KiB, 0x44), false);
    await settle();
    core.handleReply({ type: "writeNack", reqId: link.sent[0]!.message.reqId, code: "WRL_FULL", message: "full" });
    await write;
    expect(core.mode).toBe("disconnected");
    await exp.write(128 * KiB, filled(4 * KiB, 0x55), false); // overwritten while disconnected
    expect(await device.read(128 * KiB, 4 * KiB)).toEqual(filled(4 * KiB, 0x55));
    await clock.advance(2_000); // the resync retry
    expect(core.mode).toBe("resyncing");
    const resent = link.sent[1]!;
    expect(resent.message).toMatchObject({ offset: 128 * KiB, length: 4 * KiB });
    expect(resent.payload).toEqual(filled(4 * KiB, 0x55));
    ack(resent.message.reqId);
    await settle();
    expect(region.dirtyBytes).toBe(0);
    expect(link.sent[2]!.message).toMatchObject({ kind: "resyncEnd", offset: 0, length: 0 });
    ack(link.sent[2]!.message.reqId);
    await settle();
    expect(core.mode).toBe("connected");
  });

  test("an application write to a block being resynced is sent after the resync chunk, never before it", async () => {
    const { clock, core, exp, ack } = await setup();
    core.linkUp(new FakeSender());
    core.linkDown();
    await exp.write(0, filled(4 * KiB, 0x01), false);
    const link = new FakeSender();
    core.linkUp(link);
    await settle();
    expect(link.sent.length).toBe(1); // the resync chunk, holding [0, 4 KiB)
    const newer = track(exp.write(0, filled(4 * KiB, 0x02), false));
    await settle();
    expect(link.sent.length).toBe(1); // waits in the overlap gate
    ack(link.sent[0]!.message.reqId);
    await settle();
    const application = link.sent.filter((s) => s.message.kind === undefined);
    expect(application.length).toBe(1);
    expect(application[0]!.payload).toEqual(filled(4 * KiB, 0x02));
    expect(application[0]!.message.epoch).toBeGreaterThan(link.sent[0]!.message.epoch);
    for (const sent of link.sent.slice(1)) ack(sent.message.reqId);
    await newer.promise;
    await clock.advance(0);
  });
});
