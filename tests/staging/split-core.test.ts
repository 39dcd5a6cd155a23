/**
 * Split and join in process (split.ts, split-hold.ts) on a StagingCore with a fake replica: what
 * the process test (split.test.ts) cannot reach cheaply. A relay replaced while split (a managed
 * WRL's relay settings change) still ships nothing; a failback discard runs on a split WRL instead
 * of waiting for the join; the saved split holds a reopened core; requests are checked at the edge.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { discardThrough } from "../../src/roles/staging/failback.ts";
import { splitsFileName, WrlSplits } from "../../src/roles/staging/split.ts";
import { closeTrackedFixtures, trackedFixture, untrackFixture, type Fixture } from "./fixture.ts";
import { applyTo, bytes, CoreClient, KiB, MiB, waitFor } from "./helpers.ts";

const dirs: string[] = [];
afterEach(async () => {
  await closeTrackedFixtures();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function stateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "druvaa-split-"));
  dirs.push(dir);
  return dir;
}

const w0 = (fixture: Fixture) => fixture.core.status().wrls[0]!;

/** Writes `count` 8 KiB blocks to d0 (all acknowledged) and into `model`. */
async function writeBlocks(client: CoreClient, model: Uint8Array, seed: number, count: number): Promise<void> {
  for (let index = 0; index < count; index += 1) {
    const data = bytes(8 * KiB, seed + index);
    const offset = ((seed + index) % 100) * 8 * KiB;
    expect((await client.write("w0", "d0", offset, data)).type).toBe("writeAck");
    applyTo(model, offset, data);
  }
}

/** Gives the relay many chances to ship (it is woken by every append and polls when idle): it must not. */
async function expectNothingShipped(fixture: Fixture, image: Uint8Array, appliedLsn: number): Promise<void> {
  for (let look = 0; look < 10; look += 1) {
    await Bun.sleep(20);
    expect({ look, appliedLsn: w0(fixture).replica.appliedLsn, split: w0(fixture).replica.split, connected: w0(fixture).replica.connected }).toEqual({ look, appliedLsn, split: true, connected: false });
    expect(Buffer.from(fixture.replica.image("d0")).equals(Buffer.from(image))).toBe(true);
  }
}

