/**
 * The panel's configuration tables (migration 3: hosts, wrls, changemaps, pairs, component_config,
 * config_tx) over PanelStore's database, and each component's desired config computed from them
 * (docs/panel.md "Managed components"):
 *   staging  ← its WRLs: {wrls: [{name, paths, sizeBytes, replica: the replica's data address, compression?, rateLimit?, rpo?}]}
 *   replica  ← the devices of the pairs whose WRL relays to it: {devices: [{name: deviceName, path, sizeBytes, primarySizeBytes}]}
 *   client   ← one attachment per pair: {attachments: [{name, devices: [{name, path}], staging, wrl, export, changemap?, initialSync, rateLimit?, enabled}]}
 * Lists are in name order, so the same tables always give the same config (the coordinator
 * compares configs to find the components a change touches).
 *
 * Where the data addresses live: a WRL row keeps the replica's data address (replica_address,
 * where the staging relays) and, in its options, the staging's data address (stagingAddress,
 * where the clients of its pairs send): both resolved when the WRL is created.
 * Every query is parameterised.
 */
import type { Database } from "bun:sqlite";
import type { Component, ComponentRole, PanelStore } from "./store.ts";

export interface WrlOptions {
  compression?: string;
  rateLimit?: string;
  rpo?: string;
  /** The staging's data address (HOST:PORT) the clients of this WRL's pairs send to. */
  stagingAddress: string;
}

export interface Wrl {
  name: string;
  staging: string;
  paths: string[];
  sizeBytes: number;
  replica: string;
  replicaAddress: string;
  options: WrlOptions;
  createdBy: string;
  createdAt: string;
}

export interface Changemap {
  name: string;
  client: string;
  path: string;
  createdBy: string;
  createdAt: string;
}

export type InitialSync = "none" | "network" | "checksum" | "media";

export interface Pair {
  name: string;
  client: string;
  deviceName: string;
  devicePath: string;
  deviceSizeBytes: number;
  export: string;
  wrl: string;
  changemap: string | null;
  replicaDevicePath: string;
  replicaSizeBytes: number;
  initialSync: InitialSync;
  options: { rateLimit?: string };
  enabled: boolean;
  createdBy: string;
  createdAt: string;
}

export interface DecidedConfig {
  component: string;
  version: number;
  txid: string;
  config: unknown;
  /** The version the component last reported committed (GET /config). */
  ackedVersion: number;
}

export type TxState = "preparing" | "committed" | "aborted";

export interface TxComponent {
  component: string;
  version: number;
  /** preparing, prepared, refused, unreachable, committed, commit-pending, aborted */
  result: string;
}

export interface TxReason {
  component: string;
  code: string;
  message: string;
  hint?: string;
  /** The JSON path into the component's config the component named (`wrls[0].paths[0]`). */
  field?: string;
  /** The panel's form field it maps to (`wrl.paths`). */
  formField?: string;
}

export interface ConfigTx {
  txid: string;
  time: string;
  user: string;
  summary: string;
  state: TxState;
  components: TxComponent[];
  reasons: TxReason[];
}

type Row = Record<string, unknown>;

const wrlOf = (row: Row): Wrl => ({ name: String(row.name), staging: String(row.staging), paths: JSON.parse(String(row.paths)) as string[], sizeBytes: Number(row.size_bytes), replica: String(row.replica), replicaAddress: String(row.replica_address), options: JSON.parse(String(row.options)) as WrlOptions, createdBy: String(row.created_by), createdAt: String(row.created_at) });
const changemapOf = (row: Row): Changemap => ({ name: String(row.name), client: String(row.client), path: String(row.path), createdBy: String(row.created_by), createdAt: String(row.created_at) });
const pairOf = (row: Row): Pair => ({
  name: String(row.name), client: String(row.client), deviceName: String(row.device_name), devicePath: String(row.device_path), deviceSizeBytes: Number(row.device_size_bytes),
  export: String(row.export), wrl: String(row.wrl), changemap: row.changemap === null ? null : String(row.changemap), replicaDevicePath: String(row.replica_device_path),
  replicaSizeBytes: Number(row.replica_size_bytes), initialSync: String(row.initial_sync) as InitialSync, options: JSON.parse(String(row.options)) as { rateLimit?: string },
  enabled: Number(row.enabled) === 1, createdBy: String(row.created_by), createdAt: String(row.created_at),
});
const decidedOf = (row: Row): DecidedConfig => ({ component: String(row.component), version: Number(row.version), txid: String(row.txid), config: JSON.parse(String(row.config)) as unknown, ackedVersion: Number(row.acked_version) });
const txOf = (row: Row): ConfigTx => ({ txid: String(row.txid), time: String(row.time), user: String(row.user_name), summary: String(row.summary), state: String(row.state) as TxState, components: JSON.parse(String(row.components)) as TxComponent[], reasons: JSON.parse(String(row.reasons)) as TxReason[] });

