/**
 * The config file examples of docs/install.md are what the roles read: each ```toml block, checked
 * as `druvaa admin config check` would, has no problem but paths missing on this machine (the
 * devices, TLS files and state directories of the example hosts).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkConfigFile } from "../../src/config/load.ts";

const dir = mkdtempSync(join(tmpdir(), "druvaa-install-doc-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const blocks = [...readFileSync(join(import.meta.dir, "..", "..", "docs", "install.md"), "utf8").matchAll(/```toml\n([\s\S]*?)```/g)].map((match) => match[1]!);

test("docs/install.md has an example for every role", () => {
  const roles = blocks.map((block) => /^role = "(\w+)"/m.exec(block)?.[1]);
  expect(roles.sort()).toEqual(["agent", "client", "panel", "replica", "staging"]);
});

test("every example config is valid but for paths of the example hosts", async () => {
  for (const [index, block] of blocks.entries()) {
    const file = join(dir, `example-${index}.toml`);
    writeFileSync(file, block);
    const check = await checkConfigFile(file, {});
    const other = check.problems.filter((problem) => problem.code !== "CONFIG_MISSING_PATH");
    expect({ role: check.role, other }).toEqual({ role: expect.any(String), other: [] });
  }
});
