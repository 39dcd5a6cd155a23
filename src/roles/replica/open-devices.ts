/**
 * Opening replica devices as `druvaa replica apply` does, for --device flags and for managed
 * devices (managed.ts): each protected (header sectors swapped, protected-device.ts) unless the
 * reserve is 0, refused when smaller than what its primary declared.
 */
import { realpath } from "node:fs/promises";
import { DruvaaError, exitCodes, usageError } from "../../errors.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { FileDevice } from "../../io/file-device.ts";
import { isBlockDevicePath, openBlockDevice } from "../../io/open-device.ts";
import { protectReserveBytesDefault } from "../../protect-constants.ts";
import { replicaDeviceSizeBytes } from "../../sizing.ts";
import { formatBytes } from "../../units.ts";
import type { ReplicaDevice } from "./apply.ts";
import { openProtected, ProtectedDevice, protectedLogicalSizeBytes } from "./protected-device.ts";

/**
 * Opens every `--device NAME=PATH`, refusing a path given twice; closes what it opened on failure.
 * Each device is wrapped as a protected replica device (header sectors swapped, protected-device.ts)
 * with a reserve of `protectHeadersBytes`; 0 opens it plain (unprotected). Before anything is
 * written (a new replica's marker), a device smaller than the size its primary declared
 * (`declared`, from the saved state) is refused. The devices of a failed-over WRL (`unchecked`,
 * name → the reserve they had) are wrapped without the marker checks: their head is plain now,
 * or being swapped back.
 */
export async function openReplicaDevices(specs: ReadonlyMap<string, string>, protectHeadersBytes = protectReserveBytesDefault, options: { declared?: ReadonlyMap<string, number>; unchecked?: ReadonlyMap<string, number> } = {}): Promise<ReplicaDevice[]> {
  const opened: ReplicaDevice[] = [];
  const byRealPath = new Map<string, string>();
  const within = (flag: string, error: unknown) => (error instanceof DruvaaError ? new DruvaaError(error.code, `${flag}: ${error.message}`, error.hint, error.exitCode, { cause: error }) : error);
  try {
    for (const [name, path] of specs) {
      const flag = `--device ${name}=${path}`;
      const real = await realpath(path).catch((error: unknown) => {
        if ((error as { code?: unknown }).code === "ENOENT") {
          throw new DruvaaError("NOT_FOUND", `${flag}: no such file or device`, `Check the path; create an image of the primary's size plus the header reserve (--protect-headers; druvaa sizing --primary-size SIZE tells it) with: truncate -s SIZE ${path}`, 3);
        }
        return path;
      });
      const other = byRealPath.get(real);
      if (other !== undefined) throw usageError(`${flag}: the same device as --device ${other}`, "Give every replica device its own path");
      byRealPath.set(real, name);
      const physical = await openBlockDevice(path, { direct: true }).catch((error: unknown) => {
        throw within(flag, error);
      });
      const reserve = options.unchecked?.get(name) ?? protectHeadersBytes;
      let device: BlockDevice = physical;
      try {
        const logicalBytes = reserve > 0 ? protectedLogicalSizeBytes(physical.sizeBytes, reserve, physical.logicalBlockSizeBytes) : physical.sizeBytes;
        checkDeclaredSize(name, path, logicalBytes, options.declared?.get(name), reserve);
        if (options.unchecked?.has(name)) device = reserve > 0 ? new ProtectedDevice(physical, reserve) : physical;
        else if (reserve > 0) device = await openProtected(physical, { reserveBytes: reserve });
      } catch (error) {
        await physical.close().catch(() => undefined); // already failing with the better error
        throw within(flag, error);
      }
      const entry: ReplicaDevice = { name, path, device, discardReadsZeros: true };
      opened.push(entry);
      // Raw devices do not promise that a discard reads back zeros: ZERO records write zeros there.
      const imageFile = !(await isBlockDevicePath(path));
      (entry as { discardReadsZeros: boolean }).discardReadsZeros = imageFile;
      // An image file is written O_DIRECT (large records go to the disk as they are applied, so
      // the group's flush is short); small records go through a second, buffered handle: a
      // page-cache copy instead of a thread-pool round trip and a disk write each (apply.ts).
      if (imageFile && physical instanceof FileDevice && physical.direct) {
        const small = await openBlockDevice(path);
        entry.smallWrites = reserve > 0 ? new ProtectedDevice(small, reserve) : small;
      }
    }
  } catch (error) {
    await Promise.allSettled(opened.flatMap((entry) => [entry.device.close(), entry.smallWrites?.close()]));
    throw error;
  }
  return opened;
}

/** Refuses, before anything is written to it, a device smaller than the size its primary declared. */
function checkDeclaredSize(name: string, path: string, logicalBytes: number, declaredBytes: number | undefined, reserve: number): void {
  if (declaredBytes === undefined || declaredBytes <= logicalBytes) return;
  const neededBytes = replicaDeviceSizeBytes(declaredBytes, reserve);
  const withReserve = reserve > 0 ? ` plus the ${formatBytes(reserve)} header reserve (--protect-headers)` : "";
  throw new DruvaaError("REPLICA_DEVICE_TOO_SMALL", `offers ${logicalBytes} bytes, but its primary declared ${declaredBytes}: it needs ${neededBytes} bytes (the primary's size${withReserve})`, `Grow it, e.g. for an image: truncate -s ${neededBytes} ${path}`, exitCodes.refused);
}
