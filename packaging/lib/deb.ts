/**
 * Builds druvaa_VERSION_ARCH.deb with dpkg-deb from the layout: a staged tree (owned by root in
 * the archive, --root-owner-group), DEBIAN/control, conffiles (every config file of the layout:
 * dpkg keeps a changed one on upgrade and on remove; purge deletes them), md5sums and the
 * maintainer scripts of packaging/deb, the postinst given the layout's non-root owners.
 */
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stageLayout, type LayoutEntry } from "./layout.ts";
import { run } from "./run.ts";

export type DebArch = "amd64" | "arm64";

export type DebInputs = { layout: LayoutEntry[]; version: string; arch: DebArch; packagingDir: string; workDir: string; outDir: string };

/** Debian versions may not contain "-" without a revision: 0.1.0 becomes 0.1.0-1. */
export function debVersion(version: string): string {
  return `${version.replace(/-/g, "~")}-1`;
}

function ownershipLines(layout: LayoutEntry[]): string {
  return layout
    .filter((e): e is Extract<LayoutEntry, { kind: "dir" | "file" }> => e.kind !== "link" && (e.owner !== "root" || e.group !== "root"))
    .map((e) => `  own ${e.owner} ${e.group} ${e.mode.toString(8).padStart(4, "0")} ${e.path}`)
    .join("\n");
}

export async function buildDeb(inputs: DebInputs): Promise<string> {
  const root = join(inputs.workDir, `deb-${inputs.arch}`);
  rmSync(root, { recursive: true, force: true });
  stageLayout(root, inputs.layout);
  const debian = join(root, "DEBIAN");
  mkdirSync(debian, { mode: 0o755 });

  const files = inputs.layout.filter((e): e is Extract<LayoutEntry, { kind: "file" }> => e.kind === "file");
  const sizeBytes = files.reduce((sum, e) => sum + statSync(join(root, e.path)).size, 0);
  const control = readFileSync(join(inputs.packagingDir, "deb", "control.in"), "utf8")
    .replace("@VERSION@", debVersion(inputs.version))
    .replace("@ARCH@", inputs.arch)
    .replace("@INSTALLED_SIZE_KB@", String(Math.ceil(sizeBytes / 1024)));
  writeFileSync(join(debian, "control"), control);
  writeFileSync(join(debian, "conffiles"), `${files.filter((e) => e.config).map((e) => e.path).join("\n")}\n`);
  const sums = await Promise.all(files.map(async (e) => `${new Bun.CryptoHasher("md5").update(readFileSync(join(root, e.path))).digest("hex")}  ${e.path.slice(1)}`));
  writeFileSync(join(debian, "md5sums"), `${sums.join("\n")}\n`);

  for (const script of ["preinst", "prerm", "postrm"]) copyFileSync(join(inputs.packagingDir, "deb", script), join(debian, script));
  const postinst = readFileSync(join(inputs.packagingDir, "deb", "postinst.in"), "utf8").replace("@OWNERSHIP@", ownershipLines(inputs.layout));
  writeFileSync(join(debian, "postinst"), postinst);
  for (const script of ["preinst", "postinst", "prerm", "postrm"]) chmodSync(join(debian, script), 0o755);
  for (const name of ["control", "conffiles", "md5sums"]) chmodSync(join(debian, name), 0o644);

  mkdirSync(inputs.outDir, { recursive: true });
  const out = join(inputs.outDir, `druvaa_${debVersion(inputs.version)}_${inputs.arch}.deb`);
  // xz -1: the binary is ~100 MB; higher levels cost minutes for a few percent.
  await run(["dpkg-deb", "--root-owner-group", "-Zxz", "-z1", "--build", root, out]);
  rmSync(root, { recursive: true, force: true });
  return out;
}
