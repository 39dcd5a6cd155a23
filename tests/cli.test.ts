import { describe, expect, test } from "bun:test";
import { invokedAs } from "../src/cli.ts";
import { druvaaVersion } from "../src/version.ts";
import { druvaa, expectHelp, repoRoot } from "./helpers/cli.ts";

describe("druvaa command line", () => {
  test("--version prints the package version", async () => {
    const pkg = await Bun.file(`${repoRoot}/package.json`).json();
    expect(druvaaVersion).toBe(pkg.version);
    const result = await druvaa(["--version"]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout.trim()).toBe(pkg.version);
  });

  test("--help lists the commands with examples", async () => {
    const result = await druvaa(["--help"]);
    expect(result.exitCode).toBe(0);
    for (const name of ["demo", "wrl", "sizing"]) expect(result.stdout).toContain(name);
    expect(result.stdout).toContain("EXAMPLES");
  });

  test("--help into a pipe or a file is plain text (no colour codes), even where colours are allowed", async () => {
    for (const args of [["--help"], ["admin", "--help"], ["staging", "serve", "--help"]]) {
      const result = await druvaa(args, { env: { NO_COLOR: "", CI: "", TEST: "", TERM: "xterm" } });
      expect(result.exitCode).toBe(0);
      expect(result.stdout).toContain("USAGE");
      expect([args.join(" "), result.stdout.includes("\u001b[")]).toEqual([args.join(" "), false]);
    }
  });

  for (const path of [["wrl", "create"], ["wrl", "info"], ["wrl", "add-device"], ["sizing"], ["demo"], ["version"]]) {
    test(`druvaa ${path.join(" ")} --help shows options and an example`, async () => {
      await expectHelp(path);
    });
  }

  test("an unknown command is a usage error with a hint", async () => {
    const result = await druvaa(["frobnicate"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("unknown command 'druvaa frobnicate'");
    expect(result.stderr).toContain("hint: See: druvaa --help");
  });

  test("an unknown option is refused, not ignored", async () => {
    const result = await druvaa(["sizing", "--volume-size", "1G", "--volumesize", "2G"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("unknown option --volumesize");
    expect(result.stdout).toBe("");
  });

  test("--json errors are one JSON object on stdout with code and hint", async () => {
    const result = await druvaa(["sizing", "--volume-size", "lots", "--json"]);
    expect(result.exitCode).toBe(2);
    const parsed = JSON.parse(result.stdout);
    expect(parsed.ok).toBe(false);
    expect(parsed.error.code).toBe("USAGE");
    expect(parsed.error.hint).toContain("--volume-size");
  });

  test("the binary answers to drresync, drrestore and dradmin", () => {
    expect(invokedAs("drresync", "/x/src/cli.ts")).toEqual(["resync"]);
    expect(invokedAs("/usr/bin/drrestore", undefined)).toEqual(["restore"]);
    expect(invokedAs("C:\\Program Files\\druvaa\\dradmin.exe", undefined)).toEqual(["admin"]);
    expect(invokedAs("/usr/bin/druvaa", "/$bunfs/root/druvaa-linux-x64")).toEqual([]);
  });
});

describe("druvaa sizing (install guide formulas)", () => {
  test("replica WRL example of the guide: 1000 MB", async () => {
    const result = await druvaa(["sizing", "--max-update-rate", "100MB/h", "--disconnected-hours", "1", "--safety-factor", "10", "--json"]);
    expect(result.exitCode).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ replicaWrlSizeMB: 1000, replicaWrlSizeBytes: 1_000_000_000 });
  });

  test("replica device for a primary: primary size + the protected header reserve (default 1 MiB)", async () => {
    const result = await druvaa(["sizing", "--primary-size", "100GiB", "--json"]);
    expect(result.exitCode).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ primarySizeBytes: 100 * 1024 ** 3, protectedHeaderBytes: 1024 ** 2, replicaDeviceSizeBytes: 100 * 1024 ** 3 + 1024 ** 2 });
    const odd = await druvaa(["sizing", "--primary-size", "1G", "--protect-headers", "1000"]);
    expect(odd.exitCode).toBe(2);
  });

  test("a primary size not whole 4 KiB is rounded up to 4 KiB before the reserve is added; --protect-headers 0 is the primary's size", async () => {
    const primary = 16 * 1024 ** 2 + 1024;
    const result = await druvaa(["sizing", "--primary-size", String(primary), "--json"]);
    expect(result.exitCode).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ primarySizeBytes: primary, replicaDeviceSizeBytes: 16 * 1024 ** 2 + 4096 + 1024 ** 2 });
    const human = await druvaa(["sizing", "--primary-size", String(primary)]);
    expect(human.stdout).toContain(`truncate -s ${16 * 1024 ** 2 + 4096 + 1024 ** 2} PATH`);
    expect(human.stdout).toContain("rounded up");
    const unprotected = await druvaa(["sizing", "--primary-size", String(primary), "--protect-headers", "0", "--json"]);
    expect(JSON.parse(unprotected.stdout)).toMatchObject({ replicaDeviceSizeBytes: primary });
  });

  test("--protect-headers follows the rule of replica apply: 128MiB is over the bound and refused", async () => {
    const result = await druvaa(["sizing", "--primary-size", "1G", "--protect-headers", "128MiB"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("at most 64");
  });

  test("staging WRL follows SF × (AUH × OH + MUH × BPH)", async () => {
    const base = ["sizing", "--avg-update-rate", "10MB/h", "--max-update-rate", "100MB/h", "--burst-hours", "1", "--json"];
    const twelve = JSON.parse((await druvaa([...base, "--outage-hours", "12"])).stdout);
    expect(twelve.stagingWrlSizeMB).toBe(2200);
    const four = JSON.parse((await druvaa([...base, "--outage-hours", "4"])).stdout);
    expect(four.stagingWrlSizeMB).toBe(1400);
  });

  test("rates in other units and the human output show the arithmetic", async () => {
    const result = await druvaa(["sizing", "--avg-update-rate", "1MiB/s", "--max-update-rate", "2MiB/s", "--burst-hours", "0.5", "--outage-hours", "2", "--safety-factor", "2"]);
    expect(result.exitCode).toBe(0);
    // 2 × (3600 MiB × 2 + 7200 MiB × 0.5) = 21600 MiB
    expect(result.stdout).toContain(`staging WRL: ${Math.round((21600 * 1024 * 1024) / 1e6)} MB`);
  });

  test("change map is 1 bit per block: ~0.025% of the volume at 512 B", async () => {
    const result = await druvaa(["sizing", "--volume-size", "100GiB", "--json"]);
    const parsed = JSON.parse(result.stdout);
    expect(parsed.changeMapSizeBytes).toBe((100 * 1024 ** 3) / 512 / 8);
    expect(parsed.changeMapSizeBytes / (100 * 1024 ** 3)).toBeCloseTo(0.00025, 4);
  });

  test("incomplete or malformed input is refused with a hint", async () => {
    const partial = await druvaa(["sizing", "--avg-update-rate", "10MB/h"]);
    expect(partial.exitCode).toBe(2);
    expect(partial.stderr).toContain("needs --avg-update-rate, --max-update-rate, --burst-hours and --outage-hours");
    const badRate = await druvaa(["sizing", "--max-update-rate", "fast", "--disconnected-hours", "1"]);
    expect(badRate.exitCode).toBe(2);
    expect(badRate.stderr).toContain('cannot read "fast" as a size');
    const nothing = await druvaa(["sizing"]);
    expect(nothing.exitCode).toBe(2);
    expect(nothing.stderr).toContain("nothing to size");
  });
});
