/**
 * The NBD server against real clients nobody here wrote: nbdinfo, qemu-io, nbdcopy (libnbd) and
 * fio's nbd engine. The server runs as its own process (tests/nbd/fixtures/serve.ts) over a temp
 * image file through exportFromBlockDevice, as `druvaa client attach` will run it; the tests check
 * the bytes in the image file afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { removeDir, run, startFixture, tempDir, type FixtureProcess } from "./helpers.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const imageBytes = 64 * MiB;

let dir: string;
let image: string;
let socketPath: string;
let fixture: FixtureProcess | undefined;
let uri: string;

beforeAll(async () => {
  dir = tempDir();
  image = join(dir, "disk.img");
  socketPath = join(dir, "nbd.sock");
  writeFileSync(image, new Uint8Array(0));
  await run(["truncate", "-s", String(imageBytes), image]);
  fixture = await startFixture(["--listen", `unix:${socketPath}`, "--image", image, "--description", "druvaa test disk"]);
  uri = `nbd+unix:///?socket=${socketPath}`;
});

afterAll(async () => {
  await fixture?.stop();
  removeDir(dir);
});

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

describe("nbdinfo", () => {
  test("--json shows the size, block sizes and flags we advertise", async () => {
    const result = await run(["nbdinfo", "--json", uri]);
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    const info = JSON.parse(result.stdout);
    expect(info.protocol).toBe("newstyle-fixed");
    const [exported] = info.exports;
    expect(exported).toMatchObject({
      "export-name": "",
      description: "druvaa test disk",
      "export-size": imageBytes,
      "block_size_minimum": 512,
      "block_size_preferred": 4096,
      "block_size_maximum": 32 * MiB,
      "is_read_only": false,
      "can_flush": true,
      "can_fua": true,
      "can_trim": true,
      "can_zero": true,
      "can_cache": true,
      "can_multi_conn": true,
      "can_df": false,
    });
  });

  test("--list lists the export", async () => {
    const result = await run(["nbdinfo", "--list", "--json", uri]);
    expect(result.exitCode).toBe(0);
    const info = JSON.parse(result.stdout);
    expect(info.exports.map((entry: { "export-name": string }) => entry["export-name"])).toEqual([""]);
    expect(info.exports[0]["export-size"]).toBe(imageBytes);
  });

  test("a read-only export is advertised read-only, without trim/zero/fua", async () => {
    const roSocket = join(dir, "ro.sock");
    const readOnly = await startFixture(["--listen", `unix:${roSocket}`, "--image", image, "--read-only", "--name", "ro"]);
    try {
      const result = await run(["nbdinfo", "--json", `nbd+unix:///ro?socket=${roSocket}`]);
      expect(result.exitCode).toBe(0);
      expect(JSON.parse(result.stdout).exports[0]).toMatchObject({
        "export-name": "ro",
        "is_read_only": true,
        "can_trim": false,
        "can_zero": false,
        "can_fua": false,
        "can_multi_conn": true,
      });
      // A write through a real client is refused and changes nothing.
      const before = sha256(readFileSync(image));
      const write = await run(["qemu-io", "-f", "raw", `nbd+unix:///ro?socket=${roSocket}`, "-c", "write -P 0x11 0 4k"]);
      expect(write.stdout + write.stderr).toMatch(/read-only|Operation not permitted|Permission denied/i);
      expect(sha256(readFileSync(image))).toBe(before);
    } finally {
      await readOnly.stop();
    }
  });
});

describe("qemu-io", () => {
  test("write, read-verify, write zeroes, discard, flush: the image file holds the result", async () => {
    // Make the zero and discard ranges non-zero first, so their effect is visible.
    const setup = await run(["qemu-io", "-f", "raw", uri, "-c", "write -P 0x5a 1M 2M"]);
    expect(setup.exitCode).toBe(0);
    const result = await run([
      "qemu-io", "-f", "raw", uri,
      "-c", "write -P 0xab 0 1M",
      "-c", "read -P 0xab 0 1M",
      "-c", "write -z 1M 64k",
      "-c", "discard 2M 64k",
      "-c", "flush",
    ]);
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    expect(result.stdout).not.toMatch(/Pattern verification failed|error|failed/i);
    const bytes = readFileSync(image);
    expect(bytes.subarray(0, MiB).every((byte) => byte === 0xab)).toBe(true);
    expect(bytes.subarray(MiB, MiB + 64 * KiB).every((byte) => byte === 0)).toBe(true);
    expect(bytes.subarray(MiB + 64 * KiB, 2 * MiB).every((byte) => byte === 0x5a)).toBe(true);
    // Discarded blocks of an image file read back as zeroes (hole punched or zeroed).
    expect(bytes.subarray(2 * MiB, 2 * MiB + 64 * KiB).every((byte) => byte === 0)).toBe(true);
    expect(bytes.subarray(2 * MiB + 64 * KiB, 3 * MiB).every((byte) => byte === 0x5a)).toBe(true);
  });
});

describe("nbdcopy", () => {
  test("a random 16 MiB file copied in and back out is unchanged", async () => {
    const source = join(dir, "random.bin");
    const back = join(dir, "back.bin");
    const random = new Uint8Array(16 * MiB);
    for (let at = 0; at < random.length; at += 65536) crypto.getRandomValues(random.subarray(at, at + 65536));
    writeFileSync(source, random);
    const copyIn = await run(["nbdcopy", "--flush", source, uri]);
    expect(copyIn.stderr).toBe("");
    expect(copyIn.exitCode).toBe(0);
    expect(sha256(readFileSync(image).subarray(0, 16 * MiB))).toBe(sha256(random));
    // nbdcopy copies the whole export out; compare its first 16 MiB.
    const copyOut = await run(["nbdcopy", uri, back]);
    expect(copyOut.exitCode).toBe(0);
    expect(sha256(readFileSync(back).subarray(0, 16 * MiB))).toBe(sha256(random));
  });
});

describe("fio nbd engine", () => {
  test("the nbd engine is available", async () => {
    const help = await run(["fio", "--enghelp=nbd"]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain("uri");
  });

  for (const rw of ["randwrite", "randrw"]) {
    test(`${rw} 4k at iodepth 16 with crc32c verification`, async () => {
      const result = await run([
        "fio", "--name=druvaa-nbd", "--ioengine=nbd", `--uri=${uri}`, `--rw=${rw}`, "--bs=4k", "--iodepth=16",
        "--verify=crc32c", "--size=16M", "--output-format=json",
      ], dir);
      expect(result.exitCode).toBe(0);
      // fio prints "fio: connected to NBD server" before the JSON document.
      const job = JSON.parse(result.stdout.slice(result.stdout.indexOf("{"))).jobs[0];
      expect(job.error).toBe(0);
      expect(job.write.io_bytes).toBeGreaterThan(0);
      // verify reads back every block written (randrw verifies its written half).
      expect(job.read.io_bytes).toBeGreaterThan(0);
    });
  }
});

describe("shutdown", () => {
  test("SIGTERM with clients gone: the server process exits 0 and removes its socket", async () => {
    const server = fixture!;
    await server.stop();
    expect(server.proc.exitCode).toBe(0);
    expect(existsSync(socketPath)).toBe(false);
  });
});
