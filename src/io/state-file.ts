/**
 * Small state files (applied LSNs, device ids), replaced whole and durably: written to a temp file
 * in the same directory, fsynced, renamed over the old one, and the directory fsynced — so after a
 * crash the file holds either the old or the new contents, never a torn mix (litestream's
 * file/replica_client.go does the same).
 */
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { dirname, join, basename } from "node:path";
import { DruvaaError, fromSystemError } from "../errors.ts";

/**
 * Directories made (or found) by an earlier write: a file saved after every replica shipment
 * group should not pay a mkdir each time. A directory removed since is made again (ENOENT).
 */
const madeDirectories = new Set<string>();

async function openTemp(directory: string, temp: string) {
  if (!madeDirectories.has(directory)) {
    await mkdir(directory, { recursive: true });
    madeDirectories.add(directory);
  }
  try {
    return await open(temp, "w", 0o600);
  } catch (error) {
    if ((error as { code?: unknown }).code !== "ENOENT") throw error;
    madeDirectories.delete(directory);
    await mkdir(directory, { recursive: true });
    madeDirectories.add(directory);
    return await open(temp, "w", 0o600);
  }
}

export async function writeFileAtomic(path: string, contents: string | Uint8Array): Promise<void> {
  const directory = dirname(path);
  const temp = join(directory, `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  try {
    const handle = await openTemp(directory, temp);
    try {
      await handle.writeFile(contents);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
    const dir = await open(directory, "r");
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch (error) {
    await rm(temp, { force: true });
    throw fromSystemError(error, `writing ${path}`);
  }
}

/** Reads a JSON state file; `undefined` if it does not exist; a clear error if it is not JSON. */
export async function readJsonState<T>(path: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as { code?: string }).code === "ENOENT") return undefined;
    throw fromSystemError(error, `reading ${path}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new DruvaaError("STATE_CORRUPT", `${path} is not valid JSON`, "It is written atomically, so this means outside damage: restore it from backup or remove it to start that state afresh");
  }
}

export async function writeJsonState(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}
