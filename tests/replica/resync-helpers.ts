/** Resync records, verify probes and replica cores with a replica WRL (RS-WRL), for the replica tests. */
import { createHash } from "node:crypto";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { recordFlags, verifyFlags } from "../../src/protocol/messages.ts";
import { ReplicaCore, type ShipReply } from "../../src/roles/replica/core.ts";
import { ResyncLog } from "../../src/roles/replica/resync-log.ts";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import { Coalescer } from "../../src/roles/staging/coalesce.ts";
import { defaultShipmentLimits, type Shipment, type ShipmentLimits } from "../../src/roles/staging/shipment.ts";
import type { WrlRecord } from "../../src/wrl/types.ts";
import { WriteLog } from "../../src/wrl/write-log.ts";
import { dataRecord, replicaDevice, shipment, wrlUuid, type TestRecord } from "./helpers.ts";

export const KiB = 1024;
export const MiB = 1024 * KiB;

export function resyncRecord(lsn: number, device: string, offset: number, length: number): TestRecord {
  return { ...dataRecord(lsn, device, offset, length), flags: recordFlags.resync };
}

export function resyncEnd(lsn: number, device: string): TestRecord {
  return { lsn, device, offset: 0, flags: recordFlags.resyncEnd };
}

/** A verify probe of `image` (what the client's device holds at this point) over offset..offset+length. */
export function probe(lsn: number, device: string, image: Uint8Array, offset: number, length: number, blockBytes = 4 * KiB): TestRecord {
  const digests = new Uint8Array((length / blockBytes) * 32);
  for (let block = 0; block < length / blockBytes; block += 1) {
    digests.set(createHash("sha256").update(image.subarray(offset + block * blockBytes, offset + (block + 1) * blockBytes)).digest(), block * 32);
  }
  return { lsn, device, offset, length, flags: verifyFlags(blockBytes), digests };
}

/** Ships `records` as one shipment. */
export function send(core: ReplicaCore, records: TestRecord[], opts: Parameters<typeof shipment>[1] = {}): Promise<ShipReply> {
  const built = shipment(records, opts);
  return core.ship(built.message, built.payload);
}

/** A fresh RS-WRL over `device` (at least 1 MiB). */
export async function createRsWrl(device: BlockDevice): Promise<ResyncLog> {
  return ResyncLog.over(await WriteLog.create([device], { uuid: "11111111-2222-4333-8444-555555555555" }));
}

/** A core over MemoryDevices with an RS-WRL of `rsWrlBytes` on a MemoryDevice. */
export async function rsWrlCore(sizes: Record<string, number>, rsWrlBytes = 4 * MiB, store = new MemoryStateStore()) {
  const memories = new Map(Object.entries(sizes).map(([name, sizeBytes]) => [name, new MemoryDevice(sizeBytes, name)]));
  const rsWrl = await createRsWrl(new MemoryDevice(rsWrlBytes, "rswrl"));
  const core = await ReplicaCore.open({ devices: [...memories].map(([name, memory]) => replicaDevice(name, memory)), store, rsWrl, now: () => Date.UTC(2030, 0, 1) });
  return { core, store, rsWrl, memory: (name: string) => memories.get(name)! };
}

/** The ack's appliedLsn, failing the test with the nack's text otherwise. */
export function ackedLsn(reply: ShipReply): number {
  if (reply.type !== "shipAck") throw new Error(`expected a shipAck, got ${reply.code}: ${reply.message}`);
  return reply.appliedLsn;
}

/**
 * The coalesced span of `records` (plain data and zero records, consecutive LSNs) as the relay
 * builds it: parts of at most `limits` each (one part when it fits).
 */
export function coalescedParts(records: TestRecord[], limits: ShipmentLimits = defaultShipmentLimits): Shipment[] {
  const coalescer = new Coalescer({ wrl: "wrl0", wrlUuid, deviceSizes: new Map() }, limits, 64 * MiB);
  for (const record of records) {
    const wrlRecord: WrlRecord = record.data !== undefined
      ? { lsn: record.lsn, type: "write", epoch: record.lsn, device: record.device, seq: record.lsn, offset: record.offset, lengthBytes: record.data.length, flags: 0, data: record.data }
      : { lsn: record.lsn, type: "zero", epoch: record.lsn, device: record.device, seq: record.lsn, offset: record.offset, lengthBytes: record.zeroLength!, flags: 0, data: new Uint8Array(0) };
    if (coalescer.add(wrlRecord) !== "added") throw new Error(`the coalescer did not take LSN ${record.lsn}`);
  }
  const parts = coalescer.buildParts();
  if (parts === undefined) throw new Error("no parts: a record has more pieces than a part takes");
  return parts;
}
