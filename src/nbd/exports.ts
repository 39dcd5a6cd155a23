/**
 * The set of exports one NBD server offers: checked once when the server starts (a bad export is
 * a configuration error, reported with a hint, never a runtime surprise), then looked up by name
 * during handshakes.
 */
import { DruvaaError, exitCodes } from "../errors.ts";
import { nbdPreferredBlockSizeBytes, nbdRequestSizeBytesMax, nbdStringBytesMax } from "../constants.ts";
import type { NbdExport } from "./backend.ts";
import { encodeString, tflag } from "./protocol.ts";

/** Largest minimum block size the NBD spec allows. */
const minimumBlockSizeBytesMax = 64 * 1024;

/** What the server advertises for one export. */
export interface ExportTerms {
  readonly backend: NbdExport;
  readonly transmissionFlags: number;
  readonly minimumBlockSizeBytes: number;
  readonly preferredBlockSizeBytes: number;
  readonly maximumBlockSizeBytes: number;
}

export class ExportTable {
  private readonly byName = new Map<string, ExportTerms>();
  readonly all: readonly ExportTerms[];

  constructor(exports: readonly NbdExport[]) {
    if (exports.length === 0) {
      throw badExport("no exports given", "Pass at least one export to startNbdServer");
    }
    const all: ExportTerms[] = [];
    for (const backend of exports) {
      const terms = termsOf(backend);
      if (this.byName.has(backend.name)) {
        throw badExport(`export name "${backend.name}" is used twice`, "Give every export a distinct name");
      }
      this.byName.set(backend.name, terms);
      all.push(terms);
    }
    this.all = all;
  }

  /**
   * The export a client asked for. The empty name is the NBD "default export": an export really
   * named "" if there is one, otherwise the only export when there is exactly one.
   */
  find(name: string): ExportTerms | undefined {
    const exact = this.byName.get(name);
    if (exact !== undefined) return exact;
    if (name === "" && this.all.length === 1) return this.all[0];
    return undefined;
  }

  /** Names for error messages ("unknown export, try one of ..."). */
  describeNames(): string {
    return this.all.map((terms) => JSON.stringify(terms.backend.name)).join(", ");
  }
}

function termsOf(backend: NbdExport): ExportTerms {
  const name = backend.name;
  if (typeof name !== "string" || encodeString(name).length > nbdStringBytesMax || name.includes("\0")) {
    throw badExport(`export name ${JSON.stringify(name)} is not a valid NBD name`, `Use a name of at most ${nbdStringBytesMax} UTF-8 bytes without NUL`);
  }
  if (backend.description !== undefined && encodeString(backend.description).length > nbdStringBytesMax) {
    throw badExport(`export "${name}": description is longer than ${nbdStringBytesMax} bytes`, "Shorten the description");
  }
  const block = backend.logicalBlockSizeBytes;
  if (!Number.isInteger(block) || block < 1 || block > minimumBlockSizeBytesMax || (block & (block - 1)) !== 0) {
    throw badExport(`export "${name}": logical block size ${block} is not a power of two from 1 to 65536`, "Check the device's logical block size (blockdev --getss)");
  }
  if (!Number.isSafeInteger(backend.sizeBytes) || backend.sizeBytes < 0 || backend.sizeBytes % block !== 0) {
    throw badExport(`export "${name}": size ${backend.sizeBytes} is not a whole number of ${block}-byte blocks`, "Resize the image to a multiple of its block size (truncate -s)");
  }
  let flags = tflag.hasFlags | tflag.sendFlush | tflag.sendCache;
  if (backend.readOnly) {
    flags |= tflag.readOnly;
  } else {
    // FAST_ZERO is advertised so clients may ask; every fast-zero request is answered ENOTSUP
    // (we cannot promise zeroing is faster than writing once replication sits behind the export),
    // which tells qemu-img & co. to fall back to ordinary writes at once.
    flags |= tflag.sendFua | tflag.sendTrim | tflag.sendWriteZeroes | tflag.sendFastZero;
  }
  if (backend.canMultiConn === true) flags |= tflag.canMultiConn;
  return {
    backend,
    transmissionFlags: flags,
    minimumBlockSizeBytes: block,
    preferredBlockSizeBytes: Math.max(block, nbdPreferredBlockSizeBytes),
    maximumBlockSizeBytes: nbdRequestSizeBytesMax,
  };
}

function badExport(message: string, hint: string): DruvaaError {
  return new DruvaaError("NBD_BAD_EXPORT", message, hint, exitCodes.usage);
}
