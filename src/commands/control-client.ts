/**
 * A tool's requests to a role's control port (druvaa status, resync, verify, replica seed, the
 * demo): plain HTTP to a role started with --insecure, or, given `tls` (resolveControlToolSecurity:
 * the tool's admin certificate), HTTPS whose server must show a druvaa role's certificate of our CA,
 * current and not revoked (fetchTlsOptions: checked by the library and by verifyPeer).
 *
 * What goes wrong, as errors with a hint:
 *   nothing answers                                   → NET_CONNECT_FAILED
 *   plain HTTP, the port speaks HTTPS (a TLS role)    → CONTROL_TLS_REQUIRED, exit 4: pass an admin certificate
 *                                                       (found by one unauthenticated GET /status over TLS;
 *                                                       nothing else is sent)
 *   HTTPS, the port speaks plain HTTP                 → CONTROL_TLS_NOT_SPOKEN, exit 4
 *   HTTPS, the role refuses our certificate (403)     → the role's code (TLS_ROLE_NOT_ALLOWED, TLS_CERT_REVOKED ...), exit 4
 *   HTTPS, we refuse the role's certificate           → verifyPeer's code, or TLS_PEER_UNTRUSTED for the library's verdict, exit 4
 */
import { DruvaaError, exitCodes } from "../errors.ts";
import { formatAddress, parseAddress } from "../io/transport.ts";
import { fetchTlsOptions, type PreparedTls } from "../tls/transport-tls.ts";
import type { RoleStatus } from "./status-format.ts";

const requestTimeoutMs = 10_000;
/** The one unauthenticated look that tells an HTTPS port from a broken one (after a failed plain request). */
const httpsProbeTimeoutMs = 3_000;

const adminCertHint = "Give the tool an admin certificate of the role's CA: --tls-cert ops.pem --tls-key ops.key --tls-ca ca.pem (made with: druvaa admin cert issue --role admin --name ops --dir CADIR)";

function urlOf(connect: string, path: string, defaultPort: number, scheme: "http" | "https"): { url: string; unix: string | undefined } {
  const address = parseAddress(connect, defaultPort);
  return address.kind === "unix" ? { url: `${scheme}://localhost${path}`, unix: address.path } : { url: `${scheme}://${formatAddress(address)}${path}`, unix: undefined };
}

const codeOf = (error: unknown) => (error as { code?: unknown } | null)?.code;

/** True when `connect` answers HTTPS at all (any status): a plain request failed there. */
async function speaksHttps(connect: string, defaultPort: number): Promise<boolean> {
  const { url, unix } = urlOf(connect, "/status", defaultPort, "https");
  try {
    await fetch(url, { signal: AbortSignal.timeout(httpsProbeTimeoutMs), tls: { rejectUnauthorized: false }, ...(unix === undefined ? {} : { unix }) } as RequestInit);
    return true;
  } catch {
    return false;
  }
}

/** The DruvaaError for a fetch that failed (no HTTP answer). */
async function requestError(connect: string, defaultPort: number, tls: PreparedTls | undefined, error: unknown): Promise<DruvaaError> {
  const code = codeOf(error);
  const detail = error instanceof Error ? error.message : String(error);
  const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
  if (tls === undefined && !timedOut && code !== "ECONNREFUSED" && code !== "ENOENT" && (await speaksHttps(connect, defaultPort))) {
    return new DruvaaError("CONTROL_TLS_REQUIRED", `the control port ${connect} speaks HTTPS (its role runs with TLS) and takes admin or panel certificates only`, adminCertHint, exitCodes.refused, { cause: error });
  }
  if (tls !== undefined && error instanceof DruvaaError) {
    return new DruvaaError(error.code, `the control port ${connect} is not a druvaa role of our CA: ${error.message}`, error.hint, exitCodes.refused, { cause: error });
  }
  if (tls !== undefined && code === "EPROTO") {
    return new DruvaaError("CONTROL_TLS_NOT_SPOKEN", `the control port ${connect} did not complete a TLS handshake: ${detail}`, "A role started with --insecure serves plain HTTP on its control port: drop --tls-cert/--tls-key/--tls-ca (or start the role with TLS)", exitCodes.refused, { cause: error });
  }
  if (tls !== undefined && typeof code === "string" && /CERT|SIGNATURE|ISSUER|SELF_SIGNED|VERIFY/.test(code)) {
    return new DruvaaError("TLS_PEER_UNTRUSTED", `the control port ${connect} presented a certificate our CA (--tls-ca) does not vouch for (${code})`, "Give the ca.pem of the CA that issued the role's certificate; is this the right host and port?", exitCodes.refused, { cause: error });
  }
  return new DruvaaError("NET_CONNECT_FAILED", `cannot reach the control port ${connect}: ${detail}`, "Is the role running, and is this its control port (client 6007, staging 6002, replica 6004)?", exitCodes.failure, { cause: error });
}

/**
 * One request to a role's control port (HOST:PORT, default port `defaultPort` unless given, or
 * unix:PATH); HTTPS with `tls`. A 403 refusal of our certificate becomes its DruvaaError (exit 4);
 * any other answer is returned as it is.
 */
export async function controlRequest(connect: string, path: string, init: RequestInit = {}, defaultPort = 6002, tls?: PreparedTls): Promise<Response> {
  const { url, unix } = urlOf(connect, path, defaultPort, tls === undefined ? "http" : "https");
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(requestTimeoutMs), ...init, ...(unix === undefined ? {} : { unix }), ...(tls === undefined ? {} : { tls: fetchTlsOptions(tls) }) } as RequestInit);
  } catch (error) {
    throw await requestError(connect, defaultPort, tls, error);
  }
  if (response.status === 403) {
    const body = (await response.clone().json().catch(() => undefined)) as { error?: { code?: unknown; message?: unknown; hint?: unknown } } | undefined;
    const refusal = body?.error;
    if (typeof refusal?.code === "string" && refusal.code.startsWith("TLS_")) {
      throw new DruvaaError(refusal.code, `the control port ${connect} refused this tool: ${String(refusal.message ?? "")}`, typeof refusal.hint === "string" ? refusal.hint : adminCertHint, exitCodes.refused);
    }
  }
  return response;
}

/** GET /status of a role; BAD_STATUS when the answer is not a druvaa status. */
export async function fetchStatus(connect: string, defaultPort = 6002, tls?: PreparedTls): Promise<RoleStatus> {
  const response = await controlRequest(connect, "/status", {}, defaultPort, tls);
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    throw new DruvaaError("BAD_STATUS", `${connect} did not answer with druvaa status JSON`, "Is this a druvaa control port?");
  }
  if (!response.ok || typeof body !== "object" || body === null || typeof (body as RoleStatus).role !== "string") {
    throw new DruvaaError("BAD_STATUS", `${connect} answered ${response.status} without a druvaa status`, "Is this a druvaa control port?");
  }
  return body as RoleStatus;
}
