/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every WRL record and
 * superblock copy. `Bun.hash.crc32` and zlib's crc32 are the IEEE polynomial, not this one.
 *
 * Where Intel's ISA-L is installed (Debian/Ubuntu `libisal2`, RHEL `isa-l`; x86-64 and arm64),
 * `crc32c` calls its `crc32_iscsi` through bun:ffi: ~40 GB/s with the CPU's CRC instructions,
 * about 25 times the JavaScript below, which was a quarter of a staging server's CPU at
 * 300 MB/s. The call runs on the JS thread (~25 µs per MiB). Otherwise, or with
 * DRUVAA_CRC32C=js, the JavaScript implementation is used; both give the same values
 * (tests/wrl/crc32c.test.ts compares them). `crc32cImplementation` says which one is in use.
 *
 * Slicing-by-16: sixteen input bytes per step through 16 tables of 256 entries; only the first
 * four lookups depend on the running CRC, so the CPU overlaps the other twelve. An Int32Array
 * table (not Uint32Array) keeps every value a small integer in JavaScriptCore, which measured
 * ~30% faster; the result is turned unsigned at the end. bench/wrl-append.ts reports the speed
 * (`crc32cMBps`, ~2 GB/s on the development machine). Known answer:
 * crc32c("123456789") = 0xE3069283.
 */

import { dlopen, FFIType, ptr } from "bun:ffi";

const polynomial = 0x82f63b78;
const sliceCount = 16;

function buildTable(): Int32Array {
  const table = new Int32Array(sliceCount * 256);
  for (let n = 0; n < 256; n += 1) {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? (c >>> 1) ^ polynomial : c >>> 1;
    table[n] = c;
  }
  for (let n = 0; n < 256; n += 1) {
    let c = table[n]!;
    for (let slice = 1; slice < sliceCount; slice += 1) {
      c = table[c & 0xff]! ^ (c >>> 8);
      table[slice * 256 + n] = c;
    }
  }
  return table;
}

const table = buildTable();

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
// The word loop reads input as little-endian 32-bit words, the byte order slicing expects.
// Every host Bun runs on (x86-64, arm64) is little-endian.
if (!littleEndian) throw new Error("crc32c: big-endian hosts are not supported");

/**
 * Continues a CRC32C over `data`: `crc32c(b, crc32c(a))` equals `crc32c(a ++ b)`. Start with the
 * default `crc = 0` for a fresh checksum. Returns an unsigned 32-bit integer.
 */
export function crc32cJs(data: Uint8Array, crc = 0): number {
  const t = table;
  let c = ~crc | 0;
  let i = 0;
  const length = data.length;
  // Byte-wise until the input is 4-byte aligned, so the bulk loop can read whole words.
  const misalignment = data.byteOffset & 3;
  const head = Math.min(length, misalignment === 0 ? 0 : 4 - misalignment);
  for (; i < head; i += 1) c = t[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);

  const wordCount = ((length - i) >>> 4) << 2;
  if (wordCount > 0) {
    const words = new Int32Array(data.buffer, data.byteOffset + i, wordCount);
    for (let w = 0; w < wordCount; w += 4) {
      const a = words[w]! ^ c;
      const b = words[w + 1]!;
      const d = words[w + 2]!;
      const e = words[w + 3]!;
      c =
        t[3840 + (a & 0xff)]! ^ t[3584 + ((a >>> 8) & 0xff)]! ^ t[3328 + ((a >>> 16) & 0xff)]! ^ t[3072 + (a >>> 24)]! ^
        t[2816 + (b & 0xff)]! ^ t[2560 + ((b >>> 8) & 0xff)]! ^ t[2304 + ((b >>> 16) & 0xff)]! ^ t[2048 + (b >>> 24)]! ^
        t[1792 + (d & 0xff)]! ^ t[1536 + ((d >>> 8) & 0xff)]! ^ t[1280 + ((d >>> 16) & 0xff)]! ^ t[1024 + (d >>> 24)]! ^
        t[768 + (e & 0xff)]! ^ t[512 + ((e >>> 8) & 0xff)]! ^ t[256 + ((e >>> 16) & 0xff)]! ^ t[e >>> 24]!;
    }
    i += wordCount << 2;
  }
  for (; i < length; i += 1) c = t[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

type NativeCrc = (data: Uint8Array, crc: number) => number;

/** ISA-L's crc32_iscsi (no pre/post inversion of its own), or undefined when it cannot be loaded. */
function loadIsal(): NativeCrc | undefined {
  if (process.env.DRUVAA_CRC32C === "js" || process.platform !== "linux") return undefined;
  for (const name of ["libisal.so.2", "libisal.so"]) {
    try {
      const lib = dlopen(name, { crc32_iscsi: { args: [FFIType.ptr, FFIType.i32, FFIType.u32], returns: FFIType.u32 } });
      const isal = lib.symbols.crc32_iscsi;
      const chunkMax = 1 << 30; // its length is an int
      return (data, crc) => {
        if (data.length <= chunkMax) return ~isal(ptr(data), data.length, ~crc >>> 0) >>> 0;
        let c = ~crc >>> 0;
        for (let at = 0; at < data.length; at += chunkMax) {
          const piece = data.subarray(at, Math.min(data.length, at + chunkMax));
          c = isal(ptr(piece), piece.length, c);
        }
        return ~c >>> 0;
      };
    } catch {
      // not installed: try the next name, then fall back to JavaScript
    }
  }
  return undefined;
}

const native = loadIsal();

/** "isa-l" when the native CRC32C is in use, "js" otherwise. */
export const crc32cImplementation: "isa-l" | "js" = native === undefined ? "js" : "isa-l";

/**
 * Continues a CRC32C over `data`: `crc32c(b, crc32c(a))` equals `crc32c(a ++ b)`. Start with the
 * default `crc = 0` for a fresh checksum. Returns an unsigned 32-bit integer.
 */
export function crc32c(data: Uint8Array, crc = 0): number {
  // Short inputs (record headers) stay in JavaScript: below ~64 bytes the FFI call costs more.
  if (native === undefined || data.length < 64) return crc32cJs(data, crc);
  return native(data, crc);
}
