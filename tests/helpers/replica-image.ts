/**
 * Replica images for tests that start `druvaa replica apply` on image files. Replica devices are
 * protected by default (src/roles/replica/protected-device.ts): an image holds the primary's size
 * (rounded up to 4 KiB) plus the header reserve, its head lives at its end and its front holds a marker. So a test
 * creates it with replicaImageBytes() and compares its contents through readPlain/plainSha256
 * (or druvaa restore), never the file's bytes as they are.
 */
import { writeFileSync } from "node:fs";
import { FileDevice } from "../../src/io/file-device.ts";
import { protectReserveBytesDefault } from "../../src/protect-constants.ts";
import { openProtected, plainSha256, readPlain } from "../../src/roles/replica/protected-device.ts";
import { replicaDeviceSizeBytes } from "../../src/sizing.ts";

export const replicaReserveBytes = protectReserveBytesDefault;
export { plainSha256, readPlain };

/** Bytes of a replica image for a primary of `primaryBytes` (what druvaa sizing --primary-size says). */
export function replicaImageBytes(primaryBytes: number): number {
  return replicaDeviceSizeBytes(primaryBytes, replicaReserveBytes);
}

/** A new, zeroed replica image for a primary of `primaryBytes` (replica apply formats it). */
export function createReplicaImageSync(path: string, primaryBytes: number): void {
  writeFileSync(path, new Uint8Array(replicaImageBytes(primaryBytes)));
}

/** A protected replica image whose logical contents are `contents` (a replica seeded beforehand). */
export async function writeReplicaImage(path: string, contents: Uint8Array): Promise<void> {
  createReplicaImageSync(path, contents.length);
  const device = await openProtected(await FileDevice.open(path), { reserveBytes: replicaReserveBytes });
  try {
    await device.write(0, contents);
    await device.flush();
  } finally {
    await device.close();
  }
}
