/**
 * ClientCore unit tests: MemoryDevices and a fake staging link; what is checked is what a user
 * cares about — bytes on the primary device, what staging was sent (and so what the replica will
 * get), the error an NBD client sees.
 */
import { describe, expect, test } from "bun:test";
import { DruvaaError } from "../../src/errors.ts";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { nbdErrnoOf } from "../../src/nbd/errno.ts";
import { nbdErrno } from "../../src/nbd/protocol.ts";
import { ClientCore } from "../../src/roles/client/core.ts";
import { FakeSender, filled, harness, settle, track } from "./core-helpers.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

describe("write path: staging first, then the primary", () => {
  test("a write is not written locally before staging acks it, and is after", async () => {
    const h = harness();
    const link = new FakeSender();
    h.core.linkUp(link);
    const data = filled(8 * KiB, 0x5a);
    const write = track(h.exports.get("disk0")!.write(64 * KiB, data, false));
    await settle();
    expect(link.sent.length).toBe(1);
    expect(link.sent[0]!.message).toMatchObject({ type: "write", device: "disk0", wrl: "wrl0", offset: 64 * KiB, length: 8 * KiB });
    expect(link.sent[0]!.payload).toEqual(data);
    expect(write.done).toBe(false);
    expect(await h.devices[0]!.read(64 * KiB, 8 * KiB)).toEqual(filled(8 * KiB, 0));
    h.ack(link.sent[0]!.message.reqId);
    await write.promise;
    expect(await h.devices[0]!.read(64 * KiB, 8 * KiB)).toEqual(data);
    expect(h.core.deviceStatus()[0]).toMatchObject({ name: "disk0", ackedLsn: 1, writes: 1, bytesWritten: 8 * KiB, inflightWrites: 0 });
  });

  test("a write staging refuses is never written locally; the NBD client sees the mapped error", async () => {
    const cases = [
      { code: "WRL_FULL", druvaaCode: "WRL_FULL", errno: nbdErrno.EIO },
      { code: "OUT_OF_RANGE", druvaaCode: "IO_OUT_OF_RANGE", errno: nbdErrno.EINVAL },
      { code: "DEVICE_UNKNOWN", druvaaCode: "STAGING_DEVICE_UNKNOWN", errno: nbdErrno.EIO },
    ] as const;
    for (const { code, druvaaCode, errno } of cases) {
      const h = harness();
      const link = new FakeSender();
      h.core.linkUp(link);
      const write = h.exports.get("disk0")!.write(0, filled(4 * KiB, 0x77), false);
      await settle();
      h.nack(link.sent[0]!.message.reqId, code, "staging says no");
      const error = await write.then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(DruvaaError);
      expect((error as DruvaaError).code).toBe(druvaaCode);
      expect((error as DruvaaError).message).toContain("staging says no");
      expect(nbdErrnoOf(error)).toBe(errno);
      expect(h.devices[0]!.snapshot()).toEqual(filled(1024 * KiB, 0));
      expect(h.core.deviceStatus()[0]).toMatchObject({ writes: 0, failedWrites: 1, inflightWrites: 0 });
    }
  });

  test("a write larger than one staging record goes in pieces; only the acked pieces land locally", async () => {
    const h = harness({ sizes: [24 * MiB] });
    const link = new FakeSender();
    h.core.linkUp(link);
    const data = new Uint8Array(20 * MiB);
    for (let i = 0; i < data.length; i += 4096) data[i] = (i / 4096) & 0xff;
    const write = h.exports.get("disk0")!.write(1 * MiB, data, false).then(() => undefined, (e: unknown) => e);
    await settle();
    expect(link.sent.map((s) => [s.message.offset, s.message.length])).toEqual([[1 * MiB, 8 * MiB], [9 * MiB, 8 * MiB], [17 * MiB, 4 * MiB]]);
    expect(new Set(link.sent.map((s) => s.message.epoch)).size).toBe(1);
    h.ack(link.sent[0]!.message.reqId);
    h.nack(link.sent[1]!.message.reqId, "DEVICE_UNKNOWN");
    h.ack(link.sent[2]!.message.reqId);
    expect(((await write) as DruvaaError).code).toBe("STAGING_DEVICE_UNKNOWN");
    const image = h.devices[0]!.snapshot();
    expect(image.subarray(1 * MiB, 9 * MiB)).toEqual(data.subarray(0, 8 * MiB));
    expect(image.subarray(9 * MiB, 17 * MiB)).toEqual(new Uint8Array(8 * MiB));
    expect(image.subarray(17 * MiB, 21 * MiB)).toEqual(data.subarray(16 * MiB));
  });

  // IO_ERROR too: the WRL failed with the record maybe written, and staging's recovery may keep
  // it; failing the write without a local write would leave the replica ahead of the primary.
  test("BUSY and IO_ERROR are transient: the write is sent again later and lands once acked", async () => {
    for (const code of ["BUSY", "IO_ERROR"] as const) {
      const h = harness();
      const link = new FakeSender();
      h.core.linkUp(link);
      const write = track(h.exports.get("disk0")!.write(0, filled(512, 1), false));
      await settle();
      h.nack(link.sent[0]!.message.reqId, code);
      await settle();
      expect(write.done).toBe(false);
      expect(link.sent.length).toBe(1);
      h.timers.runAll();
      expect(link.sent.length).toBe(2);
      expect(link.sent[1]!.message).toEqual(link.sent[0]!.message);
      h.ack(link.sent[1]!.message.reqId);
      await write.promise;
      expect(await h.devices[0]!.read(0, 512)).toEqual(filled(512, 1));
    }
  });

  test("FUA: the primary is flushed after the local write, before the reply", async () => {
    const h = harness();
    const link = new FakeSender();
    h.core.linkUp(link);
    const write = h.exports.get("disk0")!.write(0, filled(512, 3), true);
    await settle();
    expect(link.sent[0]!.message.fua).toBe(true);
    expect(h.devices[0]!.flushCount).toBe(0);
    h.ack(link.sent[0]!.message.reqId);
    await write;
    expect(h.devices[0]!.flushCount).toBe(1);
  });
});

