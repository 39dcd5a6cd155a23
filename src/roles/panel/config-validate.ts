/**
 * The configuration API's edge: every field of a WRL, change map, pair or action checked here,
 * each refusal a FieldError (400 BAD_FIELD) whose message starts with the field's full name
 * (`pair.devicePath: must be an absolute path`) and whose `field` is that name, so the web UI
 * shows it next to the form field. Names follow the panel's name rule (letters, digits, . _ -),
 * which refuses anything SQL- or HTML-looking; paths must be absolute, without control characters
 * (other characters are stored as given: SQL is parameterised and answers escape markup).
 */
import { DruvaaError } from "../../errors.ts";
import { parseAddress } from "../../io/address.ts";
import { parseListenAddress } from "../../nbd/server.ts";
import { parseDurationMs, parseRateBytesPerSecond, parseSizeBytes } from "../../units.ts";
import { fieldCharsMax, wrlPathsMax } from "./constants.ts";
import { ApiError, jsonAnswer } from "./http.ts";

export class FieldError extends ApiError {
  constructor(
    readonly field: string,
    why: string,
    hint?: string,
    status = 400,
    code = "BAD_FIELD",
  ) {
    super(status, code, `${field}: ${why}`, hint);
  }
}

/** An answer for a refusal that names its field (server.ts's errorAnswer does not carry `field`). */
export function fieldAnswer(error: ApiError): Response {
  const field = error instanceof FieldError ? error.field : error.code === "BAD_FIELD" ? /^([A-Za-z0-9_.[\]]+):/.exec(error.message)?.[1] : undefined;
  return jsonAnswer({ ok: false, error: { code: error.code, message: error.message, ...(error.hint === undefined ? {} : { hint: error.hint }), ...(field === undefined ? {} : { field }) } }, error.status, error.headers);
}

/** Runs a route, answering its refusals with their field. */
export async function withFields(work: () => unknown | Promise<unknown>): Promise<unknown> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ApiError) return fieldAnswer(error);
    throw error;
  }
}

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const pathCharsMax = 4096;
const controlChars = /[\u0000-\u001f\u007f]/;

export const checkConfigName = (value: string, field: string): string => {
  if (!namePattern.test(value)) throw new FieldError(field, "must be 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit");
  return value;
};

/** The fields of one JSON object, named `prefix.key` in refusals. */
export class Fields {
  constructor(
    private readonly body: Record<string, unknown>,
    private readonly prefix: string,
  ) {}

  fieldName(key: string): string {
    return this.prefix === "" ? key : `${this.prefix}.${key}`;
  }

  has(key: string): boolean {
    return this.body[key] !== undefined && this.body[key] !== null;
  }

  string(key: string, max = fieldCharsMax): string {
    const field = this.fieldName(key);
    const value = this.body[key];
    if (value === undefined || value === null) throw new FieldError(field, "is required");
    if (typeof value !== "string") throw new FieldError(field, `must be a string, not ${Array.isArray(value) ? "an array" : typeof value}`);
    if (value.length === 0) throw new FieldError(field, "must not be empty");
    if (value.length > max) throw new FieldError(field, `must be at most ${max} characters`);
    return value;
  }

  optionalString(key: string): string | undefined {
    return this.has(key) ? this.string(key) : undefined;
  }

  name(key: string): string {
    return checkConfigName(this.string(key), this.fieldName(key));
  }

  optionalName(key: string): string | undefined {
    return this.has(key) ? this.name(key) : undefined;
  }

  path(key: string): string {
    return checkPath(this.string(key, pathCharsMax), this.fieldName(key));
  }

  paths(key: string): string[] {
    const field = this.fieldName(key);
    const value = this.body[key];
    if (value === undefined || value === null) throw new FieldError(field, "is required", 'e.g. ["/var/lib/druvaa/wrl/fast.img"] (primary first, then secondaries)');
    if (!Array.isArray(value) || value.length === 0 || value.length > wrlPathsMax) throw new FieldError(field, `must be a list of 1 to ${wrlPathsMax} paths (primary first)`);
    const paths = value.map((item, index) => {
      if (typeof item !== "string" || item.length === 0 || item.length > pathCharsMax) throw new FieldError(`${field}[${index}]`, "must be a path");
      return checkPath(item, `${field}[${index}]`);
    });
    if (new Set(paths).size !== paths.length) throw new FieldError(field, "names a path twice");
    return paths;
  }

