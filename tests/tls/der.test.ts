/** The DER encoder against known encodings (X.690 examples, RFC 5280 values) and our reader. */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { bitString, integer, namedBits, octetString, oid, sequence, setOf, time, unsignedInteger, utf8String } from "../../src/tls/der.ts";
import { children, readBitString, readNode, readOid, readSingle, readTime, readUnsignedHex } from "../../src/tls/der-read.ts";

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

describe("DER encoding", () => {
  test("known encodings", () => {
    expect(hex(oid("1.2.840.10045.4.3.2"))).toBe("06082a8648ce3d040302"); // ecdsa-with-SHA256
    expect(hex(oid("2.5.29.17"))).toBe("0603551d11");
    expect(hex(integer(0n))).toBe("020100");
    expect(hex(integer(127n))).toBe("02017f");
    expect(hex(integer(128n))).toBe("02020080"); // a set top bit gets a zero byte
    expect(hex(integer(256n))).toBe("02020100");
    expect(hex(unsignedInteger(Uint8Array.of(0, 0, 0x12)))).toBe("020112"); // leading zeros dropped
    expect(hex(namedBits([0]))).toBe("03020780"); // keyUsage digitalSignature
    expect(hex(namedBits([0, 5, 6]))).toBe("03020186"); // + keyCertSign, cRLSign
    expect(hex(time(new Date("2026-01-02T03:04:05.678Z")))).toBe(`170d${hex(new TextEncoder().encode("260102030405Z"))}`);
    expect(hex(time(new Date("2050-01-01T00:00:00Z")))).toBe(`180f${hex(new TextEncoder().encode("20500101000000Z"))}`);
    expect(hex(sequence())).toBe("3000");
  });

  test("lengths: short form below 128, long form above", () => {
    expect(hex(octetString(new Uint8Array(127))).slice(0, 4)).toBe("047f");
    expect(hex(octetString(new Uint8Array(128))).slice(0, 6)).toBe("048180");
    expect(hex(octetString(new Uint8Array(300))).slice(0, 8)).toBe("0482012c");
    expect(hex(octetString(new Uint8Array(70_000))).slice(0, 10)).toBe("0483011170");
  });

  test("SET OF is sorted by encoding", () => {
    expect(hex(setOf(utf8String("b"), utf8String("a")))).toBe(hex(setOf(utf8String("a"), utf8String("b"))));
  });

  test("the reader refuses truncated, overlong and indefinite values", () => {
    for (const bad of ["30", "3005020101", "3080", "0485ffffffffff", "1f0100"]) {
      expect(() => readSingle(Uint8Array.from(Buffer.from(bad, "hex")))).toThrow(expect.objectContaining({ code: "TLS_BAD_DER" }));
    }
    expect(() => readSingle(Uint8Array.from(Buffer.from("020101ff", "hex")))).toThrow(expect.objectContaining({ code: "TLS_BAD_DER" })); // trailing byte
  });
});

describe("DER round trips (property)", () => {
  const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
  console.log(`der property seed=${seed} (replay: FC_SEED=${seed} bun test tests/tls/der.test.ts)`);

  test("integers, OIDs, times, octet strings and nesting read back equal", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: (1n << 160n) - 1n }),
        fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 39 }), fc.array(fc.bigInt({ min: 0n, max: (1n << 32n) - 1n }), { maxLength: 10 })),
        fc.date({ min: new Date("1950-01-01T00:00:00Z"), max: new Date("9999-12-31T23:59:59Z"), noInvalidDate: true }),
        fc.uint8Array({ maxLength: 70_000 }),
        (value, [first, second, rest], date, bytes) => {
          const dotted = [first, second, ...rest].join(".");
          const whole = new Date(Math.floor(date.getTime() / 1000) * 1000);
          const encoded = sequence(integer(value), oid(dotted), time(date), octetString(bytes), bitString(bytes));
          const [a, b, c, d, e] = children(readSingle(encoded));
          expect(BigInt(`0x${readUnsignedHex(a, "int")}`)).toBe(value);
          expect(readOid(b, "oid")).toBe(dotted);
          expect(readTime(c, "time").getTime()).toBe(whole.getTime());
          expect(Buffer.from(readNode(d!.bytes).content).equals(Buffer.from(bytes))).toBe(true);
          expect(Buffer.from(readBitString(e, "bits").bytes).equals(Buffer.from(bytes))).toBe(true);
        },
      ),
      { seed, numRuns: 200 },
    );
  });
});
