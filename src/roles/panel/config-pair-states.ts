/**
 * Pairs as the API shows them, with a live state read from the components' GET /status:
 *   client host unreachable                      → unreachable
 *   client's acked config version < decided      → pending (the pair's change is not there yet)
 *   pair disabled                                → stopped
 *   replica status shows the device failed over  → failed-over
 *   staging's WRL of the pair reports `split`     → split (POST /wrl/split: the whole WRL)
 *   attachment's child not running               → disconnected
 *   child's mode resyncing / disconnected        → resyncing / disconnected
 *   otherwise                                    → replicating
 * lagMs, rpoMs, wrlFillRatio from the staging's WRL status; null when not known.
 *
 * Two ways in: describe() fetches the statuses itself (GET /api/pairs: one GET /status of each
 * client host, staging and replica the pairs use, in parallel, bounded by the link's timeout);
 * fromRound() reads the statuses the monitor's poll round just fetched (the live stream's status
 * event), so a round costs no second fetch.
 *
 * throughputBytesPerSecond: the write rate of the pair's device on its client, from the counter
 * `bytesWritten` between two poll rounds (history-derive.ts's CounterMemory: a first sighting or a
 * counter that went down gives no rate). Only rounds feed it; GET /api/pairs shows the last
 * round's rate while it is fresh (pairRateFreshMs), null otherwise. Every round feeds it, whether
 * or not a live stream is open (live.ts describes the pairs at each round).
 */
import type { ComponentLink, LinkResult } from "./config-link.ts";
import type { ConfigStore, DecidedConfig, Pair } from "./config-store.ts";
import { pollIntervalMs } from "./constants.ts";
import { CounterMemory, deviceWriteSeries } from "./history-derive.ts";
import type { ComponentStatus } from "./monitor.ts";

type Obj = Record<string, unknown>;

/** How long a round's rate stands for GET /api/pairs (a few missed rounds, then null). */
export const pairRateFreshMs = 5 * pollIntervalMs;

const num = (value: unknown): number | null => (typeof value === "number" && Number.isFinite(value) ? value : null);
const list = (value: unknown): Obj[] => (Array.isArray(value) ? (value.filter((item) => typeof item === "object" && item !== null) as Obj[]) : []);

/** The pairs' device write rates, shared by every PairStates of one config store (the live one feeds it, GET /api/pairs reads it). */
class PairRates {
  private readonly counters = new CounterMemory();
  private readonly last = new Map<string, { rate: number; tMs: number }>();

  /** Reads this round's counters; the rates of the pairs seen (undefined entries: not known yet). */
  observe(series: string, counter: number | null, tMs: number): number | null {
    const rate = this.counters.rate(series, counter ?? undefined, tMs);
    if (rate === undefined) {
      this.last.delete(series);
      return null;
    }
    this.last.set(series, { rate, tMs });
    return rate;
  }

  lookup(series: string, nowMs: number): number | null {
    const last = this.last.get(series);
    return last === undefined || nowMs - last.tMs > pairRateFreshMs ? null : last.rate;
  }

  /** Forgets series of components no longer polled. */
  keepOnly(components: ReadonlySet<string>): void {
    this.counters.keepOnly(components);
    for (const key of this.last.keys()) if (!components.has(key.slice(0, key.indexOf("/")))) this.last.delete(key);
  }
}

const ratesByStore = new WeakMap<ConfigStore, PairRates>();

export class PairStates {
  private readonly rates: PairRates;

  constructor(
    private readonly config: ConfigStore,
    /** GET /status of the pairs' components for describe(); fromRound() needs none. */
    private readonly statusLink?: ComponentLink,
  ) {
    let rates = ratesByStore.get(config);
    if (rates === undefined) ratesByStore.set(config, (rates = new PairRates()));
    this.rates = rates;
  }

  /** GET /api/pairs: fetches the statuses the pairs need, then describes them. */
  async describe(pairs: Pair[]): Promise<Record<string, unknown>[]> {
    const names = new Set<string>();
    const wrls = new Map(this.config.listWrls().map((wrl) => [wrl.name, wrl]));
    for (const pair of pairs) {
      names.add(pair.client);
      const wrl = wrls.get(pair.wrl);
      if (wrl !== undefined) names.add(wrl.staging).add(wrl.replica);
    }
    const statuses = new Map<string, Obj>();
    const link = this.statusLink;
    if (link !== undefined) {
      await Promise.all([...names].map(async (name) => {
        const component = this.config.panel.getComponent(name);
        const answer: LinkResult | undefined = component === undefined ? undefined : await link.request(component, "GET", "/status");
        if (answer?.ok === true) statuses.set(name, answer.body);
      }));
    }
    const now = Date.now();
    return this.describeWith(pairs, statuses, (series) => this.rates.lookup(series, now));
  }

