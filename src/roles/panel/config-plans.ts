/**
 * A WRL, change map or pair as asked for, checked in two steps:
 *   read*()   the request's fields (config-validate.ts), the components they name, and what must be
 *             learnt from a component before anything is decided (a data address from GET /status,
 *             a device's size from the client agent's GET /probe). Async; changes nothing.
 *   insert*() inside the transaction's mutate(): the checks against the other rows (name taken,
 *             a device name, path or export used twice on a host) and the insert. Runs in the
 *             coordinator's dry run first, so a conflict is refused before any prepare is sent.
 * Refusals name the form field (`wrl.paths`, `pair.devicePath`).
 */
import { parseAddress, type Address } from "../../io/address.ts";
import { protectReserveBytesDefault } from "../../protect-constants.ts";
import { replicaDeviceSizeBytes } from "../../sizing.ts";
import { changemapsMax, pairsMax, wrlsMax } from "./constants.ts";
import type { ComponentLink } from "./config-link.ts";
import type { Changemap, ConfigStore, InitialSync, Pair, Wrl } from "./config-store.ts";
import { FieldError, type Fields } from "./config-validate.ts";
import type { Component, ComponentRole } from "./store.ts";

/** Default data ports (staging --listen, replica --listen). */
const stagingDataPortDefault = 6001;
const replicaDataPortDefault = 6003;
const initialSyncModes: readonly InitialSync[] = ["none", "network", "checksum", "media"];

export type NewWrl = Omit<Wrl, "createdAt">;
export type NewChangemap = Omit<Changemap, "createdAt">;
export type NewPair = Omit<Pair, "createdAt">;

export class ConfigPlans {
  constructor(
    private readonly config: ConfigStore,
    private readonly link: ComponentLink,
  ) {}

  componentOf(fields: Fields, key: string, role: ComponentRole): Component {
    const name = fields.name(key);
    const component = this.config.panel.getComponent(name);
    if (component === undefined) throw new FieldError(fields.fieldName(key), `no component "${name}"`, "GET /api/components lists them; add it with POST /api/components");
    if (component.role !== role) throw new FieldError(fields.fieldName(key), `"${name}" is a ${component.role}, not a ${role}`);
    return component;
  }

  /** A component's data address: its live GET /status `addresses.listen`, a wildcard host replaced by its control host. */
  async dataAddressOf(component: Component, field: string): Promise<string> {
    const answer = await this.link.request(component, "GET", "/status");
    const listen = answer.ok ? (answer.body.addresses as { listen?: unknown } | null | undefined)?.listen : undefined;
    const unknown = (why: string) => new FieldError(field, `the data address of ${component.role} "${component.name}" is not known: ${why}`, `Start it, or give ${field} as HOST:PORT`, 409, "ADDRESS_UNKNOWN");
    if (typeof listen !== "string") throw unknown(answer.ok ? "its status shows no data address" : answer.error.message);
    let address: Address;
    try {
      address = parseAddress(listen, 0);
    } catch {
      throw unknown(`its status shows "${listen}"`);
    }
    if (address.kind !== "tcp" || address.port === 0) throw unknown(`its status shows "${listen}", not HOST:PORT`);
    const wildcard = address.host === undefined || address.host === "0.0.0.0" || address.host === "::" || address.host === "";
    if (!wildcard) return listen;
    const control = parseAddress(component.control, 0);
    const host = control.kind === "tcp" && control.host !== undefined ? control.host : "127.0.0.1";
    return `${host.includes(":") ? `[${host}]` : host}:${address.port}`;
  }

