/**
 * Pairs as the API shows them (with a live state), pair actions, the wizard's device probe and
 * sizing.
 *
 * Live state: one GET /status of each client host and staging server the pairs use (in parallel,
 * bounded by statusTimeoutMs), read as:
 *   client host unreachable                      → unreachable
 *   client's acked config version < decided      → pending (the pair's change is not there yet)
 *   pair disabled                                → stopped
 *   replica status shows the device failed over  → failed-over
 *   attachment's child not running               → disconnected
 *   child's mode resyncing / disconnected        → resyncing / disconnected
 *   otherwise                                    → replicating
 * lagMs, rpoMs, wrlFillRatio, throughput from the staging's WRL status; null when not known.
 *
 * Actions map onto what the components' control ports serve:
 *   start / stop      the pair's `enabled`, one configuration transaction (client host only)
 *   snapshot {export} replica POST /snapshots {device, export}
 *   failover {export, at?, confirm}  replica POST /failover {device, export, at?}
 *   resync            client agent POST /attachment/resync?name=PAIR (the attachment's POST /resync)
 *   verify {repair?}  client agent POST /attachment/verify?name=PAIR {device, repair}
 *   split, join, restore, failback → 501 NOT_IMPLEMENTED with a hint (the CLI does them)
 */
import { protectReserveBytesDefault } from "../../protect-constants.ts";
import { replicaDeviceSizeBytes, stagingWrlSizeBytes } from "../../sizing.ts";
import type { Caller } from "./auth.ts";
import type { ComponentLink, LinkResult } from "./config-link.ts";
import type { ConfigRoutes } from "./config-routes.ts";
import { txAnswer } from "./config-routes.ts";
import type { ConfigStore, Pair } from "./config-store.ts";
import { checkConfigName, Fields, FieldError, withFields } from "./config-validate.ts";
import { ApiError, badField, jsonAnswer, readJsonBody } from "./http.ts";
import type { Component } from "./store.ts";

const actions = ["start", "stop", "split", "join", "resync", "verify", "snapshot", "restore", "failover", "failback"] as const;
type Action = (typeof actions)[number];
const needConfirm: readonly Action[] = ["failover", "failback", "restore"];
const notImplemented: Partial<Record<Action, string>> = {
  split: "No component serves a relay pause yet: stop the pair (action stop) to halt replication",
  join: "No component serves a relay resume yet: start the pair (action start)",
  restore: "Restores read the replica's restore port: run `druvaa restore` (or restore-snapshot) on the host to restore to",
  failback: "Failback is a multi-step copy: run `druvaa failback plan` and `druvaa failback` from the DR host",
};

const num = (value: unknown): number | null => (typeof value === "number" && Number.isFinite(value) ? value : null);

export class PairStates {
  constructor(
    private readonly config: ConfigStore,
    private readonly statusLink: ComponentLink,
  ) {}

