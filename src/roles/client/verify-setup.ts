/**
 * How `druvaa client attach` (attach.ts) wires online verify and the initial sync around its
 * ClientCore, so attach.ts only hooks them in: the ProbeChannel goes between the StagingLink and
 * the core (it is the link's peer), the verify routes join the control port, both add to the
 * status, and stop() ends every pass and wait (no timer outlives the client).
 */
import type { ControlRoute } from "../../io/control-server.ts";
import type { ClientCore } from "./core.ts";
import { InitialSync, type InitialSyncMode, type InitialSyncStatus } from "./initial-sync.ts";
import type { InitialSyncRecord } from "./state.ts";
import type { ClientDevice } from "./types.ts";
import { ProbeChannel } from "./verify-link.ts";
import { VerifyService } from "./verify-runs.ts";

export interface ClientVerify {
  /** The StagingLink's peer (it passes everything else on to the core). */
  readonly probes: ProbeChannel;
  readonly verifier: VerifyService;
  readonly initialSync: InitialSync;
  routes(): Record<string, ControlRoute>;
  /** Added to GET /status: runs in progress, and the initial sync. */
  status(): { verify: ReturnType<VerifyService["status"]>; initialSync: InitialSyncStatus };
  /** Starts the initial sync (once the state file can be saved: `persist`). */
  startInitialSync(persist: () => Promise<void>): void;
  stop(): void;
}

export interface ClientVerifyOptions {
  core: ClientCore;
  devices: readonly ClientDevice[];
  initialSyncMode: InitialSyncMode;
  /** The client state file (initial-sync records). */
  records: { initialSyncs: InitialSyncRecord[] };
  /** The WRL uuid staging named at the device's last attach. */
  wrlUuidOf(device: string): string | undefined;
}

export function setUpVerify(options: ClientVerifyOptions): ClientVerify {
  const { core, devices } = options;
  const probes = new ProbeChannel(core);
  const verifier = new VerifyService({ devices, core, probes });
  let persist: () => Promise<void> = () => Promise.resolve();
  const initialSync = new InitialSync({
    mode: options.initialSyncMode,
    devices,
    wrlUuidOf: options.wrlUuidOf,
    records: options.records,
    persist: () => persist(),
    verifier,
    core,
  });
  return {
    probes,
    verifier,
    initialSync,
    routes: () => verifier.routes(),
    status: () => ({ verify: verifier.status(), initialSync: initialSync.status() }),
    startInitialSync(save) {
      persist = save;
      initialSync.start();
    },
    stop() {
      initialSync.stop();
      verifier.stop();
      probes.stop();
    },
  };
}