describe("ordering", () => {
  test("an overlapping write is sent only after the earlier one was acked, and lands after it", async () => {
    const h = harness();
    const link = new FakeSender();
    h.core.linkUp(link);
    const exp = h.exports.get("disk0")!;
    const first = exp.write(0, filled(4 * KiB, 0xaa), false);
    const second = exp.write(2 * KiB, filled(4 * KiB, 0xbb), false);
    const elsewhere = exp.write(64 * KiB, filled(4 * KiB, 0xcc), false);
    await settle();
    // The non-overlapping write goes at once; the overlapping one waits.
    expect(link.sent.map((s) => s.message.offset)).toEqual([0, 64 * KiB]);
    h.ack(link.sent[0]!.message.reqId);
    await first;
    await settle();
    expect(link.sent.map((s) => s.message.offset)).toEqual([0, 64 * KiB, 2 * KiB]);
    h.ack(link.sent[2]!.message.reqId);
    h.ack(link.sent[1]!.message.reqId);
    await Promise.all([second, elsewhere]);
    const image = await h.devices[0]!.read(0, 6 * KiB);
    expect(image.subarray(0, 2 * KiB)).toEqual(filled(2 * KiB, 0xaa));
    expect(image.subarray(2 * KiB)).toEqual(filled(4 * KiB, 0xbb));
  });

  test("writes to different devices never wait for each other", async () => {
    const h = harness({ sizes: [64 * KiB, 64 * KiB] });
    const link = new FakeSender();
    h.core.linkUp(link);
    void h.exports.get("disk0")!.write(0, filled(4 * KiB, 1), false);
    void h.exports.get("disk1")!.write(0, filled(4 * KiB, 2), false);
    await settle();
    expect(link.sent.map((s) => s.message.device)).toEqual(["disk0", "disk1"]);
  });
});