  async describe(pairs: Pair[]): Promise<Record<string, unknown>[]> {
    const names = new Set<string>();
    const wrls = new Map(this.config.listWrls().map((wrl) => [wrl.name, wrl]));
    for (const pair of pairs) {
      names.add(pair.client);
      const wrl = wrls.get(pair.wrl);
      if (wrl !== undefined) names.add(wrl.staging).add(wrl.replica);
    }
    const statuses = new Map<string, LinkResult>();
    await Promise.all([...names].map(async (name) => {
      const component = this.config.panel.getComponent(name);
      if (component !== undefined) statuses.set(name, await this.statusLink.request(component, "GET", "/status"));
    }));
    const body = (name: string | undefined) => {
      const answer = name === undefined ? undefined : statuses.get(name);
      return answer?.ok === true ? answer.body : undefined;
    };
    return pairs.map((pair) => {
      const wrl = wrls.get(pair.wrl);
      const decided = this.config.getDecided(pair.client);
      const client = body(pair.client);
      const attachment = (client?.attachments as Record<string, unknown>[] | undefined)?.find((a) => a.name === pair.name);
      const child = attachment?.status as Record<string, unknown> | null | undefined;
      const stagingWrl = ((body(wrl?.staging)?.wrls as Record<string, unknown>[] | undefined) ?? []).find((w) => w.name === pair.wrl);
      // A failover record of the replica (failover.ts status()) naming this pair's device.
      const failedOver = ((body(wrl?.replica)?.failovers as { devices?: { name?: unknown }[] }[] | undefined) ?? []).some((f) => (f.devices ?? []).some((d) => d.name === pair.deviceName));
      let state: string;
      if (client === undefined) state = "unreachable";
      else if (decided === undefined || decided.ackedVersion < decided.version) state = "pending";
      else if (!pair.enabled) state = "stopped";
      else if (failedOver) state = "failed-over";
      else if (attachment === undefined || attachment.state !== "running") state = "disconnected";
      else state = child?.mode === "resyncing" ? "resyncing" : child?.mode === "disconnected" ? "disconnected" : "replicating";
      const resync = child?.resync as { sentBytes?: unknown; remainingBytes?: unknown } | null | undefined;
      const sent = num(resync?.sentBytes);
      const remaining = num(resync?.remainingBytes);
      const rpo = stagingWrl?.rpo as { rpoSeconds?: unknown } | undefined;
      const lagSeconds = num(stagingWrl?.lagSeconds);
      const rpoSeconds = num(rpo?.rpoSeconds);
      return {
        name: pair.name, client: pair.client, deviceName: pair.deviceName, devicePath: pair.devicePath, deviceSizeBytes: pair.deviceSizeBytes, export: pair.export,
        wrl: pair.wrl, staging: wrl?.staging ?? null, replica: wrl?.replica ?? null, replicaDevicePath: pair.replicaDevicePath, replicaSizeBytes: pair.replicaSizeBytes,
        changemap: pair.changemap, initialSync: pair.initialSync, rateLimit: pair.options.rateLimit ?? null, enabled: pair.enabled, state,
        lagMs: lagSeconds === null ? null : Math.round(lagSeconds * 1000), rpoMs: rpoSeconds === null ? null : Math.round(rpoSeconds * 1000),
        wrlFillRatio: num(stagingWrl?.fillRatio), throughputBytesPerSecond: null,
        resync: sent === null || remaining === null ? null : { doneBytes: sent, totalBytes: sent + remaining },
        configVersion: { decided: decided?.version ?? 0, acked: decided?.ackedVersion ?? 0 },
        createdBy: pair.createdBy, createdAt: pair.createdAt,
      };
    });
  }
}

export class ConfigActions {
  constructor(
    private readonly config: ConfigStore,
    private readonly routes: ConfigRoutes,
    private readonly link: ComponentLink,
  ) {}

  /** POST /api/pairs/NAME/actions {action, confirm?, …}. */
  act(name: string, request: Request, caller: Caller): Promise<unknown> {
    return withFields(async () => {
      checkConfigName(name, "name");
      const fields = new Fields(await readJsonBody(request), "");
      const action = fields.enumOf("action", actions);
      const pair = this.config.getPair(name);
      if (pair === undefined) throw new ApiError(404, "NOT_FOUND", `no pair "${name}"`, "GET /api/pairs lists them");
      if (needConfirm.includes(action) && (fields.has("confirm") ? fields.string("confirm") : undefined) !== name) {
        throw new FieldError("confirm", `${action} changes which side is written: confirm it by giving the pair's name`, `Send "confirm": "${name}"`);
      }
      const hint = notImplemented[action];
      if (hint !== undefined) throw new ApiError(501, "NOT_IMPLEMENTED", `the panel cannot ${action} a pair yet`, hint);
      if (action === "start" || action === "stop") {
        const tx = await this.routes.setEnabled(name, action === "start", caller);
        return txAnswer(tx, { pair: name, action }, 200);
      }
      if (action === "resync" || action === "verify") {
        const client = this.config.panel.getComponent(pair.client);
        if (client === undefined) throw new ApiError(409, "NO_CLIENT", `pair "${name}" has no client component`);
        const body = action === "verify" ? { device: pair.deviceName, repair: fields.boolean("repair", false) } : {};
        const answer = await this.link.request(client, "POST", `/attachment/${action}?name=${encodeURIComponent(name)}`, body);
        this.config.panel.recordActivity(caller.user.name, `pair.${action}`, { name, client: client.name, ok: answer.ok, ...(answer.ok ? {} : { error: answer.error }) });
        if (!answer.ok) throw new ApiError(answer.kind === "unreachable" ? 502 : 409, answer.error.code, `${client.name}: ${answer.error.message}`, answer.error.hint);
        return { ok: true, pair: name, action, result: answer.body };
      }
      const replica = this.replicaOf(pair);
      const exportAddress = fields.exportAddress("export");
      const at = action === "failover" ? fields.optionalString("at") : undefined;
      const path = action === "snapshot" ? "/snapshots" : "/failover";
      const answer = await this.link.request(replica, "POST", path, { device: pair.deviceName, export: exportAddress, ...(at === undefined ? {} : { at }) });
      this.config.panel.recordActivity(caller.user.name, `pair.${action}`, { name, replica: replica.name, export: exportAddress, ok: answer.ok, ...(answer.ok ? {} : { error: answer.error }) });
      if (!answer.ok) throw new ApiError(answer.kind === "unreachable" ? 502 : 409, answer.error.code, `${replica.name}: ${answer.error.message}`, answer.error.hint);
      return { ok: true, pair: name, action, result: answer.body };
    });
  }

