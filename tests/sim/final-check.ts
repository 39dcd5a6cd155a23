/**
 * The end of a simulated run, and what outlives a client process.
 *
 * After drain() (faults off, everything delivered): nothing the application was told is done may
 * be missing. The replica equals the primary byte for byte; every write that completed
 * successfully is among the applied ones (logged, or brought by the resync set that followed its
 * disconnect); the primary equals its writes in primary order (a check of the model); and with
 * change maps, every client is connected with no dirty bit left (none was lost).
 *
 * After a client crash (SIGKILL or power loss) the model cannot tell which of the writes in flight
 * took effect (on the primary, in the WRL, both or neither; after a power loss, which unflushed
 * ones the primary kept): the run then checks what a user relies on — the replica equals the
 * primary and nothing is dirty — and not the model.
 */
import type { FencedDisk } from "./disk.ts";
import { describe, firstDifference, imageOf } from "./history.ts";
import { SimClient, wrlUuid } from "./processes.ts";
import type { World } from "./world.ts";

/** A client with a change map is connected, clean and has nothing unacknowledged (one without: always). */
export function clientInSync(client: SimClient): boolean {
  if (client.changeMap === undefined) return true;
  const status = client.core.modeStatus();
  return client.alive && status.mode === "connected" && status.dirtyBytes === 0 && client.core.unackedWrites === 0 && status.resync === null;
}

export function finalProblem(world: World): string | undefined {
  for (const client of world.clients) {
    if (!clientInSync(client)) return `after drain: ${client.nodeId} is not in sync: ${JSON.stringify(client.core.modeStatus())}, ${client.core.unackedWrites} unacked`;
  }
  for (const spec of world.history.devices) {
    const primary = world.clients[spec.client]!.primaries.get(spec.name)!.snapshot();
    const replica = world.replicaDisks.get(spec.name)!.snapshot();
    const at = firstDifference(primary, replica);
    if (at !== undefined) return `after drain: replica ${spec.name} differs from the primary at byte ${at} (primary ${primary[at]}, replica ${replica[at]})`;
  }
  if (world.checksOff) return undefined;
  const appliedLsn = world.replica.core.appliedLsn(wrlUuid);
  const applied = world.history.appliedSet(appliedLsn);
  if (typeof applied === "string") return `after drain: ${applied}`;
  for (const write of world.history.writes) {
    if (write.failed === undefined && write.completedAt !== undefined && !applied.has(write)) {
      return `after drain: ${describe(write)} completed to the application but never reached the replica (appliedLsn ${appliedLsn})`;
    }
  }
  for (const spec of world.history.devices) {
    const primary = world.clients[spec.client]!.primaries.get(spec.name)!.snapshot();
    const model = imageOf(spec, world.history.writes.filter((w) => w.failed === undefined));
    const modelAt = firstDifference(model, primary);
    if (modelAt !== undefined) return `primary ${spec.name} differs from its completed writes in completion order at byte ${modelAt}`;
  }
  return world.history.check(appliedLsn, (name) => world.replicaDisks.get(name)!.snapshot());
}

/**
 * Client `index` dies — SIGKILL, or with `power` a power loss of its host (its disks drop, keep or
 * tear every unsynced sector) — and a new process starts on the same disks: it recovers the
 * extents its activity log names (client-disks.ts). What the dead process had in flight fails to
 * the application, which died with it.
 */
export async function crashClient(world: World, index: number, power = false): Promise<void> {
  const old = world.clients[index]!;
  const { disks } = old;
  if (disks.changeMapDisk === undefined || disks.activityDisk === undefined) throw new Error("client crashes are simulated with change maps only");
  world.checksOff = true;
  world.stats.clientCrashes += 1;
  if (power) world.stats.clientPowerLosses += 1;
  old.kill();
  old.core.abort();
  world.abandonWritesOf(index);
  for (const disk of [...disks.primaries.values(), disks.changeMapDisk, disks.activityDisk] as FencedDisk[]) {
    if (power) disk.crash();
    else disk.restart();
  }
  const fresh = await SimClient.start(world, index, disks, old.core.epochHigh + 1);
  world.clients[index] = fresh;
  if (world.staging.alive) fresh.connect(world.staging);
}
