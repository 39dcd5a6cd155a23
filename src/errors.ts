/**
 * Typed errors. Everything that crosses an edge (CLI argument, config, protocol frame, on-disk
 * structure) becomes a DruvaaError with a stable `code` and, where we can give one, a `hint`
 * telling the user what to do next. Codes are part of the interface: scripts match on them.
 */
export class DruvaaError extends Error {
  override readonly name: string = "DruvaaError";
  constructor(
    /** Stable, upper-snake-case identifier, e.g. `WRL_TOO_SMALL`. */
    readonly code: string,
    message: string,
    /** One line telling the user what to try, e.g. "Try: druvaa wrl info /dev/sdb". */
    readonly hint?: string,
    /** Process exit code when this error ends a command. */
    readonly exitCode: number = 1,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  toJSON(): { code: string; message: string; hint?: string } {
    return this.hint === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, hint: this.hint };
  }
}

/** Exit codes shared by every command (documented in README). */
export const exitCodes = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  refused: 4,
  timeout: 5,
} as const;

/** A bad command-line argument. Exit code 2, like most Unix tools. */
export function usageError(message: string, hint?: string): DruvaaError {
  return new DruvaaError("USAGE", message, hint, exitCodes.usage);
}

/** Turns a Node/Bun system error into a DruvaaError with a hint; passes DruvaaErrors through. */
export function fromSystemError(error: unknown, what: string): DruvaaError {
  if (error instanceof DruvaaError) return error;
  const code = (error as { code?: unknown })?.code;
  const detail = error instanceof Error ? error.message : String(error);
  switch (code) {
    case "ENOENT":
      return new DruvaaError("NOT_FOUND", `${what}: no such file or device`, "Check the path; create an image with: truncate -s 1G PATH", exitCodes.notFound, { cause: error });
    case "EACCES":
    case "EPERM":
      return new DruvaaError("PERMISSION_DENIED", `${what}: permission denied`, "Run as a user that may open the device (root for block devices)", exitCodes.refused, { cause: error });
    case "EISDIR":
      return new DruvaaError("IS_DIRECTORY", `${what}: is a directory`, "Give the path of an image file or a block device", exitCodes.usage, { cause: error });
    case "ENOSPC":
      return new DruvaaError("NO_SPACE", `${what}: no space left on device`, "Free space on the file system holding it", exitCodes.failure, { cause: error });
    case "EBUSY":
      return new DruvaaError("DEVICE_BUSY", `${what}: device is busy`, "Is it mounted or opened exclusively by another process? Check with: lsblk; fuser -v PATH", exitCodes.refused, { cause: error });
    default:
      return new DruvaaError(typeof code === "string" ? `SYSTEM_${code}` : "SYSTEM", `${what}: ${detail}`, undefined, exitCodes.failure, { cause: error });
  }
}
