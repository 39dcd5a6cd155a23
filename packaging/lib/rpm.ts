/**
 * Builds druvaa-VERSION-RELEASE.ARCH.rpm with rpmbuild (binary package only, --target ARCH) from
 * the layout: the staged tree is copied into the buildroot by the spec's %install, and %files is
 * generated here with every mode and owner (%attr) and the config files as %config(noreplace):
 * a changed one is kept on upgrade (the new default goes to FILE.rpmnew) and saved as
 * FILE.rpmsave on erase.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stageLayout, systemDirs, type LayoutEntry } from "./layout.ts";
import { run } from "./run.ts";

export type RpmArch = "x86_64" | "aarch64";

export type RpmInputs = { layout: LayoutEntry[]; version: string; release: string; releaseDate: Date; arch: RpmArch; packagingDir: string; workDir: string; outDir: string };

const octal = (mode: number) => mode.toString(8).padStart(4, "0");

/** RPM versions may not contain "-": 0.2.0-rc1 becomes 0.2.0~rc1 (sorts before 0.2.0). */
export function rpmVersion(version: string): string {
  return version.replace(/-/g, "~");
}

/** %files lines, plus %dir for the layout's parent directories the base system does not own. */
export function rpmFiles(layout: LayoutEntry[]): string {
  const lines: string[] = [];
  const listed = new Set(layout.map((e) => e.path));
  const implicitDirs = new Set<string>();
  for (const entry of layout) {
    for (let dir = entry.path.slice(0, entry.path.lastIndexOf("/")); dir.length > 0; dir = dir.slice(0, dir.lastIndexOf("/"))) {
      if (!systemDirs.has(dir) && !listed.has(dir)) implicitDirs.add(dir);
    }
  }
  for (const dir of [...implicitDirs].sort()) lines.push(`%dir %attr(0755,root,root) ${dir}`);
  for (const entry of layout) {
    if (entry.kind === "link") lines.push(entry.path);
    else if (entry.kind === "dir") lines.push(`%dir %attr(${octal(entry.mode)},${entry.owner},${entry.group}) ${entry.path}`);
    else lines.push(`${entry.config ? "%config(noreplace) " : ""}%attr(${octal(entry.mode)},${entry.owner},${entry.group}) ${entry.path}`);
  }
  return lines.join("\n");
}

export async function buildRpm(inputs: RpmInputs): Promise<string> {
  const top = join(inputs.workDir, `rpm-${inputs.arch}`);
  rmSync(top, { recursive: true, force: true });
  const stage = join(top, "stage");
  stageLayout(stage, inputs.layout);
  const version = rpmVersion(inputs.version);
  const changelogDate = inputs.releaseDate.toUTCString().replace(/^(\w+), (\d+) (\w+) (\d+).*$/, "$1 $3 $2 $4");
  const spec = readFileSync(join(inputs.packagingDir, "rpm", "druvaa.spec.in"), "utf8")
    .replaceAll("@VERSION@", version)
    .replaceAll("@RELEASE@", inputs.release)
    .replace("@CHANGELOG_DATE@", changelogDate)
    .replace("@FILES@", rpmFiles(inputs.layout));
  const specPath = join(top, "druvaa.spec");
  writeFileSync(specPath, spec);
  mkdirSync(inputs.outDir, { recursive: true });
  await run([
    "rpmbuild", "-bb", "--target", `${inputs.arch}-linux`,
    "--define", `_topdir ${top}`,
    "--define", `stagedir ${stage}`,
    "--define", `_rpmdir ${inputs.outDir}`,
    "--define", "_build_name_fmt %{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm",
    "--define", "_buildhost localhost",
    specPath,
  ]);
  rmSync(top, { recursive: true, force: true });
  return join(inputs.outDir, `druvaa-${version}-${inputs.release}.${inputs.arch}.rpm`);
}
