/**
 * The change map's on-disk format: layout rules, header round trip, and one test per row of the
 * header decision table in src/changemap/format.ts (H1–H7).
 */
import { describe, expect, test } from "bun:test";
import { DruvaaError } from "../../src/errors.ts";
import { changeMapBitmapBytes } from "../../src/sizing.ts";
import { changeMapHeaderAreaBytes, changeMapHeaderCopyBytes, changeMapRegionsMax } from "../../src/constants.ts";
import { crc32c } from "../../src/wrl/crc32c.ts";
import { chooseHeader, decodeHeader, encodeHeader, planLayout, type ChangeMapHeader, type HeaderProbe } from "../../src/changemap/format.ts";

const KiB = 1024;
const GiB = 1024 ** 3;

function errorOf(run: () => unknown): DruvaaError {
  try {
    run();
  } catch (error) {
    if (error instanceof DruvaaError) return error;
    throw error;
  }
  throw new Error("expected a DruvaaError");
}

function header(overrides: Partial<ChangeMapHeader> = {}): ChangeMapHeader {
  const layout = planLayout([{ name: "vol0", volumeSizeBytes: 10 * GiB, volumeUuid: "0F8FAD5B-D9CB-469F-A165-70867728950E", deviceIdentity: "/dev/disk/by-id/ata-X" }, { name: "vol1", volumeSizeBytes: 3 * GiB + 512 }], 4 * KiB);
  return { sequence: 5, uuid: "6e0b7c6a-5d8e-4f55-9b7e-3f3ad1f2c001", generation: 3, blockSizeBytes: 4 * KiB, layoutSizeBytes: layout.layoutSizeBytes, regions: layout.regions, ...overrides };
}

function encoded(h: ChangeMapHeader): Uint8Array {
  const bytes = new Uint8Array(changeMapHeaderCopyBytes);
  encodeHeader(h, bytes);
  return bytes;
}

const valid = (h: ChangeMapHeader): HeaderProbe => decodeHeader(encoded(h));

describe("layout", () => {
  test("bitmaps follow the header area, 4 KiB aligned, sized like `druvaa sizing`", () => {
    const specs = [{ name: "a", volumeSizeBytes: 100 * GiB }, { name: "b", volumeSizeBytes: 1 * GiB + 512 }, { name: "c", volumeSizeBytes: 512 }];
    const layout = planLayout(specs, 4 * KiB);
    expect(layout.regions.map((r) => r.bitmapBytes)).toEqual(specs.map((s) => changeMapBitmapBytes(s.volumeSizeBytes, 4 * KiB)));
    expect(layout.regions[0]!.bitmapOffsetBytes).toBe(changeMapHeaderAreaBytes);
    for (const region of layout.regions) expect(region.bitmapOffsetBytes % (4 * KiB)).toBe(0);
    expect(layout.regions[1]!.bitmapOffsetBytes).toBe(changeMapHeaderAreaBytes + (100 * GiB) / 4096 / 8);
    expect(layout.regions[2]!.bitmapOffsetBytes).toBe(layout.regions[1]!.bitmapOffsetBytes + 36 * KiB); // 32 KiB + 1 bit, rounded up
    expect(layout.layoutSizeBytes).toBe(layout.regions[2]!.bitmapOffsetBytes + 4 * KiB);
    // The install guide's figure: 100 GB at 512 B a bit is 25 MB of bitmap.
    expect(planLayout([{ name: "x", volumeSizeBytes: 100 * GiB }], 512).regions[0]!.bitmapBytes).toBe(25 * 1024 * 1024);
  });

  test("refuses bad block sizes, names, sizes and counts with typed errors", () => {
    const one = [{ name: "v", volumeSizeBytes: GiB }];
    for (const blockSize of [0, 256, 1000, 3 * KiB, 128 * 1024 * KiB]) expect(errorOf(() => planLayout(one, blockSize)).code).toBe("CHANGEMAP_BAD_BLOCK_SIZE");
    const bad = (specs: { name: string; volumeSizeBytes: number; volumeUuid?: string }[]) => errorOf(() => planLayout(specs, 4 * KiB));
    expect(bad([]).code).toBe("CHANGEMAP_BAD_REGION");
    expect(bad(Array.from({ length: changeMapRegionsMax + 1 }, (_, i) => ({ name: `v${i}`, volumeSizeBytes: GiB }))).code).toBe("CHANGEMAP_BAD_REGION");
    for (const name of ["", "-x", "a b", "a=b", "x".repeat(65), "é"]) expect(bad([{ name, volumeSizeBytes: GiB }]).code).toBe("CHANGEMAP_BAD_REGION");
    expect(bad([{ name: "v", volumeSizeBytes: GiB }, { name: "v", volumeSizeBytes: GiB }]).message).toContain("twice");
    for (const size of [0, -512, 1000, 0.5, Number.NaN]) expect(bad([{ name: "v", volumeSizeBytes: size }]).code).toBe("CHANGEMAP_BAD_REGION");
    expect(bad([{ name: "v", volumeSizeBytes: GiB, volumeUuid: "not-a-uuid" }]).code).toBe("CHANGEMAP_BAD_REGION");
    const huge = errorOf(() => planLayout([{ name: "v", volumeSizeBytes: 1024 * 1024 * GiB }], 512));
    expect(huge.code).toBe("CHANGEMAP_TOO_LARGE");
    expect(huge.hint).toContain("--block-size");
    expect(planLayout([{ name: "vol0.data:1/x@y+z-w_", volumeSizeBytes: GiB }], 4 * KiB).regions).toHaveLength(1);
  });
});

