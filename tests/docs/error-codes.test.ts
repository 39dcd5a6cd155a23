/**
 * docs/errors.md lists every error code the source raises, each with a cause and a fix, and is
 * what scripts/error-codes.ts writes from the source today (so a new code cannot ship undocumented).
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { collectCodes, render } from "../../scripts/error-codes.ts";

const docPath = join(import.meta.dir, "..", "..", "docs", "errors.md");

test("docs/errors.md is up to date with the source (bun scripts/error-codes.ts rewrites it)", () => {
  expect(readFileSync(docPath, "utf8")).toBe(render(collectCodes()));
});

test("every raised code has a row with a cause and a fix", () => {
  const codes = collectCodes();
  expect(codes.size).toBeGreaterThan(200);
  const rows = new Map(readFileSync(docPath, "utf8").split("\n").filter((line) => line.startsWith("| `")).map((line) => {
    const cells = line.split(/(?<!\\)\|/).map((cell) => cell.trim());
    return [cells[1]!.replace(/`/g, ""), { cause: cells[2]!, fix: cells[3]! }] as const;
  }));
  const missing = [...codes.keys()].filter((code) => !rows.has(code));
  expect(missing).toEqual([]);
  const withoutFix = [...rows].filter(([, row]) => row.cause === "—" || row.fix === "—").map(([code]) => code);
  expect(withoutFix).toEqual([]);
  // Codes the admin's guide and the panel rely on are there, with their real wording.
  expect(rows.get("WRL_FULL")?.cause).toContain("WRL");
  expect(rows.get("JOB_CERT_MISSING")?.fix).toContain("restart the agent");
});
