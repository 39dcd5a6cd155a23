/**
 * Kernel plumbing for the ext4 end-to-end test: running system tools with a time limit, a
 * teardown stack that undoes mounts, loop devices and FUSE mounts in reverse order even when the
 * test fails midway, and nbdfuse (an NBD export as a file in a FUSE mount, so the kernel can put a
 * loop device on it).
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync, unlinkSync, writeSync } from "node:fs";
import { join, relative } from "node:path";
import { Random } from "../../src/io/random.ts";

export interface ShResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to completion. A command that hangs (a FUSE request nobody answers) is killed
 * after timeoutMs so the test fails instead of hanging CI. Throws on a non-zero exit unless
 * `check` is false.
 */
export async function sh(cmd: string[], opts: { timeoutMs?: number; check?: boolean } = {}): Promise<ShResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  if (timedOut) throw new Error(`${cmd.join(" ")} did not finish within ${timeoutMs} ms`);
  if (code !== 0 && opts.check !== false) throw new Error(`${cmd.join(" ")} failed (exit ${code}): ${(stderr || stdout).trim().slice(0, 2000)}`);
  return { code, stdout, stderr };
}

/**
 * Undo steps, run last-registered first. Each step runs at most once (the test's own orderly
 * shutdown and afterAll may both call run()), one failing step does not stop the others, and
 * run() returns what failed so the caller can fail the test on a leak.
 */
export class Teardown {
  private steps: { name: string; undo: () => Promise<void> }[] = [];

  /** Registers an undo step; the returned function runs it now (and removes it from the stack). */
  add(name: string, undo: () => Promise<void>): () => Promise<void> {
    const step = { name, undo };
    this.steps.push(step);
    return async () => {
      const index = this.steps.indexOf(step);
      if (index < 0) return;
      this.steps.splice(index, 1);
      await undo();
    };
  }