describe("header", () => {
  test("round trip keeps every field", () => {
    const h = header();
    const probe = valid(h);
    expect(probe).toEqual({ kind: "valid", header: { ...h, regions: h.regions.map((r) => ({ ...r })) } });
    if (probe.kind !== "valid") throw new Error("unreachable");
    expect(probe.header.regions[0]!.volumeUuid).toBe("0f8fad5b-d9cb-469f-a165-70867728950e");
    expect(probe.header.regions[1]!.volumeUuid).toBeUndefined();
    expect(probe.header.regions[0]!.deviceIdentity).toBe("/dev/disk/by-id/ata-X");
  });

  test("a flipped byte anywhere is caught by the checksum", () => {
    for (const at of [0x10, 130, 4000, changeMapHeaderCopyBytes - 1]) {
      const bytes = encoded(header());
      bytes[at]! ^= 0x20;
      expect(decodeHeader(bytes).kind).toBe("corrupt");
    }
  });

  test("a checksummed header whose fields break the layout rules is corrupt", () => {
    const h = header();
    const moved = encoded({ ...h, regions: [h.regions[0]!, { ...h.regions[1]!, bitmapOffsetBytes: h.regions[1]!.bitmapOffsetBytes + 4096 }] });
    expect(decodeHeader(moved)).toMatchObject({ kind: "corrupt", detail: expect.stringContaining("layout") });
    const futureRegion = encoded({ ...h, regions: [{ ...h.regions[0]!, generation: 9 }, h.regions[1]!] });
    expect(decodeHeader(futureRegion)).toMatchObject({ kind: "corrupt", detail: expect.stringContaining("generation") });
  });
});

describe("header decision table", () => {
  const name = "/dev/test";
  const zeros = new Uint8Array(changeMapHeaderAreaBytes);

  test("H1: both valid -> the higher sequence, whichever copy holds it", () => {
    const older = valid(header({ sequence: 7, generation: 2, regions: header().regions.map((r) => ({ ...r, generation: 1 })) }));
    const newer = valid(header({ sequence: 8, generation: 3 }));
    expect(chooseHeader(name, [older, newer], zeros)).toMatchObject({ copy: 1, otherCopy: "valid-older", header: { sequence: 8, generation: 3 } });
    expect(chooseHeader(name, [newer, older], zeros)).toMatchObject({ copy: 0, otherCopy: "valid-older", header: { sequence: 8 } });
  });

  test("H2: one torn -> the other, reported as invalid", () => {
    const torn = encoded(header({ sequence: 9 }));
    torn.fill(0, 2000); // new head, old (zero) tail
    expect(chooseHeader(name, [valid(header({ sequence: 8 })), decodeHeader(torn)], zeros)).toMatchObject({ copy: 0, otherCopy: "invalid", header: { sequence: 8 } });
  });

  test("H3: one zeroed or foreign -> the valid one", () => {
    expect(chooseHeader(name, [{ kind: "zeroed" }, valid(header({ sequence: 1 }))], zeros)).toMatchObject({ copy: 1, otherCopy: "zeroed" });
    expect(chooseHeader(name, [valid(header()), { kind: "no-magic" }], zeros)).toMatchObject({ copy: 0, otherCopy: "invalid" });
  });

  test("H4: an unknown version in either copy is refused", () => {
    const bytes = encoded(header({ sequence: 10 }));
    const view = new DataView(bytes.buffer);
    view.setUint32(8, 2, true);
    view.setUint32(bytes.length - 4, crc32c(bytes.subarray(0, bytes.length - 4)), true);
    const error = errorOf(() => chooseHeader(name, [valid(header()), decodeHeader(bytes)], zeros));
    expect(error.code).toBe("CHANGEMAP_VERSION_UNSUPPORTED");
    expect(error.hint).toContain("Upgrade");
  });

  test("H5: both damaged -> CHANGEMAP_CORRUPT with a hint", () => {
    const error = errorOf(() => chooseHeader(name, [{ kind: "corrupt", detail: "checksum mismatch" }, { kind: "zeroed" }], zeros));
    expect(error.code).toBe("CHANGEMAP_CORRUPT");
    expect(error.hint).toContain("--force");
  });

  test("H6: no magic -> CHANGEMAP_NOT_FOUND, naming a write log when it is one", () => {
    expect(errorOf(() => chooseHeader(name, [{ kind: "zeroed" }, { kind: "no-magic" }], zeros)).code).toBe("CHANGEMAP_NOT_FOUND");
    const wrl = new Uint8Array(changeMapHeaderAreaBytes);
    wrl.set(new TextEncoder().encode("DRUVAWRL"));
    const error = errorOf(() => chooseHeader(name, [{ kind: "no-magic" }, { kind: "zeroed" }], wrl));
    expect(error.code).toBe("CHANGEMAP_NOT_FOUND");
    expect(error.message).toContain("write log");
  });

  test("H7: two valid copies of different maps -> CHANGEMAP_CORRUPT", () => {
    const other = valid(header({ uuid: "11111111-2222-4333-8444-555555555555", sequence: 6 }));
    expect(errorOf(() => chooseHeader(name, [valid(header()), other], zeros)).code).toBe("CHANGEMAP_CORRUPT");
  });
});
