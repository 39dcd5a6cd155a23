/**
 * Real loop devices for the raw-device tests: a sparse temp image attached with
 * `losetup --find --show`. Tests must call detach() in afterAll/finally. Needs root and util-linux;
 * if losetup is missing this fails loudly (CI installs it) instead of skipping.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface LoopDevice {
  /** /dev/loopN */
  path: string;
  imagePath: string;
  /** Detaches the device and removes the image; safe to call twice. */
  detach(): void;
}

function run(argv: string[]): string {
  const result = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) {
    throw new Error(`${argv.join(" ")} failed (exit ${result.exitCode}): ${result.stderr.toString().trim()}`);
  }
  return result.stdout.toString().trim();
}

export async function attachLoopDevice(sizeBytes: number, opts: { sectorSizeBytes?: number } = {}): Promise<LoopDevice> {
  if (Bun.which("losetup") === null) {
    throw new Error("losetup not found: the raw block device tests need util-linux's losetup and root (apt-get install util-linux; run as root)");
  }
  const directory = mkdtempSync(join(tmpdir(), "druvaa-loop-"));
  const imagePath = join(directory, "backing.img");
  let path: string | undefined;
  try {
    await Bun.write(imagePath, "");
    await truncate(imagePath, sizeBytes);
    const sectorArgs = opts.sectorSizeBytes === undefined ? [] : ["--sector-size", String(opts.sectorSizeBytes)];
    path = run(["losetup", "--find", "--show", ...sectorArgs, imagePath]);
    if (!path.startsWith("/dev/loop")) throw new Error(`losetup printed "${path}", expected a /dev/loopN path`);
  } catch (error) {
    rmSync(directory, { recursive: true, force: true });
    throw error;
  }
  const device = path;
  let attached = true;
  return {
    path: device,
    imagePath,
    detach() {
      if (!attached) return;
      attached = false;
      try {
        run(["losetup", "-d", device]);
      } finally {
        rmSync(directory, { recursive: true, force: true });
      }
    },
  };
}
