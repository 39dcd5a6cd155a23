/**
 * failback's plan (src/commands/failback-plan.ts) without the client's change map: the checksum
 * pass compares only what neither side tracked, so a DR-side write is never taken for the
 * primary's (no false split brain), while a primary write next to it, in a page nobody tracked,
 * is found.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { planFailback, type FailoverView } from "../../src/commands/failback-plan.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const sizeBytes = 4 * MiB;
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function view(drWritten: FailoverView["drWritten"]): FailoverView {
  return {
    version: 1, wrl: "wrl0", wrlUuid: "u", generation: "g1", parentGeneration: "wrl:u", atLsn: 10, appliedLsnBefore: 10, at: "2030-01-01T00:00:00Z", phase: "promoted",
    devices: [{ name: "disk0", path: "/dev/null", sizeBytes, reserveBytes: 0 }], export: "unix:/nowhere", undone: [], drWritten, uris: {},
  };
}

/** A primary image and a DR image (as bytes), the DR side's digests served from the latter. */
function sides(change: (primary: Uint8Array, dr: Uint8Array) => void) {
  const dir = mkdtempSync(join(tmpdir(), "druvaa-failback-plan-"));
  dirs.push(dir);
  const primary = new Uint8Array(sizeBytes).fill(1);
  const dr = primary.slice();
  change(primary, dr);
  const path = join(dir, "primary.img");
  writeFileSync(path, primary);
  const digestsOf = async ({ offset, length, blockBytes }: { device: string; offset: number; length: number; blockBytes: number }) => {
    const digests: string[] = [];
    for (let at = offset; at < Math.min(offset + length, sizeBytes); at += blockBytes) digests.push(createHash("sha256").update(dr.subarray(at, Math.min(at + blockBytes, sizeBytes))).digest("hex"));
    return { digests };
  };
  return { path, digestsOf };
}

describe("failback plan without a change map", () => {
  test("a 4 KiB DR-side write inside a 1 MiB block is no primary change: no split brain, only that page sent", async () => {
    const { path, digestsOf } = sides((_primary, dr) => dr.fill(9, MiB + 8 * KiB, MiB + 12 * KiB));
    const plan = await planFailback({ view: view([{ device: "disk0", offset: MiB + 8 * KiB, length: 4 * KiB }]), primaries: new Map([["disk0", path]]), pending: [], changemap: undefined, digestsOf });
    expect(plan.splitBrain).toBe(false);
    expect(plan.primaryChanged).toBe(false);
    expect(plan.union).toEqual([{ device: "disk0", offset: MiB + 8 * KiB, length: 4 * KiB }]);
    expect(plan.checksummedBytes).toBe(sizeBytes - 4 * KiB);
    await plan.close();
  });

  test("a primary write nobody tracked, in another page of that block, is found: split brain", async () => {
    const { path, digestsOf } = sides((primary, dr) => {
      dr.fill(9, MiB + 8 * KiB, MiB + 12 * KiB);
      primary.fill(7, MiB + 64 * KiB, MiB + 68 * KiB);
    });
    const plan = await planFailback({ view: view([{ device: "disk0", offset: MiB + 8 * KiB, length: 4 * KiB }]), primaries: new Map([["disk0", path]]), pending: [], changemap: undefined, digestsOf });
    expect(plan.primaryChanged).toBe(true);
    expect(plan.splitBrain).toBe(true);
    expect(plan.checksumDiffer).toEqual([{ device: "disk0", offset: MiB + 64 * KiB, length: 4 * KiB }]);
    await plan.close();
  });
});
