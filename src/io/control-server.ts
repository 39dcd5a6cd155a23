/**
 * The control port every role serves, so `druvaa status`, curl, monitoring and the panel can all
 * read it: plain HTTP (Bun.serve) for a role started with --insecure, held to loopback
 * (src/roles/link-security.ts); HTTPS with mutual authentication when the role runs with TLS
 * (`tls`, src/io/control-https.ts: admin or panel certificates only, refused before any route
 * runs). The routes are the same either way. GET /status → the role's status as JSON. Routes are
 * functions returning JSON-able values (or a Response for other formats).
 * A route key is a path (GET) or "METHOD /path" (e.g. "POST /resync" for actions).
 * A route that throws answers 500 with the error's code and message; the server keeps serving.
 *
 * GET /metrics: where the routes have "/status" and no metrics route of their own, the server
 * adds one that calls the status route and renders it as Prometheus text (0.0.4, see
 * src/metrics/role-metrics.ts). A failure there (the status route throws, or its answer cannot be
 * rendered) answers 500 as plain text `error CODE: message`, logged (each failed scrape); a scraper then records
 * the target as down, which is what it is.
 */
import { DruvaaError } from "../errors.ts";
import { logger } from "../log.ts";
import { prometheusContentType } from "../metrics/prometheus.ts";
import { renderRoleMetrics } from "../metrics/role-metrics.ts";
import type { PreparedTls } from "../tls/transport-tls.ts";
import { startHttpsControlServer } from "./control-https.ts";
import type { Address } from "./transport.ts";

export type ControlRoute = (request: Request) => unknown | Promise<unknown>;

export interface ControlServer {
  /** The address actually bound (port 0 resolved), as HOST:PORT. */
  readonly address: string;
  stop(): Promise<void>;
}

/** The GET /metrics route rendering what `statusRoute` answers (see the file comment). */
export function metricsRoute(statusRoute: ControlRoute, log: { error(message: string): void }): ControlRoute {
  return async (request) => {
    try {
      const answer = await statusRoute(request);
      const status: unknown = answer instanceof Response ? await answer.json() : answer;
      return new Response(renderRoleMetrics(status), { headers: { "content-type": prometheusContentType } });
    } catch (error) {
      const info = error instanceof DruvaaError ? error.toJSON() : { code: "INTERNAL", message: error instanceof Error ? error.message : String(error) };
      log.error(`/metrics: ${info.message}`);
      return new Response(`error ${info.code}: ${info.message}\n`, { status: 500, headers: { "content-type": "text/plain; charset=utf-8" } });
    }
  };
}

export interface ControlServerOptions {
  /** HTTPS with mutual authentication (peers: the roles tls.expectRole names); plain HTTP when absent. */
  tls?: PreparedTls | undefined;
}

/** Listens on `address` (port 0: a free port) and serves `givenRoutes` (see the file comment). */
export async function startControlServer(address: Address, givenRoutes: Record<string, ControlRoute>, tag: string, options: ControlServerOptions = {}): Promise<ControlServer> {
  const log = logger(`${tag}:control`);
  const handler = controlHandler(givenRoutes, log);
  if (options.tls !== undefined) {
    return await startHttpsControlServer(address, handler, options.tls, log).catch((error: unknown) => {
      throw controlListenError(error);
    });
  }
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = address.kind === "unix"
      ? Bun.serve({ unix: address.path, fetch: handler })
      : Bun.serve({ hostname: address.host ?? "127.0.0.1", port: address.port, fetch: handler });
  } catch (error) {
    throw controlListenError(error);
  }
  const bound = address.kind === "unix" ? `unix:${address.path}` : `${address.host ?? "127.0.0.1"}:${server.port}`;
  return {
    address: bound,
    async stop() {
      await server.stop(true);
    },
  };
}

/** A listen failure of the control port, with a hint. */
function controlListenError(error: unknown): DruvaaError {
  return listenError(error, "control port", "--control");
}

/** A listen failure of an HTTP server (`what` names it, `flag` is the option that picks its address), with a hint. */
export function listenError(error: unknown, what: string, flag: string): DruvaaError {
  const inUse = String(error).includes("EADDRINUSE") || String(error).toLowerCase().includes("in use") || (error as { code?: unknown })?.code === "EADDRINUSE";
  return new DruvaaError(inUse ? "NET_ADDRESS_IN_USE" : "NET_LISTEN_FAILED", `${what}: cannot listen: ${String(error)}`, inUse ? `Another process uses that port: pick another with ${flag} HOST:PORT` : undefined);
}

/** The routes as one fetch-style handler: 404 for unknown paths, 500 (logged) for a route that throws. */
function controlHandler(givenRoutes: Record<string, ControlRoute>, log: { error(message: string): void }): (request: Request) => Promise<Response> {
  const statusRoute = givenRoutes["/status"] ?? givenRoutes["GET /status"];
  const hasMetrics = givenRoutes["/metrics"] !== undefined || givenRoutes["GET /metrics"] !== undefined;
  const routes = statusRoute === undefined || hasMetrics ? givenRoutes : { ...givenRoutes, "/metrics": metricsRoute(statusRoute, log) };
  const handler = async (request: Request): Promise<Response> => {
    const path = new URL(request.url).pathname;
    const route = routes[`${request.method} ${path}`] ?? (request.method === "GET" ? routes[path] : undefined);
    if (route === undefined) {
      return Response.json({ ok: false, error: { code: "NOT_FOUND", message: `no such endpoint: ${request.method} ${path}`, hint: `Try: ${Object.keys(routes).map((key) => (key.includes(" ") ? key : `GET ${key}`)).join(", ")}` } }, { status: 404 });
    }
    try {
      const result = await route(request);
      return result instanceof Response ? result : Response.json(result);
    } catch (error) {
      const info = error instanceof DruvaaError ? error.toJSON() : { code: "INTERNAL", message: String(error) };
      log.error(`${path}: ${info.message}`);
      return Response.json({ ok: false, error: info }, { status: 500 });
    }
  };
  return handler;
}
