/**
 * `druvaa replica apply` as a real child process, fed by a fake staging relay written here
 * (the real transport and handshake), read back with `druvaa restore` and `druvaa status`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Connection } from "../../src/io/transport.ts";
import { encodeFrameBytes } from "../../src/protocol/frame.ts";
import { buildHello } from "../../src/protocol/handshake.ts";
import { druvaa } from "../helpers/cli.ts";
import { rawExchange } from "../helpers/raw-exchange.ts";
import { startRole, type RoleProcess } from "../helpers/role-process.ts";
import { createReplicaImageSync, readPlain, writeReplicaImage } from "../helpers/replica-image.ts";
import { applyModel, ask, fakeStaging, dataRecord, sha256, shipment, wrlUuid, zeroRecord, type TestRecord } from "./helpers.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const scratch = mkdtempSync(join(tmpdir(), "druvaa-replica-proc-"));
const stateDir = join(scratch, "state");
const disk0Path = join(scratch, "disk0.img");
const disk1Path = join(scratch, "disk1.img");
const disk0Bytes = 6 * MiB; // more than one restore chunk
const disk0DeclaredBytes = 5 * MiB + 512; // the client's device is a bit smaller
const disk1Bytes = 1 * MiB;

interface Ready {
  event: string;
  role: string;
  pid: number;
  listen: string;
  restore: string;
  control: string;
}

type Replica = RoleProcess<Ready>;

const running = new Set<Replica>();
const connections: Connection[] = [];

async function startReplica(tag: string): Promise<Replica> {
  const replica = await startRole<Ready>(
    ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `disk0=${disk0Path}`, "--device", `disk1=${disk1Path}`, "--state-dir", stateDir, "--node-id", "replica-test"],
    join(scratch, `replica-${tag}.log`),
  );
  expect(replica.ready.event).toBe("ready");
  expect(replica.ready.role).toBe("replica");
  running.add(replica);
  return replica;
}

async function stopReplica(replica: Replica): Promise<number> {
  replica.proc.kill("SIGTERM");
  const code = await replica.proc.exited;
  running.delete(replica);
  return code;
}

// The replica's devices get records of two shipments; disk0 is declared smaller than its image.
const declared = [{ name: "disk0", sizeBytes: disk0DeclaredBytes }, { name: "disk1", sizeBytes: disk1Bytes }];
const firstRecords: TestRecord[] = [dataRecord(1, "disk0", 0, 1 * MiB), dataRecord(2, "disk1", 4 * KiB, 64 * KiB), dataRecord(3, "disk0", 4 * MiB + 512, 1 * MiB), dataRecord(4, "disk0", 512 * KiB, 8 * KiB)];
const secondRecords: TestRecord[] = [zeroRecord(5, "disk0", 64 * KiB, 128 * KiB), dataRecord(6, "disk0", 100 * KiB, 4 * KiB), dataRecord(7, "disk1", 0, 8 * KiB)];
const thirdRecords: TestRecord[] = [dataRecord(8, "disk0", 2 * MiB, 512 * KiB)];

function expectedImages(records: TestRecord[]): Map<string, Uint8Array> {
  const images = new Map([["disk0", new Uint8Array(disk0Bytes)], ["disk1", new Uint8Array(disk1Bytes)]]);
  // The image files start with a pattern the shipments partly overwrite.
  images.get("disk0")!.set(readFileSync(join(scratch, "disk0.initial")));
  applyModel(images, records);
  return images;
}

let replica: Replica;

beforeAll(async () => {
  const initial = new Uint8Array(disk0Bytes).fill(0xa5);
  writeFileSync(join(scratch, "disk0.initial"), initial);
  await writeReplicaImage(disk0Path, initial);
  createReplicaImageSync(disk1Path, disk1Bytes);
  replica = await startReplica("first");
});

afterAll(async () => {
  for (const connection of connections) connection.abort();
  for (const entry of running) entry.proc.kill("SIGKILL");
  await Promise.all([...running].map((entry) => entry.proc.exited));
  rmSync(scratch, { recursive: true, force: true });
});

describe("druvaa replica apply (real process)", () => {
  test("a staging relay resumes, ships, gets acks; druvaa restore pulls the image, equal to the expected bytes", async () => {
    const staging = await fakeStaging(replica.ready.listen, connections);
    expect(await ask(staging, { type: "resume", wrl: "wrl0", wrlUuid })).toEqual({
      type: "resumeAck", wrl: "wrl0", wrlUuid, appliedLsn: 0, devices: [{ name: "disk0", sizeBytes: disk0Bytes }, { name: "disk1", sizeBytes: disk1Bytes }],
    });
    // Two shipments in flight at once (a window), answered in order.
    const one = shipment(firstRecords, { devices: declared });
    const two = shipment(secondRecords, { devices: declared });
    await staging.send(one.message, one.payload);
    await staging.send(two.message, two.payload);
    expect((await staging.receive(15_000)).message).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: 4 });
    expect((await staging.receive(15_000)).message).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: 7 });
    // A gap is refused over the wire too.
    const gap = shipment([dataRecord(9, "disk0", 0, 4 * KiB)], { devices: declared });
    const refused = await ask(staging, gap.message, gap.payload);
    expect(refused.type === "shipNack" && refused.code).toBe("LSN_GAP");

    const expected = expectedImages([...firstRecords, ...secondRecords]);
    const target = join(scratch, "restored-disk0.img");
    const result = await druvaa(["restore", "--replica", replica.ready.restore, "--device", "disk0", "--to", target, "--json"]);
    expect(result.stderr).not.toContain("error");
    expect(result.exitCode).toBe(0);
    const summary = JSON.parse(result.stdout) as { ok: boolean; sizeBytes: number; appliedLsn: number; sha256: string; created: boolean };
    const wanted = expected.get("disk0")!.subarray(0, disk0DeclaredBytes);
    expect(summary).toMatchObject({ ok: true, sizeBytes: disk0DeclaredBytes, appliedLsn: 7, sha256: sha256(wanted), created: true });
    expect(sha256(readFileSync(target))).toBe(sha256(wanted));

    // disk1 (never declared smaller): the whole replica device, into an existing empty file.
    const target1 = join(scratch, "restored-disk1.img");
    writeFileSync(target1, "");
    const human = await druvaa(["restore", "--replica", replica.ready.restore, "--device", "disk1", "--to", target1]);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toContain(sha256(expected.get("disk1")!));
    expect(human.stdout).toContain("applied LSN 7");
    expect(sha256(readFileSync(target1))).toBe(sha256(expected.get("disk1")!));
  });

  test("restore failures are clear and non-zero: unknown device, existing file, too small, nobody listening", async () => {
    const unknown = await druvaa(["restore", "--replica", replica.ready.restore, "--device", "disk9", "--to", join(scratch, "nine.img")]);
    expect(unknown.exitCode).toBe(3);
    expect(unknown.stderr).toContain("no device disk9");
    expect(unknown.stderr).toContain("disk0, disk1");
    expect(existsSync(join(scratch, "nine.img"))).toBe(false);

    const existing = join(scratch, "existing.img");
    writeFileSync(existing, new Uint8Array(8 * MiB).fill(1));
    const noForce = await druvaa(["restore", "--replica", replica.ready.restore, "--device", "disk0", "--to", existing]);
    expect(noForce.exitCode).toBe(4);
    expect(noForce.stderr).toContain("--force");
    expect(readFileSync(existing).every((byte) => byte === 1)).toBe(true);

    const small = join(scratch, "small.img");
    writeFileSync(small, new Uint8Array(1 * MiB).fill(2));
    const tooSmall = await druvaa(["restore", "--replica", replica.ready.restore, "--device", "disk0", "--to", small, "--force", "--json"]);
    expect(tooSmall.exitCode).toBe(4);
    expect(JSON.parse(tooSmall.stdout).error.code).toBe("TARGET_TOO_SMALL");
    expect(statSync(small).size).toBe(1 * MiB);

    // With --force, a bigger file gets the image over its first bytes.
    const forced = await druvaa(["restore", "--replica", replica.ready.restore, "--device", "disk0", "--to", existing, "--force", "--json"]);
    expect(forced.exitCode).toBe(0);
    const bytes = readFileSync(existing);
    expect(sha256(bytes.subarray(0, disk0DeclaredBytes))).toBe(JSON.parse(forced.stdout).sha256);
    expect(bytes.subarray(disk0DeclaredBytes).every((byte) => byte === 1)).toBe(true);

    const dead = await druvaa(["restore", "--replica", "127.0.0.1:1", "--device", "disk0", "--to", join(scratch, "dead.img"), "--json"]);
    expect(dead.exitCode).not.toBe(0);
    expect(JSON.parse(dead.stdout).error.code).toBe("NET_CONNECT_REFUSED");
  });

  test("garbage on the data, restore and control ports closes those connections only; the replica keeps serving", async () => {
    const hugeLength = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 1, 2, 3]);
    const truncated = encodeFrameBytes(buildHello({ role: "staging", nodeId: "x" })).subarray(0, 12);
    const wrongRole = encodeFrameBytes(buildHello({ role: "client", nodeId: "intruder" }));
    for (const port of [replica.ready.listen, replica.ready.restore]) {
      await rawExchange(port, hugeLength, false);
      await rawExchange(port, truncated, true);
    }
    const refusal = await rawExchange(replica.ready.listen, wrongRole, false);
    expect(refusal).toContain("PROTO_ROLE");
    const answer = await rawExchange(replica.ready.control, new TextEncoder().encode("\x00\x01GARBAGE \xff\r\n\r\n"), true);
    expect(answer).not.toContain("200 OK");
    // A handshake done right, then garbage: that relay connection is dropped...
    const broken = await fakeStaging(replica.ready.listen, connections);
    await broken.send({ type: "restoreRequest", device: "disk0" });
    await broken.closed;
    expect(broken.isOpen).toBe(false);

    // ...and every port still works.
    const staging = await fakeStaging(replica.ready.listen, connections);
    const resumed = await ask(staging, { type: "resume", wrl: "wrl0", wrlUuid });
    expect(resumed.type === "resumeAck" && resumed.appliedLsn).toBe(7);
    const third = shipment(thirdRecords, { devices: declared });
    expect(await ask(staging, third.message, third.payload)).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: 8 });
    const target = join(scratch, "after-garbage.img");
    const restored = await druvaa(["restore", "--replica", replica.ready.restore, "--device", "disk0", "--to", target, "--json"]);
    expect(restored.exitCode).toBe(0);
    const wanted = expectedImages([...firstRecords, ...secondRecords, ...thirdRecords]).get("disk0")!.subarray(0, disk0DeclaredBytes);
    expect(sha256(readFileSync(target))).toBe(sha256(wanted));
    staging.abort();
    // Each bad connection was logged once, by whoever closed it.
    const log = readFileSync(replica.logPath, "utf8");
    expect(log.match(/PROTO_FRAME_TOO_LARGE/g)?.length).toBe(2);
    expect(log.match(/PROTO_TRUNCATED/g)?.length).toBe(2);
    expect(log.match(/PROTO_ROLE/g)?.length).toBe(1);
    expect(log.match(/PROTO_UNEXPECTED/g)?.length).toBe(1);
  });

  test("druvaa status --connect on the control port prints role replica, its devices and applied LSNs", async () => {
    const staging = await fakeStaging(replica.ready.listen, connections);
    expect((await ask(staging, { type: "resume", wrl: "wrl0", wrlUuid })).type).toBe("resumeAck");
    const human = await druvaa(["status", "--connect", replica.ready.control]);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toContain("replica replica-test");
    expect(human.stdout).toContain(`device disk0: ${disk0Path}`);
    expect(human.stdout).toContain(`WRL wrl0 (${wrlUuid}): applied LSN 8`);
    expect(human.stdout).toContain("staging connected");
    staging.abort();
    const status = await druvaa(["status", "--connect", replica.ready.control, "--json"]);
    expect(status.exitCode).toBe(0);
    const body = JSON.parse(status.stdout) as { role: string; nodeId: string; devices: { name: string; path: string; sizeBytes: number }[]; wrls: { name: string; uuid: string; appliedLsn: number }[]; applying: boolean; restores: number };
    expect(body.role).toBe("replica");
    expect(body.nodeId).toBe("replica-test");
    expect(body.devices.map((device) => [device.name, device.path, device.sizeBytes])).toEqual([["disk0", disk0Path, disk0Bytes], ["disk1", disk1Path, disk1Bytes]]);
    expect(body.wrls).toMatchObject([{ name: "wrl0", uuid: wrlUuid, appliedLsn: 8 }]);
    expect(body.applying).toBe(false);
    expect(body.restores).toBe(0);
  });

  test("SIGTERM exits 0; a restart resumes from the persisted LSN", async () => {
    expect(await stopReplica(replica)).toBe(0);
    replica = await startReplica("second");
    const staging = await fakeStaging(replica.ready.listen, connections);
    const resumed = await ask(staging, { type: "resume", wrl: "wrl0", wrlUuid });
    expect(resumed.type === "resumeAck" && resumed.appliedLsn).toBe(8);
    // Re-delivery of what was applied before the restart changes nothing.
    const again = shipment(thirdRecords, { devices: declared });
    expect(await ask(staging, again.message, again.payload)).toEqual({ type: "shipAck", wrl: "wrl0", appliedLsn: 8 });
    const wanted = expectedImages([...firstRecords, ...secondRecords, ...thirdRecords]).get("disk0")!;
    expect(sha256(await readPlain(disk0Path))).toBe(sha256(wanted));
    staging.abort();
  });
});
