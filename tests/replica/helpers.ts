/** Shipments, devices and a reference model for the replica tests. */
import { createHash } from "node:crypto";
import type { BlockDevice } from "../../src/io/block-device.ts";
import { MemoryDevice } from "../../src/io/memory-device.ts";
import { recordFlags, type DeviceSize, type Message, type ShipMessage, type ShipRecord } from "../../src/protocol/messages.ts";
import { ReplicaCore, type ReplicaDevice } from "../../src/roles/replica/core.ts";
import { MemoryStateStore } from "../../src/roles/replica/state.ts";
import { bytes } from "../helpers/bytes.ts";
import { connect, parseAddress, type Connection } from "../../src/io/transport.ts";
import { clientHandshake } from "../../src/protocol/handshake.ts";

export const wrlUuid = "6f1c2a4e-0b5d-4c1e-9a7b-3d2e1f0a9b8c";
export const otherWrlUuid = "0a0b0c0d-1111-4222-8333-444455556666";

/**
 * A record as a test writes it: data records carry bytes, zero records only a length. `flags`
 * (default: 0 with data, ZERO without) marks resync data, a resyncEnd (no data) or a verify probe
 * (`digests` are its payload, `length` its range).
 */
export interface TestRecord {
  lsn: number;
  device: string;
  offset: number;
  data?: Uint8Array;
  zeroLength?: number;
  flags?: number;
  digests?: Uint8Array;
  length?: number;
}

export function dataRecord(lsn: number, device: string, offset: number, length: number): TestRecord {
  return { lsn, device, offset, data: bytes(length, lsn * 7919 + offset) };
}

export function zeroRecord(lsn: number, device: string, offset: number, length: number): TestRecord {
  return { lsn, device, offset, zeroLength: length };
}

/** Builds the ship message and its payload (data of non-ZERO records, in record order). */
export function shipment(records: TestRecord[], opts: { firstLsn?: number; lastLsn?: number; devices?: DeviceSize[]; wrl?: string; uuid?: string } = {}): { message: ShipMessage; payload: Uint8Array } {
  const shipRecords: ShipRecord[] = records.map((record) => ({
    lsn: record.lsn,
    epoch: record.lsn,
    device: record.device,
    offset: record.offset,
    length: record.data?.length ?? record.zeroLength ?? record.length ?? 0,
    flags: record.flags ?? (record.data === undefined ? recordFlags.zero : 0),
  }));
  const payload = Buffer.concat(records.flatMap((record) => (record.data !== undefined ? [record.data] : record.digests !== undefined ? [record.digests] : [])));
  const message: ShipMessage = {
    type: "ship",
    wrl: opts.wrl ?? "wrl0",
    wrlUuid: opts.uuid ?? wrlUuid,
    firstLsn: opts.firstLsn ?? records[0]!.lsn,
    lastLsn: opts.lastLsn ?? records[records.length - 1]!.lsn,
    records: shipRecords,
  };
  if (opts.devices !== undefined) message.devices = opts.devices;
  return { message, payload: new Uint8Array(payload.buffer, payload.byteOffset, payload.length) };
}

/** The reference: records applied one by one, in LSN order, to plain arrays. */
export function applyModel(images: Map<string, Uint8Array>, records: TestRecord[]): void {
  for (const record of records) {
    const image = images.get(record.device)!;
    if (record.data !== undefined) image.set(record.data, record.offset);
    else image.fill(0, record.offset, record.offset + (record.zeroLength ?? 0));
  }
}

export function replicaDevice(name: string, device: BlockDevice, discardReadsZeros = true): ReplicaDevice {
  return { name, device, path: `/test/${name}.img`, discardReadsZeros };
}

/** A core over MemoryDevices; with `jitterSeed`, writes complete in a shuffled order (JitterDevice). */
export async function memoryCore(sizes: Record<string, number>, store: MemoryStateStore = new MemoryStateStore(), discardReadsZeros = true, jitterSeed?: number) {
  const memories = new Map(Object.entries(sizes).map(([name, sizeBytes]) => [name, new MemoryDevice(sizeBytes, name)]));
  const devices = [...memories].map(([name, memory], index) => replicaDevice(name, jitterSeed === undefined ? memory : new JitterDevice(memory, jitterSeed + index), discardReadsZeros));
  const core = await ReplicaCore.open({ devices, store, now: () => Date.UTC(2030, 0, 1) });
  const memory = (name: string) => memories.get(name)!;
  return { core, devices, store, memory };
}

export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * Wraps a device so each write lands after a seeded random number of event-loop turns: writes
 * issued together complete in a shuffled order, as on a real disk with a queue. Only the
 * replica's own ordering of overlapping records then keeps the image right.
 */
export class JitterDevice implements BlockDevice {
  #state: number;
  constructor(readonly inner: BlockDevice, seed: number) {
    this.#state = seed >>> 0 || 1;
  }
  get name(): string {
    return this.inner.name;
  }
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  get logicalBlockSizeBytes(): number {
    return this.inner.logicalBlockSizeBytes;
  }
  async #jitter(): Promise<void> {
    this.#state ^= this.#state << 13;
    this.#state ^= this.#state >>> 17;
    this.#state ^= this.#state << 5;
    const turns = (this.#state >>> 0) % 4;
    for (let turn = 0; turn < turns; turn += 1) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    return this.inner.read(offsetBytes, lengthBytes);
  }
  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    await this.#jitter();
    await this.inner.write(offsetBytes, data);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.#jitter();
    await this.inner.discard(offsetBytes, lengthBytes);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Connects to a replica's data port as staging would (handshake done); the caller aborts it (tracked in `connections`). */
export async function fakeStaging(address: string, connections: Connection[]): Promise<Connection> {
  const connection = await connect(parseAddress(address, 6003));
  connections.push(connection);
  await clientHandshake(connection, { role: "staging", nodeId: "fake-staging" }, ["replica"]);
  return connection;
}

/** Sends a message and returns the answer (15 s at most). */
export async function ask(connection: Connection, message: Message, payload?: Uint8Array): Promise<Message> {
  await connection.send(message, payload);
  return (await connection.receive(15_000)).message;
}