/** Thrown inside a transaction to roll it back after computing what it would give. */
class Rollback {
  constructor(readonly value: unknown) {}
}

export const emptyConfigs: Record<ComponentRole, unknown> = { staging: { wrls: [] }, replica: { devices: [] }, client: { attachments: [] } };

export class ConfigStore {
  private readonly db: Database;

  constructor(
    readonly panel: PanelStore,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.db = panel.database;
  }

  private stamp(): string {
    return this.now().toISOString();
  }

  transaction<T>(work: () => T): T {
    return this.panel.transaction(work);
  }

  /** Runs `work` in a transaction that is always rolled back; returns what it returned (its throws pass through). */
  dryRun<T>(work: () => T): T {
    try {
      this.db.transaction(() => {
        throw new Rollback(work());
      })();
    } catch (error) {
      if (error instanceof Rollback) return error.value as T;
      throw error;
    }
    throw new Error("unreachable: dryRun always rolls back");
  }

  // Hosts: one per distinct control host, set when a component is registered.

  /** Records `host` (the component's control host) and links the component to it. */
  linkHost(component: string, host: string): void {
    this.db.query("INSERT INTO hosts (name, address, added_at) VALUES ($host, $host, $at) ON CONFLICT(name) DO NOTHING").run({ host, at: this.stamp() });
    this.db.query("UPDATE components SET host = $host WHERE name = $component").run({ host, component });
  }

  /** What refers to `component` ("WRL fast", "pair db"): it cannot be removed while any does. */
  usersOfComponent(component: string): string[] {
    const rows = this.db.query(`SELECT 'WRL ' || name AS what FROM wrls WHERE staging = $component OR replica = $component
      UNION ALL SELECT 'change map ' || name FROM changemaps WHERE client = $component
      UNION ALL SELECT 'pair ' || name FROM pairs WHERE client = $component ORDER BY 1`).all({ component }) as Row[];
    return rows.map((row) => String(row.what));
  }

  hostOf(component: string): string | null {
    const row = this.db.query("SELECT host FROM components WHERE name = $component").get({ component }) as Row | null;
    return row === null || row.host === null ? null : String(row.host);
  }

  // WRLs

  listWrls(): Wrl[] {
    return (this.db.query("SELECT * FROM wrls ORDER BY name").all() as Row[]).map(wrlOf);
  }

  getWrl(name: string): Wrl | undefined {
    const row = this.db.query("SELECT * FROM wrls WHERE name = $name").get({ name }) as Row | null;
    return row === null ? undefined : wrlOf(row);
  }

  /** Adds a WRL; false when the name is taken. */
  addWrl(wrl: Omit<Wrl, "createdAt">): boolean {
    return this.db.query(`INSERT INTO wrls (name, staging, paths, size_bytes, replica, replica_address, options, created_by, created_at)
      VALUES ($name, $staging, $paths, $size, $replica, $replicaAddress, $options, $by, $at) ON CONFLICT(name) DO NOTHING`)
      .run({ name: wrl.name, staging: wrl.staging, paths: JSON.stringify(wrl.paths), size: wrl.sizeBytes, replica: wrl.replica, replicaAddress: wrl.replicaAddress, options: JSON.stringify(wrl.options), by: wrl.createdBy, at: this.stamp() }).changes === 1;
  }

  deleteWrl(name: string): boolean {
    return this.db.query("DELETE FROM wrls WHERE name = $name").run({ name }).changes === 1;
  }

