/**
 * The panel's configuration side, put together for server.ts: the config store, the link to the
 * components' control ports, the coordinator (two-phase commit), the convergence loop, and the
 * API routes of docs/panel.md "Configuration" (role needed per route as listed there).
 */
import type { PreparedTls } from "../../tls/transport-tls.ts";
import type { Caller } from "./auth.ts";
import { configRequestTimeoutMs, statusTimeoutMs } from "./constants.ts";
import { ConfigActions, PairStates } from "./config-actions.ts";
import { ConfigConverger } from "./config-converge.ts";
import { ConfigCoordinator } from "./config-coordinator.ts";
import { ComponentLink } from "./config-link.ts";
import { ConfigPlans } from "./config-plans.ts";
import { ConfigRoutes } from "./config-routes.ts";
import { ConfigStore } from "./config-store.ts";
import type { AlertEvent } from "./mailer.ts";
import type { PanelStore, UserRole } from "./store.ts";

export interface ConfigServiceOptions {
  /** TLS toward components' control ports (the panel's certificate); plain HTTP when absent. */
  tls?: PreparedTls | undefined;
  onAlert?: ((event: AlertEvent) => void) | undefined;
  /** Tests shorten these. */
  requestTimeoutMs?: number;
  convergeIntervalMs?: number;
  behindGraceMs?: number;
}

export interface ConfigRoute {
  method: string;
  /** A path, a prefix ending in "/" (the rest is the name), or a path with one "*" segment (the name). */
  path: string;
  role: UserRole;
  handler: (request: Request, caller: Caller, url: URL, param: string) => unknown | Promise<unknown>;
}

export class ConfigService {
  readonly config: ConfigStore;
  readonly coordinator: ConfigCoordinator;
  readonly converger: ConfigConverger;
  readonly routes: ConfigRoute[];

  constructor(store: PanelStore, options: ConfigServiceOptions = {}) {
    this.config = new ConfigStore(store);
    const link = new ComponentLink(options.tls, options.requestTimeoutMs ?? configRequestTimeoutMs);
    const statusLink = new ComponentLink(options.tls, Math.min(statusTimeoutMs, options.requestTimeoutMs ?? statusTimeoutMs));
    this.coordinator = new ConfigCoordinator(this.config, link);
    this.converger = new ConfigConverger(this.config, this.coordinator, link, {
      onAlert: options.onAlert,
      ...(options.convergeIntervalMs === undefined ? {} : { intervalMs: options.convergeIntervalMs }),
      ...(options.behindGraceMs === undefined ? {} : { behindGraceMs: options.behindGraceMs }),
    });
    const plans = new ConfigPlans(this.config, link);
    const routes = new ConfigRoutes(this.config, this.coordinator, plans, new PairStates(this.config, statusLink));
    const actions = new ConfigActions(this.config, routes, link);
    this.routes = [
      { method: "GET", path: "/api/wrls", role: "viewer", handler: () => routes.wrls() },
      { method: "POST", path: "/api/wrls", role: "operator", handler: (request, caller) => routes.addWrl(request, caller) },
      { method: "DELETE", path: "/api/wrls/", role: "operator", handler: (_r, caller, _u, name) => routes.deleteWrl(name, caller) },
      { method: "GET", path: "/api/changemaps", role: "viewer", handler: () => routes.changemaps() },
      { method: "POST", path: "/api/changemaps", role: "operator", handler: (request, caller) => routes.addChangemap(request, caller) },
      { method: "DELETE", path: "/api/changemaps/", role: "operator", handler: (_r, caller, _u, name) => routes.deleteChangemap(name, caller) },
      { method: "GET", path: "/api/pairs", role: "viewer", handler: () => routes.pairs() },
      { method: "POST", path: "/api/pairs", role: "operator", handler: (request, caller) => routes.addPair(request, caller) },
      { method: "DELETE", path: "/api/pairs/", role: "operator", handler: (_r, caller, _u, name) => routes.deletePair(name, caller) },
      { method: "POST", path: "/api/pairs/*/actions", role: "operator", handler: (request, caller, _u, name) => actions.act(name, request, caller) },
      { method: "POST", path: "/api/wizard", role: "operator", handler: (request, caller) => routes.wizard(request, caller) },
      { method: "GET", path: "/api/transactions", role: "viewer", handler: (_r, _c, url) => routes.transactions(url) },
      { method: "GET", path: "/api/probe", role: "operator", handler: (_r, _c, url) => actions.probe(url) },
      { method: "GET", path: "/api/sizing", role: "viewer", handler: (_r, _c, url) => actions.sizing(url) },
    ];
  }

  /** Settles transactions a stopped panel left undecided, then starts the convergence loop. */
  async start(): Promise<void> {
    await this.coordinator.recover();
    this.converger.start();
  }

  async stop(): Promise<void> {
    await this.converger.stop();
  }
}
