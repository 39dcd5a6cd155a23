/**
 * Resync sets on the wire (modes.ts, resync.ts): every write of a resync pass is `kind: "resync"`;
 * a device's set ends with exactly one `resyncEnd {offset: 0, length: 0}`, sent only once every
 * chunk of that device was acked and no dirty bit is left; a pass interrupted by a disconnect
 * sends no end, the next pass continues the set and ends it; an end that was not acked is sent
 * again; a restart with sets the last run may have left open ends them first.
 */
import { describe, expect, test } from "bun:test";
import { ChangeMap, changeMapLayoutBytes } from "../../src/changemap/index.ts";
import { clientResyncChunkBytes, clientResyncInflightBytesMax } from "../../src/constants.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import type { NbdExport } from "../../src/nbd/backend.ts";
import { ClientCore, type ClientCoreOptions } from "../../src/roles/client/core.ts";
import { Clock, FakeSender, filled, settle, type SentWrite } from "./core-helpers.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
/** Resync chunks are at most this long; the tests below count on four chunks' worth in flight. */
const chunkBytes = clientResyncChunkBytes;
if (clientResyncInflightBytesMax !== 4 * chunkBytes) throw new Error("resync-sets.test.ts assumes clientResyncInflightBytesMax = 4 × clientResyncChunkBytes");
const volumeBytes = 4 * chunkBytes;
const names = ["disk0", "disk1"];

async function setup(extra: Partial<ClientCoreOptions> = {}) {
  const specs = names.map((name) => ({ name, volumeSizeBytes: volumeBytes }));
  const map = await ChangeMap.create(new MemoryDevice(changeMapLayoutBytes(specs, 4096)), { regions: specs });
  const devices = names.map((name) => new MemoryDevice(volumeBytes, name, 512));
  const clock = new Clock();
  const core = new ClientCore({
    devices: names.map((name, index) => ({ name, path: `/mem/${name}`, wrl: "wrl0", device: devices[index]!, discardReadsZeros: true, changeMap: map.region(name) })),
    timers: clock,
    ackTimeoutMs: 60_000,
    ...extra,
  });
  const exports = new Map<string, NbdExport>(core.exports().map((exp) => [exp.name, exp]));
  let lsn = 0;
  const acked = new Set<number>();
  const ack = (sent: SentWrite) => {
    acked.add(sent.message.reqId);
    core.handleReply({ type: "writeAck", reqId: sent.message.reqId, lsn: (lsn += 1) });
  };
  /** Writes while staging is unreachable: they complete locally, their blocks dirty. */
  const dirty = async (writes: [string, number, number, number][]) => {
    core.linkUp(new FakeSender());
    core.linkDown();
    for (const [name, offset, length, byte] of writes) await exports.get(name)!.write(offset, filled(length, byte), false);
  };
  return { map, devices, clock, core, exports, ack, acked, dirty };
}

const ends = (sent: SentWrite[], device?: string) => sent.filter((s) => s.message.kind === "resyncEnd" && (device === undefined || s.message.device === device));
const chunks = (sent: SentWrite[], device?: string) => sent.filter((s) => s.message.kind === "resync" && (device === undefined || s.message.device === device));

