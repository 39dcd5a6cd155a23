/**
 * Builds the one druvaa executable for every platform we ship, with `bun build --compile`:
 *   dist/druvaa-linux-x64, dist/druvaa-linux-arm64, dist/druvaa-windows-x64.exe
 * cbor-x's optional native addon (cbor-extract) is left external: pure-JS cbor-x is fast enough,
 * and bundling the addon would bake in the build machine's absolute path (BUN-NOTES).
 *
 * Usage: bun scripts/build-binaries.ts [--target linux-x64,linux-arm64,windows-x64] [--outdir dist]
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { scriptArgs } from "./script-args.ts";

const targets: Record<string, { bunTarget: string; file: string }> = {
  "linux-x64": { bunTarget: "bun-linux-x64", file: "druvaa-linux-x64" },
  "linux-arm64": { bunTarget: "bun-linux-arm64", file: "druvaa-linux-arm64" },
  "windows-x64": { bunTarget: "bun-windows-x64", file: "druvaa-windows-x64.exe" },
};

const args = scriptArgs("build-binaries", "Usage: bun scripts/build-binaries.ts [--target linux-x64,linux-arm64,windows-x64] [--outdir dist]", ["target", "outdir"]);
const root = resolve(import.meta.dir, "..");
const outdir = resolve(args.outdir ?? join(root, "dist"));
const wanted = (args.target ?? Object.keys(targets).join(",")).split(",").map((t) => t.trim());
for (const name of wanted) {
  if (!(name in targets)) {
    console.error(`build-binaries: unknown target "${name}"; known: ${Object.keys(targets).join(", ")}`);
    process.exit(2);
  }
}
mkdirSync(outdir, { recursive: true });

const built: Record<string, string> = {};
for (const name of wanted) {
  const target = targets[name]!;
  const outfile = join(outdir, target.file);
  const started = performance.now();
  const proc = Bun.spawnSync({
    cmd: [process.execPath, "build", "--compile", `--target=${target.bunTarget}`, "--external", "cbor-extract", "--minify-syntax", join(root, "src/cli.ts"), "--outfile", outfile],
    cwd: root,
    stdout: "pipe",
    stderr: "pipe",
  });
  const output = `${proc.stdout.toString()}${proc.stderr.toString()}`;
  // `bun build` can print an error and still exit 0 (BUN-NOTES): treat any "error:" as failure.
  if (proc.exitCode !== 0 || /\berror:/i.test(output)) {
    console.error(`build-binaries: ${name} failed:\n${output}`);
    process.exit(1);
  }
  built[name] = outfile;
  console.error(`build-binaries: ${name} → ${outfile} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
}
console.log(JSON.stringify({ outdir, built }));