  private replicaOf(pair: Pair): Component {
    const wrl = this.config.getWrl(pair.wrl);
    const replica = wrl === undefined ? undefined : this.config.panel.getComponent(wrl.replica);
    if (replica === undefined) throw new ApiError(409, "NO_REPLICA", `pair "${pair.name}" has no replica component`);
    return replica;
  }

  /** GET /api/probe?component=NAME&path=PATH → the client agent's GET /probe. */
  probe(url: URL): Promise<unknown> {
    return withFields(async () => {
      const name = checkConfigName(url.searchParams.get("component") ?? "", "component");
      const path = url.searchParams.get("path") ?? "";
      if (!path.startsWith("/") || path.length > 4096 || /[\u0000-\u001f]/.test(path)) throw new FieldError("path", "must be an absolute path", "e.g. /dev/sdb");
      const component = this.config.panel.getComponent(name);
      if (component === undefined) throw new FieldError("component", `no component "${name}"`, undefined, 404, "NOT_FOUND");
      if (component.role !== "client") throw new FieldError("component", `"${name}" is a ${component.role}; devices are probed on client hosts`);
      const answer = await this.link.request(component, "GET", `/probe?path=${encodeURIComponent(path)}`);
      if (!answer.ok) throw new ApiError(answer.kind === "unreachable" ? 502 : answer.status === 404 ? 501 : 409, answer.error.code, `${name}: ${answer.error.message}`, answer.error.hint);
      return { ok: true, component: name, ...answer.body };
    });
  }

  /** GET /api/sizing?primarySizeBytes=N&writeBytesPerSecond=N&outageSeconds=N (install guide formulas, SF 10, no burst term). */
  sizing(url: URL): Promise<unknown> {
    return withFields(() => {
      const param = (key: string, min: number) => {
        const text = url.searchParams.get(key);
        if (text === null) return undefined;
        if (!/^\d{1,16}$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) < min) throw badField(key, `must be a whole number ≥ ${min}`);
        return Number(text);
      };
      const primary = param("primarySizeBytes", 1);
      const rate = param("writeBytesPerSecond", 0);
      const outage = param("outageSeconds", 0);
      if (primary === undefined && rate === undefined) throw badField("primarySizeBytes", "is required (or writeBytesPerSecond)");
      const result: Record<string, unknown> = { ok: true, safetyFactor: 10 };
      if (primary !== undefined) {
        result.primarySizeBytes = primary;
        result.replicaDeviceSizeBytes = replicaDeviceSizeBytes(primary, protectReserveBytesDefault);
      }
      if (rate !== undefined) {
        if (outage === undefined) throw badField("outageSeconds", "is required with writeBytesPerSecond");
        const perHour = rate * 3600;
        const bytes = stagingWrlSizeBytes({ avgUpdateBytesPerHour: perHour, maxUpdateBytesPerHour: perHour, burstHours: 0, outageHours: outage / 3600, safetyFactor: 10 });
        result.stagingWrlSizeBytes = Math.ceil(bytes / 512) * 512;
      }
      return result;
    });
  }
}
