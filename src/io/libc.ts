/**
 * The few libc calls node:fs does not offer: block-device ioctls and fallocate hole punching.
 * Through bun:ffi on libc.so.6 (Linux only). libc is opened lazily on first use, so importing
 * this module costs nothing and does not fail on other platforms until a call is made.
 *
 * FFI calls run on the JS thread and block the event loop for their duration: use them for
 * one-shot calls (open-time ioctls, discard), never for sustained data I/O (that goes through
 * node:fs on the thread pool).
 */
import { dlopen, FFIType, ptr, read, type Pointer } from "bun:ffi";
import { constants as osConstants } from "node:os";
import { DruvaaError } from "../errors.ts";

/** ioctl request numbers from <linux/fs.h> (x86-64 and arm64 share them). */
export const ioctlRequests = {
  /** u64: device size in bytes. _IOR(0x12, 114, size_t) */
  blkGetSize64: 0x80081272,
  /** int: logical sector size. _IO(0x12, 104) */
  blkSszGet: 0x1268,
  /** u64[2] = [start, length]: discard a byte range. _IO(0x12, 119) */
  blkDiscard: 0x1277,
} as const;

/** fallocate(2) mode bits from <linux/falloc.h>. */
export const fallocateModes = {
  keepSize: 0x01,
  punchHole: 0x02,
} as const;

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([name, value]) => [value, name]));

/** A failed libc call, shaped like a Node system error (`code` = "EINVAL" …) for fromSystemError. */
export class LibcError extends Error {
  override readonly name = "LibcError";
  readonly code: string;
  constructor(readonly syscall: string, readonly errno: number) {
    const code = errnoNames.get(errno) ?? `ERRNO_${errno}`;
    super(`${syscall} failed: ${code} (errno ${errno})`);
    this.code = code;
  }
}

function openLibc() {
  if (process.platform !== "linux") {
    throw new DruvaaError("UNSUPPORTED_PLATFORM", `raw block devices need Linux (this is ${process.platform})`, "Use an image file instead of a device path");
  }
  return dlopen("libc.so.6", {
    // ioctl is variadic; every request we use passes one pointer, which the x86-64 and arm64
    // calling conventions place exactly as for a fixed third argument.
    ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
    fallocate: { args: [FFIType.i32, FFIType.i32, FFIType.i64, FFIType.i64], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
}

let libc: ReturnType<typeof openLibc> | undefined;

function symbols(): ReturnType<typeof openLibc>["symbols"] {
  libc ??= openLibc();
  return libc.symbols;
}

/** errno of the calling thread; read immediately after the failing call. */
function lastErrno(): number {
  const location = symbols().__errno_location() as Pointer | null;
  return location === null ? 0 : read.i32(location, 0);
}

/** ioctl(fd, request, arg); throws LibcError on -1. `arg` is the in/out buffer. */
function ioctl(fd: number, request: number, arg: Uint8Array | BigUint64Array | Int32Array, what: string): void {
  const result = symbols().ioctl(fd, request, ptr(arg));
  if (result === -1) throw new LibcError(`ioctl(${what})`, lastErrno());
}

/** Size of the block device open on `fd`, in bytes (BLKGETSIZE64). */
export function blockDeviceSizeBytes(fd: number): number {
  const out = new BigUint64Array(1);
  ioctl(fd, ioctlRequests.blkGetSize64, out, "BLKGETSIZE64");
  const size = out[0] ?? 0n;
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new DruvaaError("DEVICE_TOO_LARGE", `device of ${size} bytes is larger than druvaa supports (8 PiB)`);
  }
  return Number(size);
}

/** Logical block size of the block device open on `fd` (BLKSSZGET), e.g. 512 or 4096. */
export function blockDeviceLogicalBlockSizeBytes(fd: number): number {
  const out = new Int32Array(1);
  ioctl(fd, ioctlRequests.blkSszGet, out, "BLKSSZGET");
  return out[0] ?? 0;
}

/** BLKDISCARD over [offsetBytes, offsetBytes + lengthBytes); throws LibcError (EOPNOTSUPP …). */
export function blockDeviceDiscard(fd: number, offsetBytes: number, lengthBytes: number): void {
  const range = new BigUint64Array([BigInt(offsetBytes), BigInt(lengthBytes)]);
  ioctl(fd, ioctlRequests.blkDiscard, range, "BLKDISCARD");
}

/** fallocate(fd, PUNCH_HOLE | KEEP_SIZE, offset, length): the range reads zeros afterwards. */
export function punchHole(fd: number, offsetBytes: number, lengthBytes: number): void {
  const result = symbols().fallocate(fd, fallocateModes.punchHole | fallocateModes.keepSize, offsetBytes, lengthBytes);
  if (result === -1) throw new LibcError("fallocate(PUNCH_HOLE)", lastErrno());
}

/** The address of a typed array's first byte (for O_DIRECT alignment checks). */
export function addressOf(bytes: Uint8Array): number {
  return ptr(bytes);
}
