/**
 * `druvaa staging serve --rate-limit / --schedule / --rpo` (src/roles/staging/relay-flags.ts): a
 * value alone is the server's default (one rate-limit bucket shared by the WRLs without their
 * own), NAME=VALUE a WRL's own; bad values, a default given twice and unknown WRL names are usage
 * errors with a hint — also through the real CLI, before anything is opened.
 */
import { describe, expect, test } from "bun:test";
import { DruvaaError } from "../../src/errors.ts";
import { relayTargetsFromFlags } from "../../src/roles/staging/relay-flags.ts";
import { druvaa } from "../helpers/cli.ts";

type Flags = { rateLimit: string[]; schedule: string[]; rpo: string[] };
const none: Flags = { rateLimit: [], schedule: [], rpo: [] };

function usageOf(run: () => unknown): DruvaaError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(DruvaaError);
    expect((error as DruvaaError).code).toBe("USAGE");
    return error as DruvaaError;
  }
  throw new Error("accepted");
}

describe("relayTargetsFromFlags", () => {
  test("nothing given: no targets", () => {
    expect(relayTargetsFromFlags(none, ["fast", "bulk"]).size).toBe(0);
  });

  test("defaults apply to every WRL; NAME=VALUE overrides for that WRL, with a rate-limit bucket of its own", () => {
    const targets = relayTargetsFromFlags(
      { rateLimit: ["20Mbit", "bulk=5MiB/s"], schedule: ["bulk=Mon-Fri 19:00-07:00, Sat-Sun"], rpo: ["30s", "bulk=2h"] },
      ["fast", "bulk", "other"],
    );
    const fast = targets.get("fast")!;
    const bulk = targets.get("bulk")!;
    const other = targets.get("other")!;
    expect(fast.rateLimit).toMatchObject({ bytesPerSecond: 2_500_000, scope: "server" });
    // fast and other share one bucket (the server's link); bulk has its own.
    expect(other.rateLimit).toBe(fast.rateLimit!);
    expect(bulk.rateLimit).toMatchObject({ bytesPerSecond: 5 * 1024 * 1024, scope: "wrl" });
    expect(bulk.rateLimit).not.toBe(fast.rateLimit!);
    expect(fast.schedule).toBeUndefined();
    expect(bulk.schedule!.text).toBe("Mon-Fri 19:00-07:00, Sat-Sun");
    expect([fast.rpoTargetSeconds, bulk.rpoTargetSeconds, other.rpoTargetSeconds]).toEqual([30, 7200, 30]);
  });

  test("bad values, a default twice, unknown WRL names: usage errors naming the flag, with a hint", () => {
    const cases: [Partial<Flags>, string, string][] = [
      [{ rateLimit: ["fast"] }, "--rate-limit fast: not a rate", "--rate-limit 20Mbit"],
      [{ rateLimit: ["w0=0Mbit"] }, "--rate-limit w0=0Mbit: not a rate", "NAME=RATE"],
      [{ rateLimit: ["1kbit"] }, "--rate-limit 1kbit: below the lowest rate limit (8kbit = 1000 bytes/s)", "at least 8kbit"],
      [{ rateLimit: ["20Mbit", "10Mbit"] }, "--rate-limit is given 2 times without a WRL name", "--rate-limit fast=20Mbit"],
      [{ rateLimit: ["nope=20Mbit"] }, "--rate-limit nope=…: no --wrl named nope", "The WRLs given are: w0"],
      [{ schedule: ["Mon-Fry 19:00-07:00"] }, '--schedule "Mon-Fry 19:00-07:00": "Fry" is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)', "--schedule"],
      [{ schedule: ["w0=25:00-07:00"] }, '--schedule for WRL w0 "25:00-07:00": "25:00" is not a time of day (HH:MM, 00:00 to 24:00)', "Mon-Fri"],
      [{ schedule: ["nope=Sat-Sun"] }, "--schedule nope=…: no --wrl named nope", "The WRLs given are: w0"],
      [{ rpo: ["soon"] }, "--rpo soon: not a duration", "--rpo 30s"],
      [{ rpo: ["0s"] }, "--rpo 0s: an RPO target must be longer than 0", "--rpo 30s"],
      [{ rpo: ["nope=30s"] }, "--rpo nope=…: no --wrl named nope", "The WRLs given are: w0"],
    ];
    for (const [flags, message, hint] of cases) {
      const error = usageOf(() => relayTargetsFromFlags({ ...none, ...flags }, ["w0"]));
      expect(error.message).toBe(message);
      expect(error.hint).toContain(hint);
    }
  });
});

describe("druvaa staging serve: the flags through the CLI", () => {
  const base = ["staging", "serve", "--wrl", "w0=/nonexistent/wrl0.img", "--replica", "w0=127.0.0.1:6003"];

  test("a bad --rate-limit, --schedule or an unknown WRL name: exit 2, the message and a hint; nothing starts", async () => {
    const runs: [string[], string, string][] = [
      [["--rate-limit", "lots"], "--rate-limit lots: not a rate", "Use bits per second (--rate-limit 20Mbit"],
      [["--schedule", "Mon-Fri 19:00-31:00"], '"31:00" is not a time of day', 'e.g. --schedule "Mon-Fri 19:00-07:00, Sat-Sun"'],
      [["--rpo", "fast=30s"], "--rpo fast=…: no --wrl named fast", "The WRLs given are: w0"],
    ];
    for (const [flags, message, hint] of runs) {
      const result = await druvaa([...base, ...flags]);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toContain(message);
      expect(result.stderr).toContain(hint);
    }
    const json = await druvaa([...base, "--rate-limit", "nope=20Mbit", "--json"]);
    expect(json.exitCode).toBe(2);
    expect(JSON.parse(json.stdout).error).toMatchObject({ code: "USAGE", message: "--rate-limit nope=…: no --wrl named nope" });
  }, 30_000);
});
