/**
 * Bulk reads of the resync and the verify through a second, O_DIRECT handle on the image file
 * (direct-reader.ts): they see every write that completed through the client's buffered handle
 * (still dirty in the page cache, never flushed), and a resync pass over an image file sends the
 * bytes the application wrote. Where the file system refuses O_DIRECT (tmpfs), no reader is
 * opened and reads go through the device.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ChangeMap, changeMapLayoutBytes } from "../../src/changemap/index.ts";
import { FileDevice } from "../../src/io/file-device.ts";
import { alignedBuffer } from "../../src/io/handle-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { logger } from "../../src/log.ts";
import type { NbdExport } from "../../src/nbd/backend.ts";
import { ClientCore } from "../../src/roles/client/core.ts";
import { openDirectReader, pagesAligned } from "../../src/roles/client/direct-reader.ts";
import type { ClientDevice } from "../../src/roles/client/types.ts";
import { Clock, FakeSender, settle } from "./core-helpers.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const log = logger("test:direct-reader");
const dirs: string[] = [];
const opened: { close(): Promise<void> }[] = [];

afterEach(async () => {
  for (const device of opened.splice(0)) await device.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh image file (buffered, as the client opens one) in a directory on disk, not tmpfs. */
async function imageFile(sizeBytes: number): Promise<{ path: string; device: FileDevice }> {
  const dir = mkdtempSync(join("/var/tmp", "druvaa-direct-reader-"));
  dirs.push(dir);
  const path = join(dir, "primary.img");
  const device = await FileDevice.open(path, { createSizeBytes: sizeBytes });
  opened.push(device);
  return { path, device };
}

/** Whether the file system under `path` takes O_DIRECT at all (the reader is expected exactly then). */
async function takesDirect(path: string): Promise<boolean> {
  const probe = await FileDevice.open(path, { readOnly: true, direct: true });
  await probe.close();
  return probe.direct;
}

/** Bytes that differ at every offset from their neighbours, per `seed`. */
function pattern(lengthBytes: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(lengthBytes);
  for (let index = 0; index < lengthBytes; index += 1) bytes[index] = (index * 31 + seed * 17 + (index >> 12)) & 0xff;
  return bytes;
}

describe("direct reader", () => {
  test("reads what was written through the buffered handle and not flushed, also after an overwrite", async () => {
    const { path, device } = await imageFile(4 * MiB);
    const spec: ClientDevice = { name: "disk0", path, wrl: "wrl0", device, discardReadsZeros: true };
    const reader = await openDirectReader(spec, log);
    if (!(await takesDirect(path))) {
      expect(reader).toBeUndefined();
      return;
    }
    expect(reader?.direct).toBe(true);
    opened.push(reader!);
    const into = alignedBuffer(MiB, 4 * KiB);
    // A small write (a page-cache copy on the event loop) and a large one (thread pool), no flush.
    await device.write(MiB, pattern(4 * KiB, 1));
    await device.write(MiB + 64 * KiB, pattern(512 * KiB, 2));
    await reader!.readInto(MiB, into);
    expect(into.subarray(0, 4 * KiB)).toEqual(pattern(4 * KiB, 1));
    expect(into.subarray(64 * KiB, 576 * KiB)).toEqual(pattern(512 * KiB, 2));
    await device.write(MiB + 64 * KiB, pattern(8 * KiB, 3));
    await reader!.readInto(MiB, into);
    expect(into.subarray(64 * KiB, 72 * KiB)).toEqual(pattern(8 * KiB, 3));
    expect(into.subarray(72 * KiB, 576 * KiB)).toEqual(pattern(512 * KiB, 2).subarray(8 * KiB));
  });

  test("no reader for devices that are not buffered image files", async () => {
    const memory: ClientDevice = { name: "m", path: "/mem/m", wrl: "wrl0", device: new MemoryDevice(MiB, "m", 512), discardReadsZeros: true };
    expect(await openDirectReader(memory, log)).toBeUndefined();
    const { path } = await imageFile(MiB);
    const direct = await FileDevice.open(path, { direct: true });
    opened.push(direct);
    if (direct.direct) expect(await openDirectReader({ ...memory, path, device: direct }, log)).toBeUndefined();
    expect(pagesAligned(8 * KiB, 4 * KiB)).toBe(true);
    expect(pagesAligned(8 * KiB, 512)).toBe(false);
    expect(pagesAligned(512, 4 * KiB)).toBe(false);
  });

  test("a resync pass over an image file sends the bytes written while disconnected, bulk chunks and single blocks alike", async () => {
    const volumeBytes = 8 * MiB;
    const { path, device } = await imageFile(volumeBytes);
    const specs = [{ name: "disk0", volumeSizeBytes: volumeBytes }];
    const map = await ChangeMap.create(new MemoryDevice(changeMapLayoutBytes(specs, 4096)), { regions: specs });
    const core = new ClientCore({ devices: [{ name: "disk0", path, wrl: "wrl0", device, discardReadsZeros: true, changeMap: map.region("disk0") }], timers: new Clock(), ackTimeoutMs: 60_000 });
    const exp = core.exports()[0] as NbdExport;
    core.linkUp(new FakeSender());
    core.linkDown();
    const writes: [number, Uint8Array][] = [[0, pattern(MiB + 64 * KiB, 4)], [3 * MiB, pattern(4 * KiB, 5)], [5 * MiB + 4 * KiB, pattern(256 * KiB, 6)]];
    for (const [offset, data] of writes) await exp.write(offset, data, false);
    const link = new FakeSender();
    core.linkUp(link);
    let lsn = 0;
    for (let steps = 0; steps < 100 && core.mode !== "connected"; steps += 1) {
      await settle();
      for (const sent of link.sent.splice(0)) core.handleReply({ type: "writeAck", reqId: sent.message.reqId, lsn: (lsn += 1) });
      await Bun.sleep(1); // the reads go through the thread pool
    }
    expect(core.modeStatus()).toMatchObject({ mode: "connected", dirtyBytes: 0 });
    const chunks = link.all.filter((sent) => sent.message.kind === "resync" && sent.message.length > 0);
    const image = new Uint8Array(volumeBytes);
    for (const [offset, data] of writes) image.set(data, offset);
    for (const chunk of chunks) expect(chunk.payload).toEqual(image.subarray(chunk.message.offset, chunk.message.offset + chunk.message.length));
    expect(chunks.reduce((sum, chunk) => sum + chunk.message.length, 0)).toBe(writes.reduce((sum, [, data]) => sum + data.length, 0));
    core.abort();
  });
});
