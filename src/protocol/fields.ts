/**
 * Hand-written field readers for message validators. Each reads one field of a decoded header,
 * checks its type and range, and throws PROTO_BAD_FIELD naming the message and field otherwise.
 * Validators copy the fields they know into a fresh object, so unknown fields (from a newer peer)
 * are dropped and nothing the peer sent survives unchecked.
 */
import { protocolNameLengthMax, protocolTextLengthMax } from "../constants.ts";
import { ProtocolError } from "./errors.ts";
import type { DeviceSize, ErrorInfo } from "./message-types.ts";

export type Fields = Readonly<Record<string, unknown>>;

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (typeof value === "string") return value.length > 40 ? `a string of ${value.length} characters` : JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (typeof value === "bigint") return `${value} (beyond 2^53)`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  return `a ${typeof value}`;
}

export function badField(where: string, expected: string, value: unknown): ProtocolError {
  return new ProtocolError("PROTO_BAD_FIELD", `${where}: expected ${expected}, got ${describe(value)}`);
}

/** A byte offset, length, LSN, epoch or id: a safe integer >= 0. */
export function readUint(fields: Fields, where: string, key: string, max = Number.MAX_SAFE_INTEGER): number {
  const value = fields[key];
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0 || value > max) {
    throw badField(`${where}.${key}`, max === Number.MAX_SAFE_INTEGER ? "a non-negative safe integer" : `an integer in [0, ${max}]`, value);
  }
  return value === 0 ? 0 : value; // -0 becomes 0
}

/** A name (node id, device, WRL): 1..protocolNameLengthMax characters, no control characters. */
export function readName(fields: Fields, where: string, key: string): string {
  const value = fields[key];
  if (typeof value !== "string" || value.length === 0 || value.length > protocolNameLengthMax || /[\u0000-\u001f\u007f]/.test(value)) {
    throw badField(`${where}.${key}`, `a name of 1..${protocolNameLengthMax} printable characters`, value);
  }
  return value;
}

/** Free text for people: up to protocolTextLengthMax characters. */
export function readText(fields: Fields, where: string, key: string): string {
  const value = fields[key];
  if (typeof value !== "string" || value.length > protocolTextLengthMax) {
    throw badField(`${where}.${key}`, `text of at most ${protocolTextLengthMax} characters`, value);
  }
  return value;
}

export function readOptionalText(fields: Fields, where: string, key: string): string | undefined {
  return fields[key] === undefined ? undefined : readText(fields, where, key);
}

/** An error code: UPPER_SNAKE_CASE, like DruvaaError codes. */
export function readCode(fields: Fields, where: string, key: string): string {
  const value = fields[key];
  if (typeof value !== "string" || !/^[A-Z][A-Z0-9_]{0,63}$/.test(value)) {
    throw badField(`${where}.${key}`, "an UPPER_SNAKE_CASE code of at most 64 characters", value);
  }
  return value;
}

export function readBoolean(fields: Fields, where: string, key: string): boolean {
  const value = fields[key];
  if (typeof value !== "boolean") throw badField(`${where}.${key}`, "true or false", value);
  return value;
}

export function readOptionalBoolean(fields: Fields, where: string, key: string): boolean | undefined {
  return fields[key] === undefined ? undefined : readBoolean(fields, where, key);
}

export function readEnum<const T extends string>(fields: Fields, where: string, key: string, allowed: readonly T[]): T {
  const value = fields[key];
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw badField(`${where}.${key}`, `one of ${allowed.join(", ")}`, value);
  }
  return value as T;
}

export function readArray(fields: Fields, where: string, key: string, maxLength: number): readonly unknown[] {
  const value = fields[key];
  if (!Array.isArray(value) || value.length > maxLength) throw badField(`${where}.${key}`, `an array of at most ${maxLength} items`, value);
  return value;
}

/** A nested map (decoded as a plain object). */
export function readMap(fields: Fields, where: string, key: string): Fields {
  const value = fields[key];
  if (!isMap(value)) throw badField(`${where}.${key}`, "a map", value);
  return value;
}

export function isMap(value: unknown): value is Fields {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/** The payload length of every message that carries none. */
export const noPayload = (): number => 0;

/** Checks that a range [offset, offset + length) ends below 2^53, so byte arithmetic stays exact. */
export function checkExtent(where: string, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset + length)) throw badField(`${where}.offset`, "offset + length below 2^53", offset);
}

/** A uuid in 8-4-4-4-12 hex text, returned lower-cased: the one form peers compare. */
export function readUuid(fields: Fields, where: string, key: string): string {
  const value = fields[key];
  if (typeof value !== "string" || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)) {
    throw badField(`${where}.${key}`, "a uuid (8-4-4-4-12 hex digits)", value);
  }
  return value.toLowerCase();
}

/** A SHA-256 digest as 64 lower-case hex characters (what node:crypto's digest("hex") gives). */
export function readSha256Hex(fields: Fields, where: string, key: string): string {
  const value = fields[key];
  if (typeof value !== "string" || !/^[0-9a-f]{64}$/.test(value)) throw badField(`${where}.${key}`, "a SHA-256 digest as 64 lower-case hex characters", value);
  return value;
}

export function readErrorInfo(value: unknown, where: string): ErrorInfo {
  if (!isMap(value)) throw badField(where, "a map with code and message", value);
  const info: ErrorInfo = { code: readCode(value, where, "code"), message: readText(value, where, "message") };
  const hint = readOptionalText(value, where, "hint");
  if (hint !== undefined) info.hint = hint;
  return info;
}

/** A list of {name, sizeBytes} with unique names: one size per device, never two to choose from. */
export function readDeviceSizes(fields: Fields, where: string, key: string, maxLength: number): DeviceSize[] {
  const seen = new Set<string>();
  return readArray(fields, where, key, maxLength).map((value, index) => {
    const at = `${where}.${key}[${index}]`;
    if (!isMap(value)) throw badField(at, "a map with name and sizeBytes", value);
    const device: DeviceSize = { name: readName(value, at, "name"), sizeBytes: readUint(value, at, "sizeBytes") };
    if (seen.has(device.name)) throw badField(`${at}.name`, "a device name not listed before", device.name);
    seen.add(device.name);
    return device;
  });
}
