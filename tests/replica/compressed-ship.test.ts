/**
 * `druvaa replica apply` (a real process) receiving compressed shipments from a fake relay:
 * they are applied exactly like plain ones; one whose payload is corrupted, truncated or does not
 * decompress to its rawBytes gets an `error` message and loses its connection — nothing of it is
 * applied, and the replica keeps serving (the next connection resumes where it was).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Connection } from "../../src/io/transport.ts";
import type { Message } from "../../src/protocol/messages.ts";
import { compressShipment, type ShipmentFrame } from "../../src/protocol/ship-codec.ts";
import { druvaa } from "../helpers/cli.ts";
import { startRole, type RoleProcess } from "../helpers/role-process.ts";
import { createReplicaImageSync } from "../helpers/replica-image.ts";
import { applyModel, ask, fakeStaging, sha256, shipment, wrlUuid, type TestRecord } from "./helpers.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const diskBytes = 2 * MiB;
const scratch = mkdtempSync(join(tmpdir(), "druvaa-replica-zstd-"));
const diskPath = join(scratch, "disk0.img");
const connections: Connection[] = [];
let replica: RoleProcess;

/** Text and zeros: compresses well. */
function textRecord(lsn: number, offset: number, length: number): TestRecord {
  const line = new TextEncoder().encode(`LSN ${lsn} says hello to the replica; `);
  const data = new Uint8Array(length);
  for (let position = 0; position < length / 2; position += 1) data[position] = line[position % line.length]!;
  return { lsn, device: "disk0", offset, data };
}

async function compressed(records: TestRecord[]): Promise<ShipmentFrame> {
  const packed = await compressShipment(shipment(records), 3);
  expect(packed?.message.codec).toBe("zstd");
  return packed!;
}

/** Sends a shipment on a fresh resumed connection; returns the answer (an error message closes it). */
async function shipOnce(frame: ShipmentFrame, appliedLsn: number): Promise<Message> {
  const staging = await fakeStaging(replica.ready.listen, connections);
  expect(await ask(staging, { type: "resume", wrl: "wrl0", wrlUuid })).toMatchObject({ type: "resumeAck", appliedLsn });
  const answer = await ask(staging, frame.message, frame.payload);
  if (answer.type === "error") expect(await staging.closed).toMatchObject({ code: answer.code });
  staging.abort();
  return answer;
}

async function restored(tag: string): Promise<string> {
  const target = join(scratch, `restored-${tag}.img`);
  const result = await druvaa(["restore", "--replica", replica.ready.restore, "--device", "disk0", "--to", target, "--json"]);
  expect(result.exitCode).toBe(0);
  return sha256(readFileSync(target));
}

beforeAll(async () => {
  createReplicaImageSync(diskPath, diskBytes);
  replica = await startRole(
    ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `disk0=${diskPath}`, "--state-dir", join(scratch, "state"), "--node-id", "replica-zstd"],
    join(scratch, "replica.log"),
  );
});

afterAll(async () => {
  for (const connection of connections) connection.abort();
  replica.proc.kill("SIGKILL");
  await replica.proc.exited;
  rmSync(scratch, { recursive: true, force: true });
});

describe("compressed shipments at a real replica", () => {
  const first = [textRecord(1, 0, 256 * KiB), { lsn: 2, device: "disk0", offset: 64 * KiB, zeroLength: 32 * KiB }, textRecord(3, 512 * KiB, 64 * KiB)];
  const second = [textRecord(4, 1 * MiB, 128 * KiB), textRecord(5, 100 * KiB, 8 * KiB)];
  const model = new Map([["disk0", new Uint8Array(diskBytes)]]);

  test("a compressed shipment is applied like a plain one; a plain one after it still is", async () => {
    const staging = await fakeStaging(replica.ready.listen, connections);
    await ask(staging, { type: "resume", wrl: "wrl0", wrlUuid });
    const packed = await compressed(first);
    expect(packed.payload.length * 10).toBeLessThan(320 * KiB);
    expect(await ask(staging, packed.message, packed.payload)).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: 3 });
    const plain = shipment([textRecord(4, 1 * MiB, 128 * KiB)]);
    expect(await ask(staging, plain.message, plain.payload)).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: 4 });
    staging.abort();
    applyModel(model, [...first, textRecord(4, 1 * MiB, 128 * KiB)]);
    expect(await restored("first")).toBe(sha256(model.get("disk0")!));
  });

  test("corrupted, truncated, extended or mislabelled compressed payloads: an error message, the connection closes, nothing is applied", async () => {
    const packed = await compressed(second.map((record) => ({ ...record, lsn: record.lsn + 1 })));
    const flipped = Uint8Array.from(packed.payload);
    flipped[flipped.length >> 1] = flipped[flipped.length >> 1]! ^ 0x40;
    const cut = packed.payload.subarray(0, packed.payload.length - 16);
    const doubled = Buffer.concat([packed.payload, packed.payload]);
    const cases: [string, ShipmentFrame, string[]][] = [
      ["a flipped byte", { ...packed, payload: flipped }, ["PROTO_BAD_PAYLOAD", "PROTO_PAYLOAD_LENGTH"]],
      ["truncated", { message: { ...packed.message, wireBytes: cut.length }, payload: cut }, ["PROTO_PAYLOAD_LENGTH", "PROTO_BAD_PAYLOAD"]],
      ["two frames", { message: { ...packed.message, wireBytes: doubled.length }, payload: doubled }, ["PROTO_PAYLOAD_LENGTH"]],
      ["another CRC", { ...packed, message: { ...packed.message, rawCrc32: (packed.message.rawCrc32! ^ 1) >>> 0 } }, ["PROTO_BAD_PAYLOAD"]],
      ["not zstd", { ...packed, payload: new Uint8Array(packed.payload.length).fill(0x33) }, ["PROTO_BAD_PAYLOAD"]],
    ];
    for (const [what, frame, codes] of cases) {
      const answer = await shipOnce(frame, 4);
      expect({ what, type: answer.type }).toEqual({ what, type: "error" });
      expect(codes).toContain(answer.type === "error" ? answer.code : "");
    }
    // The replica is still there, at LSN 4: the good shipment applies.
    const good = await compressed(second.map((record) => ({ ...record, lsn: record.lsn + 1 })));
    expect(await shipOnce(good, 4)).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: 6 });
    applyModel(model, second);
    expect(await restored("second")).toBe(sha256(model.get("disk0")!));
    const log = readFileSync(replica.logPath, "utf8");
    expect(log).toContain("PROTO_BAD_PAYLOAD");
    expect(log).not.toContain("INTERNAL");
  });
});