describe("split and join on a staging core", () => {
  test("a relay replaced while split ships nothing; join ships everything logged meanwhile", async () => {
    const fixture = await trackedFixture();
    const splits = await WrlSplits.open(stateDir(), fixture.core, () => 1_000);
    fixture.core.start();
    const client = new CoreClient(fixture.core);
    expect((await client.attach("w0", "d0", 1 * MiB)).accepted).toBe(true);
    const model = new Uint8Array(1 * MiB);
    await writeBlocks(client, model, 1, 5);
    await fixture.drained();

    const split = await splits.split("w0", "carol");
    expect(split).toEqual({ wrl: "w0", split: { sinceMs: 1_000, by: "carol" }, changed: true, appliedLsn: w0(fixture).headLsn });
    const frozen = fixture.replica.image("d0").slice();
    await writeBlocks(client, model, 20, 6);
    expect(w0(fixture).headLsn).toBeGreaterThan(split.appliedLsn);
    await expectNothingShipped(fixture, frozen, split.appliedLsn);

    // New relay settings (managed.ts): the new relay holds from its start.
    const spec = { name: "w0", wrl: fixture.wrl, devicePaths: ["/wrl/w0.img"], replicaAddress: "replica.test:6003", dialReplica: fixture.replica.dial, targets: { rpoTargetSeconds: 60 } };
    await fixture.core.changeRelay(spec);
    expect(w0(fixture).rpo.targetSeconds).toBe(60);
    await writeBlocks(client, model, 40, 3);
    await expectNothingShipped(fixture, frozen, split.appliedLsn);
    expect(splits.of("w0")).toEqual({ sinceMs: 1_000, by: "carol" });

    expect(await splits.join("w0")).toEqual({ wrl: "w0", wasSplit: true });
    await fixture.drained("the replica to catch up after the join");
    expect(Buffer.from(fixture.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
    expect(w0(fixture).replica.split).toBe(false);
    expect(splits.of("w0")).toBeNull();
  });

  test("a failback discard on a split WRL runs at once; the WRL stays split", async () => {
    const fixture = await trackedFixture();
    const splits = await WrlSplits.open(stateDir(), fixture.core);
    fixture.core.start();
    const client = new CoreClient(fixture.core);
    expect((await client.attach("w0", "d0", 1 * MiB)).accepted).toBe(true);
    await writeBlocks(client, new Uint8Array(1 * MiB), 1, 2);
    await fixture.drained();
    await splits.split("w0");
    await writeBlocks(client, new Uint8Array(1 * MiB), 10, 3);
    const target = fixture.core.wrlHandle("w0")!;
    const headLsn = w0(fixture).headLsn;
    const discarded = await discardThrough(target, headLsn);
    expect(discarded).toMatchObject({ wrl: "w0", discardedRecords: 3, ackedLsn: headLsn });
    expect(w0(fixture).replica.split).toBe(true);
    expect(splits.of("w0")).not.toBeNull();
  });

  test("a saved split holds the relays of a reopened core until the join", async () => {
    const dir = stateDir();
    const first = await trackedFixture();
    const splits = await WrlSplits.open(dir, first.core, () => 5_000);
    first.core.start();
    const client = new CoreClient(first.core);
    expect((await client.attach("w0", "d0", 1 * MiB)).accepted).toBe(true);
    const model = new Uint8Array(1 * MiB);
    await writeBlocks(client, model, 1, 3);
    await first.drained();
    const { appliedLsn } = await splits.split("w0");
    await writeBlocks(client, model, 10, 4);
    expect(await Bun.file(join(dir, splitsFileName)).json()).toEqual({ version: 1, splits: [{ wrl: "w0", wrlUuid: w0(first).uuid, sinceMs: 5_000 }] });
    await first.close();
    untrackFixture(first);

    const second = await trackedFixture({ disk: first.disk, reopen: true, replica: first.replica, store: first.store });
    const reopened = await WrlSplits.open(dir, second.core);
    second.core.start();
    expect(reopened.of("w0")).toEqual({ sinceMs: 5_000 });
    expect(w0(second).headLsn).toBeGreaterThan(appliedLsn);
    await expectNothingShipped(second, first.replica.image("d0").slice(), appliedLsn);
    await reopened.join("w0");
    await second.drained("the replica to catch up after the join");
    expect(Buffer.from(second.replica.image("d0")).equals(Buffer.from(model))).toBe(true);
    expect(await Bun.file(join(dir, splitsFileName)).json()).toEqual({ version: 1, splits: [] });
  });

  test("unknown WRLs are refused with what is served; a damaged splits file is refused, not guessed at", async () => {
    const fixture = await trackedFixture();
    const dir = stateDir();
    const splits = await WrlSplits.open(dir, fixture.core);
    await expect(splits.split("nope")).rejects.toMatchObject({ code: "WRL_UNKNOWN", hint: expect.stringContaining("w0") });
    await expect(splits.join("nope")).rejects.toMatchObject({ code: "WRL_UNKNOWN" });
    expect(await splits.join("w0")).toEqual({ wrl: "w0", wasSplit: false });
    await Bun.write(join(dir, splitsFileName), JSON.stringify({ version: 1, splits: [{ wrl: "w0" }] }));
    await expect(WrlSplits.open(dir, fixture.core)).rejects.toMatchObject({ code: "STATE_CORRUPT" });
    // A split of a WRL no longer served is dropped (and the file rewritten without it).
    await Bun.write(join(dir, splitsFileName), JSON.stringify({ version: 1, splits: [{ wrl: "gone", wrlUuid: "u", sinceMs: 1 }] }));
    const reopened = await WrlSplits.open(dir, fixture.core);
    expect(reopened.of("gone")).toBeNull();
    expect(await Bun.file(join(dir, splitsFileName)).json()).toEqual({ version: 1, splits: [] });
  });
});
