/**
 * Append-only files in one directory (the replica's point-in-time journal segments): append,
 * read back at a position, fdatasync, cut a torn tail, remove. Buffered I/O (the journal re-reads
 * what it wrote, for snapshots and rollbacks, so the page cache helps). Errors become DruvaaError
 * (fromSystemError) naming the file.
 */
import { constants as fsConstants } from "node:fs";
import { mkdir, open, readdir, rm, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { fromSystemError } from "../errors.ts";

export class AppendFile {
  #sizeBytes: number;
  #closed = false;

  private constructor(readonly path: string, private readonly handle: FileHandle, sizeBytes: number) {
    this.#sizeBytes = sizeBytes;
  }

  /** Opens (creating it if missing) a file for appending; its size is where the next append goes. */
  static async open(path: string): Promise<AppendFile> {
    try {
      // Not "a" (O_APPEND): positional writes (writeAt) would land at the end.
      const handle = await open(path, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o600);
      const stats = await handle.stat();
      return new AppendFile(path, handle, stats.size);
    } catch (error) {
      throw fromSystemError(error, `opening ${path}`);
    }
  }

  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  /** Appends `data` (not durable until sync()); returns the position it was written at. Appends may run concurrently. */
  async append(data: Uint8Array): Promise<number> {
    // The place is taken before the write is awaited: appends in flight together never share
    // one (a failed one leaves a hole nobody points at; truncate() cuts it off).
    const position = this.#sizeBytes;
    this.#sizeBytes += data.length;
    await this.#writeAll(position, data);
    return position;
  }

  /** Overwrites bytes already appended (an entry's header, once its body's CRC is known). */
  async writeAt(position: number, data: Uint8Array): Promise<void> {
    if (position + data.length > this.#sizeBytes) throw new Error(`writeAt past the end of ${this.path}`);
    await this.#writeAll(position, data);
  }

  async #writeAll(position: number, data: Uint8Array): Promise<void> {
    try {
      for (let done = 0; done < data.length; ) {
        const { bytesWritten } = await this.handle.write(data, done, data.length - done, position + done);
        done += bytesWritten;
      }
    } catch (error) {
      throw fromSystemError(error, `writing ${this.path}`);
    }
  }

  /** Reads `lengthBytes` at `position` (short only at the end of the file). */
  async read(position: number, lengthBytes: number): Promise<Uint8Array> {
    const into = new Uint8Array(lengthBytes);
    try {
      let done = 0;
      while (done < lengthBytes) {
        const { bytesRead } = await this.handle.read(into, done, lengthBytes - done, position + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done === lengthBytes ? into : into.subarray(0, done);
    } catch (error) {
      throw fromSystemError(error, `reading ${this.path}`);
    }
  }

  async sync(): Promise<void> {
    try {
      await this.handle.datasync();
    } catch (error) {
      throw fromSystemError(error, `syncing ${this.path}`);
    }
  }

  /** Cuts the file to `sizeBytes` (a torn or abandoned tail), durably. */
  async truncate(sizeBytes: number): Promise<void> {
    try {
      await this.handle.truncate(sizeBytes);
      await this.handle.datasync();
    } catch (error) {
      throw fromSystemError(error, `truncating ${this.path}`);
    }
    this.#sizeBytes = sizeBytes;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.handle.close();
  }
}

/** The names in `directory` (made if missing), sorted. */
export async function listDirectory(directory: string): Promise<string[]> {
  try {
    await mkdir(directory, { recursive: true });
    return (await readdir(directory)).sort();
  } catch (error) {
    throw fromSystemError(error, `listing ${directory}`);
  }
}

export async function removeFile(directory: string, name: string): Promise<void> {
  try {
    await rm(join(directory, name), { force: true });
  } catch (error) {
    throw fromSystemError(error, `removing ${join(directory, name)}`);
  }
}

/** Removes `directory` and everything in it (nothing if it does not exist). */
export async function removeDirectory(directory: string): Promise<void> {
  try {
    await rm(directory, { recursive: true, force: true });
  } catch (error) {
    throw fromSystemError(error, `removing ${directory}`);
  }
}
