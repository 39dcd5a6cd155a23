/**
 * The corrupted-WRL fixtures (tests/fixtures/wrl/<case>/, made by make-fixtures.ts): each is
 * recovered or refused exactly as its expected.json says, through the library and through
 * `druvaa wrl info PATH --json`, and inspecting it never changes a byte.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DruvaaError } from "../../src/errors.ts";
import { crc32c } from "../../src/wrl/crc32c.ts";
import { inspectWrlAtPath, openWrlAtPath } from "../../src/wrl/paths.ts";
import { repoRoot, runCli } from "./helpers.ts";

const fixturesDir = join(repoRoot, "tests/fixtures/wrl");
const workDir = mkdtempSync(join(tmpdir(), "druvaa-wrl-fixtures-"));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

const caseNames = readdirSync(fixturesDir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();

function unpack(name: string): { path: string; expected: any } {
  const expected = JSON.parse(readFileSync(join(fixturesDir, name, "expected.json"), "utf8"));
  const bytes = Bun.gunzipSync(readFileSync(join(fixturesDir, name, "primary.img.gz")));
  expect(crc32c(bytes)).toBe(expected.imageCrc32c);
  const path = join(workDir, `${name}.img`);
  writeFileSync(path, bytes);
  return { path, expected };
}

function imageCrc(path: string): number {
  return crc32c(readFileSync(path));
}

describe("corrupted WRL fixtures", () => {
  test("every case the generator makes is committed", () => {
    expect(caseNames).toEqual(["bad-superblock", "flipped-payload-bit", "good", "lsn-discontinuity", "not-a-wrl", "torn-superblock-copy", "torn-tail-record"]);
  });

  for (const name of caseNames) {
    test(`${name}: library and CLI give the decision table's answer, bytes unchanged`, async () => {
      const { path, expected } = unpack(name);
      // Library, read-only.
      if (expected.ok) {
        const report = await inspectWrlAtPath(path);
        expect(report).toMatchObject({ headLsn: expected.headLsn, tailLsn: expected.tailLsn, recordCount: expected.recordCount });
        expect(report.recovery?.superblockCopy).toBe(expected.superblockCopy);
      } else {
        const error = await inspectWrlAtPath(path).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(DruvaaError);
        expect((error as DruvaaError).code).toBe(expected.code);
        expect((error as DruvaaError).message).toContain(expected.messageIncludes);
        expect((error as DruvaaError).hint?.length ?? 0).toBeGreaterThan(0);
      }
      // CLI.
      const cli = await runCli(["wrl", "info", path, "--json"]);
      if (expected.ok) {
        expect(cli.exitCode).toBe(0);
        expect(cli.json).toMatchObject({ ok: true, headLsn: expected.headLsn, tailLsn: expected.tailLsn, recordCount: expected.recordCount });
      } else {
        expect(cli.exitCode).toBe(expected.exitCode);
        expect(cli.json.error.code).toBe(expected.code);
        expect(cli.stderr).toContain("druvaa: error:");
        expect(cli.stderr).toContain("hint:");
      }
      expect(imageCrc(path)).toBe(expected.imageCrc32c);
      // A read-write open recovers what info reported and keeps going.
      if (expected.ok) {
        const wrl = await openWrlAtPath(path);
        try {
          const records = await wrl.read(expected.tailLsn + 1, 1 << 30);
          expect(records.map((r) => r.seq)).toEqual(expected.seqs);
          expect(await wrl.append({ epoch: 9, device: 0, seq: 99, offset: 0, data: new Uint8Array(512) })).toEqual({ ok: true, lsn: expected.headLsn + 1 });
        } finally {
          await wrl.close();
        }
        expect((await inspectWrlAtPath(path)).headLsn).toBe(expected.headLsn + 1);
      }
    }, 20_000);
  }
});
