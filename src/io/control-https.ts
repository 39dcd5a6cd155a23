/**
 * The control port over HTTPS with mutual authentication, for a role that runs with TLS: TLS 1.3
 * only, and the peer's certificate checked by authorizeTlsPeer/verifyPeer exactly as on the data
 * links (our CA, current, not revoked in the CRL in use now, role admin or panel).
 *
 * Why node:tls + node:http and not Bun.serve (measured on Bun 1.4.5): Bun.serve's fetch handler
 * does not expose the peer's certificate, nor does the request socket of node:https in Bun
 * (no getPeerCertificate); a node:tls server's socket does, and node:http serves a socket handed
 * to it with emit("connection"). The routes stay fetch-style (src/io/control-server.ts): each
 * request becomes a Request, each Response is written back.
 *
 * Refusals, each logged once per connection (not per request):
 *   not TLS (garbage, plain HTTP), not TLS 1.3, no
 *   handshake within tlsHandshakeTimeoutMs          → dropped by the TLS library (the peer sees a reset)
 *   a TLS 1.3 session whose certificate verifyPeer
 *   refuses (none, another CA's, expired, revoked,
 *   a client/staging/replica certificate)           → every request on it answers 403 {ok:false, error:
 *                                                     {code, message, hint}}, then the connection closes;
 *                                                     no route runs, no body is read
 *   a peer revoked while connected (the role's CRL
 *   changed, src/tls/crl-reload.ts)                  → its next request answers 403 TLS_CERT_REVOKED; idle
 *                                                     connections of it are closed when the list changes
 * Bounds: a request body over controlRequestBytesMax answers 413; a connection idle for
 * controlIdleTimeoutMs is closed. Whatever a connection does, it is closed alone.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import tls, { type TLSSocket } from "node:tls";
import { DruvaaError, exitCodes } from "../errors.ts";
import { controlIdleTimeoutMs, controlRequestBytesMax } from "../tls/constants.ts";
import type { PeerIdentity } from "../tls/identity.ts";
import { authorizeTlsPeer, isRevoked, type PreparedTls } from "../tls/transport-tls.ts";
import type { Address } from "./address.ts";
import type { ControlServer } from "./control-server.ts";

type Handler = (request: Request) => Promise<Response>;
type Log = { warn(message: string): void; error(message: string): void };

/** A connection that completed the TLS handshake: its peer, authorized or refused. */
interface Session {
  readonly peer: string;
  identity?: PeerIdentity;
  refusal?: DruvaaError;
}

/** What to tell a tool that came without a usable certificate. */
const adminCertHint = "This control port is HTTPS for admin (or panel) certificates: give the tool one, e.g. druvaa status --connect HOST:PORT --tls-cert ops.pem --tls-key ops.key --tls-ca ca.pem (made with: druvaa admin cert issue --role admin --name ops --dir CADIR)";

/** node's authorizationError is an Error or a bare code, depending on the runtime. */
function libraryError(socket: TLSSocket): Error | null {
  const reason = socket.authorizationError as unknown;
  if (reason === undefined || reason === null) return null;
  return reason instanceof Error ? reason : Object.assign(new Error(String(reason)), { code: String(reason) });
}

function refusalOf(error: unknown): DruvaaError {
  if (!(error instanceof DruvaaError)) return new DruvaaError("TLS_PEER_UNTRUSTED", `cannot check the peer's certificate: ${error instanceof Error ? error.message : String(error)}`, adminCertHint, exitCodes.refused, { cause: error });
  // Expired, not yet valid, revoked: verifyPeer's hint names the certificate to reissue.
  return error.code === "TLS_PEER_UNTRUSTED" || error.code === "TLS_ROLE_NOT_ALLOWED" ? new DruvaaError(error.code, error.message, adminCertHint, error.exitCode, { cause: error }) : error;
}

function answer(response: http.ServerResponse, status: number, error: { code: string; message: string; hint?: string | undefined }, close: boolean): void {
  response.writeHead(status, { "content-type": "application/json", ...(close ? { connection: "close" } : {}) });
  response.end(JSON.stringify({ ok: false, error: error.hint === undefined ? { code: error.code, message: error.message } : { code: error.code, message: error.message, hint: error.hint } }));
  if (close) response.once("finish", () => response.socket?.end());
}

