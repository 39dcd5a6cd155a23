/**
 * The end of a simulated run, and what outlives a client process.
 *
 * After drain() (faults off, everything delivered): nothing the application was told is done may
 * be missing. The replica equals the primary byte for byte; every write that completed
 * successfully is among the applied ones (logged, or brought by the resync set that followed its
 * disconnect); the primary equals its writes in primary order (a check of the model); and with
 * change maps, every client is connected with no dirty bit left (none was lost).
 *
 * After a client crash (SIGKILL) the model cannot tell which of the writes in flight took effect
 * (on the primary, in the WRL, both or neither): the run then checks what a user relies on — the
 * replica equals the primary and nothing is dirty — and not the model.
 */
import { changeMapLayoutBytes, ChangeMap } from "../../src/changemap/index.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { describe, firstDifference, imageOf } from "./history.ts";
import { SimClient, wrlUuid, type ClientDisks } from "./processes.ts";
import type { World } from "./world.ts";

/** Fresh primaries and a change map (one region per device, 4 KiB a bit) for a client. */
export async function newClientDisks(sizes: ReadonlyMap<string, number>): Promise<ClientDisks> {
  const regions = [...sizes].map(([name, volumeSizeBytes]) => ({ name, volumeSizeBytes }));
  const changeMap = await ChangeMap.create(new MemoryDevice(changeMapLayoutBytes(regions, 4096), "changemap", 512), { regions, blockSizeBytes: 4096 });
  return { primaries: new Map([...sizes].map(([name, sizeBytes]) => [name, new MemoryDevice(sizeBytes, `primary-${name}`, 512)])), changeMap };
}

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
 * SIGKILL of client `index` and its restart on the same devices and change map: what it had in
 * flight fails to the application, and the activity log's recovery is modelled by marking every
 * device of the client dirty (its extents cover these small devices whole).
 */
export async function crashClient(world: World, index: number): Promise<void> {
  const old = world.clients[index]!;
  if (old.changeMap === undefined) throw new Error("client crashes are simulated with change maps only");
  world.checksOff = true;
  world.stats.clientCrashes += 1;
  old.kill();
  old.core.abort();
  world.abandonWritesOf(index);
  for (const name of old.primaries.keys()) await old.changeMap.region(name).markAll();
  const fresh = new SimClient(world, index, world.clientDeviceSizes(index), { primaries: old.primaries, changeMap: old.changeMap }, old.core.epochHigh + 1);
  world.clients[index] = fresh;
  if (world.staging.alive) fresh.connect(world.staging);
}
