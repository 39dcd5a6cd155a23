/**
 * Wraps the compiled druvaa binaries (scripts/build-binaries.ts) in packages:
 *   druvaa-VERSION-1.x86_64.rpm, druvaa-VERSION-1.aarch64.rpm   (rpmbuild --target)
 *   druvaa_VERSION-1_amd64.deb, druvaa_VERSION-1_arm64.deb       (dpkg-deb --root-owner-group)
 *   druvaa-VERSION-x64.msi                                       (msitools' wixl)
 * What goes where is packaging/lib/layout.ts (Linux) and packaging/msi/druvaa.wxs.in (Windows);
 * units, configs, cron and install scripts live under packaging/; the man page and the bash and
 * zsh completions are generated here from the command tree of src/cli.ts.
 *
 * Usage: bun scripts/package.ts [--bindir dist] [--outdir dist] [--format rpm,deb,msi]
 *                                [--arch x64,arm64] [--version V] [--release N]
 * --version defaults to src/version.ts (tests pass a bumped one to exercise upgrades). Needs
 * rpmbuild (rpm), dpkg-deb, wixl and msibuild (wixl, msitools): scripts/setup.sh installs them.
 * The MSI also needs npm and the npm registry (or npm's cache) for WinSW (packaging/lib/winsw.ts).
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { druvaaVersion } from "../src/version.ts";
import { cliTree } from "../packaging/lib/cli-tree.ts";
import { bashCompletion, zshCompletion } from "../packaging/lib/completions.ts";
import { buildDeb, type DebArch } from "../packaging/lib/deb.ts";
import { linuxLayout, type LinuxFormat } from "../packaging/lib/layout.ts";
import { manPage } from "../packaging/lib/man.ts";
import { buildMsi } from "../packaging/lib/msi.ts";
import { buildRpm, type RpmArch } from "../packaging/lib/rpm.ts";
import { haveTool } from "../packaging/lib/run.ts";
import { scriptArgs } from "./script-args.ts";

type Arch = "x64" | "arm64";
type Format = "rpm" | "deb" | "msi";

const binaries: Record<Arch, { linux: string; rpm: RpmArch; deb: DebArch }> = {
  x64: { linux: "druvaa-linux-x64", rpm: "x86_64", deb: "amd64" },
  arm64: { linux: "druvaa-linux-arm64", rpm: "aarch64", deb: "arm64" },
};
const windowsBinary = "druvaa-windows-x64.exe";
const toolsByFormat: Record<Format, { tools: string[]; debianPackage: string }> = {
  rpm: { tools: ["rpmbuild"], debianPackage: "rpm" },
  deb: { tools: ["dpkg-deb"], debianPackage: "dpkg" },
  msi: { tools: ["wixl", "msibuild", "npm", "tar"], debianPackage: "wixl msitools npm tar" },
};

const args = scriptArgs("package", "Usage: bun scripts/package.ts [--bindir dist] [--outdir dist] [--format rpm,deb,msi] [--arch x64,arm64] [--version V] [--release N]", ["bindir", "outdir", "format", "arch", "version", "release"]);

function list<T extends string>(name: "format" | "arch", known: readonly T[]): T[] {
  const wanted = (args[name] ?? known.join(",")).split(",").map((v) => v.trim());
  for (const value of wanted) {
    if (!(known as readonly string[]).includes(value)) fail(`unknown --${name} "${value}"; known: ${known.join(", ")}`, 2);
  }
  return wanted as T[];
}

function fail(message: string, exitCode = 1): never {
  console.error(`package: ${message}`);
  process.exit(exitCode);
}

const root = resolve(import.meta.dir, "..");
const packagingDir = join(root, "packaging");
const outDir = resolve(args.outdir ?? join(root, "dist"));
const binDir = resolve(args.bindir ?? join(root, "dist"));
const formats = list<Format>("format", ["rpm", "deb", "msi"]);
const arches = list<Arch>("arch", ["x64", "arm64"]);
const version = args.version ?? druvaaVersion;
const release = args.release ?? "1";
if (!/^\d+\.\d+\.\d+([-~.+][0-9A-Za-z.]+)?$/.test(version)) fail(`--version "${version}" is not MAJOR.MINOR.PATCH[-SUFFIX]`, 2);
if (!/^\d+$/.test(release)) fail(`--release "${release}" is not a number`, 2);

for (const format of formats) {
  const missing = toolsByFormat[format].tools.filter((tool) => !haveTool(tool));
  if (missing.length > 0) fail(`${format} needs ${missing.join(", ")}: apt-get install ${toolsByFormat[format].debianPackage} (or run scripts/setup.sh)`);
}
const needed = [
  ...(formats.some((f) => f !== "msi") ? arches.map((a) => binaries[a].linux) : []),
  ...(formats.includes("msi") ? [windowsBinary] : []),
];
for (const file of needed) {
  if (!existsSync(join(binDir, file))) fail(`${join(binDir, file)} is missing. Try: bun scripts/build-binaries.ts --outdir ${binDir}`);
}

// The release date in the man page and RPM changelog: SOURCE_DATE_EPOCH (reproducible builds) or now.
const releaseDate = process.env.SOURCE_DATE_EPOCH ? new Date(Number(process.env.SOURCE_DATE_EPOCH) * 1000) : new Date();
const tree = await cliTree();
const generated = {
  manPage: manPage(tree, version, releaseDate.toISOString().slice(0, 10)),
  bashCompletion: bashCompletion(tree),
  zshCompletion: zshCompletion(tree),
};
const workDir = mkdtempSync(join(tmpdir(), "druvaa-package-"));
const built: Record<string, string> = {};
try {
  for (const format of formats) {
    const started = performance.now();
    if (format === "msi") {
      built.msi = await buildMsi({ binary: join(binDir, windowsBinary), version, packagingDir, workDir, outDir });
      console.error(`package: msi → ${built.msi} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
      continue;
    }
    for (const arch of arches) {
      const archStarted = performance.now();
      const layout = linuxLayout({ format: format as LinuxFormat, binary: join(binDir, binaries[arch].linux), packagingDir, ...generated });
      const out = format === "rpm"
        ? await buildRpm({ layout, version, release, releaseDate, arch: binaries[arch].rpm, packagingDir, workDir, outDir })
        : await buildDeb({ layout, version, arch: binaries[arch].deb, packagingDir, workDir, outDir });
      built[`${format}-${arch}`] = out;
      console.error(`package: ${format} ${arch} → ${out} (${((performance.now() - archStarted) / 1000).toFixed(1)} s)`);
    }
  }
} catch (error) {
  fail(error instanceof Error ? error.message : String(error));
} finally {
  rmSync(workDir, { recursive: true, force: true });
}
console.log(JSON.stringify({ outDir, version, built }));