describe("epochs (one assigner for all devices)", () => {
  test("a write issued after another completed has a larger epoch; concurrent writes share one", async () => {
    const h = harness({ sizes: [64 * KiB, 64 * KiB] });
    const link = new FakeSender();
    h.core.linkUp(link);
    const a = h.exports.get("disk0")!.write(0, filled(512, 1), false);
    const b = h.exports.get("disk1")!.write(0, filled(512, 2), false);
    await settle();
    h.ack(link.sent[0]!.message.reqId);
    await a;
    // c is issued after a completed (on another device): it depends on a.
    const c = h.exports.get("disk1")!.write(4096, filled(512, 3), false);
    const d = h.exports.get("disk0")!.write(4096, filled(512, 4), false);
    await settle();
    const epoch = (index: number) => link.sent[index]!.message.epoch;
    expect(epoch(0)).toBe(epoch(1)); // a and b were in flight together
    expect(epoch(2)).toBeGreaterThan(epoch(0)); // c after a completed
    expect(epoch(3)).toBe(epoch(2)); // c and d in flight together
    for (const s of link.sent.slice(1)) h.ack(s.message.reqId);
    await Promise.all([b, c, d]);
  });

  test("a failed write also counts as completed: what is issued after it gets a later epoch", async () => {
    const h = harness();
    const link = new FakeSender();
    h.core.linkUp(link);
    const a = h.exports.get("disk0")!.write(0, filled(512, 1), false).catch(() => undefined);
    await settle();
    h.nack(link.sent[0]!.message.reqId, "DEVICE_UNKNOWN");
    await a;
    void h.exports.get("disk0")!.write(0, filled(512, 2), false);
    await settle();
    expect(link.sent[1]!.message.epoch).toBeGreaterThan(link.sent[0]!.message.epoch);
  });
});

describe("staging link loss", () => {
  test("after a reconnect every unacked write is sent again in the original order, then the new ones", async () => {
    const h = harness();
    const exp = h.exports.get("disk0")!;
    const first = new FakeSender();
    h.core.linkUp(first);
    const w1 = exp.write(0, filled(4 * KiB, 1), false);
    const w2 = exp.write(8 * KiB, filled(4 * KiB, 2), false);
    const w3 = exp.write(16 * KiB, filled(4 * KiB, 3), false);
    await settle();
    h.ack(first.sent[1]!.message.reqId);
    await w2;
    h.core.linkDown();
    expect(h.core.connected).toBe(false);
    const w4 = track(exp.write(24 * KiB, filled(4 * KiB, 4), false));
    await settle();
    expect(first.sent.length).toBe(3); // nothing is sent while the link is down
    const second = new FakeSender();
    h.core.linkUp(second);
    expect(second.sent.map((s) => s.message.reqId)).toEqual([first.sent[0]!.message.reqId, first.sent[2]!.message.reqId, second.sent[2]!.message.reqId]);
    expect(second.sent[2]!.message.offset).toBe(24 * KiB);
    expect(second.sent[0]!.payload).toEqual(filled(4 * KiB, 1));
    expect(second.sent[1]!.message).toEqual(first.sent[2]!.message);
    // Not yet acked on the new link: still not on the primary.
    expect(await h.devices[0]!.read(0, 4 * KiB)).toEqual(filled(4 * KiB, 0));
    expect(w4.done).toBe(false);
    for (const s of second.sent) h.ack(s.message.reqId);
    await Promise.all([w1, w3, w4.promise]);
    for (const [index, byte] of [1, 2, 3, 4].entries()) expect(await h.devices[0]!.read(index * 8 * KiB, 4 * KiB)).toEqual(filled(4 * KiB, byte));
  });

  test("shutdown after the wait ran out: unacked writes fail, nothing lands locally, new writes are refused", async () => {
    const h = harness();
    const link = new FakeSender();
    h.core.linkUp(link);
    const w = h.exports.get("disk0")!.write(0, filled(512, 9), false).then(() => undefined, (e: unknown) => e);
    await settle();
    h.core.abort();
    expect(((await w) as DruvaaError).code).toBe("SHUTTING_DOWN");
    expect(await h.devices[0]!.read(0, 512)).toEqual(filled(512, 0));
    const late = await h.exports.get("disk0")!.write(0, filled(512, 9), false).then(() => undefined, (e: unknown) => e);
    expect((late as DruvaaError).code).toBe("SHUTTING_DOWN");
    expect(h.core.inflightWrites).toBe(0);
  });
});

