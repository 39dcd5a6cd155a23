/**
 * Which NBD error value a failed backend call becomes. The spec allows only a few values
 * (protocol.ts nbdErrno); everything we cannot classify is EIO, which every client reports as an
 * I/O error to the application.
 */
import { DruvaaError } from "../errors.ts";
import { nbdErrno, type NbdErrno } from "./protocol.ts";

const byDruvaaCode: Record<string, NbdErrno> = {
  IO_OUT_OF_RANGE: nbdErrno.EINVAL,
  IO_MISALIGNED: nbdErrno.EINVAL,
  NO_SPACE: nbdErrno.ENOSPC,
  IO_READ_ONLY: nbdErrno.EPERM,
  PERMISSION_DENIED: nbdErrno.EPERM,
};

/** System error codes (node:fs, LibcError) the spec asks us to map (EDQUOT, EFBIG -> ENOSPC). */
const bySystemCode: Record<string, NbdErrno> = {
  ENOSPC: nbdErrno.ENOSPC,
  EDQUOT: nbdErrno.ENOSPC,
  EFBIG: nbdErrno.ENOSPC,
  EPERM: nbdErrno.EPERM,
  EACCES: nbdErrno.EPERM,
  EROFS: nbdErrno.EPERM,
  EINVAL: nbdErrno.EINVAL,
};

export function nbdErrnoOf(error: unknown): NbdErrno {
  if (error instanceof DruvaaError) {
    const mapped = byDruvaaCode[error.code];
    if (mapped !== undefined) return mapped;
    if (error.code.startsWith("SYSTEM_")) return bySystemCode[error.code.slice("SYSTEM_".length)] ?? nbdErrno.EIO;
    return nbdErrno.EIO;
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string") return bySystemCode[code] ?? nbdErrno.EIO;
  return nbdErrno.EIO;
}

export function errnoName(value: number): string {
  for (const [name, number] of Object.entries(nbdErrno)) if (number === value) return name;
  return `errno ${value}`;
}
