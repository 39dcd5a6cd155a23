/**
 * The panel API's edge: every answer is JSON; every refusal is an ApiError that becomes
 * `{ok:false, error:{code, message, hint}}` with its HTTP status; request bodies are read with a
 * bound and every field is checked here, with a message naming the field, before any route logic.
 */
import { DruvaaError } from "../../errors.ts";
import { parseAddress } from "../../io/address.ts";
import { fieldCharsMax, panelRequestBytesMax } from "./constants.ts";

export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly hint?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** <, >, & (and the JS line separators) as \u escapes: no answer ever carries raw markup. */
const htmlUnsafe = /[<>&\u2028\u2029]/g;

/** A JSON answer (security headers on every one: no sniffing, no framing, no caching). */
export function jsonAnswer(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  const text = JSON.stringify(body).replace(htmlUnsafe, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return new Response(text, {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "x-content-type-options": "nosniff", "x-frame-options": "DENY", "cache-control": "no-store", ...headers },
  });
}

export function errorAnswer(error: ApiError): Response {
  const field = error.status >= 400 && error.status < 500 ? fieldOf(error.message) : undefined;
  return jsonAnswer({ ok: false, error: { code: error.code, message: error.message, ...(error.hint === undefined ? {} : { hint: error.hint }), ...(field === undefined ? {} : { field }) } }, error.status, error.headers);
}

/** The form field a refusal is about: the `field: why` prefix the field helpers (badField, nameField…) give their messages. */
function fieldOf(message: string): string | undefined {
  return /^([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+|\[\d+\])*): /.exec(message)?.[1];
}

export const badField = (field: string, why: string, hint?: string) => new ApiError(400, "BAD_FIELD", `${field}: ${why}`, hint);

/** The request's JSON object body: 400 for anything else (not JSON, not an object, too large). */
export async function readJsonBody(request: Request): Promise<Record<string, unknown>> {
  const type = request.headers.get("content-type") ?? "";
  // Required: a cross-site HTML form cannot send application/json without a CORS preflight.
  if (!/^application\/json\b/i.test(type)) throw new ApiError(415, "BAD_CONTENT_TYPE", "the request body must be JSON (Content-Type: application/json)", 'Send e.g. -H "Content-Type: application/json" -d \'{"user":"admin","password":"..."}\'');
  const tooLarge = new ApiError(413, "TOO_LARGE", `the request body is larger than ${panelRequestBytesMax} bytes`, "Panel requests are small JSON documents");
  if (Number(request.headers.get("content-length") ?? 0) > panelRequestBytesMax) throw tooLarge;
  const bytes = new Uint8Array(await request.arrayBuffer());
  if (bytes.length > panelRequestBytesMax) throw tooLarge;
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new ApiError(400, "BAD_JSON", "the request body is not valid JSON", "Send one JSON object");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new ApiError(400, "BAD_JSON", "the request body must be a JSON object");
  return body as Record<string, unknown>;
}

/** A string field, present and at most fieldCharsMax characters unless `max` says otherwise. */
export function stringField(body: Record<string, unknown>, field: string, max = fieldCharsMax): string {
  const value = body[field];
  if (value === undefined || value === null) throw badField(field, "is required");
  if (typeof value !== "string") throw badField(field, `must be a string, not ${Array.isArray(value) ? "an array" : typeof value}`);
  if (value.length === 0) throw badField(field, "must not be empty");
  if (value.length > max) throw badField(field, `must be at most ${max} characters`);
  return value;
}

export function booleanField(body: Record<string, unknown>, field: string, fallback: boolean): boolean {
  const value = body[field];
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") throw badField(field, "must be true or false");
  return value;
}

export function enumField<T extends string>(body: Record<string, unknown>, field: string, allowed: readonly T[]): T {
  const value = stringField(body, field);
  if (!(allowed as readonly string[]).includes(value)) throw badField(field, `must be one of ${allowed.join(", ")}`);
  return value as T;
}

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A user or component name: letters, digits, . _ - (1–64, starting with a letter or digit). */
export function checkPanelName(value: string, field: string): string {
  if (!namePattern.test(value)) throw badField(field, "must be 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit");
  return value;
}

export function nameField(body: Record<string, unknown>, field: string): string {
  return checkPanelName(stringField(body, field), field);
}

/** A control address HOST:PORT (or unix:PATH) with a real port. */
export function controlField(body: Record<string, unknown>, field: string, defaultPort: number): string {
  const text = stringField(body, field);
  try {
    const address = parseAddress(text, defaultPort);
    if (address.kind === "tcp" && address.port === 0) throw badField(field, "port 0 is not a port a component listens on", `e.g. 10.0.0.5:${defaultPort}`);
  } catch (error) {
    if (error instanceof DruvaaError) throw badField(field, error.message, error.hint);
    throw error;
  }
  return text.trim();
}

/** A ?name= integer query parameter within [min, max], or `fallback` when absent. */
export function integerParam(url: URL, name: string, fallback: number, min: number, max: number): number {
  const text = url.searchParams.get(name);
  if (text === null) return fallback;
  if (!/^\d{1,9}$/.test(text) || Number(text) < min || Number(text) > max) throw badField(name, `must be a whole number from ${min} to ${max}`);
  return Number(text);
}
