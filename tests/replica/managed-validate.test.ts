/**
 * The replica's managed config (`druvaa replica apply --managed`, src/roles/replica/managed.ts)
 * against a real ReplicaCore on image files: every bad device is refused at prepare with the
 * field at fault and nothing changes; a device failed over, mid-resync or awaiting its seed
 * cannot be dropped; a device added to the running core takes shipments at once, a dropped one
 * is refused DEVICE_UNKNOWN.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { recordFlags } from "../../src/protocol/messages.ts";
import { ConfigRefusal } from "../../src/roles/managed/config-routes.ts";
import type { ReplicaDevice } from "../../src/roles/replica/apply.ts";
import { ReplicaCore } from "../../src/roles/replica/core.ts";
import { Failovers } from "../../src/roles/replica/failover.ts";
import { ManagedDevices, type ManagedReplicaConfig, type ManagedReplicaDeviceSpec } from "../../src/roles/replica/managed.ts";
import { SeedTracker } from "../../src/roles/replica/media-seed.ts";
import { openReplicaDevices } from "../../src/roles/replica/open-devices.ts";
import { readPlain } from "../../src/roles/replica/protected-device.ts";
import { fileStateStore } from "../../src/roles/replica/state.ts";
import { createReplicaImageSync, replicaImageBytes } from "../helpers/replica-image.ts";
import { dataRecord, shipment } from "./helpers.ts";

const KiB = 1024;
const primaryBytes = 1024 * KiB;

interface Setup {
  dir: string;
  stateDir: string;
  core: ReplicaCore;
  managed: ManagedDevices;
  failovers: Failovers;
  flagDevices: ReplicaDevice[];
  /** The committed config (what validate compares against). */
  current: ManagedReplicaConfig;
  disk0: ManagedReplicaDeviceSpec;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A core with one --device flag (flag0) and one managed device (disk0, created by apply). */
async function setup(): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), "druvaa-managed-replica-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const stateDir = join(dir, "state");
  mkdirSync(stateDir);
  const flagPath = join(dir, "flag0.img");
  createReplicaImageSync(flagPath, primaryBytes);
  const failovers = await Failovers.load(stateDir);
  const managed = new ManagedDevices({ flagDevices: new Map([["flag0", flagPath]]), failovers, declaredSizeBytes: new Map() });
  cleanups.push(() => managed.close());
  const disk0 = { name: "disk0", path: join(dir, "disk0.img"), sizeBytes: replicaImageBytes(primaryBytes), primarySizeBytes: primaryBytes };
  const current = { devices: [disk0] };
  await managed.apply(current);
  const flagDevices = await openReplicaDevices(new Map([["flag0", flagPath]]));
  cleanups.push(async () => void (await Promise.allSettled(flagDevices.flatMap((entry) => [entry.device.close(), entry.smallWrites?.close()]))));
  const core = await ReplicaCore.open({ devices: [...flagDevices, ...managed.devices], store: fileStateStore(stateDir), failedOver: failovers.failedOver });
  cleanups.push(() => core.stop());
  await failovers.resume(core.recoveryHost);
  cleanups.push(() => failovers.close());
  managed.attach({ core, endSnapshots: async () => undefined });
  return { dir, stateDir, core, managed, failovers, flagDevices, current, disk0 };
}

/** The refusal validate gives for `devices` (disk0 kept first), as {code, field}. */
async function refusalOf(setup: Setup, devices: unknown[], keep = true): Promise<{ code: string; field: string; message: string }> {
  const error = await setup.managed.validate({ devices: keep ? [setup.disk0, ...devices] : devices }, setup.current).then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(error instanceof ConfigRefusal)) throw new Error(`expected a ConfigRefusal, got ${error === undefined ? "success" : String(error)}`);
  return { code: error.code, field: error.field, message: error.message };
}

const deviceNames = (core: ReplicaCore) => core.status().devices.map((device) => device.name);

