/**
 * Pairs as the API shows them (with a live state), pair actions, the wizard's device probe and
 * sizing.
 *
 * Live state: config-pair-states.ts (PairStates).
 *
 * Actions map onto what the components' control ports serve:
 *   start / stop      the pair's `enabled`, one configuration transaction (client host only)
 *   snapshot {export} replica POST /snapshots {device, export}
 *   failover {export, at?, confirm}  replica POST /failover {device, export, at?}
 *   resync            client agent POST /attachment/resync?name=PAIR (the attachment's POST /resync)
 *   verify {repair?}  client agent POST /attachment/verify?name=PAIR {device, repair}
 *   restore {to, at?, confirm} / failback {keep?, dryRun?, confirm}  a job of the client agent
 *                     (POST /jobs), see config-jobs.ts
 *   split {confirm} / join  staging POST /wrl/split {wrl, by} / POST /wrl/join {wrl}: they act on
 *                     the pair's whole WRL (every pair in it: a WRL is one consistency group), so
 *                     the replica of each stays at the same point until the join
 */
import { protectReserveBytesDefault } from "../../protect-constants.ts";
import { replicaDeviceSizeBytes, stagingWrlSizeBytes } from "../../sizing.ts";
import type { Caller } from "./auth.ts";
import type { ComponentLink, LinkResult } from "./config-link.ts";
import { PairJobs } from "./config-jobs.ts";
import type { ConfigRoutes } from "./config-routes.ts";
import { txAnswer } from "./config-routes.ts";
import type { ConfigStore, Pair } from "./config-store.ts";
import { checkConfigName, Fields, FieldError, withFields } from "./config-validate.ts";
import { ApiError, badField, jsonAnswer, readJsonBody } from "./http.ts";
import type { Component } from "./store.ts";

const actions = ["start", "stop", "split", "join", "resync", "verify", "snapshot", "restore", "failover", "failback"] as const;
type Action = (typeof actions)[number];
const needConfirm: readonly Action[] = ["failover", "failback", "restore"];
const notImplemented: Partial<Record<Action, string>> = {};


// PairStates moved to config-pair-states.ts; re-exported for the modules that import it from here.
export { PairStates } from "./config-pair-states.ts";

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
      if (action === "split" || action === "join") return this.splitOrJoin(pair, action, fields, caller);
      if (action === "restore" || action === "failback") return new PairJobs(this.config, this.link).start(pair, action, fields, caller);
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

  /** split / join: the pair's WRL on its staging server, so every pair in that WRL (see the file comment). */
  private async splitOrJoin(pair: Pair, action: "split" | "join", fields: Fields, caller: Caller): Promise<unknown> {
    if (action === "split" && (fields.has("confirm") ? fields.string("confirm") : undefined) !== pair.name) {
      const others = this.config.listPairs().filter((other) => other.wrl === pair.wrl && other.name !== pair.name).map((other) => other.name);
      const also = others.length === 0 ? "" : ` and pairs ${others.join(", ")}`;
      throw new FieldError("confirm", `split stops replicating WRL ${pair.wrl} (this pair${also}) until join: confirm it by giving the pair's name`, `Send "confirm": "${pair.name}"`);
    }
    const wrl = this.config.getWrl(pair.wrl);
    const staging = wrl === undefined ? undefined : this.config.panel.getComponent(wrl.staging);
    if (staging === undefined) throw new ApiError(409, "NO_STAGING", `pair "${pair.name}" has no staging component`);
    const answer = await this.link.request(staging, "POST", `/wrl/${action}`, { wrl: pair.wrl, ...(action === "split" ? { by: caller.user.name } : {}) });
    this.config.panel.recordActivity(caller.user.name, `pair.${action}`, { name: pair.name, staging: staging.name, wrl: pair.wrl, ok: answer.ok, ...(answer.ok ? {} : { error: answer.error }) });
    if (!answer.ok) throw new ApiError(answer.kind === "unreachable" ? 502 : 409, answer.error.code, `${staging.name}: ${answer.error.message}`, answer.error.hint);
    return { ok: true, pair: pair.name, action, wrl: pair.wrl, result: answer.body };
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
