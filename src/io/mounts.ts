/**
 * Is a path in use by the system? A block device that is mounted, held by device-mapper/md, or
 * whose partition is mounted; an image file attached to a loop device (mounted or not); either
 * held open by another process (a running druvaa client, a VM). Read from /proc/self/mountinfo
 * and /sys; on a system without them (not Linux) nothing is reported.
 */
import { readdir, readFile, readlink, realpath, stat } from "node:fs/promises";

async function readText(path: string): Promise<string | undefined> {
  return readFile(path, "utf8").catch(() => undefined);
}

/** Where the block device major:minor is mounted, if it is. */
async function mountPointOf(majorMinor: string): Promise<string | undefined> {
  const mountinfo = (await readText("/proc/self/mountinfo")) ?? "";
  for (const line of mountinfo.split("\n")) {
    const fields = line.split(" ");
    if (fields[2] === majorMinor) return fields[4]?.replace(/\\040/g, " ");
  }
  return undefined;
}

/** Why `path` must not be overwritten now (e.g. "mounted at /mnt/data"), or undefined when it is free. */
export async function inUseBy(path: string): Promise<string | undefined> {
  let real: string;
  let stats;
  try {
    real = await realpath(path);
    stats = await stat(real);
  } catch {
    return undefined;
  }
  if (stats.isBlockDevice()) {
    const majorMinor = `${Math.floor(stats.rdev / 256) & 0xfff}:${(stats.rdev & 0xff) | ((stats.rdev >> 12) & 0xfff00)}`;
    const mounted = await mountPointOf(majorMinor);
    if (mounted !== undefined) return `mounted at ${mounted}`;
    const holders = await readdir(`/sys/dev/block/${majorMinor}/holders`).catch(() => [] as string[]);
    if (holders.length > 0) return `held by ${holders.join(", ")}`;
    // A partition of it mounted (sdb1 of /dev/sdb).
    for (const child of await readdir(`/sys/dev/block/${majorMinor}`).catch(() => [] as string[])) {
      const partition = (await readText(`/sys/dev/block/${majorMinor}/${child}/dev`))?.trim();
      const mountedAt = partition === undefined ? undefined : await mountPointOf(partition);
      if (mountedAt !== undefined) return `its partition ${child} is mounted at ${mountedAt}`;
    }
    return heldOpenBy(real);
  }
  if (!stats.isFile()) return undefined;
  const loops = await readdir("/sys/block").catch(() => [] as string[]);
  for (const loop of loops.filter((name) => name.startsWith("loop"))) {
    const backing = (await readText(`/sys/block/${loop}/loop/backing_file`))?.trim();
    if (backing !== real) continue;
    const majorMinor = (await readText(`/sys/block/${loop}/dev`))?.trim();
    const mounted = majorMinor === undefined ? undefined : await mountPointOf(majorMinor);
    return mounted === undefined ? `attached to /dev/${loop}` : `attached to /dev/${loop}, mounted at ${mounted}`;
  }
  return heldOpenBy(real);
}

/** A process (other than this one) that has `real` open, from /proc/PID/fd: "open in PID (COMM)". */
async function heldOpenBy(real: string): Promise<string | undefined> {
  for (const pid of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => undefined);
      if (target !== real) continue;
      const comm = (await readText(`/proc/${pid}/comm`))?.trim() ?? "?";
      return `open in process ${pid} (${comm})`;
    }
  }
  return undefined;
}
