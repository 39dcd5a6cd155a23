import { describe, expect, test } from "bun:test";
import { DruvaaError } from "../src/errors.ts";
import { formatBytes, parseDurationMs, parseRateBytesPerHour, parseSizeBytes } from "../src/units.ts";

describe("human units at the CLI edge", () => {
  test("sizes: binary and decimal prefixes", () => {
    expect(parseSizeBytes("4096", "--x")).toBe(4096);
    expect(parseSizeBytes("4KiB", "--x")).toBe(4096);
    expect(parseSizeBytes("4k", "--x")).toBe(4096);
    expect(parseSizeBytes("1.5G", "--x")).toBe(1.5 * 1024 ** 3);
    expect(parseSizeBytes("1400MB", "--x")).toBe(1_400_000_000);
    expect(parseSizeBytes("100 GiB", "--x")).toBe(100 * 1024 ** 3);
  });

  test("rates per hour", () => {
    expect(parseRateBytesPerHour("10MB/h", "--r")).toBe(10_000_000);
    expect(parseRateBytesPerHour("1MiB/s", "--r")).toBe(3600 * 1024 * 1024);
    expect(parseRateBytesPerHour("60KiB/min", "--r")).toBe(60 * 1024 * 60);
  });

  test("durations", () => {
    expect(parseDurationMs("30s", "--d")).toBe(30_000);
    expect(parseDurationMs("24h", "--d")).toBe(86_400_000);
    expect(parseDurationMs("15", "--d")).toBe(15_000);
    expect(parseDurationMs("250ms", "--d")).toBe(250);
  });

  test("garbage is a usage error naming the flag", () => {
    for (const bad of ["", "ten", "-5", "4XB", "1e3"]) {
      let caught: unknown;
      try {
        parseSizeBytes(bad, "--size");
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(DruvaaError);
      expect((caught as DruvaaError).code).toBe("USAGE");
      expect((caught as DruvaaError).message).toContain("--size");
    }
    expect(() => parseRateBytesPerHour("10MB/fortnight", "--r")).toThrow(/as a rate/);
    expect(() => parseDurationMs("soon", "--d")).toThrow(/as a duration/);
  });

  test("formatBytes", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.50 KiB");
    expect(formatBytes(1024 ** 3)).toBe("1.00 GiB");
  });
});
