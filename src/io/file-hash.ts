/** SHA-256 of a file or device, streamed in 4 MiB reads (demo verification, tests). */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";

/** The hex SHA-256 of the first `sizeBytes` of `path` (default: its whole size). */
export async function sha256File(path: string, sizeBytes?: number): Promise<string> {
  const hash = createHash("sha256");
  const handle = await open(path, "r");
  try {
    const limit = sizeBytes ?? (await handle.stat()).size;
    const buffer = Buffer.alloc(4 * 1024 * 1024);
    for (let offset = 0; offset < limit; ) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, limit - offset), offset);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      offset += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return hash.digest("hex");
}
