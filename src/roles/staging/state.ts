/**
 * What staging persists per WRL: the devices attached to it (name, size, logical block size,
 * the client that attached it) in STATE_DIR/devices-WRLNAME.json, written atomically (temp
 * file, fsync, rename) before the attach is acknowledged, hence before the first record of a new
 * device is appended. The relay declares these sizes in every shipment, also after a restart,
 * so the replica can refuse a device bigger than its own before applying anything.
 */
import { join } from "node:path";
import { DruvaaError } from "../../errors.ts";
import { readJsonState, writeJsonState } from "../../io/state-file.ts";

export interface AttachedDevice {
  name: string;
  sizeBytes: number;
  logicalBlockSizeBytes: number;
  /** Node id of the client that attached it last. */
  clientNodeId: string;
  /** ISO time of that attach. */
  attachedAt: string;
}

export interface WrlDevicesState {
  version: 1;
  wrl: string;
  wrlUuid: string;
  devices: AttachedDevice[];
}

/** Where a WRL's attached devices are kept; the file store in production, memory in tests. */
export interface DeviceStateStore {
  /** The state saved for `wrl`, or undefined if none was ever saved. */
  load(wrl: string): Promise<WrlDevicesState | undefined>;
  /** Replaces it durably; resolves once it would survive a crash. */
  save(state: WrlDevicesState): Promise<void>;
  /** Where it lives, for messages. */
  where(wrl: string): string;
}

export function devicesStatePath(stateDir: string, wrl: string): string {
  return join(stateDir, `devices-${wrl}.json`);
}

/** The state of `wrl` in STATE_DIR/devices-WRLNAME.json. */
export function fileDeviceStateStore(stateDir: string): DeviceStateStore {
  return {
    async load(wrl) {
      const path = devicesStatePath(stateDir, wrl);
      const raw = await readJsonState<unknown>(path);
      return raw === undefined ? undefined : checkState(raw, path);
    },
    save: (state) => writeJsonState(devicesStatePath(stateDir, state.wrl), state),
    where: (wrl) => devicesStatePath(stateDir, wrl),
  };
}

/** In memory (tests, simulation): saves are copied, so later changes do not leak in. */
export class MemoryDeviceStateStore implements DeviceStateStore {
  readonly saved = new Map<string, WrlDevicesState>();
  saves = 0;
  async load(wrl: string): Promise<WrlDevicesState | undefined> {
    const state = this.saved.get(wrl);
    return state === undefined ? undefined : structuredClone(state);
  }
  async save(state: WrlDevicesState): Promise<void> {
    this.saves += 1;
    this.saved.set(state.wrl, structuredClone(state));
  }
  where(wrl: string): string {
    return `memory:devices-${wrl}`;
  }
}

function corrupt(path: string, detail: string): DruvaaError {
  return new DruvaaError("STATE_CORRUPT", `${path}: ${detail}`, "Remove the file (clients re-attach their devices when they reconnect) or restore it from backup");
}

const isCount = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value) && value >= 0;

function checkState(raw: unknown, path: string): WrlDevicesState {
  if (typeof raw !== "object" || raw === null) throw corrupt(path, "not a JSON object");
  const state = raw as Partial<WrlDevicesState>;
  if (state.version !== 1) throw corrupt(path, `unknown version ${String(state.version)}`);
  if (typeof state.wrl !== "string" || typeof state.wrlUuid !== "string" || !Array.isArray(state.devices)) throw corrupt(path, "missing wrl, wrlUuid or devices");
  const devices = state.devices.map((device: Partial<AttachedDevice>, index) => {
    if (typeof device !== "object" || device === null || typeof device.name !== "string" || !isCount(device.sizeBytes) || !isCount(device.logicalBlockSizeBytes) || typeof device.clientNodeId !== "string") {
      throw corrupt(path, `devices[${index}] is not {name, sizeBytes, logicalBlockSizeBytes, clientNodeId}`);
    }
    return { name: device.name, sizeBytes: device.sizeBytes, logicalBlockSizeBytes: device.logicalBlockSizeBytes, clientNodeId: device.clientNodeId, attachedAt: String(device.attachedAt ?? "") };
  });
  return { version: 1, wrl: state.wrl, wrlUuid: state.wrlUuid, devices };
}
