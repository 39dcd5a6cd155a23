/**
 * WinSW, the MIT-licensed Windows service wrapper, as the npm package node-windows 0.1.14 ships
 * it: package/bin/winsw/winsw.exe (WinSW 1.17, a .NET assembly) and winsw.exe.config (lets it run
 * on .NET 4 as well as 2). The MSI installs one copy per service (lib/msi.ts).
 *
 * Fetched with `npm pack` into the build's work directory (npm's cache serves later builds) and
 * checked against the tarball integrity pinned here, the same sha512 a lockfile would hold. It is
 * not a devDependency: node-windows declares `"os": ["win32"]`, so `npm ci` on Linux refuses the
 * whole install (EBADPLATFORM) unless forced, and as an optional dependency it would be skipped.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./run.ts";

export const winswSource = {
  spec: "node-windows@0.1.14",
  tarball: "node-windows-0.1.14.tgz",
  integrity: "sha512-2sz0i+ckeX/+22Z4KcDVis1ukyGOYZWx2WG9nQYauUwzIxEye5QcMrExkH7OaRSHkwM5bN/jesxsiQqkUb1O/w==",
  exe: "package/bin/winsw/winsw.exe",
  exeConfig: "package/bin/winsw/winsw.exe.config",
} as const;

/** Unpacks winsw.exe and winsw.exe.config under `workDir` and returns their paths. */
export async function fetchWinsw(workDir: string): Promise<{ exe: string; exeConfig: string }> {
  const dir = join(workDir, "winsw");
  mkdirSync(dir, { recursive: true });
  await run(["npm", "pack", winswSource.spec, "--pack-destination", dir, "--prefer-offline", "--ignore-scripts", "--silent"]);
  const tarball = join(dir, winswSource.tarball);
  const integrity = `sha512-${createHash("sha512").update(readFileSync(tarball)).digest("base64")}`;
  if (integrity !== winswSource.integrity) throw new Error(`${winswSource.spec}: tarball integrity ${integrity}, expected ${winswSource.integrity}`);
  await run(["tar", "-xzf", tarball, "-C", dir, winswSource.exe, winswSource.exeConfig]);
  return { exe: join(dir, winswSource.exe), exeConfig: join(dir, winswSource.exeConfig) };
}
