/**
 * The one druvaa executable: `scripts/build-binaries.ts` compiles it with `bun build --compile`,
 * and the binary works on its own, from any directory, with no source tree or node_modules.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bunPath, repoRoot } from "./helpers/cli.ts";

const dir = mkdtempSync(join(tmpdir(), "druvaa-build-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(cmd: string[], cwd: string) {
  const result = Bun.spawnSync({ cmd, cwd, stdout: "pipe", stderr: "pipe", env: { PATH: "/usr/bin:/bin:/usr/sbin:/sbin", NO_COLOR: "1" } });
  return { exitCode: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

test("the compiled Linux binary runs wrl create / wrl info from any directory", async () => {
  const outdir = join(dir, "dist");
  const build = run([bunPath, join(repoRoot, "scripts/build-binaries.ts"), "--target", "linux-x64", "--outdir", outdir], repoRoot);
  expect(build.exitCode).toBe(0);
  const binary = JSON.parse(build.stdout).built["linux-x64"] as string;

  const elsewhere = mkdtempSync(join(dir, "cwd-"));
  const version = run([binary, "--version"], elsewhere);
  expect(version.exitCode).toBe(0);
  expect(version.stdout.trim()).toBe((await Bun.file(join(repoRoot, "package.json")).json()).version);

  const created = run([binary, "wrl", "create", "--primary", "log.img", "--size", "8MiB", "--json"], elsewhere);
  expect(created.exitCode).toBe(0);
  const info = run([binary, "wrl", "info", "log.img", "--json"], elsewhere);
  expect(info.exitCode).toBe(0);
  const parsed = JSON.parse(info.stdout);
  expect(parsed.uuid).toBe(JSON.parse(created.stdout).uuid);
  expect(parsed.recordCount).toBe(0);
  expect(parsed.devices[0].pathHint).toBe(join(elsewhere, "log.img"));

  // Bad input through the binary: a clear one-line error with a hint, non-zero exit.
  const missing = run([binary, "wrl", "info", "nope.img"], elsewhere);
  expect(missing.exitCode).not.toBe(0);
  expect(missing.stderr).toContain("hint:");

  // Invoked under another name (argv[0]), the binary runs that command, as packages will link it.
  symlinkSync(binary, join(elsewhere, "dradmin"));
  const alias = run([join(elsewhere, "dradmin"), "--help"], elsewhere);
  expect(alias.stdout + alias.stderr).toContain("druvaa admin");
}, 120_000);

test("cross builds: Linux arm64 ELF and a Windows x64 PE executable", async () => {
  const outdir = join(dir, "cross");
  const build = run([bunPath, join(repoRoot, "scripts/build-binaries.ts"), "--target", "linux-arm64,windows-x64", "--outdir", outdir], repoRoot);
  expect(build.exitCode).toBe(0);
  const built = JSON.parse(build.stdout).built as Record<string, string>;
  const arm = new Uint8Array(await Bun.file(built["linux-arm64"]!).slice(0, 20).arrayBuffer());
  expect([...arm.subarray(0, 4)]).toEqual([0x7f, 0x45, 0x4c, 0x46]); // ELF
  expect(arm[18]! | (arm[19]! << 8)).toBe(0xb7); // e_machine = EM_AARCH64
  const exe = new Uint8Array(await Bun.file(built["windows-x64"]!).slice(0, 2).arrayBuffer());
  expect(String.fromCharCode(exe[0]!, exe[1]!)).toBe("MZ");
  const unknown = run([bunPath, join(repoRoot, "scripts/build-binaries.ts"), "--target", "plan9-mips"], repoRoot);
  expect(unknown.exitCode).toBe(2);
  expect(unknown.stderr).toContain('unknown target "plan9-mips"');
}, 300_000);

test("the build scripts: --help prints the usage; a bad flag, a missing value or a stray argument exits 2 with the usage as hint, building nothing", () => {
  const outdir = join(dir, "bad-flags");
  for (const script of ["build-binaries", "package"]) {
    const path = join(repoRoot, `scripts/${script}.ts`);
    const help = run([bunPath, path, "--help"], repoRoot);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain(`Usage: bun scripts/${script}.ts`);
    for (const args of [["--outdir", outdir, "--bogus"], ["--outdir", outdir, "--target"], ["--outdir", outdir, "stray"]]) {
      const bad = run([bunPath, path, ...args], repoRoot);
      expect([args.join(" "), bad.exitCode]).toEqual([args.join(" "), 2]);
      expect(bad.stderr).toStartWith(`${script}: `);
      expect(bad.stderr).toContain(`hint: Usage: bun scripts/${script}.ts`);
    }
  }
  expect(existsSync(outdir)).toBe(false); // nothing was built
});
