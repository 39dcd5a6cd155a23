/**
 * `druvaa changemap create | info` as real subprocesses on temporary image files and a real loop
 * device: results, error codes, exit codes, agreement with `druvaa sizing`, and that a refused
 * command leaves every byte where it was (or creates nothing).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openChangeMapAtPath } from "../../src/changemap/paths.ts";
import { druvaa } from "../helpers/cli.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const workDir = mkdtempSync(join(tmpdir(), "druvaa-changemap-cli-"));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

let counter = 0;
const freshPath = (label: string) => join(workDir, `${label}-${(counter += 1)}.chm`);

/** Runs `druvaa changemap ...`; parses stdout as JSON when --json is given. */
async function changemap(args: string[]) {
  const result = await druvaa(["changemap", ...args]);
  let json: any; // whatever the command printed: each test checks the fields it cares about
  if (args.includes("--json")) {
    try {
      json = JSON.parse(result.stdout);
    } catch {
      throw new Error(`druvaa changemap ${args.join(" ")}: stdout is not JSON:\n${result.stdout}\nstderr:\n${result.stderr}`);
    }
  }
  return { ...result, json };
}

describe("druvaa changemap create / info", () => {
  test("create makes a missing image at exactly the needed size; info reports it", async () => {
    const path = freshPath("one");
    const created = await changemap(["create", path, "--volume-size", "10GiB", "--json"]);
    expect(created.exitCode).toBe(0);
    // 32 KiB of header copies + 10 GiB / 4 KiB / 8 = 320 KiB of bitmap.
    expect(statSync(path).size).toBe(32 * KiB + 320 * KiB);
    expect(created.json).toMatchObject({ ok: true, createdImage: true, generation: 1, blockSizeBytes: 4096, layoutSizeBytes: 352 * KiB });
    expect(created.json.regions).toEqual([expect.objectContaining({ name: "default", volumeSizeBytes: 10 * GiB, bitmapBytes: 320 * KiB, dirtyBlocks: 0, dirtyBytes: 0, dirtyFraction: 0 })]);
    const info = await changemap(["info", path, "--json"]);
    expect(info.exitCode).toBe(0);
    expect(info.json).toMatchObject({ ok: true, uuid: created.json.uuid, generation: 1, blockSizeBytes: 4096 });
    const human = await changemap(["info", path]);
    expect(human.stdout).toContain(`change map ${created.json.uuid}`);
    expect(human.stdout).toContain("region default: volume 10.0 GiB");
  });

  test("several regions; bitmap sizes agree with `druvaa sizing`", async () => {
    const path = freshPath("regions");
    const created = await changemap(["create", path, "--region", "vol0=1GiB", "--region", "vol1", "--volume-size", "3GiB", "--block-size", "64KiB", "--json"]);
    expect(created.exitCode).toBe(0);
    expect(created.json.regions.map((r: { name: string; volumeSizeBytes: number }) => [r.name, r.volumeSizeBytes])).toEqual([["vol0", GiB], ["vol1", 3 * GiB]]);
    for (const region of created.json.regions) {
      const sizing = await druvaa(["sizing", "--volume-size", String(region.volumeSizeBytes), "--change-map-block-size", "64KiB", "--json"]);
      expect(JSON.parse(sizing.stdout).changeMapSizeBytes).toBe(region.bitmapBytes);
    }
  });

  test("info shows dirty blocks, bytes, fraction and the first ranges", async () => {
    const path = freshPath("dirty");
    expect((await changemap(["create", path, "--region", "a=1GiB", "--region", "b=100MiB", "--json"])).exitCode).toBe(0);
    const map = await openChangeMapAtPath(path);
    await map.region("b").markDirty(0, 8 * KiB);
    await map.region("b").markDirty(50 * MiB, 1 * MiB);
    for (let i = 0; i < 20; i += 1) await map.region("a").markDirty(i * MiB, 4 * KiB);
    await map.region("a").bumpGeneration();
    await map.close();
    const info = await changemap(["info", path, "--json"]);
    expect(info.json.generation).toBe(2);
    expect(info.json.regions[1]).toMatchObject({ name: "b", generation: 1, dirtyBlocks: 258, dirtyBytes: 8 * KiB + MiB, firstDirtyRanges: [{ offsetBytes: 0, lengthBytes: 8 * KiB }, { offsetBytes: 50 * MiB, lengthBytes: MiB }], moreDirtyRanges: false });
    expect(info.json.regions[1].dirtyFraction).toBeCloseTo((8 * KiB + MiB) / (100 * MiB), 12);
    expect(info.json.regions[0]).toMatchObject({ name: "a", generation: 2, dirtyBlocks: 20, moreDirtyRanges: true });
    expect(info.json.regions[0].firstDirtyRanges).toHaveLength(16);
    const human = await changemap(["info", path]);
    expect(human.stdout).toContain("dirty: 258 blocks, 1.01 MiB");
    expect(human.stdout).toContain("dirty ranges (offset+length): 0+8192, 52428800+1048576");
  });

  test("an existing change map is refused without --force and left byte for byte; --force replaces it", async () => {
    const path = freshPath("exists");
    const first = await changemap(["create", path, "--volume-size", "1GiB", "--json"]);
    const map = await openChangeMapAtPath(path);
    await map.region("default").markDirty(0, 4 * KiB);
    await map.close();
    const before = readFileSync(path);
    const again = await changemap(["create", path, "--volume-size", "1GiB", "--json"]);
    expect(again.exitCode).toBe(4);
    expect(again.json).toEqual({ ok: false, error: expect.objectContaining({ code: "CHANGEMAP_EXISTS", hint: expect.stringContaining("--force") }) });
    expect(readFileSync(path).equals(before)).toBe(true);
    const forced = await changemap(["create", path, "--volume-size", "1GiB", "--force", "--json"]);
    expect(forced.exitCode).toBe(0);
    expect(forced.json.uuid).not.toBe(first.json.uuid);
    expect(forced.json.regions[0].dirtyBlocks).toBe(0);
  });

  test("files that are not change maps are refused by info", async () => {
    const zeros = freshPath("zeros");
    writeFileSync(zeros, new Uint8Array(1 * MiB));
    const notMap = await changemap(["info", zeros, "--json"]);
    expect(notMap.exitCode).toBe(3);
    expect(notMap.json.error).toMatchObject({ code: "CHANGEMAP_NOT_FOUND", hint: expect.stringContaining("changemap create") });
    const wrl = freshPath("wrl");
    expect((await druvaa(["wrl", "create", "--primary", wrl, "--size", "2MiB"])).exitCode).toBe(0);
    const onWrl = await changemap(["info", wrl]);
    expect(onWrl.exitCode).toBe(3);
    expect(onWrl.stderr).toContain("write log");
    const refusedOverWrl = await changemap(["create", wrl, "--volume-size", "1GiB", "--json"]);
    expect(refusedOverWrl.json.error.code).toBe("CHANGEMAP_DEVICE_IN_USE");
    const empty = freshPath("empty");
    writeFileSync(empty, new Uint8Array(0));
    expect((await changemap(["info", empty, "--json"])).json.error.code).toBe("CHANGEMAP_NOT_FOUND");
    const missing = await changemap(["info", freshPath("missing"), "--json"]);
    expect(missing.exitCode).toBe(3);
    expect(missing.json.error.code).toBe("NOT_FOUND");
    const truncated = freshPath("truncated");
    expect((await changemap(["create", truncated, "--volume-size", "1GiB"])).exitCode).toBe(0);
    writeFileSync(truncated, readFileSync(truncated).subarray(0, 32 * KiB));
    expect((await changemap(["info", truncated, "--json"])).json.error.code).toBe("CHANGEMAP_DEVICE_TOO_SMALL");
  });

  test("bad input is refused with a typed error and creates nothing", async () => {
    const cases: Array<[string[], number, string]> = [
      [["--volume-size", "1GiB", "--block-size", "1000"], 2, "CHANGEMAP_BAD_BLOCK_SIZE"],
      [["--volume-size", "1GiB", "--block-size", "256"], 2, "CHANGEMAP_BAD_BLOCK_SIZE"],
      [["--volume-size", "lots"], 2, "USAGE"],
      [[], 2, "USAGE"],
      [["--region", "vol0"], 2, "USAGE"],
      [["--region", "vol0=0"], 2, "CHANGEMAP_BAD_REGION"],
      [["--region", "vol0=1000"], 2, "CHANGEMAP_BAD_REGION"],
      [["--region", "bad name=1GiB"], 2, "CHANGEMAP_BAD_REGION"],
      [["--region", "v=1GiB", "--region", "v=2GiB"], 2, "CHANGEMAP_BAD_REGION"],
      [["--volume-size", "1PiB", "--block-size", "512"], 2, "CHANGEMAP_TOO_LARGE"],
      [["--volume-size", "1GiB", "--size", "60KiB"], 4, "CHANGEMAP_DEVICE_TOO_SMALL"],
      [["--volume-size", "1GiB", "--bogus"], 2, "USAGE"],
    ];
    for (const [args, exitCode, code] of cases) {
      const path = freshPath("bad");
      const result = await changemap(["create", path, ...args, "--json"]);
      expect({ args, exitCode: result.exitCode, code: result.json.error?.code }).toEqual({ args, exitCode, code });
      expect(result.json.error.hint ?? "").not.toBe("");
      expect(existsSync(path)).toBe(false);
    }
  });

  test("an existing file too small is refused and left unchanged; --size makes a larger new image", async () => {
    const small = freshPath("small");
    writeFileSync(small, new Uint8Array(64 * KiB).fill(7));
    const refused = await changemap(["create", small, "--volume-size", "10GiB", "--json"]);
    expect(refused.exitCode).toBe(4);
    expect(refused.json.error).toMatchObject({ code: "CHANGEMAP_DEVICE_TOO_SMALL", hint: expect.stringContaining("truncate -s 360448") });
    expect(readFileSync(small).equals(Buffer.alloc(64 * KiB, 7))).toBe(true);
    const resize = await changemap(["create", small, "--volume-size", "1GiB", "--size", "1MiB", "--json"]);
    expect({ exitCode: resize.exitCode, code: resize.json.error.code }).toEqual({ exitCode: 2, code: "USAGE" });
    expect(readFileSync(small).equals(Buffer.alloc(64 * KiB, 7))).toBe(true);
    const sized = freshPath("sized");
    const created = await changemap(["create", sized, "--volume-size", "1GiB", "--size", "1MiB", "--json"]);
    expect(created.exitCode).toBe(0);
    expect(statSync(sized).size).toBe(MiB);
    expect(created.json).toMatchObject({ deviceSizeBytes: MiB, layoutSizeBytes: 32 * KiB + 32 * KiB });
  });

  test("--help shows examples", async () => {
    for (const args of [["--help"], ["create", "--help"], ["info", "--help"]]) {
      const help = await changemap(args);
      expect(help.exitCode).toBe(0);
      expect(help.stdout).toContain("EXAMPLES");
      expect(help.stdout).toContain("druvaa changemap");
    }
  });
});