/** The request body, or undefined when it is larger than controlRequestBytesMax. */
async function readBody(request: http.IncomingMessage): Promise<Uint8Array | undefined> {
  if (Number(request.headers["content-length"] ?? 0) > controlRequestBytesMax) return undefined;
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of request as AsyncIterable<Uint8Array>) {
    bytes += chunk.length;
    if (bytes > controlRequestBytesMax) return undefined;
    chunks.push(chunk);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

/** Runs `handler` for one authorized request: IncomingMessage → Request, Response → the socket. */
async function serveAuthorized(request: http.IncomingMessage, response: http.ServerResponse, handler: Handler): Promise<void> {
  const body = request.method === "GET" || request.method === "HEAD" ? new Uint8Array(0) : await readBody(request);
  if (body === undefined) return answer(response, 413, { code: "TOO_LARGE", message: `request body larger than ${controlRequestBytesMax} bytes`, hint: "Control requests are small JSON documents" }, true);
  const headers = new Headers();
  for (const [name, value] of Object.entries(request.headers)) {
    for (const one of Array.isArray(value) ? value : value === undefined ? [] : [value]) headers.append(name, one);
  }
  const url = new URL(request.url ?? "/", "https://localhost");
  const reply = await handler(new Request(url.href, { method: request.method ?? "GET", headers, ...(body.length > 0 ? { body } : {}) }));
  const replyHeaders: Record<string, string> = {};
  reply.headers.forEach((value, name) => (replyHeaders[name] = value));
  const replyBody = new Uint8Array(await reply.arrayBuffer());
  response.writeHead(reply.status, replyHeaders);
  response.end(replyBody);
}

/**
 * Serves `handler` on `address` over HTTPS for the peers `prepared` accepts (see the file
 * comment). Rejects with the listen error (EADDRINUSE ...), which the caller turns into a DruvaaError.
 */
export async function startHttpsControlServer(address: Address, handler: Handler, prepared: PreparedTls, log: Log): Promise<ControlServer> {
  const sessions = new Map<TLSSocket, Session>();
  const sockets = new Set<TLSSocket>();
  const peers = new WeakMap<TLSSocket, string>();
  const httpServer = http.createServer((request, response) => {
    const session = sessions.get(request.socket as TLSSocket);
    const identity = session?.identity;
    if (identity === undefined) {
      return answer(response, 403, session?.refusal ?? new DruvaaError("TLS_PEER_UNTRUSTED", "this connection is not authorized", adminCertHint), true);
    }
    if (isRevoked(prepared, identity)) {
      const revoked = new DruvaaError("TLS_CERT_REVOKED", `${identity.role} "${identity.name}" (serial ${identity.serial}) was revoked`, `Issue a new certificate: druvaa admin cert issue --role ${identity.role} --name ${identity.name} --force`, exitCodes.refused);
      if (session!.refusal === undefined) log.warn(`${session!.peer}: refused: ${revoked.message} (${revoked.code})`);
      session!.refusal = revoked;
      session!.identity = undefined;
      return answer(response, 403, revoked, true);
    }
    serveAuthorized(request, response, handler).catch((error: unknown) => {
      log.error(`${session!.peer}: ${request.method} ${request.url}: ${error instanceof Error ? error.message : String(error)}`);
      if (!response.headersSent) answer(response, 400, { code: "BAD_REQUEST", message: "the request could not be read" }, true);
      else response.destroy();
    });
  });
  const { cert, key, ca, secureOptions } = prepared.bunServerOptions as { cert: string; key: string; ca: string; secureOptions: number };
  const tlsServer = tls.createServer({ cert, key, ca, secureOptions, minVersion: "TLSv1.3", maxVersion: "TLSv1.3", requestCert: true, rejectUnauthorized: false, handshakeTimeout: prepared.handshakeTimeoutMs }, (socket) => {
    const session: Session = { peer: peers.get(socket) ?? "?" };
    sessions.set(socket, session);
    try {
      session.identity = authorizeTlsPeer({ getTLSVersion: () => socket.getProtocol(), getPeerCertificate: () => socket.getPeerCertificate(true) }, prepared, libraryError(socket), new Date());
    } catch (error) {
      session.refusal = refusalOf(error);
      log.warn(`${session.peer}: refused: ${session.refusal.message} (${session.refusal.code})`);
      if (session.refusal.code === "TLS_HANDSHAKE_FAILED") return void socket.destroy();
    }
    socket.setTimeout(controlIdleTimeoutMs, () => socket.destroy());
    httpServer.emit("connection", socket);
  });
  tlsServer.on("connection", (socket: TLSSocket) => {
    sockets.add(socket);
    peers.set(socket, `${socket.remoteAddress ?? "unix"}:${socket.remotePort ?? ""}`);
    socket.once("close", () => {
      sockets.delete(socket);
      sessions.delete(socket);
    });
  });
  tlsServer.on("tlsClientError", (error: Error & { code?: string }, socket: TLSSocket) => {
    log.warn(`${peers.get(socket) ?? "?"}: refused: TLS failed before authorization (${error.code ?? error.message})`);
    socket.destroy();
  });
  const unwatch = prepared.revocations?.onChange((list) => {
    for (const [socket, session] of sessions) {
      if (session.identity === undefined || !list.serials.has(session.identity.serial)) continue;
      log.warn(`${session.peer}: ${session.identity.role} "${session.identity.name}" (serial ${session.identity.serial}) was revoked while connected: connection closed`);
      session.refusal = new DruvaaError("TLS_CERT_REVOKED", "revoked while connected", undefined, exitCodes.refused);
      session.identity = undefined;
      socket.destroy();
    }
  });
  await new Promise<void>((resolve, reject) => {
    tlsServer.once("error", reject);
    const listening = () => {
      tlsServer.off("error", reject);
      resolve();
    };
    if (address.kind === "unix") tlsServer.listen(address.path, listening);
    else tlsServer.listen(address.port, address.host ?? "127.0.0.1", listening);
  });
  tlsServer.on("error", (error) => log.error(`control port: ${error.message}`));
  const bound = address.kind === "unix" ? `unix:${address.path}` : `${address.host ?? "127.0.0.1"}:${(tlsServer.address() as AddressInfo).port}`;
  return {
    address: bound,
    async stop() {
      unwatch?.();
      const closed = new Promise<void>((resolve) => tlsServer.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