  async readWrl(fields: Fields, user: string): Promise<NewWrl> {
    const name = fields.name("name");
    const staging = this.componentOf(fields, "staging", "staging");
    const paths = fields.paths("paths");
    const sizeBytes = fields.size("sizeBytes");
    const replica = this.componentOf(fields, "replica", "replica");
    const compression = fields.optionalCompression("compression");
    const rateLimit = fields.optionalRate("rateLimit");
    const rpo = fields.optionalDuration("rpo");
    const replicaAddress = fields.has("replicaAddress") ? fields.address("replicaAddress", replicaDataPortDefault) : await this.dataAddressOf(replica, fields.fieldName("replicaAddress"));
    const stagingAddress = fields.has("stagingAddress") ? fields.address("stagingAddress", stagingDataPortDefault) : await this.dataAddressOf(staging, fields.fieldName("stagingAddress"));
    const options = { ...(compression === undefined ? {} : { compression }), ...(rateLimit === undefined ? {} : { rateLimit }), ...(rpo === undefined ? {} : { rpo }), stagingAddress };
    return { name, staging: staging.name, paths, sizeBytes, replica: replica.name, replicaAddress, options, createdBy: user };
  }

  insertWrl(wrl: NewWrl, prefix = "wrl"): void {
    const existing = this.config.listWrls();
    if (existing.length >= wrlsMax) throw new FieldError(`${prefix}.name`, `the panel keeps at most ${wrlsMax} WRLs`, undefined, 409, "TOO_MANY_WRLS");
    for (const other of existing) {
      if (other.staging !== wrl.staging) continue;
      const shared = other.paths.find((path) => wrl.paths.includes(path));
      if (shared !== undefined) throw new FieldError(`${prefix}.paths`, `${shared} is a path of WRL "${other.name}" on the same staging server already`, undefined, 409, "PATH_TAKEN");
    }
    if (!this.config.addWrl(wrl)) throw new FieldError(`${prefix}.name`, `a WRL "${wrl.name}" exists already`, "Pick another name", 409, "WRL_EXISTS");
  }

  readChangemap(fields: Fields, user: string): NewChangemap {
    return { name: fields.name("name"), client: this.componentOf(fields, "client", "client").name, path: fields.path("path"), createdBy: user };
  }

  insertChangemap(changemap: NewChangemap, prefix = "changemap"): void {
    const existing = this.config.listChangemaps();
    if (existing.length >= changemapsMax) throw new FieldError(`${prefix}.name`, `the panel keeps at most ${changemapsMax} change maps`, undefined, 409, "TOO_MANY_CHANGEMAPS");
    const samePath = existing.find((other) => other.client === changemap.client && other.path === changemap.path);
    if (samePath !== undefined) throw new FieldError(`${prefix}.path`, `change map "${samePath.name}" is at this path on ${changemap.client} already`, undefined, 409, "PATH_TAKEN");
    if (!this.config.addChangemap(changemap)) throw new FieldError(`${prefix}.name`, `a change map "${changemap.name}" exists already`, "Pick another name", 409, "CHANGEMAP_EXISTS");
  }

  /** `replicaOfWrl`: the replica a WRL (maybe one of the same wizard set) relays to. */
  async readPair(fields: Fields, user: string, replicaOfWrl: (wrl: string) => string | undefined): Promise<NewPair> {
    const name = fields.name("name");
    const client = this.componentOf(fields, "client", "client");
    const deviceName = fields.name("deviceName");
    const devicePath = fields.path("devicePath");
    const exportAddress = fields.exportAddress("export");
    const wrl = fields.name("wrl");
    const replicaDevicePath = fields.path("replicaDevicePath");
    const changemap = fields.optionalName("changemap") ?? null;
    const initialSync = fields.enumOf("initialSync", initialSyncModes);
    const rateLimit = fields.optionalRate("rateLimit");
    const enabled = fields.boolean("enabled", true);
    const givenDeviceSizeBytes = fields.optionalSize("deviceSizeBytes");
    const givenReplicaSizeBytes = fields.optionalSize("replicaSizeBytes");
    if (changemap === null && (initialSync === "network" || initialSync === "checksum")) throw new FieldError(fields.fieldName("initialSync"), `${initialSync} needs a change map`, "Pick a change map, or initialSync none or media");
    if (changemap === null && rateLimit !== undefined) throw new FieldError(fields.fieldName("rateLimit"), "needs a change map (it paces the resync)");
    const wrlReplica = replicaOfWrl(wrl);
    if (wrlReplica === undefined) throw new FieldError(fields.fieldName("wrl"), `no WRL "${wrl}"`, "GET /api/wrls lists them; the wizard can create one");
    if (fields.has("replica")) {
      const replica = this.componentOf(fields, "replica", "replica");
      if (replica.name !== wrlReplica) throw new FieldError(fields.fieldName("replica"), `WRL "${wrl}" relays to replica "${wrlReplica}", not "${replica.name}"`, `Pick ${wrlReplica}, or a WRL that relays to ${replica.name}`);
    }
    const deviceSizeBytes = givenDeviceSizeBytes ?? (await this.probeSize(client, devicePath, fields.fieldName("devicePath")));
    const replicaSizeBytes = givenReplicaSizeBytes ?? replicaDeviceSizeBytes(deviceSizeBytes, protectReserveBytesDefault);
    return { name, client: client.name, deviceName, devicePath, deviceSizeBytes, export: exportAddress, wrl, changemap, replicaDevicePath, replicaSizeBytes, initialSync, options: rateLimit === undefined ? {} : { rateLimit }, enabled, createdBy: user };
  }

