/**
 * The control port every role serves: plain HTTP, so `druvaa status`, curl, monitoring and the
 * panel can all read it. GET /status → the role's status as JSON. Routes are functions returning
 * JSON-able values (or a Response for other formats, e.g. Prometheus text on /metrics later).
 * A route key is a path (GET) or "METHOD /path" (e.g. "POST /resync" for actions).
 * A route that throws answers 500 with the error's code and message; the server keeps serving.
 */
import { DruvaaError } from "../errors.ts";
import { logger } from "../log.ts";
import type { Address } from "./transport.ts";

export type ControlRoute = (request: Request) => unknown | Promise<unknown>;

export interface ControlServer {
  /** The address actually bound (port 0 resolved), as HOST:PORT. */
  readonly address: string;
  stop(): Promise<void>;
}

export function startControlServer(address: Address, routes: Record<string, ControlRoute>, tag: string): ControlServer {
  const log = logger(`${tag}:control`);
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
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = address.kind === "unix"
      ? Bun.serve({ unix: address.path, fetch: handler })
      : Bun.serve({ hostname: address.host ?? "127.0.0.1", port: address.port, fetch: handler });
  } catch (error) {
    const inUse = String(error).includes("EADDRINUSE") || String(error).toLowerCase().includes("in use");
    throw new DruvaaError(inUse ? "NET_ADDRESS_IN_USE" : "NET_LISTEN_FAILED", `control port: cannot listen: ${String(error)}`, inUse ? "Another process uses that port: pick another with --control HOST:PORT" : undefined);
  }
  const bound = address.kind === "unix" ? `unix:${address.path}` : `${address.host ?? "127.0.0.1"}:${server.port}`;
  return {
    address: bound,
    async stop() {
      await server.stop(true);
    },
  };
}
