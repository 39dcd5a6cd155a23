/**
 * `druvaa panel`'s HTTP(S) server (Bun.serve): the JSON API under /api (routes.ts), every request
 * through auth.ts's decision table, every answer JSON. A route that throws something other than an
 * ApiError answers 500 INTERNAL (logged) and the server keeps serving. Bounded: a body over
 * panelRequestBytesMax answers 413 TOO_LARGE (JSON); one over panelBodyBytesCutoff is cut off by
 * Bun itself before it is read (a bare 413).
 */
import type { Address } from "../../io/address.ts";
import { listenError } from "../../io/control-server.ts";
import { logger } from "../../log.ts";
import type { PreparedTls } from "../../tls/transport-tls.ts";
import { Auth, requireRole, type Caller } from "./auth.ts";
import { loginLockMs, panelBodyBytesCutoff } from "./constants.ts";
import { ApiError, errorAnswer, jsonAnswer } from "./http.ts";
import { jobsRoute } from "./config-jobs.ts";
import { ConfigService, type ConfigServiceOptions } from "./config-service.ts";
import { roundPairs } from "./config-pair-states.ts";
import { LoginLimiter } from "./limiter.ts";
import { MailRoutes } from "./mail-routes.ts";
import { Mailer } from "./mailer.ts";
import { Monitor } from "./monitor.ts";
import { PanelMonitoring, type PanelMonitoringOptions } from "./live-monitoring.ts";
import { PanelRoutes } from "./routes.ts";
import { helpList, helpPage, staticAnswer } from "./static.ts";
import type { PanelStore, UserRole } from "./store.ts";

const log = logger("panel");

export interface PanelServerOptions {
  store: PanelStore;
  listen: Address;
  /** HTTPS with this certificate and key (PEM); plain HTTP when absent. */
  https?: { cert: string; key: string } | undefined;
  /** TLS toward components' control ports (the panel's certificate); plain HTTP when absent. */
  componentTls?: PreparedTls | undefined;
  /** Tests shorten these. */
  loginLockMs?: number;
  pollIntervalMs?: number;
  statusTimeoutMs?: number;
  mailRetryBaseMs?: number;
  /** Configuration (two-phase commit, convergence): tests shorten its timeouts and intervals. */
  config?: Omit<ConfigServiceOptions, "tls" | "onAlert"> | undefined;
  /** Metric history, status alerts, live streams, weekly digest (tests: fake clock, bounds). */
  monitoring?: PanelMonitoringOptions | undefined;
}

type Handler = (request: Request, caller: Caller, url: URL, param: string) => unknown | Promise<unknown>;

interface Route {
  method: string;
  /** A path, a prefix ending in "/" whose rest is the route's one parameter (a name), or a path with one "*" segment (the parameter). */
  path: string;
  role: UserRole;
  /** Allowed while the user must still change their password. */
  beforePasswordChange?: boolean;
  handler: Handler;
}

export class PanelServer {
  private constructor(
    private readonly server: ReturnType<typeof Bun.serve>,
    private readonly monitor: Monitor,
    private readonly mailer: Mailer,
    private readonly monitoring: PanelMonitoring,
    private readonly configuration: ConfigService,
    /** HOST:PORT actually bound. */
    readonly address: string,
    readonly url: string,
  ) {}