  /** A device's size from the client agent's GET /probe. */
  async probeSize(client: Component, path: string, field: string): Promise<number> {
    const answer = await this.link.request(client, "GET", `/probe?path=${encodeURIComponent(path)}`);
    const size = answer.ok ? answer.body.sizeBytes : undefined;
    if (typeof size === "number" && Number.isSafeInteger(size) && size > 0) return size;
    const why = !answer.ok ? answer.error.message : answer.body.exists === false ? "it does not exist there" : "its size could not be read";
    throw new FieldError(field, `${path} on ${client.name}: ${why}`, "Pick an existing device of the client host (or give deviceSizeBytes)", 409, "DEVICE_SIZE_UNKNOWN");
  }

  insertPair(pair: NewPair, prefix = "pair"): void {
    const pairs = this.config.listPairs();
    if (pairs.length >= pairsMax) throw new FieldError(`${prefix}.name`, `the panel keeps at most ${pairsMax} pairs`, undefined, 409, "TOO_MANY_PAIRS");
    const wrl = this.config.getWrl(pair.wrl);
    if (wrl === undefined) throw new FieldError(`${prefix}.wrl`, `no WRL "${pair.wrl}"`);
    const taken = (field: string, why: string) => new FieldError(`${prefix}.${field}`, why, undefined, 409, "TAKEN");
    for (const other of pairs) {
      const otherReplica = this.config.getWrl(other.wrl)?.replica;
      if (other.client === pair.client && other.deviceName === pair.deviceName) throw taken("deviceName", `pair "${other.name}" uses device name "${pair.deviceName}" on ${pair.client} already`);
      if (other.client === pair.client && other.devicePath === pair.devicePath) throw taken("devicePath", `pair "${other.name}" uses ${pair.devicePath} on ${pair.client} already`);
      if (other.client === pair.client && other.export === pair.export) throw taken("export", `pair "${other.name}" exports at ${pair.export} already`);
      if (otherReplica === wrl.replica && other.deviceName === pair.deviceName) throw taken("deviceName", `replica ${wrl.replica} has a device "${pair.deviceName}" (pair "${other.name}") already`);
      if (otherReplica === wrl.replica && other.replicaDevicePath === pair.replicaDevicePath) throw taken("replicaDevicePath", `pair "${other.name}" uses ${pair.replicaDevicePath} on ${wrl.replica} already`);
      if (pair.changemap !== null && other.changemap === pair.changemap) throw taken("changemap", `pair "${other.name}" uses change map "${pair.changemap}" already`);
    }
    if (pair.changemap !== null) {
      const changemap = this.config.getChangemap(pair.changemap);
      if (changemap === undefined) throw new FieldError(`${prefix}.changemap`, `no change map "${pair.changemap}"`, "GET /api/changemaps lists them");
      if (changemap.client !== pair.client) throw new FieldError(`${prefix}.changemap`, `change map "${pair.changemap}" is on ${changemap.client}, not ${pair.client}`);
    }
    if (!this.config.addPair(pair)) throw new FieldError(`${prefix}.name`, `a pair "${pair.name}" exists already`, "Pick another name", 409, "PAIR_EXISTS");
  }
}