  /** A size in bytes: a positive whole number, or a size text ("10GiB"); whole 512-byte sectors. */
  size(key: string): number {
    const field = this.fieldName(key);
    const value = this.body[key];
    let bytes: number;
    if (typeof value === "number") bytes = value;
    else if (typeof value === "string") bytes = unitOrRefuse(() => parseSizeBytes(value, field), field);
    else throw new FieldError(field, value === undefined || value === null ? "is required" : "must be a size in bytes", "e.g. 1073741824 or \"1GiB\"");
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new FieldError(field, "must be a positive whole number of bytes");
    if (bytes % 512 !== 0) throw new FieldError(field, "must be whole 512-byte sectors", `e.g. ${Math.ceil(bytes / 512) * 512}`);
    return bytes;
  }

  optionalSize(key: string): number | undefined {
    return this.has(key) ? this.size(key) : undefined;
  }

  /** A component's data address HOST:PORT (not 0). */
  address(key: string, defaultPort: number): string {
    const field = this.fieldName(key);
    const text = this.string(key).trim();
    const address = unitOrRefuse(() => parseAddress(text, defaultPort), field);
    if (address.kind !== "tcp" || address.port === 0 || address.host === undefined) throw new FieldError(field, "must be HOST:PORT with a real host and port", `e.g. 10.0.0.9:${defaultPort}`);
    return text;
  }

  /** An NBD export address: unix:PATH or HOST:PORT. */
  exportAddress(key: string): string {
    const field = this.fieldName(key);
    const text = this.string(key).trim();
    const address = unitOrRefuse(() => parseListenAddress(text), field);
    if (address.kind === "unix") checkPath(address.path, field);
    return text;
  }

  optionalRate(key: string): string | undefined {
    if (!this.has(key)) return undefined;
    const text = this.string(key);
    unitOrRefuse(() => parseRateBytesPerSecond(text, this.fieldName(key)), this.fieldName(key));
    return text;
  }

  optionalDuration(key: string): string | undefined {
    if (!this.has(key)) return undefined;
    const text = this.string(key);
    const ms = unitOrRefuse(() => parseDurationMs(text, this.fieldName(key)), this.fieldName(key));
    if (ms <= 0) throw new FieldError(this.fieldName(key), "must be a positive duration", "e.g. 30s");
    return text;
  }

  /** auto, off, or a zstd level 1–19. */
  optionalCompression(key: string): string | undefined {
    if (!this.has(key)) return undefined;
    const value = this.body[key];
    const text = typeof value === "number" ? String(value) : typeof value === "string" ? value : "";
    if (text === "auto" || text === "off" || (/^\d{1,2}$/.test(text) && Number(text) >= 1 && Number(text) <= 19)) return text;
    throw new FieldError(this.fieldName(key), "must be auto, off or a zstd level from 1 to 19");
  }

  enumOf<T extends string>(key: string, allowed: readonly T[]): T {
    const value = this.string(key);
    if (!(allowed as readonly string[]).includes(value)) throw new FieldError(this.fieldName(key), `must be one of ${allowed.join(", ")}`);
    return value as T;
  }

  boolean(key: string, fallback: boolean): boolean {
    const value = this.body[key];
    if (value === undefined) return fallback;
    if (typeof value !== "boolean") throw new FieldError(this.fieldName(key), "must be true or false");
    return value;
  }

  /** A nested object's fields, or undefined when absent. */
  optionalObject(key: string): Fields | undefined {
    const value = this.body[key];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== "object" || Array.isArray(value)) throw new FieldError(this.fieldName(key), "must be an object");
    return new Fields(value as Record<string, unknown>, this.fieldName(key));
  }

  object(key: string): Fields {
    const fields = this.optionalObject(key);
    if (fields === undefined) throw new FieldError(this.fieldName(key), "is required");
    return fields;
  }
}

function checkPath(path: string, field: string): string {
  if (!path.startsWith("/")) throw new FieldError(field, "must be an absolute path", "e.g. /dev/sdb or /var/lib/druvaa/disk0.img");
  if (controlChars.test(path)) throw new FieldError(field, "must not contain control characters");
  if (path.split("/").includes("..")) throw new FieldError(field, "must not contain '..'");
  return path;
}

function unitOrRefuse<T>(parse: () => T, field: string): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof DruvaaError) throw new FieldError(field, error.message.startsWith(`${field}: `) ? error.message.slice(field.length + 2) : error.message, error.hint);
    throw error;
  }
}
