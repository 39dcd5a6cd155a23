/**
 * Reading the key file of `--encrypt-at-rest KEYFILE` (druvaa wrl create, druvaa staging serve).
 *
 * A key file holds 32 random bytes: raw (exactly 32 bytes), or as 64 hex digits, or as base64,
 * with optional surrounding white space. Make one with
 *   install -m 600 /dev/null /etc/druvaa/wrl.key && head -c 32 /dev/urandom > /etc/druvaa/wrl.key
 * (or: openssl rand -hex 32 > /etc/druvaa/wrl.key; chmod 600 /etc/druvaa/wrl.key).
 * Refused: a missing file, one that group or others may read or write (mode & 077), one that
 * does not decode to 32 bytes, and an all-zero key (head -c 32 /dev/zero by mistake).
 * Keep a copy of the key off the host: without it, records not yet relayed cannot be read.
 */
import { readFile, stat } from "node:fs/promises";
import { DruvaaError, exitCodes } from "../errors.ts";
import { wrlKeyBytes } from "./payload-cipher.ts";

export const keyFileHowTo = "Make one with: head -c 32 /dev/urandom > /etc/druvaa/wrl.key; chmod 600 /etc/druvaa/wrl.key";

function invalid(path: string, detail: string, hint = keyFileHowTo): DruvaaError {
  return new DruvaaError("WRL_KEY_FILE_INVALID", `--encrypt-at-rest ${path}: ${detail}`, hint, exitCodes.refused);
}

/** Decodes key file contents; undefined if they are not 32 bytes in any accepted form. */
export function decodeKeyFile(contents: Uint8Array): Uint8Array | undefined {
  if (contents.length === wrlKeyBytes) return contents.slice();
  const text = new TextDecoder("latin1").decode(contents).trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return new Uint8Array(Buffer.from(text, "hex"));
  if (/^[A-Za-z0-9+/]{43}=?$/.test(text)) {
    const bytes = new Uint8Array(Buffer.from(text, "base64"));
    if (bytes.length === wrlKeyBytes) return bytes;
  }
  return undefined;
}

/** The 32-byte key in the file at `path`, after the checks above. */
export async function readWrlKeyFile(path: string): Promise<Uint8Array> {
  let mode: number;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw invalid(path, "not a regular file");
    mode = info.mode;
  } catch (error) {
    if (error instanceof DruvaaError) throw error;
    if ((error as { code?: unknown }).code === "ENOENT") {
      throw new DruvaaError("WRL_KEY_FILE_NOT_FOUND", `--encrypt-at-rest ${path}: no such file`, keyFileHowTo, exitCodes.notFound, { cause: error });
    }
    throw invalid(path, error instanceof Error ? error.message : String(error), "Check the path and that this user may read it");
  }
  if ((mode & 0o077) !== 0) {
    throw invalid(path, `readable or writable by group or others (mode ${(mode & 0o777).toString(8).padStart(3, "0")})`, `Restrict it: chmod 600 ${path}`);
  }
  const key = decodeKeyFile(new Uint8Array(await readFile(path)));
  if (key === undefined) throw invalid(path, `not a key of ${wrlKeyBytes} bytes (raw, 64 hex digits or base64)`);
  if (key.every((byte) => byte === 0)) throw invalid(path, "the key is all zeros");
  return key;
}
