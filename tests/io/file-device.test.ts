/**
 * Image files: what only FileDevice and openBlockDevice promise beyond the shared contract —
 * refusing bad paths with a stable code and hint, creating images, punching holes, waiting for
 * I/O in flight on close, and keeping the event loop free during sustained I/O.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileDevice } from "../../src/io/file-device.ts";
import { openBlockDevice } from "../../src/io/open-device.ts";
import { Random } from "../../src/io/random.ts";
import { DruvaaError } from "../../src/errors.ts";

const MiB = 1024 * 1024;
const directory = mkdtempSync(join(tmpdir(), "druvaa-file-device-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));
let fileIndex = 0;
const freshPath = (): string => join(directory, `image-${fileIndex++}.img`);

async function errorOf(start: Promise<unknown> | (() => Promise<unknown>)): Promise<DruvaaError> {
  try {
    await (typeof start === "function" ? start() : start);
  } catch (error) {
    if (error instanceof DruvaaError) return error;
    throw new Error(`expected a DruvaaError, got ${String(error)}`);
  }
  throw new Error("expected the call to fail, it succeeded");
}

describe("opening image files", () => {
  test("a missing path is NOT_FOUND with a truncate hint, and nothing is created", async () => {
    const path = freshPath();
    for (const opening of [() => FileDevice.open(path), () => openBlockDevice(path)]) {
      const error = await errorOf(opening);
      expect(error.code).toBe("NOT_FOUND");
      expect(error.hint).toContain("truncate -s 1G");
    }
    expect(() => statSync(path)).toThrow();
  });

  test("a directory is refused with IS_DIRECTORY, read-write or read-only", async () => {
    for (const opening of [() => FileDevice.open(directory), () => FileDevice.open(directory, { readOnly: true }), () => openBlockDevice(directory)]) {
      expect((await errorOf(opening)).code).toBe("IS_DIRECTORY");
    }
  });

  test("an empty file is refused with DEVICE_SIZE_ZERO and a hint", async () => {
    const path = freshPath();
    writeFileSync(path, "");
    const error = await errorOf(FileDevice.open(path));
    expect(error.code).toBe("DEVICE_SIZE_ZERO");
    expect(error.hint).toContain(`truncate -s 1G ${path}`);
  });

  test("a file that is not whole sectors is refused with DEVICE_SIZE_UNALIGNED", async () => {
    const path = freshPath();
    writeFileSync(path, new Uint8Array(1000));
    const error = await errorOf(openBlockDevice(path));
    expect(error.code).toBe("DEVICE_SIZE_UNALIGNED");
    expect(error.hint).toContain("truncate -s %512");
  });

  test("a character device is refused: /dev/null", async () => {
    expect((await errorOf(openBlockDevice("/dev/null"))).code).toBe("UNSUPPORTED_DEVICE_TYPE");
    expect((await errorOf(FileDevice.open("/dev/null"))).code).toBe("NOT_A_REGULAR_FILE");
  });

  test("an empty path is a usage error", async () => {
    expect((await errorOf(openBlockDevice(""))).code).toBe("USAGE");
  });

  test("createSizeBytes creates a zero-filled image of that size, durably named", async () => {
    const path = freshPath();
    const device = await openBlockDevice(path, { createSizeBytes: 2 * MiB });
    try {
      expect(device).toBeInstanceOf(FileDevice);
      expect(device.sizeBytes).toBe(2 * MiB);
      expect(statSync(path).size).toBe(2 * MiB);
      expect(await device.read(0, 2 * MiB)).toEqual(new Uint8Array(2 * MiB));
    } finally {
      await device.close();
    }
  });

  test("createSizeBytes never touches an existing image: its size and bytes are kept", async () => {
    const path = freshPath();
    const content = new Random(1).fill(new Uint8Array(4096));
    writeFileSync(path, content);
    const device = await FileDevice.open(path, { createSizeBytes: 8 * MiB });
    try {
      expect(device.sizeBytes).toBe(4096);
      expect(await device.read(0, 4096)).toEqual(content);
    } finally {
      await device.close();
    }
  });

  test("a createSizeBytes that is zero or not whole sectors is refused and creates nothing", async () => {
    const path = freshPath();
    expect((await errorOf(FileDevice.open(path, { createSizeBytes: 0 }))).code).toBe("DEVICE_SIZE_ZERO");
    expect((await errorOf(openBlockDevice(path, { createSizeBytes: 1000 }))).code).toBe("DEVICE_SIZE_UNALIGNED");
    expect(() => statSync(path)).toThrow();
  });

  test("an image the user may not open is PERMISSION_DENIED (checked as user nobody)", async () => {
    const shared = join(directory, "shared");
    mkdirSync(shared, { recursive: true });
    chmodSync(directory, 0o755);
    chmodSync(shared, 0o755);
    const path = join(shared, "root-only.img");
    writeFileSync(path, new Uint8Array(4096));
    chmodSync(path, 0o600);
    const moduleUrl = new URL("../../src/io/open-device.ts", import.meta.url).pathname;
    const script = `const { openBlockDevice } = await import(${JSON.stringify(moduleUrl)});
      try { await openBlockDevice(${JSON.stringify(path)}); console.log("opened"); }
      catch (e) { console.log(JSON.stringify({ code: e.code, hint: e.hint })); }`;
    const child = Bun.spawnSync(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
    expect(child.stderr.toString()).toBe("");
    const outcome = JSON.parse(child.stdout.toString()) as { code: string; hint: string };
    expect(outcome.code).toBe("PERMISSION_DENIED");
    expect(outcome.hint.length).toBeGreaterThan(0);
  });
});

describe("image file I/O", () => {
  test("discard punches a hole: the range reads zeros and its space is given back", async () => {
    const path = freshPath();
    const device = await FileDevice.open(path, { createSizeBytes: 4 * MiB });
    try {
      const data = new Random(2).fill(new Uint8Array(4 * MiB));
      await device.write(0, data);
      await device.flush();
      const allocatedBefore = statSync(path).blocks;
      await device.discard(1 * MiB, 2 * MiB);
      await device.flush();
      expect(await device.read(1 * MiB, 2 * MiB)).toEqual(new Uint8Array(2 * MiB));
      expect(await device.read(0, MiB)).toEqual(data.subarray(0, MiB));
      expect(await device.read(3 * MiB, MiB)).toEqual(data.subarray(3 * MiB));
      // 2 MiB = 4096 stat blocks of 512 bytes; allow file-system slack, not a full keep.
      expect(allocatedBefore - statSync(path).blocks).toBeGreaterThanOrEqual(3000);
      expect(statSync(path).size).toBe(4 * MiB);
    } finally {
      await device.close();
    }
  });

  test("close waits for writes in flight: they all land and none fails", async () => {
    const path = freshPath();
    const device = await FileDevice.open(path, { createSizeBytes: 8 * MiB });
    const datas = Array.from({ length: 8 }, (_, index) => new Random(10 + index).fill(new Uint8Array(MiB)));
    const writes = datas.map((data, index) => device.write(index * MiB, data));
    const closing = device.close();
    await Promise.all(writes);
    await closing;
    const again = await FileDevice.open(path);
    try {
      for (const [index, data] of datas.entries()) expect(await again.read(index * MiB, MiB)).toEqual(data);
    } finally {
      await again.close();
    }
  });

  test("32 MiB of sustained writes and reads leave the event loop free", async () => {
    const path = freshPath();
    const sizeBytes = 40 * MiB; // larger than one I/O piece (32 MiB) so the final whole read is split
    const device = await FileDevice.open(path, { createSizeBytes: sizeBytes });
    // Count event-loop turns while the I/O runs. If the I/O ran on the JS thread (sync calls
    // behind a promise), awaiting it would never yield and the count would stay 0.
    let loopTurns = 0;
    let ticking = true;
    const tick = (): void => {
      loopTurns += 1;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    try {
      const chunk = MiB;
      const inFlight = 4;
      const chunks = Array.from({ length: 32 }, (_, index) => new Random(100 + index).fill(new Uint8Array(chunk)));
      for (let index = 0; index < chunks.length; index += inFlight) {
        await Promise.all(chunks.slice(index, index + inFlight).map((data, offset) => device.write((index + offset) * chunk, data)));
      }
      await device.flush();
      const turnsAfterWrites = loopTurns;
      const whole = await device.read(0, sizeBytes);
      ticking = false;
      expect(turnsAfterWrites).toBeGreaterThan(0);
      expect(loopTurns).toBeGreaterThan(turnsAfterWrites);
      for (const [index, data] of chunks.entries()) {
        expect(Buffer.compare(whole.subarray(index * chunk, (index + 1) * chunk), data)).toBe(0);
      }
      expect(whole.subarray(32 * MiB)).toEqual(new Uint8Array(8 * MiB));
    } finally {
      ticking = false;
      await device.close();
    }
  });
});