  /**
   * Every pair, described from one poll round's statuses (no fetch). A new round (`replay` false)
   * feeds the rates; a replay of the newest round (a stream that just opened) reads them, so the
   * pairs created since that round show and its counters are not read twice.
   */
  fromRound(statuses: readonly ComponentStatus[], timeMs: number, replay = false): Record<string, unknown>[] {
    const bodies = new Map<string, Obj>();
    for (const status of statuses) if (status.reachable) bodies.set(status.name, status.status);
    if (replay) return this.describeWith(this.config.listPairs(), bodies, (series) => this.rates.lookup(series, timeMs));
    this.rates.keepOnly(new Set(statuses.map((status) => status.name)));
    return this.describeWith(this.config.listPairs(), bodies, (series, counter) => this.rates.observe(series, counter, timeMs));
  }

  private describeWith(pairs: Pair[], statuses: ReadonlyMap<string, Obj>, rateOf: (series: string, counter: number | null) => number | null): Record<string, unknown>[] {
    const wrls = new Map(this.config.listWrls().map((wrl) => [wrl.name, wrl]));
    const decidedOf = new Map<string, DecidedConfig | undefined>();
    // Per component, its list indexed by name once (50 pairs on one host: no 50 × 50 scans).
    const attachmentsOf = new Map<string, Map<unknown, Obj>>();
    const stagingWrlsOf = new Map<string, Map<unknown, Obj>>();
    const failedOverOf = new Map<string, Set<unknown>>();
    const indexed = (cache: Map<string, Map<unknown, Obj>>, name: string | undefined, key: string) => {
      if (name === undefined) return undefined;
      let index = cache.get(name);
      if (index === undefined) cache.set(name, (index = new Map(list(statuses.get(name)?.[key]).map((item) => [item.name, item]))));
      return index;
    };
    return pairs.map((pair) => {
      const wrl = wrls.get(pair.wrl);
      if (!decidedOf.has(pair.client)) decidedOf.set(pair.client, this.config.getDecided(pair.client));
      const decided = decidedOf.get(pair.client);
      const client = statuses.get(pair.client);
      const attachment = indexed(attachmentsOf, pair.client, "attachments")?.get(pair.name);
      const child = attachment?.status as Obj | null | undefined;
      const stagingWrl = indexed(stagingWrlsOf, wrl?.staging, "wrls")?.get(pair.wrl);
      let failedOver = false;
      if (wrl !== undefined) {
        let devices = failedOverOf.get(wrl.replica);
        // A failover record of the replica (failover.ts status()) naming a device.
        if (devices === undefined) failedOverOf.set(wrl.replica, (devices = new Set(list(statuses.get(wrl.replica)?.failovers).flatMap((f) => list(f.devices).map((d) => d.name)))));
        failedOver = devices.has(pair.deviceName);
      }
      let state: string;
      if (client === undefined) state = "unreachable";
      else if (decided === undefined || decided.ackedVersion < decided.version) state = "pending";
      else if (!pair.enabled) state = "stopped";
      else if (failedOver) state = "failed-over";
      else if (typeof stagingWrl?.split === "object" && stagingWrl.split !== null) state = "split";
      else if (attachment === undefined || attachment.state !== "running") state = "disconnected";
      else state = child?.mode === "resyncing" ? "resyncing" : child?.mode === "disconnected" ? "disconnected" : "replicating";
      const resync = child?.resync as { sentBytes?: unknown; remainingBytes?: unknown } | null | undefined;
      const sent = num(resync?.sentBytes);
      const remaining = num(resync?.remainingBytes);
      const rpo = stagingWrl?.rpo as { rpoSeconds?: unknown } | undefined;
      const lagSeconds = num(stagingWrl?.lagSeconds);
      const rpoSeconds = num(rpo?.rpoSeconds);
      const device = list(child?.devices).find((d) => d.name === pair.deviceName);
      const throughput = client === undefined ? null : rateOf(deviceWriteSeries(`${pair.client}/attachment/${pair.name}`, pair.deviceName), device === undefined ? null : num(device.bytesWritten));
      return {
        name: pair.name, client: pair.client, deviceName: pair.deviceName, devicePath: pair.devicePath, deviceSizeBytes: pair.deviceSizeBytes, export: pair.export,
        wrl: pair.wrl, staging: wrl?.staging ?? null, replica: wrl?.replica ?? null, replicaDevicePath: pair.replicaDevicePath, replicaSizeBytes: pair.replicaSizeBytes,
        changemap: pair.changemap, initialSync: pair.initialSync, rateLimit: pair.options.rateLimit ?? null, enabled: pair.enabled, state,
        lagMs: lagSeconds === null ? null : Math.round(lagSeconds * 1000), rpoMs: rpoSeconds === null ? null : Math.round(rpoSeconds * 1000),
        wrlFillRatio: num(stagingWrl?.fillRatio), throughputBytesPerSecond: throughput,
        resync: sent === null || remaining === null ? null : { doneBytes: sent, totalBytes: sent + remaining },
        configVersion: { decided: decided?.version ?? 0, acked: decided?.ackedVersion ?? 0 },
        createdBy: pair.createdBy, createdAt: pair.createdAt,
      };
    });
  }
}

/** The live stream's `pairs` hook (live.ts): every pair described from a poll round's statuses. */
export function roundPairs(config: ConfigStore): (statuses: readonly ComponentStatus[], timeMs: number, replay?: boolean) => unknown[] {
  const states = new PairStates(config);
  return (statuses, timeMs, replay) => states.fromRound(statuses, timeMs, replay);
}