  async run(): Promise<string[]> {
    const failures: string[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step.undo();
      } catch (error) {
        failures.push(`${step.name}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    return failures;
  }
}

function isMountPoint(dir: string): boolean {
  // /proc/self/mounts escapes spaces etc. as octal; our temp paths have none.
  return readFileSync("/proc/self/mounts", "utf8").split("\n").some((line) => line.split(" ")[1] === dir);
}

/** Mounts `source` on `dir`; the undo unmounts, lazily if the plain unmount fails (busy, dead FUSE). */
export async function mountFs(teardown: Teardown, source: string, dir: string, options: string[] = []): Promise<() => Promise<void>> {
  await sh(["mount", ...(options.length > 0 ? ["-o", options.join(",")] : []), source, dir]);
  return teardown.add(`umount ${dir}`, async () => {
    if (!isMountPoint(dir)) return;
    const plain = await sh(["umount", dir], { check: false, timeoutMs: 60_000 }).catch((error: Error) => ({ code: -1, stdout: "", stderr: error.message }));
    if (plain.code === 0) return;
    await sh(["umount", "-l", dir], { check: false });
    throw new Error(`umount ${dir} failed (${plain.stderr.trim()}); unmounted lazily`);
  });
}

export interface LoopDevice {
  device: string;
  detach: () => Promise<void>;
}

/** `losetup --find --show` on a file; the undo detaches it. */
export async function attachLoop(teardown: Teardown, file: string, options: string[] = []): Promise<LoopDevice> {
  const { stdout } = await sh(["losetup", "--find", "--show", ...options, file]);
  const device = stdout.trim();
  if (!/^\/dev\/loop\d+$/.test(device)) throw new Error(`losetup printed ${JSON.stringify(stdout)}, not a loop device`);
  const detach = teardown.add(`losetup -d ${device}`, async () => {
    const listed = await sh(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"], { check: false });
    if (!listed.stdout.split("\n").some((line) => line.trim().split(/\s+/)[0] === device)) return;
    await sh(["losetup", "-d", device]);
  });
  return { device, detach };
}

export interface Nbdfuse {
  /** The FUSE file that is the NBD export. */
  file: string;
  pid: number;
  /** Unmounts the FUSE mount (nbdfuse then flushes and exits) and waits for the process. */
  stop: () => Promise<void>;
}

/**
 * Starts `nbdfuse MOUNTDIR/NAME URI` as a child process and waits until it serves: nbdfuse writes
 * its pid file (-P) only once the FUSE mount is up.
 */
export async function startNbdfuse(teardown: Teardown, mountDir: string, name: string, uri: string, pidFile: string): Promise<Nbdfuse> {
  const proc = Bun.spawn(["nbdfuse", "-P", pidFile, `${mountDir}/${name}`, uri], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let stderr = "";
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) stderr = (stderr + decoder.decode(chunk, { stream: true })).slice(-16 * 1024);
  })();
  const stop = teardown.add(`nbdfuse ${mountDir}`, async () => {
    if (isMountPoint(mountDir)) {
      const result = await sh(["fusermount3", "-u", mountDir], { check: false, timeoutMs: 30_000 });
      if (result.code !== 0 && proc.exitCode === null) proc.kill("SIGTERM");
    }
    const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(15_000).then(() => false)]);
    if (!exited) proc.kill("SIGKILL");
    await proc.exited;
    // A killed nbdfuse leaves its mount behind ("Transport endpoint is not connected").
    if (isMountPoint(mountDir)) await sh(["fusermount3", "-uz", mountDir], { check: false });
  });
  const deadline = Date.now() + 20_000;
  while (!existsSync(pidFile)) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`nbdfuse exited (${proc.exitCode ?? proc.signalCode}) before serving: ${stderr.trim()}`);
    if (Date.now() > deadline) throw new Error(`nbdfuse did not serve within 20 s: ${stderr.trim()}`);
    await Bun.sleep(25);
  }
  return { file: `${mountDir}/${name}`, pid: proc.pid, stop };
}

// ---------------------------------------------------------------------------------------------
// The file workload: what a user does on a filesystem, driven by a seed so a failure replays.

const KiB = 1024;
const MiB = 1024 * KiB;

/** mulberry32 (src/io/random.ts): small, fast, and the same sequence for the same seed everywhere. */
function prng(seed: number): () => number {
  const random = new Random(seed);
  return () => random.nextUint32();
}

export interface WorkloadResult {
  /** Relative path → sha256 of the content every surviving file must have. */
  files: Map<string, string>;
  /** Files (and one whole directory) that were removed and must not come back. */
  deleted: string[];
  bytesWritten: number;
}

/**
 * Writes a tree of ~200 files (1 KiB–1 MiB, mostly small), a 16 MiB file appended in 512 KiB
 * chunks, then overwrites (whole, partial, past the end, truncating), deletes files and a whole
 * directory, renames across directories, and fsyncs some files and a directory along the way.
 * The expected content is kept in memory, independent of what the filesystem returns.
 */
export function runFileWorkload(root: string, seed: number): WorkloadResult {
  const next = prng(seed);
  const below = (n: number) => (n <= 0 ? 0 : next() % n);
  const bytes = (size: number): Buffer => {
    const words = new Uint32Array(Math.ceil(size / 4));
    for (let i = 0; i < words.length; i++) words[i] = next();
    return Buffer.from(words.buffer, 0, size);
  };
  const model = new Map<string, Buffer>();
  const deleted: string[] = [];
  let bytesWritten = 0;
  const write = (rel: string, data: Buffer, durable: boolean) => {
    const fd = openSync(join(root, rel), "w");
    try {
      writeSync(fd, data);
      if (durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    model.set(rel, data);
    bytesWritten += data.length;
  };
  const randomSize = () => {
    const bucket = below(100);
    if (bucket < 70) return KiB + below(31 * KiB);
    if (bucket < 95) return 32 * KiB + below(224 * KiB);
    return 256 * KiB + below(768 * KiB + 1);
  };

  const dirs: string[] = [];
  for (let top = 0; top < 10; top++) {
    for (let sub = 0; sub < 3; sub++) {
      const rel = `d${top}/s${sub}`;
      mkdirSync(join(root, rel), { recursive: true });
      dirs.push(rel);
    }
  }
  for (let i = 0; i < 200; i++) write(`${dirs[below(dirs.length)]}/f${i}.bin`, bytes(randomSize()), i % 20 === 0);

  // A log-like file growing in chunks, fsynced every 4 MiB like a database would.
  const bigRel = "d0/big.log";
  const bigFd = openSync(join(root, bigRel), "a");
  const chunks: Buffer[] = [];
  try {
    for (let i = 0; i < 32; i++) {
      const chunk = bytes(512 * KiB);
      writeSync(bigFd, chunk);
      chunks.push(chunk);
      if (i % 8 === 7) fsyncSync(bigFd);
    }
  } finally {
    closeSync(bigFd);
  }
  model.set(bigRel, Buffer.concat(chunks));
  bytesWritten += 16 * MiB;

  const pick = () => {
    const names = [...model.keys()].filter((rel) => rel !== bigRel);
    return names[below(names.length)]!;
  };
  for (let i = 0; i < 40; i++) {
    const rel = pick();
    const old = model.get(rel)!;
    const mode = i % 4;
    if (mode === 0) {
      write(rel, bytes(randomSize()), i % 8 === 0);
    } else if (mode === 1 || mode === 2) {
      // Partial overwrite; mode 2 runs past the end, growing the file.
      const offset = below(old.length);
      const data = bytes(mode === 1 ? Math.max(1, Math.min(old.length - offset, 1 + below(64 * KiB))) : 1 + below(128 * KiB));
      const fd = openSync(join(root, rel), "r+");
      try {
        writeSync(fd, data, 0, data.length, offset);
      } finally {
        closeSync(fd);
      }
      const updated = Buffer.alloc(Math.max(old.length, offset + data.length));
      old.copy(updated);
      data.copy(updated, offset);
      model.set(rel, updated);
      bytesWritten += data.length;
    } else {
      const length = below(old.length);
      truncateSync(join(root, rel), length);
      model.set(rel, old.subarray(0, length));
    }
  }
  for (let i = 0; i < 30; i++) {
    const rel = pick();
    unlinkSync(join(root, rel));
    model.delete(rel);
    deleted.push(rel);
  }
  const doomed = "d9/s2";
  rmSync(join(root, doomed), { recursive: true });
  deleted.push(doomed);
  for (const rel of [...model.keys()]) {
    if (rel.startsWith(`${doomed}/`)) {
      model.delete(rel);
      deleted.push(rel);
    }
  }
  for (let i = 0; i < 10; i++) {
    const from = pick();
    const to = `${dirs[below(dirs.length - 1)]}/renamed${i}.bin`; // never into the removed d9/s2
    renameSync(join(root, from), join(root, to));
    model.set(to, model.get(from)!);
    model.delete(from);
    deleted.push(from);
  }
  const dirFd = openSync(join(root, "d0"), "r");
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }

  const files = new Map<string, string>();
  for (const [rel, data] of model) files.set(rel, createHash("sha256").update(data).digest("hex"));
  return { files, deleted, bytesWritten };
}

/** sha256 of every regular file under root (relative paths, sorted), skipping ext4's lost+found. */
export function hashTree(root: string): Map<string, string> {
  const found: [string, string][] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (dir === root && entry.name === "lost+found") continue;
        walk(path);
      } else if (entry.isFile()) {
        found.push([relative(root, path), createHash("sha256").update(readFileSync(path)).digest("hex")]);
      } else {
        found.push([relative(root, path), `unexpected ${statSync(path).mode.toString(8)}`]);
      }
    }
  };
  walk(root);
  return new Map(found.sort(([a], [b]) => a.localeCompare(b)));
}