  // Change maps

  listChangemaps(): Changemap[] {
    return (this.db.query("SELECT * FROM changemaps ORDER BY name").all() as Row[]).map(changemapOf);
  }

  getChangemap(name: string): Changemap | undefined {
    const row = this.db.query("SELECT * FROM changemaps WHERE name = $name").get({ name }) as Row | null;
    return row === null ? undefined : changemapOf(row);
  }

  addChangemap(changemap: Omit<Changemap, "createdAt">): boolean {
    return this.db.query("INSERT INTO changemaps (name, client, path, created_by, created_at) VALUES ($name, $client, $path, $by, $at) ON CONFLICT(name) DO NOTHING")
      .run({ name: changemap.name, client: changemap.client, path: changemap.path, by: changemap.createdBy, at: this.stamp() }).changes === 1;
  }

  deleteChangemap(name: string): boolean {
    return this.db.query("DELETE FROM changemaps WHERE name = $name").run({ name }).changes === 1;
  }

  // Pairs

  listPairs(): Pair[] {
    return (this.db.query("SELECT * FROM pairs ORDER BY name").all() as Row[]).map(pairOf);
  }

  getPair(name: string): Pair | undefined {
    const row = this.db.query("SELECT * FROM pairs WHERE name = $name").get({ name }) as Row | null;
    return row === null ? undefined : pairOf(row);
  }

  pairsOfWrl(wrl: string): string[] {
    return (this.db.query("SELECT name FROM pairs WHERE wrl = $wrl ORDER BY name").all({ wrl }) as Row[]).map((row) => String(row.name));
  }

  pairsOfChangemap(changemap: string): string[] {
    return (this.db.query("SELECT name FROM pairs WHERE changemap = $changemap ORDER BY name").all({ changemap }) as Row[]).map((row) => String(row.name));
  }

  addPair(pair: Omit<Pair, "createdAt">): boolean {
    return this.db.query(`INSERT INTO pairs (name, client, device_name, device_path, device_size_bytes, export, wrl, changemap, replica_device_path, replica_size_bytes, initial_sync, options, enabled, created_by, created_at)
      VALUES ($name, $client, $deviceName, $devicePath, $deviceSize, $export, $wrl, $changemap, $replicaPath, $replicaSize, $initialSync, $options, $enabled, $by, $at) ON CONFLICT(name) DO NOTHING`)
      .run({ name: pair.name, client: pair.client, deviceName: pair.deviceName, devicePath: pair.devicePath, deviceSize: pair.deviceSizeBytes, export: pair.export, wrl: pair.wrl, changemap: pair.changemap, replicaPath: pair.replicaDevicePath, replicaSize: pair.replicaSizeBytes, initialSync: pair.initialSync, options: JSON.stringify(pair.options), enabled: pair.enabled ? 1 : 0, by: pair.createdBy, at: this.stamp() }).changes === 1;
  }

  setPairEnabled(name: string, enabled: boolean): boolean {
    return this.db.query("UPDATE pairs SET enabled = $enabled WHERE name = $name").run({ name, enabled: enabled ? 1 : 0 }).changes === 1;
  }

  deletePair(name: string): boolean {
    return this.db.query("DELETE FROM pairs WHERE name = $name").run({ name }).changes === 1;
  }

  // Desired configs, computed from the tables

  stagingConfig(staging: string): { wrls: Record<string, unknown>[] } {
    const wrls = (this.db.query("SELECT * FROM wrls WHERE staging = $staging ORDER BY name").all({ staging }) as Row[]).map(wrlOf);
    return {
      wrls: wrls.map((wrl) => ({
        name: wrl.name, paths: wrl.paths, sizeBytes: wrl.sizeBytes, replica: wrl.replicaAddress,
        ...(wrl.options.compression === undefined ? {} : { compression: wrl.options.compression }),
        ...(wrl.options.rateLimit === undefined ? {} : { rateLimit: wrl.options.rateLimit }),
        ...(wrl.options.rpo === undefined ? {} : { rpo: wrl.options.rpo }),
      })),
    };
  }

