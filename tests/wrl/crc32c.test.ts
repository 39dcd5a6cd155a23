import { describe, expect, test } from "bun:test";
import { crc32c, crc32cImplementation, crc32cJs } from "../../src/wrl/crc32c.ts";

const ascii = (text: string) => new TextEncoder().encode(text);

describe("crc32c", () => {
  test("matches the Castagnoli check value and the RFC 3720 (iSCSI) vectors", () => {
    expect(crc32c(ascii("123456789"))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  test("continuing over pieces equals one pass, at any split and any buffer alignment", () => {
    const backing = new Uint8Array(4096 + 7);
    for (let i = 0; i < backing.length; i += 1) backing[i] = (i * 131 + 17) & 0xff;
    for (const start of [0, 1, 2, 3, 5]) {
      const data = backing.subarray(start, start + 4096);
      const whole = crc32c(data);
      // Byte-at-a-time reference (the table's first slice only), independent of the fast path.
      let reference = 0xffffffff;
      for (const byte of data) {
        reference ^= byte;
        for (let k = 0; k < 8; k += 1) reference = reference & 1 ? (reference >>> 1) ^ 0x82f63b78 : reference >>> 1;
      }
      expect(whole).toBe(~reference >>> 0);
      for (const split of [0, 1, 15, 16, 17, 1000, 4095, 4096]) {
        expect(crc32c(data.subarray(split), crc32c(data.subarray(0, split)))).toBe(whole);
      }
    }
  });

  test("the native (ISA-L) and JavaScript implementations agree, and CI has the native one", () => {
    // setup.sh installs libisal2; without it every staging server pays ~25x more CPU for checksums.
    expect(crc32cImplementation).toBe("isa-l");
    let seed = 12345;
    for (const length of [64, 65, 100, 4096, 65536 + 3, 1 << 20]) {
      const data = new Uint8Array(length + 3).subarray(3);
      for (let i = 0; i < data.length; i += 1) data[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
      expect(crc32c(data)).toBe(crc32cJs(data));
      expect(crc32c(data, 0xdeadbeef)).toBe(crc32cJs(data, 0xdeadbeef));
    }
  });

  test("a single flipped bit changes the checksum", () => {
    const data = new Uint8Array(65536).fill(0x5a);
    const before = crc32c(data);
    data[40000]! ^= 0x08;
    expect(crc32c(data)).not.toBe(before);
  });
});
