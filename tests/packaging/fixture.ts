/**
 * Builds what the packaging tests inspect, once per run, in one temp directory: the three
 * binaries (scripts/build-binaries.ts), every package of the current version
 * (scripts/package.ts), and the x86_64 RPM and amd64 .deb again with the patch version bumped
 * (for upgrades). Scratch roots go under `dir` too; packages.test.ts removes it in afterAll.
 */
import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { druvaaVersion } from "../../src/version.ts";

export const repoRoot = resolve(import.meta.dir, "../..");
/** Per test: dpkg and rpm on ~100 MB packages take seconds each on a shared 2-core machine. */
export const testTimeoutMs = 120_000;

export type Built = {
  dir: string;
  binDir: string;
  version: string;
  bumpedVersion: string;
  rpm: { x64: string; arm64: string };
  deb: { x64: string; arm64: string };
  msi: string;
  upgrade: { rpm: string; deb: string };
};

export type Result = { exitCode: number; stdout: string; stderr: string };

/** Runs a command to completion; never throws on a non-zero exit (tests assert on it). */
export async function sh(cmd: string[], options: { cwd?: string; env?: Record<string, string>; stdin?: string } = {}): Promise<Result> {
  const proc = Bun.spawn({ cmd, cwd: options.cwd ?? repoRoot, env: { ...process.env, ...options.env }, stdin: options.stdin === undefined ? "ignore" : new Blob([options.stdin]), stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, stdout, stderr };
}

/** Like sh, but a failure throws with the output (for set-up steps). */
export async function must(cmd: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<string> {
  const result = await sh(cmd, options);
  if (result.exitCode !== 0) throw new Error(`${cmd.join(" ")} exited ${result.exitCode}:\n${result.stdout}${result.stderr}`);
  return result.stdout;
}

export function bumpPatch(version: string): string {
  const [major, minor, patch] = version.split(/[.-]/);
  return `${major}.${minor}.${Number(patch) + 1}`;
}

/** A temp directory for one run of the packaging tests; the caller removes it. */
export function makeTestDir(): string {
  return mkdtempSync(join(tmpdir(), "druvaa-packaging-test-"));
}

export async function buildAll(dir: string): Promise<Built> {
  const binDir = join(dir, "bin");
  const bun = process.execPath;
  await must([bun, "scripts/build-binaries.ts", "--outdir", binDir]);
  const v1 = JSON.parse(await must([bun, "scripts/package.ts", "--bindir", binDir, "--outdir", join(dir, "v1")])) as { built: Record<string, string> };
  const bumpedVersion = bumpPatch(druvaaVersion);
  const v2 = JSON.parse(await must([bun, "scripts/package.ts", "--bindir", binDir, "--outdir", join(dir, "v2"), "--format", "rpm,deb", "--arch", "x64", "--version", bumpedVersion])) as { built: Record<string, string> };
  const get = (m: Record<string, string>, key: string) => {
    const path = m[key];
    if (path === undefined) throw new Error(`scripts/package.ts built no ${key}: ${JSON.stringify(m)}`);
    return path;
  };
  return {
    dir,
    binDir,
    version: druvaaVersion,
    bumpedVersion,
    rpm: { x64: get(v1.built, "rpm-x64"), arm64: get(v1.built, "rpm-arm64") },
    deb: { x64: get(v1.built, "deb-x64"), arm64: get(v1.built, "deb-arm64") },
    msi: get(v1.built, "msi"),
    upgrade: { rpm: get(v2.built, "rpm-x64"), deb: get(v2.built, "deb-x64") },
  };
}

let scratchCount = 0;

/**
 * A fresh scratch root with the minimum a package manager needs: /etc/passwd and /etc/group
 * (with `disk`), shadow files for useradd --prefix, and, for dpkg, an empty database.
 * `withDruvaa`: the user already exists (RPM tests run no scripts, so rpm resolves %attr owners
 * from this file).
 */
export function scratchRoot(built: Built, name: string, options: { withDruvaa?: boolean; dpkg?: boolean } = {}): string {
  scratchCount += 1;
  const root = join(built.dir, `root-${scratchCount}-${name}`);
  mkdirSync(join(root, "etc"), { recursive: true });
  const druvaaUser = options.withDruvaa ? "druvaa:x:990:990:druvaa DR replicator:/var/lib/druvaa:/usr/sbin/nologin\n" : "";
  writeFileSync(join(root, "etc/passwd"), `root:x:0:0:root:/root:/bin/sh\n${druvaaUser}`);
  writeFileSync(join(root, "etc/group"), `root:x:0:\ndisk:x:6:\n${options.withDruvaa ? "druvaa:x:990:\n" : ""}`);
  writeFileSync(join(root, "etc/shadow"), "root:*:19000:0:99999:7:::\n", { mode: 0o600 });
  writeFileSync(join(root, "etc/gshadow"), "root:*::\n", { mode: 0o600 });
  if (options.dpkg) {
    for (const sub of ["info", "updates", "triggers"]) mkdirSync(join(root, "var/lib/dpkg", sub), { recursive: true });
    writeFileSync(join(root, "var/lib/dpkg/status"), "");
  }
  return root;
}

/**
 * dpkg against a scratch root: maintainer scripts run on this host (no shell in the root) with
 * DPKG_ROOT set, which the druvaa scripts honour (useradd --prefix, chown by numeric id).
 */
export function dpkgIn(root: string, ...args: string[]): Promise<Result> {
  return sh(["dpkg", `--root=${root}`, "--force-script-chrootless", "--force-depends", "--force-confold", ...args]);
}

/** rpm queries against a scratch root's database. */
export function rpmQuery(root: string, ...args: string[]): Promise<Result> {
  return sh(["rpm", "--root", root, "--dbpath", "/var/lib/rpm", "-q", ...args]);
}

/** rpm against a scratch root, scripts off (they would run chrooted, and the root has no shell). */
export function rpmIn(root: string, ...args: string[]): Promise<Result> {
  return sh(["rpm", "--root", root, "--dbpath", "/var/lib/rpm", "--nodeps", "--noscripts", ...args]);
}

/** ELF e_machine: 62 x86-64, 183 AArch64. */
export async function elfMachine(path: string): Promise<number> {
  const header = new Uint8Array(await Bun.file(path).slice(0, 20).arrayBuffer());
  if (header[0] !== 0x7f || header[1] !== 0x45 || header[2] !== 0x4c || header[3] !== 0x46) return -1;
  return header[18]! | (header[19]! << 8);
}
