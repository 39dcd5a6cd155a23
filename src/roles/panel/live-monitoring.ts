/**
 * The panel's monitoring slice wired together, so server.ts only constructs it, adds its routes
 * and starts/stops it: after each poll round the statuses go to the metric history, the status
 * alerts and the live streams (in that order: a status event follows the alerts of its round);
 * each alert raised or cleared (by the monitor or the status alerts) goes to the mailer and the
 * live streams; the weekly digest's scheduler runs beside the poll.
 */
import type { Caller } from "./auth.ts";
import { liveCloseFlushMs } from "./constants.ts";
import { DigestRoutes } from "./digest-routes.ts";
import { Digest } from "./digest.ts";
import { databaseOf, openAlertCount } from "./history-db.ts";
import { MetricHistory } from "./history.ts";
import { LiveStreams } from "./live.ts";
import type { AlertEvent, Mailer } from "./mailer.ts";
import type { ComponentStatus } from "./monitor.ts";
import { StatusAlerts } from "./status-alerts.ts";
import type { PanelStore, UserRole } from "./store.ts";

export interface PanelMonitoringOptions {
  /** Tests: a fake clock, fewer streams, a faster heartbeat or digest check. */
  nowMs?: () => number;
  liveStreamsMax?: number;
  liveHeartbeatMs?: number;
  digestCheckIntervalMs?: number;
}

interface Wiring extends PanelMonitoringOptions {
  /** Every component's live status now (Monitor.checkAll), for the digest. */
  statuses: () => Promise<ComponentStatus[]>;
  panelUrl: () => string | undefined;
}

/** The shape of server.ts's route table entries. */
export interface MonitoringRoute {
  method: string;
  path: string;
  role: UserRole;
  handler: (request: Request, caller: Caller, url: URL, param: string) => unknown | Promise<unknown>;
}

export class PanelMonitoring {
  readonly history: MetricHistory;
  readonly statusAlerts: StatusAlerts;
  readonly live: LiveStreams;
  readonly digest: Digest;
  readonly routes: MonitoringRoute[];

  constructor(
    store: PanelStore,
    private readonly mailer: Mailer,
    wiring: Wiring,
  ) {
    const nowMs = wiring.nowMs ?? Date.now;
    const db = databaseOf(store);
    this.history = new MetricHistory(store, { nowMs });
    this.statusAlerts = new StatusAlerts(store, { onAlert: (event) => this.onAlert(event), now: () => new Date(nowMs()) });
    this.live = new LiveStreams({ openAlerts: () => openAlertCount(db), nowMs, ...(wiring.liveStreamsMax === undefined ? {} : { streamsMax: wiring.liveStreamsMax }), ...(wiring.liveHeartbeatMs === undefined ? {} : { heartbeatMs: wiring.liveHeartbeatMs }) });
    this.digest = new Digest(store, mailer, this.history, { statuses: wiring.statuses, nowMs, panelUrl: wiring.panelUrl, ...(wiring.digestCheckIntervalMs === undefined ? {} : { checkIntervalMs: wiring.digestCheckIntervalMs }) });
    const digestRoutes = new DigestRoutes(store, this.digest, nowMs);
    this.routes = [
      { method: "GET", path: "/api/metrics/series", role: "viewer", handler: () => this.history.seriesRoute() },
      { method: "GET", path: "/api/metrics", role: "viewer", handler: (_r, _c, url) => this.history.metricsRoute(url) },
      { method: "GET", path: "/api/live", role: "viewer", handler: (request, caller) => this.live.open(request, caller.user.name) },
      { method: "GET", path: "/api/settings/digest", role: "viewer", handler: () => digestRoutes.settings() },
      { method: "PUT", path: "/api/settings/digest", role: "admin", handler: (request, caller) => digestRoutes.putSettings(request, caller) },
      { method: "POST", path: "/api/settings/digest/send", role: "admin", handler: (_r, caller) => digestRoutes.send(caller) },
    ];
  }

  /** Monitor's onRound. Each part runs even if an earlier one throws; the first error is rethrown (the monitor logs it). */
  onRound(statuses: ComponentStatus[]): void {
    let failure: unknown;
    for (const step of [() => this.history.record(statuses), () => this.statusAlerts.evaluate(statuses), () => this.live.status(statuses)]) {
      try {
        step();
      } catch (error) {
        failure ??= error;
      }
    }
    if (failure !== undefined) throw failure;
  }

  /** Monitor's and StatusAlerts' onAlert: mail (only queued) and live streams. */
  onAlert(event: AlertEvent): void {
    this.mailer.notify(event);
    this.live.alert(event);
  }

  /** Once the HTTP server listens: live streams lift its idle timeout; the digest scheduler starts. */
  start(server: { timeout(request: Request, seconds: number): void }): void {
    this.live.keepOpen = (request) => server.timeout(request, 0);
    this.digest.start();
  }

  /**
   * Ends the live streams before the HTTP server stops, so they end cleanly: a forced stop right
   * after would cut the stream's last chunk (the reader sees ECONNRESET), so this waits a moment
   * (liveCloseFlushMs) for Bun to write it.
   */
  async closeStreams(): Promise<void> {
    if (this.live.count === 0) return;
    this.live.close();
    await Bun.sleep(liveCloseFlushMs);
  }

  async stop(): Promise<void> {
    this.live.close();
    await this.digest.stop();
  }
}