describe("resync sets", () => {
  test("on reconnect, every dirty device's set is opened (an empty resync record) before any new write reaches staging", async () => {
    const { core, exports, dirty } = await setup();
    await dirty([["disk0", 64 * KiB, 4 * KiB, 0x31]]);
    const link = new FakeSender();
    core.linkUp(link);
    // The application writes to the clean device at once: its write depends on the dirty block.
    const write = exports.get("disk1")!.write(0, filled(4 * KiB, 0x32), false);
    await settle();
    const order = link.all.map((s) => [s.message.device, s.message.kind ?? "write", s.message.length]);
    const opener = order.findIndex(([device, kind, length]) => device === "disk0" && kind === "resync" && length === 0);
    const appWrite = order.findIndex(([device, kind]) => device === "disk1" && kind === "write");
    expect(opener).toBeGreaterThanOrEqual(0);
    expect(appWrite).toBeGreaterThan(opener);
    // Only the dirty device gets one.
    expect(link.opened.map((s) => s.message.device)).toEqual(["disk0"]);
    expect(core.modeStatus().resyncSetsOpen).toContain("disk0");
    core.abort();
    await write.catch(() => undefined);
  });

  test("chunks are kind resync; exactly one resyncEnd per device, sent only after every chunk of that device was acked (acks in reverse order)", async () => {
    const { devices, core, ack, acked, dirty } = await setup();
    await dirty([["disk0", 0, 3 * chunkBytes, 0x10], ["disk1", 512 * KiB, 64 * KiB, 0x21], ["disk1", 2 * MiB, 4 * KiB, 0x22]]);
    const link = new FakeSender();
    core.linkUp(link);
    await settle();
    expect(core.mode).toBe("resyncing");
    /** Checked at every step: a resyncEnd present means every chunk of its device sent before it was acked. */
    const checkEnds = () => {
      for (const end of ends(link.sent)) {
        const before = link.sent.slice(0, link.sent.indexOf(end));
        for (const chunk of chunks(before, end.message.device)) expect(acked.has(chunk.message.reqId)).toBe(true);
        expect(chunks(link.sent.slice(link.sent.indexOf(end)), end.message.device)).toEqual([]);
      }
    };
    for (let steps = 0; steps < 100; steps += 1) {
      const unacked = link.sent.filter((s) => !acked.has(s.message.reqId));
      if (unacked.length === 0) break;
      ack(unacked[unacked.length - 1]!); // the newest first: the first chunk is acked last
      await settle();
      checkEnds();
      if (ends(link.sent, "disk0").length === 0) expect(core.modeStatus().resyncSetsOpen).toContain("disk0");
    }
    expect(core.mode).toBe("connected");
    expect(link.sent.every((s) => s.message.kind === "resync" || s.message.kind === "resyncEnd")).toBe(true);
    for (const name of names) {
      expect(ends(link.sent, name).length).toBe(1);
      expect(ends(link.sent, name)[0]!.message).toMatchObject({ offset: 0, length: 0 });
      expect(ends(link.sent, name)[0]!.payload).toBeUndefined();
    }
    expect(chunks(link.sent, "disk0").length).toBe(3); // three chunks' worth
    // The chunks carry the devices' current bytes.
    for (const chunk of chunks(link.sent)) {
      const device = devices[names.indexOf(chunk.message.device)]!;
      expect(chunk.payload).toEqual(await device.read(chunk.message.offset, chunk.message.length));
    }
    expect(core.modeStatus()).toMatchObject({ mode: "connected", dirtyBytes: 0, resyncSetsOpen: [] });
  });

  test("a pass interrupted by a disconnect sends no resyncEnd; the next pass sends the rest and ends the set once", async () => {
    const { core, ack, dirty } = await setup();
    await dirty([["disk0", 0, 3 * chunkBytes, 0x31]]);
    const first = new FakeSender();
    core.linkUp(first);
    await settle();
    expect(chunks(first.sent).length).toBe(3);
    ack(first.sent[1]!);
    await settle();
    core.linkDown();
    await settle();
    expect(ends(first.sent)).toEqual([]);
    expect(core.modeStatus()).toMatchObject({ mode: "disconnected", dirtyBytes: 2 * chunkBytes, resyncSetsOpen: ["disk0"] });

    const second = new FakeSender();
    core.linkUp(second);
    await settle();
    expect(chunks(second.sent).map((s) => s.message.offset)).toEqual([0, 2 * chunkBytes]);
    expect(ends(second.sent)).toEqual([]);
    ack(second.sent[0]!);
    await settle();
    expect(ends(second.sent)).toEqual([]); // one chunk still unacked
    ack(second.sent[1]!);
    await settle();
    expect(ends(second.sent).length).toBe(1);
    expect(core.mode).toBe("resyncing");
    ack(ends(second.sent)[0]!);
    await settle();
    expect(core.modeStatus()).toMatchObject({ mode: "connected", dirtyBytes: 0, resyncSetsOpen: [] });
    expect(ends(second.sent, "disk1")).toEqual([]); // disk1 never had a set
  });

  test("a resyncEnd that was not acked (link lost) leaves the pass undone: the next link sends it again, with nothing left to resend", async () => {
    const { core, ack, dirty } = await setup();
    await dirty([["disk1", 0, 8 * KiB, 0x41]]);
    const first = new FakeSender();
    core.linkUp(first);
    await settle();
    ack(chunks(first.sent)[0]!);
    await settle();
    expect(ends(first.sent, "disk1").length).toBe(1);
    core.linkDown();
    await settle();
    expect(core.modeStatus()).toMatchObject({ mode: "disconnected", dirtyBytes: 0, resyncSetsOpen: ["disk1"] });
    const second = new FakeSender();
    core.linkUp(second);
    await settle();
    expect(second.sent.map((s) => s.message.kind)).toEqual(["resyncEnd"]);
    ack(second.sent[0]!);
    await settle();
    expect(core.modeStatus()).toMatchObject({ mode: "connected", resyncSetsOpen: [] });
  });

  test("WRL full on the resyncEnd: disconnected, and the retry ends the set", async () => {
    const { clock, core, ack, dirty } = await setup();
    await dirty([["disk0", 4 * KiB, 4 * KiB, 0x51]]);
    const link = new FakeSender();
    core.linkUp(link);
    await settle();
    ack(chunks(link.sent)[0]!);
    await settle();
    core.handleReply({ type: "writeNack", reqId: ends(link.sent)[0]!.message.reqId, code: "WRL_FULL", message: "full" });
    await settle();
    expect(core.mode).toBe("disconnected");
    await clock.advance(2_000);
    expect(ends(link.sent).length).toBe(2);
    ack(ends(link.sent)[1]!);
    await settle();
    expect(core.modeStatus()).toMatchObject({ mode: "connected", resyncSetsOpen: [] });
  });

  test("WRL full during a pass: each retry has half as many bytes in flight, down to smaller chunks; the pass still completes", async () => {
    const { clock, core, ack, dirty } = await setup();
    await dirty([["disk0", 0, 3 * chunkBytes, 0x61]]);
    const link = new FakeSender();
    core.linkUp(link);
    await settle();
    /** Answered (acked, or diverted by a WRL full), by reqId. */
    const answered = new Set<number>();
    const acked = (s: SentWrite) => answered.has(s.message.reqId);
    const inFlight = () => chunks(link.sent).filter((s) => !acked(s)).map((s) => s.message.length);
    const wrlFull = async () => {
      const victim = chunks(link.sent).find((s) => !acked(s))!;
      for (const s of chunks(link.sent)) answered.add(s.message.reqId); // diverted with the link's other writes
      core.handleReply({ type: "writeNack", reqId: victim.message.reqId, code: "WRL_FULL", message: "full" });
      await settle();
      expect(core.mode).toBe("disconnected");
      await clock.advance(2_000);
    };
    expect(inFlight()).toEqual([chunkBytes, chunkBytes, chunkBytes]); // 3 chunks within the in-flight bytes
    await wrlFull();
    expect(inFlight()).toEqual([chunkBytes, chunkBytes]); // half the bytes in flight
    await wrlFull();
    expect(inFlight()).toEqual([chunkBytes]);
    await wrlFull();
    expect(inFlight()).toEqual([chunkBytes / 2]); // below one chunk: smaller chunks
    for (let steps = 0; steps < 100 && core.mode !== "connected"; steps += 1) {
      const next = link.sent.find((s) => !acked(s));
      if (next === undefined) break;
      answered.add(next.message.reqId);
      ack(next);
      await settle();
      expect(inFlight().every((length) => length <= chunkBytes / 2)).toBe(true);
    }
    expect(core.modeStatus()).toMatchObject({ mode: "connected", dirtyBytes: 0, resyncSetsOpen: [] });
  });

  test("a chunk staging refuses as larger than its WRL holds in one record (OUT_OF_RANGE): the retry sends halves, and so do later passes", async () => {
    const { clock, core, ack, exports, dirty } = await setup();
    await dirty([["disk0", 0, chunkBytes, 0x71]]);
    const link = new FakeSender();
    core.linkUp(link);
    await settle();
    expect(chunks(link.sent).map((s) => s.message.length)).toEqual([chunkBytes]);
    core.handleReply({ type: "writeNack", reqId: chunks(link.sent)[0]!.message.reqId, code: "OUT_OF_RANGE", message: `a write of ${chunkBytes} bytes is larger than WRL wrl0 can hold in one record` });
    await settle();
    expect(core.mode).toBe("disconnected");
    await clock.advance(2_000);
    const retried = chunks(link.sent).slice(1);
    expect(retried.map((s) => [s.message.offset, s.message.length])).toEqual([[0, chunkBytes / 2], [chunkBytes / 2, chunkBytes / 2]]);
    for (const s of retried) ack(s);
    await settle();
    ack(ends(link.sent)[0]!);
    await settle();
    expect(core.modeStatus()).toMatchObject({ mode: "connected", dirtyBytes: 0 });
    // The WRL did not grow: the next disconnect's pass starts with the smaller chunks at once.
    core.linkDown();
    await exports.get("disk0")!.write(0, filled(chunkBytes, 0x72), false);
    const again = new FakeSender();
    core.linkUp(again);
    await settle();
    expect(chunks(again.sent).map((s) => s.message.length)).toEqual([chunkBytes / 2, chunkBytes / 2]);
    core.abort();
  });

  test("a restart with sets the last run may have left open ends exactly those, even with nothing dirty; without any, nothing is sent", async () => {
    const restarted = await setup({ resyncSetsOpen: ["disk1"] });
    const link = new FakeSender();
    restarted.core.linkUp(link);
    await settle();
    expect(link.sent.map((s) => [s.message.kind, s.message.device])).toEqual([["resyncEnd", "disk1"]]);
    restarted.ack(link.sent[0]!);
    await settle();
    expect(restarted.core.modeStatus()).toMatchObject({ mode: "connected", resyncSetsOpen: [] });

    const quiet = await setup();
    const other = new FakeSender();
    quiet.core.linkUp(other);
    await settle();
    expect(other.sent).toEqual([]);
    expect(quiet.core.mode).toBe("connected");
  });

  test("application writes during a resync are ordinary writes (no kind), and a write to a block being resynced goes after its chunk", async () => {
    const { core, exports, ack, dirty } = await setup();
    await dirty([["disk0", 0, 4 * KiB, 0x61]]);
    const link = new FakeSender();
    core.linkUp(link);
    await settle();
    const write = exports.get("disk0")!.write(0, filled(4 * KiB, 0x62), false);
    const other = exports.get("disk1")!.write(MiB, filled(4 * KiB, 0x63), false);
    await settle();
    expect(link.sent.filter((s) => s.message.kind === undefined).map((s) => s.message.device)).toEqual(["disk1"]);
    ack(chunks(link.sent)[0]!);
    await settle();
    const application = link.sent.filter((s) => s.message.kind === undefined);
    expect(application.map((s) => s.message.device)).toEqual(["disk1", "disk0"]);
    for (const sent of link.sent) if (sent.message.kind !== "resync") ack(sent);
    await Promise.all([write, other]);
    await settle();
    expect(core.mode).toBe("connected");
  });
});
