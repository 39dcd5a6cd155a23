/**
 * Builds druvaa-VERSION-x64.msi with msitools' wixl from packaging/msi/druvaa.wxs.in, then marks
 * the configuration components Permanent + NeverOverwrite and the data folders Permanent with
 * msibuild (wixl does not know these attributes): an upgrade never overwrites a configuration
 * file that exists, and uninstall removes neither configuration nor data folders.
 */
import { copyFileSync, cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./run.ts";

/** Windows Installer component attributes (msidbComponentAttributes*). */
export const componentAttributes = { win64: 256, permanent: 16, neverOverwrite: 128 } as const;
export const msiConfigComponents = ["ConfigStaging", "ConfigReplica", "ConfigPanel", "ConfigAgent", "ConfigClientExample"] as const;
export const msiFolderComponents = ["DataDir", "StagingDir", "ReplicaDir", "PanelDir", "ClientDir", "TlsDir"] as const;

export type MsiInputs = { binary: string; version: string; packagingDir: string; workDir: string; outDir: string };

/** MSI ProductVersion is numeric major.minor.build: 0.2.0-rc1 becomes 0.2.0. */
export function msiVersion(version: string): string {
  const numeric = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!numeric) throw new Error(`version "${version}" does not start with MAJOR.MINOR.PATCH`);
  return numeric.slice(1, 4).join(".");
}

export async function buildMsi(inputs: MsiInputs): Promise<string> {
  // wixl resolves Source paths relative to its working directory: stage everything there.
  const dir = join(inputs.workDir, "msi");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  copyFileSync(inputs.binary, join(dir, "druvaa.exe"));
  cpSync(join(inputs.packagingDir, "config"), join(dir, "config"), { recursive: true });
  for (const alias of ["drresync", "drrestore", "dradmin"]) copyFileSync(join(inputs.packagingDir, "msi", `${alias}.cmd`), join(dir, `${alias}.cmd`));
  const wxs = readFileSync(join(inputs.packagingDir, "msi", "druvaa.wxs.in"), "utf8")
    .replaceAll("@VERSION@", msiVersion(inputs.version))
    .replace("@BINARY@", "druvaa.exe")
    .replaceAll("@MSIDIR@/", "")
    .replaceAll("@CONFIGDIR@", "config");
  writeFileSync(join(dir, "druvaa.wxs"), wxs);

  mkdirSync(inputs.outDir, { recursive: true });
  const out = join(inputs.outDir, `druvaa-${inputs.version}-x64.msi`);
  const { stderr: warnings } = await run(["wixl", "--arch", "x64", "--output", out, "druvaa.wxs"], { cwd: dir });
  if (/WARNING|CRITICAL/.test(warnings)) throw new Error(`wixl warned (an attribute it ignores is a bug in the template):\n${warnings}`);
  const { win64, permanent, neverOverwrite } = componentAttributes;
  const queries = [
    ...msiConfigComponents.map((c) => `UPDATE Component SET Attributes = ${win64 | permanent | neverOverwrite} WHERE Component = '${c}'`),
    ...msiFolderComponents.map((c) => `UPDATE Component SET Attributes = ${win64 | permanent} WHERE Component = '${c}'`),
  ];
  for (const query of queries) await run(["msibuild", out, "-q", query]);
  rmSync(dir, { recursive: true, force: true });
  return out;
}
