/** A StagingCore with one WRL ("w0") on an in-memory or simulated disk and a FakeReplica behind it. */
import type { CompressionSetting } from "../../src/roles/staging/compression.ts";
import type { CoalesceSetting } from "../../src/roles/staging/relay-coalesce.ts";
import { StagingCore } from "../../src/roles/staging/core.ts";
import type { Clock, RelayTargets } from "../../src/roles/staging/relay.ts";
import type { ShipmentLimits } from "../../src/roles/staging/shipment.ts";
import { MemoryDeviceStateStore } from "../../src/roles/staging/state.ts";
import type { WriteLog } from "../../src/wrl/write-log.ts";
import { FakeReplica, KiB, MiB, WrlDisk, waitFor } from "./helpers.ts";

export const smallLimits: ShipmentLimits = { payloadBytesMax: 16 * KiB, recordsMax: 3, headerBytesMax: 60 * KiB };

export interface Fixture {
  core: StagingCore;
  wrl: WriteLog;
  disk: WrlDisk;
  replica: FakeReplica;
  store: MemoryDeviceStateStore;
  /** Stops the core and closes the WRL (idempotent). */
  close(): Promise<void>;
  /** Resolves once the replica acknowledged everything the WRL holds. */
  drained(what?: string): Promise<void>;
}

export interface FixtureOptions {
  disk?: WrlDisk;
  /** Open the disk's existing WRL instead of creating one. */
  reopen?: boolean;
  replica?: FakeReplica;
  store?: MemoryDeviceStateStore;
  limits?: ShipmentLimits;
  windowMax?: number;
  compression?: CompressionSetting;
  coalesce?: CoalesceSetting;
  /** The core's and relay's clock (a test's ManualClock); the real one by default. */
  clock?: Clock;
  /** --rate-limit, --schedule, --rpo of w0. */
  targets?: RelayTargets;
}

export async function stagingFixture(options: FixtureOptions = {}): Promise<Fixture> {
  const disk = options.disk ?? WrlDisk.memory(4 * MiB);
  const wrl = options.reopen === true ? await disk.open() : await disk.create();
  const replica = options.replica ?? (await FakeReplica.create({ d0: 1 * MiB, d1: 256 * KiB }));
  const store = options.store ?? new MemoryDeviceStateStore();
  const core = await StagingCore.open({
    wrls: [{ name: "w0", wrl, devicePaths: ["/wrl/w0.img"], replicaAddress: "replica.test:6003", dialReplica: replica.dial }],
    store,
    shipmentLimits: options.limits ?? smallLimits,
    relayWindowMax: options.windowMax ?? 2,
    ...(options.compression === undefined ? {} : { compression: options.compression }),
    ...(options.coalesce === undefined ? {} : { coalesce: options.coalesce }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.targets === undefined ? {} : { relayTargets: new Map([["w0", options.targets]]) }),
  });
  let closed: Promise<void> | undefined;
  return {
    core,
    wrl,
    disk,
    replica,
    store,
    close() {
      closed ??= (async () => {
        await core.stop(1_000);
        await wrl.close();
      })();
      return closed;
    },
    async drained(what = "the replica to acknowledge everything") {
      await waitFor(() => {
        const status = core.status().wrls[0]!;
        return status.replica.appliedLsn >= status.headLsn && status.tailLsn === status.headLsn;
      }, what);
    },
  };
}

const tracked: Fixture[] = [];

/** A stagingFixture that closeTrackedFixtures() closes: call that in afterEach. */
export async function trackedFixture(options: FixtureOptions = {}): Promise<Fixture> {
  const made = await stagingFixture(options);
  tracked.push(made);
  return made;
}

/** Stops tracking `made` (a test that closed it itself and hands its replica or disk on). */
export function untrackFixture(made: Fixture): void {
  const index = tracked.indexOf(made);
  if (index >= 0) tracked.splice(index, 1);
}

/**
 * Closes every tracked fixture, first undoing what a test may have left set (held shipments,
 * refused dials, held flushes) so that closing does not wait on it.
 */
export async function closeTrackedFixtures(): Promise<void> {
  for (const made of tracked.splice(0)) {
    made.replica.release();
    made.replica.refuseDials = false;
    made.disk.releaseFlushes();
    await made.close();
  }
}