describe("replica managed config: validate", () => {
  test("every bad device is refused with the field at fault, and validate creates nothing", async () => {
    const s = await setup();
    const spec = (extra: Record<string, unknown>) => ({ name: "disk1", path: join(s.dir, "disk1.img"), sizeBytes: replicaImageBytes(primaryBytes), primarySizeBytes: primaryBytes, ...extra });
    writeFileSync(join(s.dir, "small.img"), new Uint8Array(primaryBytes)); // the primary's size, no room for the header reserve
    symlinkSync(s.disk0.path, join(s.dir, "disk0-link.img"));
    const cases: [unknown[], string, string][] = [
      [[spec({ name: "bad name" })], "DEVICE_NAME_INVALID", "devices[1].name"],
      [[spec({ name: "disk0" })], "DEVICE_NAME_TAKEN", "devices[1].name"],
      [[spec({ name: "flag0" })], "DEVICE_NAME_TAKEN", "devices[1].name"],
      [[spec({ path: "disk1.img" })], "PATH_INVALID", "devices[1].path"],
      [[spec({ sizeBytes: undefined })], "NOT_FOUND", "devices[1].path"],
      [[spec({ path: join(s.dir, "nodir", "disk1.img") })], "NOT_FOUND", "devices[1].path"],
      [[spec({ sizeBytes: primaryBytes })], "REPLICA_DEVICE_TOO_SMALL", "devices[1].sizeBytes"],
      [[spec({ path: join(s.dir, "small.img") })], "REPLICA_DEVICE_TOO_SMALL", "devices[1].path"],
      [[spec({ primarySizeBytes: 2 * primaryBytes, path: s.disk0.path, name: "disk0" })], "DEVICE_NAME_TAKEN", "devices[1].name"],
      [[spec({ path: join(s.dir, "disk0-link.img") })], "DEVICE_PATH_TAKEN", "devices[1].path"],
      [[spec({ path: join(s.dir, "flag0.img") })], "DEVICE_PATH_TAKEN", "devices[1].path"],
      [[spec({ sizeBytes: 1000 })], "SIZE_INVALID", "devices[1].sizeBytes"],
      [[spec({ primarySizeBytes: "1GiB" })], "SIZE_INVALID", "devices[1].primarySizeBytes"],
      [["disk1"], "CONFIG_INVALID", "devices[1]"],
    ];
    const seen = [];
    for (const [devices] of cases) seen.push(await refusalOf(s, devices));
    expect(seen.map(({ code, field }) => [code, field])).toEqual(cases.map(([, code, field]) => [code, field]));
    expect(seen[6]!.message).toContain(`needs ${replicaImageBytes(primaryBytes)}`);
    // The running device too small for a bigger primary: refused at its own path.
    expect(await refusalOf(s, [{ ...s.disk0, primarySizeBytes: 2 * primaryBytes }], false)).toMatchObject({ code: "REPLICA_DEVICE_TOO_SMALL", field: "devices[0].path" });
    const notAConfig = await s.managed.validate({ wrls: [] }, s.current).catch((error: unknown) => error);
    expect(notAConfig).toMatchObject({ code: "CONFIG_INVALID", field: "devices" });

    // Nothing was created or changed; a good config passes and is decoded as given.
    expect(existsSync(join(s.dir, "disk1.img"))).toBe(false);
    expect(deviceNames(s.core)).toEqual(["flag0", "disk0"]);
    const good = spec({});
    expect(await s.managed.validate({ devices: [s.disk0, good] }, s.current)).toEqual({ devices: [s.disk0, good] });
    expect(existsSync(join(s.dir, "disk1.img"))).toBe(false);
  });

  test("a device open in another process is refused DEVICE_IN_USE; once it is let go, it is taken", async () => {
    const s = await setup();
    const path = join(s.dir, "held.img");
    createReplicaImageSync(path, primaryBytes);
    const holder = Bun.spawn(["sh", "-c", `exec 3<"${path}"; echo open; exec sleep 600`], { stdout: "pipe", stdin: "ignore", stderr: "ignore" });
    cleanups.push(() => {
      holder.kill("SIGKILL");
    });
    const reader = holder.stdout.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain("open");
    const refused = await refusalOf(s, [{ name: "disk1", path, primarySizeBytes: primaryBytes }]);
    expect(refused).toMatchObject({ code: "DEVICE_IN_USE", field: "devices[1].path" });
    expect(refused.message).toContain(`process ${holder.pid}`);
    holder.kill("SIGKILL");
    await holder.exited;
    const config = { devices: [s.disk0, { name: "disk1", path, primarySizeBytes: primaryBytes }] };
    expect(await s.managed.validate(config, s.current)).toEqual(config);
  });
});

