/**
 * A second, read-only handle on a client device's image file, opened O_DIRECT, for the bulk reads
 * of the resync (long dirty runs, initial sync) and the online verify. Image files are served
 * through the page cache, so the kernel copied every byte those reads took from it: perf put that
 * copy at about a third of the client's CPU in both, as much as hashing in a verify.
 *
 * Coherence: a direct read first writes back the cached dirty pages of its range (the kernel does
 * it for every O_DIRECT read), so it sees every write that completed before it; the callers hold
 * the range in the overlap gate while they read, so no write to it is under way.
 * Not used (undefined: read through the device itself) for raw devices (opened O_DIRECT already),
 * other devices (memory, simulated) and file systems that refuse O_DIRECT (tmpfs). Reads through
 * it must be whole 4 KiB pages (pagesAligned) into buffers aligned to directIoAlignmentBytes.
 */
import type { ConsolaInstance } from "consola/basic";
import { directIoAlignmentBytes } from "../../constants.ts";
import { FileDevice } from "../../io/file-device.ts";
import type { ClientDevice } from "./types.ts";

export async function openDirectReader(device: ClientDevice, log: ConsolaInstance): Promise<FileDevice | undefined> {
  if (!(device.device instanceof FileDevice) || device.device.direct) return undefined;
  const reader = await FileDevice.open(device.path, { readOnly: true, direct: true }).catch((error: unknown) => {
    log.debug(`${device.name}: bulk reads go through the page cache (${device.path} not opened O_DIRECT: ${error instanceof Error ? error.message : String(error)})`);
    return undefined;
  });
  if (reader?.direct === true && reader.sizeBytes === device.device.sizeBytes) return reader;
  await reader?.close();
  return undefined;
}

/** Whether [offsetBytes, offsetBytes + lengthBytes) is whole pages (a direct read may take it). */
export function pagesAligned(offsetBytes: number, lengthBytes: number): boolean {
  return offsetBytes % directIoAlignmentBytes === 0 && lengthBytes % directIoAlignmentBytes === 0;
}