  static async start(options: PanelServerOptions): Promise<PanelServer> {
    const { store } = options;
    const auth = new Auth(store, { secureCookies: options.https !== undefined, limiter: new LoginLimiter(Date.now, options.loginLockMs ?? loginLockMs), nowMs: Date.now });
    if (await auth.ensureFirstAdmin()) log.warn('first run: created user "admin" with password "druvaa"; it must be changed at the first login');
    let panelUrl: string | undefined;
    const mailer = new Mailer(store, { panelUrl: () => panelUrl, ...(options.mailRetryBaseMs === undefined ? {} : { retryBaseMs: options.mailRetryBaseMs }) });
    const monitoring = new PanelMonitoring(store, mailer, { statuses: () => monitor.checkAll(), panelUrl: () => panelUrl, ...options.monitoring });
    const monitor = new Monitor(store, { tls: options.componentTls, onAlert: (event) => monitoring.onAlert(event), onRound: (statuses) => monitoring.onRound(statuses), ...(options.pollIntervalMs === undefined ? {} : { intervalMs: options.pollIntervalMs }), ...(options.statusTimeoutMs === undefined ? {} : { timeoutMs: options.statusTimeoutMs }) });
    const configuration = new ConfigService(store, { tls: options.componentTls, onAlert: (event) => monitoring.onAlert(event), ...options.config });
    monitoring.live.pairs = roundPairs(configuration.config);
    const routes = new PanelRoutes(store, monitor, configuration.config);
    const mail = new MailRoutes(store);
    const table: Route[] = [
      { method: "POST", path: "/api/logout", role: "viewer", beforePasswordChange: true, handler: (_r, caller) => auth.logout(caller) },
      { method: "POST", path: "/api/password", role: "viewer", beforePasswordChange: true, handler: (request, caller) => auth.changePassword(request, caller) },
      { method: "GET", path: "/api/session", role: "viewer", beforePasswordChange: true, handler: (_r, caller) => routes.session(caller) },
      { method: "GET", path: "/api/users", role: "viewer", handler: () => routes.users() },
      { method: "POST", path: "/api/users", role: "admin", handler: (request, caller) => routes.addUser(request, caller) },
      { method: "DELETE", path: "/api/users/", role: "admin", handler: (_r, caller, _u, name) => routes.deleteUser(name, caller) },
      { method: "GET", path: "/api/components", role: "viewer", handler: () => routes.components() },
      { method: "POST", path: "/api/components", role: "operator", handler: (request, caller) => routes.addComponent(request, caller) },
      { method: "DELETE", path: "/api/components/", role: "operator", handler: (_r, caller, _u, name) => routes.deleteComponent(name, caller) },
      { method: "GET", path: "/api/activity", role: "viewer", handler: (_r, _c, url) => routes.activity(url) },
      { method: "GET", path: "/api/alerts", role: "viewer", handler: (_r, _c, url) => routes.alerts(url) },
      { method: "GET", path: "/api/status", role: "viewer", handler: () => routes.status() },
      { method: "GET", path: "/api/settings/mail", role: "viewer", handler: () => mail.settings() },
      { method: "PUT", path: "/api/settings/mail", role: "admin", handler: (request, caller) => mail.putSettings(request, caller) },
      { method: "GET", path: "/api/settings/mail/recipients", role: "viewer", handler: () => mail.recipients() },
      { method: "POST", path: "/api/settings/mail/recipients", role: "admin", handler: (request, caller) => mail.addRecipient(request, caller) },
      { method: "DELETE", path: "/api/settings/mail/recipients/", role: "admin", handler: (_r, caller, _u, address) => mail.deleteRecipient(address, caller) },
      { method: "POST", path: "/api/settings/mail/test", role: "admin", handler: (request, caller) => mail.test(request, caller) },
      { method: "GET", path: "/api/help", role: "viewer", handler: () => helpList() },
      { method: "GET", path: "/api/help/", role: "viewer", handler: (_r, _c, _u, name) => helpPage(name) },
      ...monitoring.routes,
      ...configuration.routes,
      jobsRoute(configuration.config, options.componentTls, options.config?.requestTimeoutMs),
    ];

    const dispatch = async (request: Request, clientAddress: string): Promise<Response> => {
      const url = new URL(request.url);
      const path = url.pathname;
      // The web UI (static.ts): every GET outside /api, with no session needed to load the login page.
      if (request.method === "GET" && path !== "/api" && !path.startsWith("/api/")) return staticAnswer(request, path);
      if (request.method === "POST" && path === "/api/login") return await auth.login(request, clientAddress);
      const match = findRoute(table, request.method, path);
      if (match === undefined) {
        const known = table.some((route) => route.path === path || (route.path.endsWith("/") && path.startsWith(route.path)));
        throw known || path === "/api/login" ? new ApiError(405, "METHOD_NOT_ALLOWED", `${request.method} is not allowed on ${path}`) : new ApiError(404, "NOT_FOUND", `no such endpoint: ${request.method} ${path}`, "The API is under /api: login, logout, session, password, users, components, activity, alerts, status, settings/mail");
      }
      const caller = auth.caller(request);
      auth.checkCsrf(request, caller);
      if (caller.user.mustChangePassword && match.route.beforePasswordChange !== true) {
        throw new ApiError(403, "PASSWORD_CHANGE_REQUIRED", `user "${caller.user.name}" must change their password first`, 'POST /api/password {"current":…,"new":…}');
      }
      requireRole(caller, match.route.role);
      const result = await match.route.handler(request, caller, url, match.param);
      return result instanceof Response ? result : jsonAnswer(result);
    };

    const fetch = async (request: Request, bun: { requestIP(request: Request): { address: string } | null }): Promise<Response> => {
      const clientAddress = bun.requestIP(request)?.address ?? "unix";
      try {
        return await dispatch(request, clientAddress);
      } catch (error) {
        if (error instanceof ApiError) return errorAnswer(error);
        log.error(`${request.method} ${new URL(request.url).pathname}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        return errorAnswer(new ApiError(500, "INTERNAL", "the panel failed to answer this request (logged)", "Retry; if it persists, report the panel's log"));
      }
    };

    let server: ReturnType<typeof Bun.serve>;
    const host = options.listen.kind === "unix" ? undefined : (options.listen.host ?? "127.0.0.1");
    const common = { fetch, maxRequestBodySize: panelBodyBytesCutoff, error: () => errorAnswer(new ApiError(400, "BAD_REQUEST", "the request could not be read")) };
    try {
      server = options.listen.kind === "unix"
        ? Bun.serve({ ...common, unix: options.listen.path, ...(options.https === undefined ? {} : { tls: options.https }) })
        : Bun.serve({ ...common, hostname: host!, port: options.listen.port, ...(options.https === undefined ? {} : { tls: options.https }) });
    } catch (error) {
      throw listenError(error, "panel", "--listen");
    }
    const address = options.listen.kind === "unix" ? `unix:${options.listen.path}` : `${host}:${server.port}`;
    const scheme = options.https === undefined ? "http" : "https";
    const urlHost = host === undefined ? "localhost" : host.includes(":") ? `[${host}]` : host;
    panelUrl = `${scheme}://${urlHost}${host === undefined ? "" : `:${server.port}`}`;
    monitor.start();
    monitoring.start(server);
    await configuration.start();
    return new PanelServer(server, monitor, mailer, monitoring, configuration, address, panelUrl);
  }

  /** Stops serving (open requests are cut) and the status poll. */
  async stop(): Promise<void> {
    await this.monitoring.closeStreams();
    await this.server.stop(true);
    await this.monitor.stop();
    await this.configuration.stop();
    await this.monitoring.stop();
    await this.mailer.stop();
  }
}

function findRoute(table: readonly Route[], method: string, path: string): { route: Route; param: string } | undefined {
  for (const route of table) {
    if (route.method !== method) continue;
    if (route.path === path) return { route, param: "" };
    const star = route.path.indexOf("/*/");
    if (star >= 0) {
      // A path with one "*" segment (e.g. /api/pairs/*/actions): that segment is the parameter.
      const head = route.path.slice(0, star + 1);
      const tail = route.path.slice(star + 2);
      const middle = path.startsWith(head) && path.endsWith(tail) ? path.slice(head.length, path.length - tail.length) : "";
      if (middle.length === 0 || middle.includes("/")) continue;
      try {
        return { route, param: decodeURIComponent(middle) };
      } catch {
        throw new ApiError(400, "BAD_FIELD", "name: is not a valid URL-encoded name");
      }
    }
    if (route.path.endsWith("/") && path.startsWith(route.path) && path.length > route.path.length && !path.slice(route.path.length).includes("/")) {
      let param: string;
      try {
        param = decodeURIComponent(path.slice(route.path.length));
      } catch {
        throw new ApiError(400, "BAD_FIELD", "name: is not a valid URL-encoded name");
      }
      return { route, param };
    }
  }
  return undefined;
}