describe("on a real block device", () => {
  test("create and info on a loop device; marks survive reopening it", async () => {
    const backing = join(workDir, "loop-backing.img");
    writeFileSync(backing, new Uint8Array(2 * MiB).fill(0x5a));
    let loop: string | undefined;
    try {
      const attach = Bun.spawnSync(["losetup", "--find", "--show", backing]);
      expect(attach.exitCode).toBe(0);
      loop = attach.stdout.toString().trim();
      const created = await changemap(["create", loop, "--region", "vol0=20GiB", "--region", "vol1=4GiB", "--json"]);
      expect(created.exitCode).toBe(0);
      expect(created.json).toMatchObject({ createdImage: false, deviceSizeBytes: 2 * MiB });
      const map = await openChangeMapAtPath(loop);
      await map.region("vol1", { volumeSizeBytes: 4 * GiB }).markDirty(3 * GiB, 12 * KiB);
      await map.close();
      const info = await changemap(["info", loop, "--json"]);
      // The old 0x5a bytes under the bitmaps were zeroed by create: only the mark reads dirty.
      expect(info.json.regions.map((r: { dirtyBlocks: number }) => r.dirtyBlocks)).toEqual([0, 3]);
      expect(info.json.regions[1].firstDirtyRanges).toEqual([{ offsetBytes: 3 * GiB, lengthBytes: 12 * KiB }]);
    } finally {
      if (loop !== undefined) Bun.spawnSync(["losetup", "--detach", loop]);
    }
  }, 30_000);
});
