/**
 * The seam between the NBD server and whatever stores the bytes. `druvaa client attach` plugs the
 * client write path in here (every write the host makes passes through `write`); tests and plain
 * exports use `exportFromBlockDevice`.
 *
 * What the server guarantees before calling a method (it validates at the edge, so backends may
 * assert instead of checking):
 *   - offsets and lengths are multiples of `logicalBlockSizeBytes`, lengths are > 0, and
 *     offset + length <= sizeBytes;
 *   - every length is <= nbdRequestSizeBytesMax (TRIM and WRITE_ZEROES larger than that are split
 *     into pieces, called one after another);
 *   - write/trim/writeZeroes are never called on a readOnly export.
 * What it does NOT guarantee: order between concurrent calls. NBD clients may have many requests
 * in flight, including overlapping writes; the backend serialises overlaps if it needs to (the
 * client write path does, for partial write order). A reply is sent only after the promise settles.
 *
 * Errors: a rejected promise becomes an error reply on that request only (the connection keeps
 * serving). A DruvaaError's code picks the NBD error: IO_OUT_OF_RANGE / IO_MISALIGNED -> EINVAL,
 * NO_SPACE -> ENOSPC, IO_READ_ONLY / PERMISSION_DENIED -> EPERM; anything else -> EIO.
 */
import type { BlockDevice } from "../io/block-device.ts";
import { assert } from "../assert.ts";
import { nbdZeroPieceBytesMax } from "../constants.ts";

export interface NbdExport {
  /** Export name clients ask for (UTF-8, at most nbdStringBytesMax bytes). */
  readonly name: string;
  /** Shown by `nbdinfo --list`; optional. */
  readonly description?: string;
  /** Size in bytes: a multiple of logicalBlockSizeBytes, fixed for the life of the export. */
  readonly sizeBytes: number;
  /** Advertised as the NBD minimum block size: a power of two from 1 to 64 KiB. */
  readonly logicalBlockSizeBytes: number;
  /** Advertised as NBD_FLAG_READ_ONLY; writes are refused with EPERM before reaching the backend. */
  readonly readOnly: boolean;
  /**
   * Advertised as NBD_FLAG_CAN_MULTI_CONN: true only if a flush (or FUA) on one connection makes
   * writes completed on every other connection durable and visible. Default false.
   */
  readonly canMultiConn?: boolean;

  /** Returns `length` bytes at `offset`: whatever the last completed write left there. */
  read(offset: number, length: number): Promise<Uint8Array>;

  /**
   * Writes `data` at `offset`. Resolves once the data reads back; with `fua` only once it is also
   * durable. `data` may be a view into a receive buffer: keep it only until the promise settles,
   * copy it to keep it longer. Never modify it.
   */
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void>;

  /** Makes every write that resolved before this call durable. Idempotent. */
  flush(): Promise<void>;

  /**
   * A hint that the range is no longer needed. Afterwards its contents are unspecified (clients
   * must not rely on them) until written again. Resolving without doing anything is allowed.
   */
  trim(offset: number, length: number): Promise<void>;

  /**
   * Makes the range read as zeroes. With `noHole` the range must stay allocated (no hole punching);
   * with `fua` the zeroes must be durable before the promise resolves.
   */
  writeZeroes(offset: number, length: number, fua: boolean, noHole: boolean): Promise<void>;
}

export interface BlockDeviceExportOptions {
  description?: string;
  /** Export read-only (the device may be open read-write). Default false. */
  readOnly?: boolean;
  /**
   * Default true: every connection shares the one device, and its flush() makes all writes that
   * resolved before it durable, whichever connection issued them.
   */
  canMultiConn?: boolean;
}

/** Shared, never written: the source for writing zeroes in pieces. */
let zeroPiece: Uint8Array | undefined;

function zeroes(lengthBytes: number): Uint8Array {
  zeroPiece ??= new Uint8Array(nbdZeroPieceBytesMax);
  return zeroPiece.subarray(0, lengthBytes);
}

/**
 * Serves a BlockDevice as an NBD export. FUA is a write followed by a flush. WRITE_ZEROES always
 * writes zero bytes (BlockDevice.discard does not promise zeroes on raw devices), in pieces of at
 * most nbdZeroPieceBytesMax from one shared zero buffer. TRIM is BlockDevice.discard.
 */
export function exportFromBlockDevice(dev: BlockDevice, name: string, options: BlockDeviceExportOptions = {}): NbdExport {
  const block = dev.logicalBlockSizeBytes;
  assert(nbdZeroPieceBytesMax % block === 0, "zero pieces must be whole logical blocks");
  return {
    name,
    ...(options.description === undefined ? {} : { description: options.description }),
    sizeBytes: dev.sizeBytes,
    logicalBlockSizeBytes: block,
    readOnly: options.readOnly ?? false,
    canMultiConn: options.canMultiConn ?? true,
    read: (offset, length) => dev.read(offset, length),
    async write(offset, data, fua) {
      await dev.write(offset, data);
      if (fua) await dev.flush();
    },
    flush: () => dev.flush(),
    trim: (offset, length) => dev.discard(offset, length),
    async writeZeroes(offset, length, fua) {
      const pieces: Promise<void>[] = [];
      for (let at = offset; at < offset + length; at += nbdZeroPieceBytesMax) {
        pieces.push(dev.write(at, zeroes(Math.min(nbdZeroPieceBytesMax, offset + length - at))));
      }
      // Wait for every piece before answering, even when one fails: the reply must not go out
      // while writes of this request are still landing.
      const settled = await Promise.allSettled(pieces);
      for (const piece of settled) if (piece.status === "rejected") throw piece.reason;
      if (fua) await dev.flush();
    },
  };
}