describe("TRIM and WRITE_ZEROES", () => {
  test("trim sends a zero write without payload; the range is zeroed locally only after the ack", async () => {
    const h = harness();
    h.devices[0]!.write(0, filled(1024 * KiB, 0xff));
    const link = new FakeSender();
    h.core.linkUp(link);
    const trim = track(h.exports.get("disk0")!.trim(4 * KiB, 8 * KiB));
    await settle();
    expect(link.sent.length).toBe(1);
    expect(link.sent[0]!.message).toMatchObject({ type: "write", zero: true, offset: 4 * KiB, length: 8 * KiB });
    expect(link.sent[0]!.payload).toBeUndefined();
    expect(await h.devices[0]!.read(4 * KiB, 8 * KiB)).toEqual(filled(8 * KiB, 0xff));
    h.ack(link.sent[0]!.message.reqId);
    await trim.promise;
    expect(await h.devices[0]!.read(0, 16 * KiB)).toEqual(Uint8Array.from([...filled(4 * KiB, 0xff), ...filled(8 * KiB, 0), ...filled(4 * KiB, 0xff)]));
    expect(h.core.deviceStatus()[0]).toMatchObject({ writes: 1, bytesWritten: 0, zeroedBytes: 8 * KiB });
  });

  test("write-zeroes refused by staging leaves the range as it was", async () => {
    const h = harness();
    h.devices[0]!.write(0, filled(1024 * KiB, 0xff));
    const link = new FakeSender();
    h.core.linkUp(link);
    const zero = h.exports.get("disk0")!.writeZeroes(0, 64 * KiB, false, false).then(() => undefined, (e: unknown) => e);
    await settle();
    expect(link.sent[0]!.message.zero).toBe(true);
    h.nack(link.sent[0]!.message.reqId, "WRL_FULL");
    expect(((await zero) as DruvaaError).code).toBe("WRL_FULL");
    expect(await h.devices[0]!.read(0, 64 * KiB)).toEqual(filled(64 * KiB, 0xff));
  });

  test("on a device whose discard does not read zeros (or with NO_HOLE) zeros are written, never discarded", async () => {
    const calls: string[] = [];
    const device = recordingDevice(3 * 1024 * MiB, calls);
    const core = new ClientCore({ devices: [{ name: "raw", path: "/dev/fake", wrl: "w", device, discardReadsZeros: false }] });
    const link = new FakeSender();
    core.linkUp(link);
    const [exp] = core.exports();
    // 1.5 GiB: more than one zero record (zeroRecordBytesMax = 1 GiB) -> two zero writes.
    const zero = exp!.writeZeroes(512 * MiB, 1536 * MiB, true, false);
    await settle();
    expect(link.sent.map((s) => [s.message.offset, s.message.length, s.message.zero])).toEqual([[512 * MiB, 1024 * MiB, true], [1536 * MiB, 512 * MiB, true]]);
    for (const s of link.sent) core.handleReply({ type: "writeAck", reqId: s.message.reqId, lsn: s.message.reqId });
    await zero;
    expect(calls.filter((c) => c.startsWith("discard"))).toEqual([]);
    const zeroedBytes = calls.filter((c) => c.startsWith("write")).reduce((sum, c) => sum + Number(c.split(" ")[2]), 0);
    expect(zeroedBytes).toBe(1536 * MiB);
    expect(calls[calls.length - 1]).toBe("flush");
  });
});

describe("bounds", () => {
  test("past the in-flight limit new writes wait (nothing is sent) until one completes", async () => {
    const h = harness({ core: { inflightWritesMax: 2 } });
    const link = new FakeSender();
    h.core.linkUp(link);
    const exp = h.exports.get("disk0")!;
    const writes = [0, 1, 2].map((i) => exp.write(i * 4096, filled(512, i + 1), false));
    await settle();
    expect(link.sent.length).toBe(2);
    h.ack(link.sent[0]!.message.reqId);
    await writes[0];
    await settle();
    expect(link.sent.length).toBe(3);
    h.ack(link.sent[1]!.message.reqId);
    h.ack(link.sent[2]!.message.reqId);
    await Promise.all(writes);
  });
});

/** A BlockDevice without storage that records calls (for ranges too large to hold in memory). */
function recordingDevice(sizeBytes: number, calls: string[]): BlockDevice {
  return {
    name: "recording",
    sizeBytes,
    logicalBlockSizeBytes: 512,
    read: async (offset, length) => new Uint8Array(length),
    write: async (offset, data) => {
      // Sampled, not scanned: 1.5 GiB of bytes would take seconds to look at.
      if (data[0] !== 0 || data[data.length - 1] !== 0 || data[data.length >> 1] !== 0) throw new Error("non-zero data");
      calls.push(`write ${offset} ${data.length}`);
    },
    flush: async () => void calls.push("flush"),
    discard: async (offset, length) => void calls.push(`discard ${offset} ${length}`),
    close: async () => undefined,
  };
}
