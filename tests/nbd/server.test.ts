/**
 * Server setup at the edge: listen addresses, TCP as well as Unix sockets, stale socket files,
 * export validation, several exports, and what a real client sees for a wrong export name.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DruvaaError } from "../../src/errors.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { exportFromBlockDevice, type NbdExport } from "../../src/nbd/backend.ts";
import { nbdUri, parseListenAddress, startNbdServer } from "../../src/nbd/server.ts";
import { removeDir, run, startFixture, tempDir } from "./helpers.ts";

let dir: string;
beforeAll(() => {
  dir = tempDir();
});
afterAll(() => removeDir(dir));

const memoryExport = (name: string, sizeBytes = 1024 * 1024, block = 512): NbdExport =>
  exportFromBlockDevice(new MemoryDevice(sizeBytes, name, block), name);

async function refusal(promise: Promise<unknown>): Promise<DruvaaError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DruvaaError) return error;
    throw error;
  }
  throw new Error("expected a DruvaaError");
}

describe("listen addresses", () => {
  test("unix, IPv4, IPv6 and host names parse; their URIs are what libnbd expects", () => {
    expect(parseListenAddress("unix:/run/x.sock")).toEqual({ kind: "unix", path: "/run/x.sock" });
    expect(parseListenAddress("127.0.0.1:10809")).toEqual({ kind: "tcp", host: "127.0.0.1", port: 10809 });
    expect(parseListenAddress("[::1]:0")).toEqual({ kind: "tcp", host: "::1", port: 0 });
    expect(parseListenAddress("localhost:6007")).toEqual({ kind: "tcp", host: "localhost", port: 6007 });
    expect(nbdUri({ kind: "unix", path: "/run/x.sock" }, "vol 1")).toBe("nbd+unix:///vol%201?socket=%2Frun%2Fx.sock");
    expect(nbdUri({ kind: "tcp", host: "::1", port: 10809 })).toBe("nbd://[::1]:10809/");
  });

  test("bad addresses are usage errors with a hint", () => {
    for (const text of ["", "unix:", "10809", "host:", "host:99999", "host:12ab", ":::1:5", `unix:/${"x".repeat(200)}`]) {
      let error: unknown;
      try {
        parseListenAddress(text);
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(DruvaaError);
      expect((error as DruvaaError).code).toBe("NBD_BAD_LISTEN_ADDRESS");
      expect((error as DruvaaError).hint).toBeTruthy();
    }
  });

  test("TCP on 127.0.0.1 with port 0: the real port is reported and nbdinfo reads the export", async () => {
    const server = await startNbdServer({ listen: "127.0.0.1:0", exports: [memoryExport("tcp", 2 * 1024 * 1024)] });
    try {
      expect(server.address).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
      const result = await run(["nbdinfo", "--json", server.uri("tcp")]);
      expect(result.exitCode).toBe(0);
      expect(JSON.parse(result.stdout).exports[0]["export-size"]).toBe(2 * 1024 * 1024);
    } finally {
      await server.close();
    }
  });

  test("a TCP port already in use is NBD_ADDRESS_IN_USE", async () => {
    const first = await startNbdServer({ listen: "127.0.0.1:0", exports: [memoryExport("a")] });
    try {
      const error = await refusal(startNbdServer({ listen: first.address, exports: [memoryExport("b")] }));
      expect(error.code).toBe("NBD_ADDRESS_IN_USE");
    } finally {
      await first.close();
    }
  });
});

describe("Unix socket files", () => {
  test("a stale socket file left by a killed server is replaced", async () => {
    const socketPath = join(dir, "stale.sock");
    const killed = await startFixture(["--listen", `unix:${socketPath}`, "--memory", String(1024 * 1024)]);
    killed.proc.kill("SIGKILL");
    await killed.proc.exited;
    expect(existsSync(socketPath)).toBe(true);
    const server = await startNbdServer({ listen: `unix:${socketPath}`, exports: [memoryExport("x")] });
    try {
      const result = await run(["nbdinfo", "--size", server.uri("x")]);
      expect(result.stdout.trim()).toBe(String(1024 * 1024));
    } finally {
      await server.close();
    }
    expect(existsSync(socketPath)).toBe(false);
  });

  test("a live server's socket and a regular file are never taken over", async () => {
    const socketPath = join(dir, "live.sock");
    const live = await startNbdServer({ listen: `unix:${socketPath}`, exports: [memoryExport("live")] });
    try {
      expect((await refusal(startNbdServer({ listen: `unix:${socketPath}`, exports: [memoryExport("y")] }))).code).toBe("NBD_ADDRESS_IN_USE");
      // The liveness probe connected and left; it must not linger as a connection.
      while (live.connections() > 0) await Bun.sleep(2);
    } finally {
      await live.close();
    }
    const filePath = join(dir, "not-a-socket");
    writeFileSync(filePath, "precious");
    expect((await refusal(startNbdServer({ listen: `unix:${filePath}`, exports: [memoryExport("z")] }))).code).toBe("NBD_ADDRESS_IN_USE");
    expect(await Bun.file(filePath).text()).toBe("precious");
  });

  test("a socket path in a missing directory is NBD_LISTEN_FAILED with a hint", async () => {
    const error = await refusal(startNbdServer({ listen: `unix:${dir}/no/such/dir.sock`, exports: [memoryExport("q")] }));
    expect(error.code).toBe("NBD_LISTEN_FAILED");
    expect(error.hint).toBeTruthy();
  });
});

describe("exports", () => {
  test("invalid export sets are refused before listening", async () => {
    const cases: NbdExport[][] = [
      [],
      [memoryExport("dup"), memoryExport("dup")],
      [{ ...memoryExport("odd"), logicalBlockSizeBytes: 1000 }],
      [{ ...memoryExport("ragged"), sizeBytes: 1024 * 1024 + 100 }],
      [{ ...memoryExport("huge-block"), logicalBlockSizeBytes: 128 * 1024 }],
      [{ ...memoryExport("nul"), name: "a\0b" }],
    ];
    for (const exports of cases) {
      const socketPath = join(dir, "invalid.sock");
      const error = await refusal(startNbdServer({ listen: `unix:${socketPath}`, exports }));
      expect(error.code).toBe("NBD_BAD_EXPORT");
      expect(existsSync(socketPath)).toBe(false);
    }
  });

  test("several exports: nbdinfo --list shows each with its size; a wrong name is ERR_UNKNOWN to libnbd", async () => {
    const socketPath = join(dir, "multi.sock");
    const server = await startNbdServer({
      listen: `unix:${socketPath}`,
      exports: [memoryExport("alpha", 1024 * 1024), memoryExport("beta", 2 * 1024 * 1024, 4096)],
    });
    try {
      const list = await run(["nbdinfo", "--list", "--json", `nbd+unix:///?socket=${socketPath}`]);
      expect(list.exitCode).toBe(0);
      const exports = JSON.parse(list.stdout).exports.map((entry: Record<string, unknown>) => [entry["export-name"], entry["export-size"], entry["block_size_minimum"]]);
      expect(exports).toEqual([["alpha", 1024 * 1024, 512], ["beta", 2 * 1024 * 1024, 4096]]);
      // With two exports there is no default export. libnbd reports NBD_REP_ERR_UNKNOWN as ENOENT.
      const noDefault = await run(["nbdinfo", "--json", `nbd+unix:///?socket=${socketPath}`]);
      expect(noDefault.exitCode).not.toBe(0);
      expect(noDefault.stderr).toContain("No such file or directory");
      const wrong = await run(["nbdinfo", "--json", `nbd+unix:///gamma?socket=${socketPath}`]);
      expect(wrong.exitCode).not.toBe(0);
      expect(wrong.stderr).toContain("No such file or directory");
    } finally {
      await server.close();
    }
  });
});