describe("replica managed config: apply to the running core", () => {
  test("a device added takes shipments at once (protected: its head is where the primary's is); dropped, it is refused DEVICE_UNKNOWN", async () => {
    const s = await setup();
    const disk1 = { name: "disk1", path: join(s.dir, "disk1.img"), sizeBytes: replicaImageBytes(primaryBytes), primarySizeBytes: primaryBytes };
    const before = shipment([dataRecord(1, "disk1", 0, 8 * KiB)]);
    expect(await s.core.ship(before.message, before.payload)).toMatchObject({ type: "shipNack", code: "DEVICE_UNKNOWN" });
    const next = { devices: [s.disk0, disk1] };
    await s.managed.apply(await s.managed.validate(next, s.current));
    await s.managed.apply(next); // idempotent: nothing to do again
    expect(deviceNames(s.core)).toEqual(["flag0", "disk0", "disk1"]);
    const ship = shipment([dataRecord(1, "disk1", 0, 8 * KiB), dataRecord(2, "disk0", 4 * KiB, 4 * KiB)]);
    expect(await s.core.ship(ship.message, ship.payload)).toMatchObject({ type: "shipAck", appliedLsn: 2 });
    const plain = await readPlain(disk1.path, 8 * KiB);
    expect(Buffer.compare(plain, ship.payload.subarray(0, 8 * KiB))).toBe(0);

    await s.managed.apply(await s.managed.validate({ devices: [disk1] }, next));
    expect(deviceNames(s.core)).toEqual(["flag0", "disk1"]);
    const after = shipment([dataRecord(3, "disk0", 0, 4 * KiB)]);
    expect(await s.core.ship(after.message, after.payload)).toMatchObject({ type: "shipNack", code: "DEVICE_UNKNOWN" });
  });

  test("at start, a committed device that a --device flag now names (or whose path it has) is not opened; the others are", async () => {
    const dir = mkdtempSync(join(tmpdir(), "druvaa-managed-replica-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const failovers = await Failovers.load(join(dir, "state"));
    const flagPath = join(dir, "flag.img");
    createReplicaImageSync(flagPath, primaryBytes);
    const managed = new ManagedDevices({ flagDevices: new Map([["disk0", flagPath]]), failovers, declaredSizeBytes: new Map() });
    cleanups.push(() => managed.close());
    const spec = (name: string, path: string) => ({ name, path, sizeBytes: replicaImageBytes(primaryBytes), primarySizeBytes: primaryBytes });
    const committed = { devices: [spec("disk0", join(dir, "disk0.img")), spec("other", flagPath), spec("disk1", join(dir, "disk1.img"))] };
    await expect(managed.apply(committed)).rejects.toMatchObject({ code: "DEVICE_NAME_TAKEN", message: expect.stringContaining("--device flag disk0") });
    expect(managed.devices.map((entry) => entry.name)).toEqual(["disk1"]);
    expect(existsSync(join(dir, "disk0.img"))).toBe(false);
  });

  test("a device mid-resync cannot be dropped (prepare nor apply); after its resyncEnd it can", async () => {
    const s = await setup();
    const resync = shipment([{ ...dataRecord(1, "disk0", 0, 8 * KiB), flags: recordFlags.resync }]);
    expect((await s.core.ship(resync.message, resync.payload)).type).toBe("shipAck");
    expect(await refusalOf(s, [], false)).toMatchObject({ code: "DEVICE_RESYNCING", field: "devices" });
    expect(await refusalOf(s, [{ ...s.disk0, path: join(s.dir, "elsewhere.img") }], false)).toMatchObject({ code: "DEVICE_RESYNCING", field: "devices[0].path" });
    await expect(s.managed.apply({ devices: [] })).rejects.toMatchObject({ code: "DEVICE_RESYNCING" });
    expect(deviceNames(s.core)).toEqual(["flag0", "disk0"]);
    const end = shipment([{ lsn: 2, device: "disk0", offset: 0, length: 0, flags: recordFlags.resyncEnd }]);
    expect((await s.core.ship(end.message, end.payload)).type).toBe("shipAck");
    await s.managed.apply(await s.managed.validate({ devices: [] }, s.current));
    expect(deviceNames(s.core)).toEqual(["flag0"]);
  });

  test("a failed-over device and one awaiting its seed cannot be dropped", async () => {
    const s = await setup();
    const ship = shipment([dataRecord(1, "disk0", 0, 8 * KiB)]);
    expect((await s.core.ship(ship.message, ship.payload)).type).toBe("shipAck");
    const tracker = await SeedTracker.open(s.stateDir, "disk0", primaryBytes);
    (s.core.recoveryHost.devices.get("disk0") as ReplicaDevice).seed = tracker;
    cleanups.push(() => tracker?.close());
    expect(await refusalOf(s, [], false)).toMatchObject({ code: "DEVICE_SEEDING", field: "devices" });
    (s.core.recoveryHost.devices.get("disk0") as ReplicaDevice).seed = undefined;

    await s.failovers.failover({ device: "disk0", export: `unix:${join(s.dir, "failover.sock")}` });
    const refused = await refusalOf(s, [], false);
    expect(refused).toMatchObject({ code: "DEVICE_FAILED_OVER", field: "devices" });
    expect(refused.message).toContain("failed over");
    expect(deviceNames(s.core)).toEqual(["flag0", "disk0"]);
  });
});
