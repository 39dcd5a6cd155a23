/**
 * Split and join of a WRL (POST /wrl/split, /wrl/join on staging's control port; split.ts) with
 * real client, staging and replica processes, written through the client's NBD export by qemu-io:
 * while split the replica's image does not change though the client keeps writing and staging
 * keeps logging; the split survives a SIGKILL of staging; after the join the replica catches up
 * and equals the primary.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { expectReplicaEqualsPrimary, MiB, plainSha256, qemuIo, sha256File, startSystem, type System } from "../e2e/helpers.ts";

const sizeBytes = 8 * MiB;
let system: System | undefined;

afterEach(async () => {
  await system?.stop();
  system = undefined;
});

async function post(sys: System, path: string, body: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`http://${sys.stagingControl}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json() };
}

async function stagingWrl(sys: System): Promise<any> {
  const status = await sys.status("staging");
  return status.wrls.find((wrl: { name: string }) => wrl.name === sys.wrlName);
}

async function write(sys: System, commands: string[]): Promise<void> {
  const result = await qemuIo(sys.exportUri("disk0"), [...commands, "flush"]);
  expect({ exitCode: result.exitCode, stdout: result.exitCode === 0 ? "" : result.stdout }).toEqual({ exitCode: 0, stdout: "" });
}

/**
 * The replica's image once it has settled: the relay has no session and nothing in flight, and
 * the replica applies nothing and holds no queued shipment; then two hashes in a row agree.
 */
async function settledReplicaHash(sys: System): Promise<string> {
  for (let attempt = 0; attempt < 400; attempt += 1) {
    const wrl = await stagingWrl(sys);
    const replica = await sys.status("replica");
    if (!wrl.replica.connected && wrl.replica.inflightShipments === 0 && !replica.applying && replica.queuedShipments === 0) {
      const first = await plainSha256(sys.replicaPath("disk0"), sizeBytes);
      if (first === (await plainSha256(sys.replicaPath("disk0"), sizeBytes))) return first;
    }
    await Bun.sleep(50);
  }
  throw new Error("the replica never settled after the split");
}

/** The replica's image over a few seconds of polling: every look must be `expected`. */
async function expectFrozen(sys: System, expected: string, looks = 8): Promise<void> {
  for (let look = 0; look < looks; look += 1) {
    await Bun.sleep(300);
    const wrl = await stagingWrl(sys);
    expect({ look, connected: wrl.replica.connected, split: wrl.replica.split }).toEqual({ look, connected: false, split: true });
    expect({ look, sha256: await plainSha256(sys.replicaPath("disk0"), sizeBytes) }).toEqual({ look, sha256: expected });
  }
}

describe("split and join of a WRL with real processes", () => {
  test("split freezes the replica while writes go on (also across a staging SIGKILL); join catches it up", async () => {
    const sys = (system = await startSystem({ sizeBytes }));
    await write(sys, ["write -P 0xa1 0 1M"]);
    await sys.waitDrained(60);

    const split = await post(sys, "/wrl/split", { wrl: sys.wrlName, by: "alice" });
    expect(split.status).toBe(200);
    expect(split.body).toMatchObject({ ok: true, wrl: sys.wrlName, changed: true, split: { by: "alice" } });
    const sinceMs = split.body.split.sinceMs;
    expect(typeof sinceMs).toBe("number");
    const frozen = await settledReplicaHash(sys);
    const replicaAppliedLsn = (await sys.status("replica")).wrls[0].appliedLsn;

    // Writes go on: the client is answered, staging logs them, the replica does not change.
    await write(sys, ["write -P 0xb2 1M 1M", "write -P 0xc3 4M 512k"]);
    const logged = await stagingWrl(sys);
    expect(logged.split).toEqual({ sinceMs, by: "alice" });
    expect(logged.replica).toMatchObject({ split: true, connected: false, lastError: null });
    expect(logged.headLsn).toBeGreaterThan(logged.replica.appliedLsn);
    expect(await sha256File(sys.primaryPath("disk0"), sizeBytes)).not.toBe(frozen);
    await expectFrozen(sys, frozen);
    expect((await sys.status("replica")).wrls[0].appliedLsn).toBe(replicaAppliedLsn);

    // Split again: the same split. An unknown WRL: refused with what is served.
    const again = await post(sys, "/wrl/split", { wrl: sys.wrlName, by: "bob" });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ ok: true, changed: false, split: { sinceMs, by: "alice" } });
    const unknown = await post(sys, "/wrl/split", { wrl: "nope" });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: "WRL_UNKNOWN" });
    expect(unknown.body.error.hint).toContain(sys.wrlName);
    const bad = await post(sys, "/wrl/join", { name: sys.wrlName });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("USAGE");

    // SIGKILL staging and start it again (same state dir and ports): still split.
    await sys.kill("staging", "SIGKILL");
    await sys.restart("staging");
    expect((await stagingWrl(sys)).split).toEqual({ sinceMs, by: "alice" });
    await write(sys, ["write -P 0xd4 6M 1M"]);
    const restarted = await stagingWrl(sys);
    expect(restarted.split).toEqual({ sinceMs, by: "alice" });
    expect(restarted.headLsn).toBeGreaterThan(logged.headLsn);
    await expectFrozen(sys, frozen);

    const joined = await post(sys, "/wrl/join", { wrl: sys.wrlName });
    expect(joined.status).toBe(200);
    expect(joined.body).toEqual({ ok: true, wrl: sys.wrlName, wasSplit: true });
    expect((await stagingWrl(sys)).split).toBeNull();
    await expectReplicaEqualsPrimary(sys);
    expect(await plainSha256(sys.replicaPath("disk0"), sizeBytes)).toBe(await sha256File(sys.primaryPath("disk0"), sizeBytes));
    const rejoined = await post(sys, "/wrl/join", { wrl: sys.wrlName });
    expect(rejoined.body).toEqual({ ok: true, wrl: sys.wrlName, wasSplit: false });
    sys.assertAlive();
  }, 120_000);
});
