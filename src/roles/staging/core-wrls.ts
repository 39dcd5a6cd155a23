/**
 * One WRL of the staging core (core.ts): its spec, lag tracker, relay, attached devices and the
 * clients holding them; how an entry is set up (at open and when a WRL is added to the running
 * core, `druvaa staging serve --managed`) and how its relay is made (again when its relay settings
 * change: the relay is replaced, the WRL, its lag and its clients stay).
 */
import { LagTracker } from "./lag.ts";
import type { CompressionSetting } from "./compression.ts";
import type { CoalesceSetting } from "./relay-coalesce.ts";
import { Relay, type Clock, type RelayLink, type RelayTargets, type RelayWrl } from "./relay.ts";
import type { RecentEvents } from "./relay-rpo.ts";
import type { RpoEvent } from "./rpo.ts";
import type { ClientSession } from "./session.ts";
import type { ShipmentLimits } from "./shipment.ts";
import type { AttachedDevice, DeviceStateStore } from "./state.ts";
import type { WrlAppend, WrlAppendResult } from "../../wrl/types.ts";
import { logger } from "../../log.ts";

const log = logger("staging");

/** What the core needs of a WRL (a WriteLog is one). */
export interface StagingLog extends RelayWrl {
  append(input: WrlAppend): Promise<WrlAppendResult>;
}

export interface StagingWrlSpec {
  /** The name clients attach to (--wrl NAME=…). */
  name: string;
  wrl: StagingLog;
  /** Paths of its devices, primary first (status only). */
  devicePaths: readonly string[];
  /** The replica's address as the user gave it (--replica NAME=HOST:PORT). */
  replicaAddress: string;
  /** Opens a connection to that replica and completes the handshake (role staging). */
  dialReplica: () => Promise<RelayLink>;
  /** This WRL's own compression, instead of the core's (a managed WRL's `compression`). */
  compression?: CompressionSetting;
  /** This WRL's own targets, instead of the core's relayTargets entry for its name (managed WRLs). */
  targets?: RelayTargets;
}

/** The relay settings every WRL of a core shares (StagingCoreOptions), and where RPO events go. */
export interface RelaySettings {
  clock: Clock;
  events: RecentEvents<RpoEvent>;
  shipmentLimits?: ShipmentLimits;
  relayWindowMax?: number;
  compression?: CompressionSetting;
  coalesce?: CoalesceSetting;
  relayTargets?: ReadonlyMap<string, RelayTargets>;
}

export interface WrlEntry {
  /** Replaced (same `wrl`) when the relay settings change. */
  spec: StagingWrlSpec;
  uuid: string;
  lag: LagTracker;
  relay: Relay;
  /** Persisted: every device ever attached to this WRL. Replaced, never mutated, after a save. */
  devices: ReadonlyMap<string, AttachedDevice>;
  /** Connected client holding each device name. */
  holders: Map<string, ClientSession>;
  saves: Promise<void>;
}

/** Loads the WRL's attached devices and sets up its relay (not started). */
export async function openWrlEntry(spec: StagingWrlSpec, store: DeviceStateStore, settings: RelaySettings): Promise<WrlEntry> {
  const info = spec.wrl.info();
  const saved = await store.load(spec.name);
  const devices = new Map((saved?.devices ?? []).map((device) => [device.name, device]));
  if (saved !== undefined && saved.wrlUuid !== info.uuid) {
    log.info(`WRL ${spec.name} is now ${info.uuid} (was ${saved.wrlUuid}): keeping the ${devices.size} device(s) attached before`);
  }
  const lag = new LagTracker();
  // Records found at recovery: their append times are gone; they count from now.
  lag.recovered(info.tailLsn + 1, info.headLsn, info.usedBytes, settings.clock.now());
  const entry: WrlEntry = { spec, uuid: info.uuid, lag, relay: undefined as unknown as Relay, devices, holders: new Map(), saves: Promise.resolve() };
  entry.relay = relayOf(entry, settings);
  return entry;
}

/** A new (not started) relay for `entry` as its spec says now. */
export function relayOf(entry: WrlEntry, settings: RelaySettings): Relay {
  const spec = entry.spec;
  const compression = spec.compression ?? settings.compression;
  return new Relay({
    name: spec.name,
    uuid: entry.uuid,
    wrl: spec.wrl,
    address: spec.replicaAddress,
    dial: spec.dialReplica,
    deviceSizes: () => new Map([...entry.devices.values()].map((device) => [device.name, device.sizeBytes])),
    lag: entry.lag,
    clock: settings.clock,
    // Verify outcomes go back to the client holding the device (dropped if it is gone: its
    // verify pass times out and probes again).
    onVerified: (outcome) => entry.holders.get(outcome.device)?.reply({ type: "verifyReport", wrl: spec.name, ...outcome }),
    ...(settings.shipmentLimits === undefined ? {} : { limits: settings.shipmentLimits }),
    ...(settings.relayWindowMax === undefined ? {} : { windowMax: settings.relayWindowMax }),
    ...(compression === undefined ? {} : { compression }),
    ...(settings.coalesce === undefined ? {} : { coalesce: settings.coalesce }),
    targets: spec.targets ?? settings.relayTargets?.get(spec.name) ?? {},
    onEvent: (event) => settings.events.push(event),
  });
}
