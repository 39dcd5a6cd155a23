/**
 * WRL sizing, from the Druvaa Replicator install guide (sections 2.1.3 and 2.1.4):
 *   staging WRL  = SF × (AUH × OH + MUH × BPH)
 *   replica WRL  = SF × (MUH × DMH)
 *   change map   = volume / (8 × change-map block size)   (0.025 % of the volume at 512 B a bit)
 * AUH/MUH: average/maximum update rate (bytes per hour), BPH: burst period (hours), OH: longest
 * staging→replica outage (hours), DMH: longest disconnected-mode period (hours), SF: safety factor.
 */
import { protectMarkerBlockBytes } from "./protect-constants.ts";

export interface StagingSizingInput {
  avgUpdateBytesPerHour: number;
  maxUpdateBytesPerHour: number;
  burstHours: number;
  outageHours: number;
  safetyFactor: number;
}

export interface ReplicaSizingInput {
  maxUpdateBytesPerHour: number;
  disconnectedHours: number;
  safetyFactor: number;
}

export function stagingWrlSizeBytes(input: StagingSizingInput): number {
  const { avgUpdateBytesPerHour, maxUpdateBytesPerHour, burstHours, outageHours, safetyFactor } = input;
  return Math.ceil(safetyFactor * (avgUpdateBytesPerHour * outageHours + maxUpdateBytesPerHour * burstHours));
}

export function replicaWrlSizeBytes(input: ReplicaSizingInput): number {
  return Math.ceil(input.safetyFactor * input.maxUpdateBytesPerHour * input.disconnectedHours);
}

/** Bytes of bitmap for a volume, one bit per `blockSizeBytes` (header not included). */
export function changeMapBitmapBytes(volumeSizeBytes: number, blockSizeBytes: number): number {
  return Math.ceil(Math.ceil(volumeSizeBytes / blockSizeBytes) / 8);
}

/**
 * Bytes a replica device needs for a primary of `primarySizeBytes`: the primary's size itself when
 * unprotected (`protectHeadersBytes` 0); protected (druvaa replica apply --protect-headers), the
 * primary's size rounded up to 4096 (the logical size of a protected device is whole 4 KiB units:
 * protectedLogicalSizeBytes) and at least the reserve (the device holds it twice), plus the
 * reserve, whose copy of the head is kept at the end of the device.
 */
export function replicaDeviceSizeBytes(primarySizeBytes: number, protectHeadersBytes: number): number {
  if (protectHeadersBytes === 0) return primarySizeBytes;
  const unitBytes = protectMarkerBlockBytes;
  const logicalSizeBytes = Math.max(Math.ceil(primarySizeBytes / unitBytes) * unitBytes, protectHeadersBytes);
  return logicalSizeBytes + protectHeadersBytes;
}
