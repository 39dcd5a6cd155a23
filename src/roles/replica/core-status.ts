/** What ReplicaCore.status() reports (docs/pipeline.md "Status", role replica), from the core's parts. */
import type { ReplicaDevice } from "./apply.ts";
import type { InconsistentDevices } from "./apply-group.ts";
import type { ResyncLogInfo } from "./resync-log.ts";
import type { ResyncSets, ResyncStatus } from "./resync-sets.ts";
import type { ReplicaState, WrlState } from "./state.ts";

export interface ReplicaCoreStatus {
  /** `consistent`: false after a failed apply (until re-delivered) or during an unbuffered resync. */
  devices: { name: string; path: string; sizeBytes: number; declaredSizeBytes: number | null; consistent: boolean }[];
  /** `resync`: only while the WRL has a set open (RS-WRL) or an unbuffered resync going on. */
  wrls: { name: string; uuid: string; appliedLsn: number; lastAppliedAt: string | null; resync?: ResyncStatus | { state: "unbuffered"; devices: string[] } }[];
  applying: boolean;
  restores: number;
  queuedShipments: number;
  /** The replica WRL (--wrl), null without one. */
  rsWrl: ResyncLogInfo | null;
  /** The resync set being applied, and the restores waiting for it. */
  setApply: { wrl: string; firstLsn: number; lastLsn: number; restoresWaiting: number } | null;
}

export interface StatusParts {
  devices: ReadonlyMap<string, ReplicaDevice>;
  state: ReplicaState;
  seen: ReadonlyMap<string, WrlState>;
  inconsistent: InconsistentDevices;
  resync: ResyncSets | undefined;
  counts: { applying: boolean; restores: number; queuedShipments: number; restoresWaitingForSet: number };
}

export function replicaStatus(parts: StatusParts): ReplicaCoreStatus {
  const { state, resync } = parts;
  const declared = new Map(state.devices.map((device) => [device.name, device.declaredSizeBytes]));
  const unbuffered = new Set(state.wrls.flatMap((wrl) => wrl.resyncUnbuffered ?? []));
  const setApply = resync?.applying;
  return {
    devices: [...parts.devices.values()].map((entry) => ({
      name: entry.name,
      path: entry.path ?? entry.device.name,
      sizeBytes: entry.device.sizeBytes,
      declaredSizeBytes: declared.get(entry.name) ?? null,
      consistent: !parts.inconsistent.has(entry.name) && !unbuffered.has(entry.name),
    })),
    wrls: [...state.wrls, ...parts.seen.values()].map(({ resyncSet: _set, resyncUnbuffered, ...wrl }) => {
      const progress = resync?.status(wrl.uuid) ?? (resyncUnbuffered === undefined ? undefined : { state: "unbuffered" as const, devices: [...resyncUnbuffered] });
      return progress === undefined ? wrl : { ...wrl, resync: progress };
    }),
    applying: parts.counts.applying,
    restores: parts.counts.restores,
    queuedShipments: parts.counts.queuedShipments,
    rsWrl: resync?.logInfo() ?? null,
    setApply: setApply === undefined ? null : { ...setApply, restoresWaiting: parts.counts.restoresWaitingForSet },
  };
}
