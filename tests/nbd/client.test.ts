/**
 * The built-in NBD client (what `druvaa demo` writes with when no external client is installed),
 * checked against nbdkit — the reference server nobody here wrote — and against druvaa's own server.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectNbd } from "../../src/nbd/client.ts";
import { exportFromBlockDevice } from "../../src/nbd/backend.ts";
import { startNbdServer } from "../../src/nbd/server.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";

const dir = mkdtempSync(join(tmpdir(), "druvaa-nbd-client-"));
const children: Bun.Subprocess[] = [];
afterAll(() => {
  for (const child of children) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

async function startNbdkit(sizeBytes: number): Promise<string> {
  const socket = join(dir, `nbdkit-${children.length}.sock`);
  const child = Bun.spawn(["nbdkit", "--foreground", "--unix", socket, "memory", String(sizeBytes)], { stdout: "ignore", stderr: "inherit" });
  children.push(child);
  for (let i = 0; i < 200 && !existsSync(socket); i += 1) await Bun.sleep(25);
  expect(existsSync(socket)).toBe(true);
  return `unix:${socket}`;
}

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i += 1) bytes[i] = (i * 31 + seed * 7) & 0xff;
  return bytes;
}

describe("built-in NBD client", () => {
  test("against nbdkit: size, writes in flight, read back, zeroes, trim, flush", async () => {
    const client = await connectNbd(await startNbdkit(8 * 1024 * 1024));
    expect(client.info.sizeBytes).toBe(8 * 1024 * 1024);
    const writes = Array.from({ length: 32 }, (_, i) => client.write(i * 65536, pattern(65536, i)));
    expect(client.inflight).toBeGreaterThan(1);
    await Promise.all(writes);
    await client.flush();
    const back = await client.read(5 * 65536, 65536);
    expect(Buffer.from(back).equals(Buffer.from(pattern(65536, 5)))).toBe(true);
    await client.writeZeroes(0, 4096);
    expect((await client.read(0, 4096)).every((b) => b === 0)).toBe(true);
    await client.trim(65536, 65536);
    await client.close();
  });

  test("an out-of-range request fails with the server's error; the connection keeps working", async () => {
    const client = await connectNbd(await startNbdkit(1024 * 1024));
    await expect(client.read(1024 * 1024, 4096)).rejects.toThrow(/EINVAL|ENOSPC|EIO/);
    await client.write(0, pattern(4096, 1));
    expect(Buffer.from(await client.read(0, 4096)).equals(Buffer.from(pattern(4096, 1)))).toBe(true);
    await client.close();
  });

  test("against druvaa's own server, and an unknown export is refused with the server's reason", async () => {
    const device = new MemoryDevice(4 * 1024 * 1024, "mem");
    const server = await startNbdServer({ listen: `unix:${join(dir, "own.sock")}`, exports: [exportFromBlockDevice(device, "disk0")] });
    try {
      const client = await connectNbd(server.address, "disk0");
      expect(client.info.minimumBlockSizeBytes).toBe(512);
      await client.write(8192, pattern(8192, 9));
      await client.close();
      expect(Buffer.from(device.snapshot().subarray(8192, 16384)).equals(Buffer.from(pattern(8192, 9)))).toBe(true);
      await expect(connectNbd(server.address, "nope")).rejects.toMatchObject({ code: "NBD_EXPORT_REFUSED" });
    } finally {
      await server.close();
    }
  });
});
