/**
 * `druvaa wrl create | add-device | info` as real subprocesses on temporary image files and on a
 * real loop device: results, error codes, exit codes, and that a refused command leaves every
 * byte where it was.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openBlockDevice } from "../../src/io/open-device.ts";
import { WriteLog } from "../../src/wrl/write-log.ts";
import { payloadFor, runCli } from "./helpers.ts";

const MiB = 1024 * 1024;
const workDir = mkdtempSync(join(tmpdir(), "druvaa-wrl-cli-"));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

let counter = 0;
const freshPath = (label: string) => join(workDir, `${label}-${(counter += 1)}.img`);

function makeFile(sizeBytes: number, fill = 0): string {
  const path = freshPath("file");
  writeFileSync(path, new Uint8Array(sizeBytes).fill(fill));
  return path;
}

describe("druvaa wrl create / info", () => {
  test("create makes a missing image of --size; info reports it", async () => {
    const path = freshPath("primary");
    const created = await runCli(["wrl", "create", "--primary", path, "--size", "4MiB", "--json"]);
    expect(created.exitCode).toBe(0);
    expect(statSync(path).size).toBe(4 * MiB);
    expect(created.json).toMatchObject({ ok: true, sizeBytes: 4 * MiB - 64 * 1024, usedBytes: 0, headLsn: 0, tailLsn: 0, recordCount: 0 });
    const info = await runCli(["wrl", "info", path, "--json"]);
    expect(info.exitCode).toBe(0);
    expect(info.json).toMatchObject({ ok: true, uuid: created.json.uuid, sizeBytes: created.json.sizeBytes, freeBytes: created.json.sizeBytes });
    expect(info.json.devices).toEqual([expect.objectContaining({ index: 0, pathHint: path, dataBytes: 4 * MiB - 64 * 1024 })]);
    const human = await runCli(["wrl", "info", path]);
    expect(human.stdout).toContain(`write log ${created.json.uuid}`);
    expect(human.stdout).toContain("0 held");
  });

  test("create with secondaries; info counts records appended through the library", async () => {
    const [primary, second, third] = [freshPath("p"), freshPath("s"), freshPath("s")];
    const created = await runCli(["wrl", "create", "--primary", primary, "--secondary", second, "--secondary", third, "--size", "2M", "--json"]);
    expect(created.exitCode).toBe(0);
    expect(created.json.devices.map((d: { pathHint: string }) => d.pathHint)).toEqual([primary, second, third]);
    const wrl = await WriteLog.open(await Promise.all([primary, second, third].map((p) => openBlockDevice(p))));
    for (let id = 1; id <= 3; id += 1) await wrl.append({ epoch: 1, device: 0, seq: id, offset: 0, data: payloadFor(id, 100_000) });
    await wrl.advanceTail(1);
    await wrl.close();
    const info = await runCli(["wrl", "info", primary, "--json"]);
    expect(info.json).toMatchObject({ headLsn: 3, tailLsn: 1, recordCount: 2, usedBytes: 2 * 4096 * 25 });
  });

  test("a missing path without --size is NOT_FOUND and creates nothing", async () => {
    const path = freshPath("missing");
    const result = await runCli(["wrl", "create", "--primary", path, "--json"]);
    expect(result.exitCode).toBe(3);
    expect(result.json).toEqual({ ok: false, error: expect.objectContaining({ code: "NOT_FOUND", hint: expect.stringContaining("--size") }) });
    expect(existsSync(path)).toBe(false);
  });

  test("too small: WRL_TOO_SMALL, the existing file unchanged, no new file left behind", async () => {
    const existing = makeFile(512 * 1024, 0x33);
    const result = await runCli(["wrl", "create", "--primary", existing]);
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toMatch(/^druvaa: error: .*too small for a write log device.*\n {2}hint: /);
    expect(readFileSync(existing).every((b) => b === 0x33)).toBe(true);
    const missing = freshPath("small");
    expect((await runCli(["wrl", "create", "--primary", missing, "--size", "100K", "--json"])).json.error.code).toBe("WRL_TOO_SMALL");
    expect(existsSync(missing)).toBe(false);
  });

  test("an existing write log is refused (WRL_EXISTS, bytes unchanged) unless --force", async () => {
    const path = freshPath("existing");
    const first = await runCli(["wrl", "create", "--primary", path, "--size", "2M", "--json"]);
    const before = readFileSync(path);
    const again = await runCli(["wrl", "create", "--primary", path, "--json"]);
    expect(again.exitCode).toBe(4);
    expect(again.json.error.code).toBe("WRL_EXISTS");
    expect(again.json.error.hint).toContain("--force");
    expect(Buffer.compare(readFileSync(path), before)).toBe(0);
    const forced = await runCli(["wrl", "create", "--primary", path, "--force", "--json"]);
    expect(forced.exitCode).toBe(0);
    expect(forced.json.uuid).not.toBe(first.json.uuid);
  });

  test("info on something that is not a write log: WRL_NOT_FOUND, one line and a hint, bytes unchanged", async () => {
    const path = makeFile(2 * MiB, 0x5a);
    const result = await runCli(["wrl", "info", path]);
    expect(result.exitCode).toBe(3);
    expect(result.stderr.trimEnd().split("\n")).toEqual([`druvaa: error: ${path}: not a druvaa write log (no write log superblock)`, `  hint: Create one with: druvaa wrl create --primary ${path}`]);
    expect(readFileSync(path).every((b) => b === 0x5a)).toBe(true);
    const missing = await runCli(["wrl", "info", join(workDir, "nope.img"), "--json"]);
    expect([missing.exitCode, missing.json.error.code]).toEqual([3, "NOT_FOUND"]);
  });

  test("bad arguments are usage errors (exit 2)", async () => {
    expect((await runCli(["wrl", "create", "--json"])).exitCode).toBe(2);
    expect((await runCli(["wrl", "create", "--primary", freshPath("x"), "--size", "lots", "--json"])).json.error.code).toBe("USAGE");
    expect((await runCli(["wrl", "info", "--bogus", "x"])).exitCode).toBe(2);
    const path = freshPath("twice");
    expect((await runCli(["wrl", "create", "--primary", path, "--secondary", path, "--size", "2M", "--json"])).json.error.code).toBe("USAGE");
  });
});

describe("druvaa wrl add-device", () => {
  test("adds a secondary (created with --size); info lists it; refusals change nothing", async () => {
    const primary = freshPath("p");
    await runCli(["wrl", "create", "--primary", primary, "--size", "2M"]);
    const second = freshPath("s");
    const added = await runCli(["wrl", "add-device", primary, second, "--size", "3M", "--json"]);
    expect(added.exitCode).toBe(0);
    expect(added.json.added).toMatchObject({ index: 1, pathHint: second, dataBytes: 3 * MiB - 4096 });
    const info = await runCli(["wrl", "info", primary, "--json"]);
    expect(info.json.devices.map((d: { pathHint: string }) => d.pathHint)).toEqual([primary, second]);
    expect(info.json.sizeBytes).toBe(2 * MiB - 64 * 1024 + 3 * MiB - 4096);

    const beforePrimary = readFileSync(primary);
    const beforeSecond = readFileSync(second);
    const duplicate = await runCli(["wrl", "add-device", primary, second, "--json"]);
    expect([duplicate.exitCode, duplicate.json.error.code]).toEqual([2, "USAGE"]);
    const other = freshPath("other");
    await runCli(["wrl", "create", "--primary", other, "--size", "2M"]);
    const otherBefore = readFileSync(other);
    const member = await runCli(["wrl", "add-device", primary, other, "--json"]);
    expect([member.exitCode, member.json.error.code]).toEqual([4, "WRL_EXISTS"]);
    expect(Buffer.compare(readFileSync(other), otherBefore)).toBe(0);
    const notWrl = await runCli(["wrl", "add-device", makeFile(2 * MiB), freshPath("q"), "--size", "2M", "--json"]);
    expect(notWrl.json.error.code).toBe("WRL_NOT_FOUND");
    // Adding a device reopens the log (new incarnation, checkpoint): only the superblock area changes.
    expect(Buffer.compare(readFileSync(primary).subarray(64 * 1024), beforePrimary.subarray(64 * 1024))).toBe(0);
    expect(Buffer.compare(readFileSync(second), beforeSecond)).toBe(0);
    // Without its secondary, the log cannot be opened.
    rmSync(second);
    const lost = await runCli(["wrl", "info", primary, "--json"]);
    expect([lost.exitCode, lost.json.error.code]).toEqual([3, "WRL_DEVICE_MISSING"]);
  });
});

describe("on a real block device", () => {
  test("create, append with O_DIRECT, info and add-device on loop devices", async () => {
    const backing = [makeFile(8 * MiB), makeFile(4 * MiB)];
    const loops: string[] = [];
    try {
      for (const file of backing) {
        const attach = Bun.spawnSync(["losetup", "--find", "--show", file]);
        expect(attach.exitCode).toBe(0);
        loops.push(attach.stdout.toString().trim());
      }
      const [primary, secondary] = loops as [string, string];
      const created = await runCli(["wrl", "create", "--primary", primary, "--json"]);
      expect(created.exitCode).toBe(0);
      expect(created.json.sizeBytes).toBe(8 * MiB - 64 * 1024);
      const device = await openBlockDevice(primary);
      const wrl = await WriteLog.open([device]);
      const sizes = [512, 4096, 5000, 65536, 100_001];
      const results = await Promise.all(sizes.map((size, i) => wrl.append({ epoch: 1, device: "loop", seq: i, offset: 0, data: payloadFor(i, size) })));
      expect(results.every((r) => r.ok)).toBe(true);
      await wrl.close();
      expect((await runCli(["wrl", "add-device", primary, secondary, "--json"])).exitCode).toBe(0);
      const info = await runCli(["wrl", "info", primary, "--json"]);
      expect(info.json).toMatchObject({ ok: true, headLsn: sizes.length, recordCount: sizes.length, sizeBytes: 8 * MiB - 64 * 1024 + 4 * MiB - 4096 });
      const reopened = await WriteLog.open([await openBlockDevice(primary, { readOnly: true }), await openBlockDevice(secondary, { readOnly: true })], { readOnly: true });
      const records = await reopened.read(1, 64 * MiB);
      await reopened.close();
      expect(records.map((r) => r.data.length)).toEqual(sizes);
      expect(records.every((r) => Buffer.compare(r.data, payloadFor(r.seq, r.data.length)) === 0)).toBe(true);
    } finally {
      for (const loop of loops) Bun.spawnSync(["losetup", "--detach", loop]);
    }
  }, 30_000);
});