  replicaConfig(replica: string): { devices: Record<string, unknown>[] } {
    const rows = this.db.query("SELECT pairs.* FROM pairs JOIN wrls ON pairs.wrl = wrls.name WHERE wrls.replica = $replica ORDER BY pairs.device_name, pairs.name").all({ replica }) as Row[];
    return { devices: rows.map(pairOf).map((pair) => ({ name: pair.deviceName, path: pair.replicaDevicePath, sizeBytes: pair.replicaSizeBytes, primarySizeBytes: pair.deviceSizeBytes })) };
  }

  clientConfig(client: string): { attachments: Record<string, unknown>[] } {
    const pairs = (this.db.query("SELECT * FROM pairs WHERE client = $client ORDER BY name").all({ client }) as Row[]).map(pairOf);
    return {
      attachments: pairs.map((pair) => {
        const wrl = this.getWrl(pair.wrl)!;
        const changemap = pair.changemap === null ? undefined : this.getChangemap(pair.changemap);
        return {
          name: pair.name, devices: [{ name: pair.deviceName, path: pair.devicePath }], staging: wrl.options.stagingAddress, wrl: pair.wrl, export: pair.export,
          ...(changemap === undefined ? {} : { changemap: changemap.path }), initialSync: pair.initialSync,
          ...(pair.options.rateLimit === undefined ? {} : { rateLimit: pair.options.rateLimit }), enabled: pair.enabled,
        };
      }),
    };
  }

  configOf(component: Component): unknown {
    if (component.role === "staging") return this.stagingConfig(component.name);
    if (component.role === "replica") return this.replicaConfig(component.name);
    return this.clientConfig(component.name);
  }

  // Decided configs

  listDecided(): DecidedConfig[] {
    return (this.db.query("SELECT * FROM component_config ORDER BY component").all() as Row[]).map(decidedOf);
  }

  getDecided(component: string): DecidedConfig | undefined {
    const row = this.db.query("SELECT * FROM component_config WHERE component = $component").get({ component }) as Row | null;
    return row === null ? undefined : decidedOf(row);
  }

  /** Records the decided config of `component` (its acked version is kept). */
  setDecided(component: string, version: number, txid: string, config: unknown): void {
    this.db.query(`INSERT INTO component_config (component, version, txid, config, acked_version) VALUES ($component, $version, $txid, $config, 0)
      ON CONFLICT(component) DO UPDATE SET version = excluded.version, txid = excluded.txid, config = excluded.config`).run({ component, version, txid, config: JSON.stringify(config) });
  }

  setAcked(component: string, ackedVersion: number): void {
    this.db.query("UPDATE component_config SET acked_version = $acked WHERE component = $component").run({ component, acked: ackedVersion });
  }

  // Transactions

  insertTx(tx: ConfigTx): void {
    this.db.query("INSERT INTO config_tx (txid, time, user_name, summary, state, components, reasons) VALUES ($txid, $time, $user, $summary, $state, $components, $reasons)")
      .run({ txid: tx.txid, time: tx.time, user: tx.user, summary: tx.summary, state: tx.state, components: JSON.stringify(tx.components), reasons: JSON.stringify(tx.reasons) });
  }

  updateTx(txid: string, state: TxState, components: TxComponent[], reasons: TxReason[]): void {
    this.db.query("UPDATE config_tx SET state = $state, components = $components, reasons = $reasons WHERE txid = $txid").run({ txid, state, components: JSON.stringify(components), reasons: JSON.stringify(reasons) });
  }

  getTx(txid: string): ConfigTx | undefined {
    const row = this.db.query("SELECT * FROM config_tx WHERE txid = $txid").get({ txid }) as Row | null;
    return row === null ? undefined : txOf(row);
  }

  /** Newest first (time, then insertion order). */
  listTx(limit: number): ConfigTx[] {
    return (this.db.query("SELECT * FROM config_tx ORDER BY rowid DESC LIMIT $limit").all({ limit }) as Row[]).map(txOf);
  }

  listTxInState(state: TxState): ConfigTx[] {
    return (this.db.query("SELECT * FROM config_tx WHERE state = $state ORDER BY rowid").all({ state }) as Row[]).map(txOf);
  }
}
