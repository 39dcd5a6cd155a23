/** Argument checks shared by every BlockDevice implementation (the contract's edge). */
import { DruvaaError } from "../errors.ts";

export function checkRange(device: { name: string; sizeBytes: number; logicalBlockSizeBytes: number }, offsetBytes: number, lengthBytes: number): void {
  if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > device.sizeBytes) {
    throw new DruvaaError("IO_OUT_OF_RANGE", `${device.name}: range ${offsetBytes}+${lengthBytes} is outside the device (${device.sizeBytes} bytes)`, "The device is smaller than the request; check the device size");
  }
  const block = device.logicalBlockSizeBytes;
  if (offsetBytes % block !== 0 || lengthBytes % block !== 0) {
    throw new DruvaaError("IO_MISALIGNED", `${device.name}: range ${offsetBytes}+${lengthBytes} is not aligned to the ${block}-byte logical block size`, `Use offsets and lengths that are multiples of ${block}`);
  }
}

export function closedError(name: string): DruvaaError {
  return new DruvaaError("IO_CLOSED", `${name}: device is closed`);
}

export function readOnlyError(name: string): DruvaaError {
  return new DruvaaError("IO_READ_ONLY", `${name}: device is open read-only`, "Open it without --read-only to write");
}
