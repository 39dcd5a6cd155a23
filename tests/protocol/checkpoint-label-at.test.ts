/**
 * Every checkpoint label that can be made can be selected: `druvaa checkpoint --label` (and the
 * client's control port) refuse a label `--at` would read as an LSN, a time or the current point
 * (newCheckpointLabelProblem), and `--at label:NAME` names a label explicitly (parsePointSpec).
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { isCheckpointLabel, newCheckpointLabelProblem } from "../../src/protocol/checkpoint-label.ts";
import { parsePointSpec } from "../../src/roles/replica/points.ts";
import { druvaa } from "../helpers/cli.ts";

const fcSeed = Number(process.env.FC_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(`checkpoint-label-at.test.ts: fast-check seed ${fcSeed} (replay with FC_SEED=${fcSeed} node_modules/.bin/bun test tests/protocol/checkpoint-label-at.test.ts)`);

const ambiguous = ["2026-01-31", "20260131", "2026-01-31Z", "2026-01-31-0100", "1", "42", "0.5", "now", "latest", "NOW", "Latest"];

describe("new checkpoint labels", () => {
  test("labels --at would read as an LSN, a time or the current point are refused, with why", () => {
    for (const label of ambiguous) {
      expect(isCheckpointLabel(label)).toBe(true); // valid syntax: still fine on the wire and in logs
      expect(newCheckpointLabelProblem(label)).toMatch(/--at reads it as/);
    }
    for (const label of ["-5m", "a b", ""]) expect(newCheckpointLabelProblem(label)).toMatch(/it is not 1\.\.64/);
    for (const label of ["before-upgrade", "nightly-2026-01-31", "v2", "2026-01-31-nightly", "now-ish", "T1", "1e5"]) expect(newCheckpointLabelProblem(label)).toBeUndefined();
  });

  test("every label that may be made is read by --at as exactly that label (property)", () => {
    const labelChars = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-TZ:".split(""));
    const dateLike = fc.tuple(fc.integer({ min: 0, max: 9999 }), fc.integer({ min: 0, max: 99 }), fc.integer({ min: 0, max: 99 }), fc.constantFrom("", "Z", "-0100", "T10", "Z1")).map(([y, m, d, rest]) => `${String(y).padStart(4, "0")}-${String(m).padStart(2, "0")}-${String(d).padStart(2, "0")}${rest}`);
    const candidates = fc.oneof(fc.array(labelChars, { minLength: 1, maxLength: 12 }).map((chars) => chars.join("")), dateLike, fc.constantFrom(...ambiguous), fc.nat().map(String));
    fc.assert(
      fc.property(candidates, (label) => {
        if (newCheckpointLabelProblem(label) !== undefined) return;
        expect(parsePointSpec(label)).toEqual({ kind: "label", label });
        expect(parsePointSpec(`label:${label}`)).toEqual({ kind: "label", label });
      }),
      { seed: fcSeed, numRuns: 2000 },
    );
  });

  test("--at label:NAME selects a label that reads as something else without the prefix", () => {
    expect(parsePointSpec("20260131")).toEqual({ kind: "lsn", lsn: 20260131 });
    expect(parsePointSpec("label:20260131")).toEqual({ kind: "label", label: "20260131" });
    expect(parsePointSpec("label:now")).toEqual({ kind: "label", label: "now" });
    expect(parsePointSpec("now")).toEqual({ kind: "current" });
    expect(parsePointSpec("2026-01-31").kind).toBe("time");
    expect(parsePointSpec(" label:before-x ")).toEqual({ kind: "label", label: "before-x" });
  });

  test("druvaa checkpoint --label 2026-01-31 is a usage error with the hint, before connecting", async () => {
    const result = await druvaa(["checkpoint", "--client", "127.0.0.1:1", "--label", "2026-01-31"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("--at reads it as");
    expect(result.stderr).toContain("a label needs a letter and must not look like a time or an LSN");
    const now = await druvaa(["checkpoint", "--client", "127.0.0.1:1", "--label", "latest"]);
    expect(now.exitCode).toBe(2);
    expect(now.stderr).toContain("the current point");
  });
});
