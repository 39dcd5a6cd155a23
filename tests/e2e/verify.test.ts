/**
 * Online verify with real processes (client with a change map, staging, replica): after qemu-io
 * writes `druvaa verify` finds the pair equal (exit 0), also while fio keeps writing over the
 * range being verified (no false report); a 4 KiB block damaged in the replica's image file while
 * the replica is stopped is reported exactly (exit 1, one 4 KiB range: the change map's block);
 * `druvaa verify --repair` resyncs it (exit 0) and the restored replica equals the primary again.
 * Needs the replica side of verify probes (it evaluates them at their place in the write order).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { open } from "node:fs/promises";
import { clientWrites, druvaa, expectFioOk, expectReplicaEqualsPrimary, fio, MiB, qemuIo, startSystem, type RunResult, type System } from "./helpers.ts";

const sizeBytes = 64 * MiB;
const damagedAt = 48 * MiB + 8 * 1024; // nothing writes there
let sys: System | undefined;

beforeAll(async () => {
  sys = await startSystem({ sizeBytes, changeMap: true });
}, 60_000);

afterAll(async () => {
  await sys?.stop();
});

async function verify(args: string[]): Promise<{ result: RunResult; report: Record<string, any> }> {
  const result = await druvaa(["verify", "--connect", sys!.clientControl, "--device", "disk0", "--timeout", "60s", "--json", ...args], 75_000);
  let report: Record<string, any>;
  try {
    report = JSON.parse(result.stdout);
  } catch {
    throw new Error(`druvaa verify exited ${result.exitCode} without a JSON report:\n${result.stderr}\n${result.stdout}`);
  }
  return { result, report };
}

describe("druvaa verify against a real replica", () => {
  test("equal after writes; no false report under concurrent writes; a damaged replica block found exactly and repaired", async () => {
    const s = sys!;
    const writes = await qemuIo(s.exportUri("disk0"), ["write -P 0x11 0 4M", "write -P 0x22 10M 1M", "write -z 20M 2M", "write -P 0x33 30M 512k", "write -P 0x44 63M 1M"]);
    expect(writes.exitCode).toBe(0);

    const equal = await verify([]);
    expect({ exit: equal.result.exitCode, report: equal.report }).toMatchObject({ exit: 0, report: { ok: true, equal: true, checkedBytes: sizeBytes, differing: [] } });

    // fio rewrites the first 32 MiB while the whole device is verified.
    const workload = fio(s.exportUri("disk0"), "during-verify", ["--rw=randwrite", "--bsrange=4k-64k", "--iodepth=8", "--size=32M", "--time_based", "--runtime=6", "--randseed=9"], { timeoutMs: 60_000, cwd: s.dir });
    await Bun.sleep(1_000);
    const writesBefore = await clientWrites(s);
    const during = await verify([]);
    const writesAfter = await clientWrites(s);
    expectFioOk(await workload);
    // The application did write while the pass ran, or this proves nothing.
    expect(writesAfter).toBeGreaterThan(writesBefore);
    console.log(`verify under fio: ${during.report.seconds?.toFixed(2)} s, ${during.report.mbPerSecond?.toFixed(0)} MB/s, ${writesAfter - writesBefore} writes meanwhile`);
    expect({ exit: during.result.exitCode, report: during.report }).toMatchObject({ exit: 0, report: { equal: true, differing: [] } });

    // Damage one block of the replica's image behind its back.
    await s.waitDrained(60);
    await s.kill("replica", "SIGTERM");
    const image = await open(s.replicaPath("disk0"), "r+");
    try {
      await image.write(new Uint8Array(4096).fill(0xee), 0, 4096, damagedAt);
      await image.datasync();
    } finally {
      await image.close();
    }
    await s.restart("replica");

    const damaged = await verify([]);
    expect({ exit: damaged.result.exitCode, report: damaged.report }).toMatchObject({ exit: 1, report: { equal: false, differing: [{ offset: damagedAt, length: 4096 }], differingBytes: 4096 } });

    const repaired = await verify(["--repair"]);
    expect({ exit: repaired.result.exitCode, report: repaired.report }).toMatchObject({ exit: 0, report: { repaired: true, differing: [{ offset: damagedAt, length: 4096 }] } });
    await expectReplicaEqualsPrimary(s);
    const after = await verify([]);
    expect({ exit: after.result.exitCode, equal: after.report.equal }).toEqual({ exit: 0, equal: true });
    s.assertAlive();
  }, 240_000);

  test("initial sync network: the whole device is sent once; a restarted client does not send it again", async () => {
    const pair = await startSystem({ sizeBytes: 32 * MiB, changeMap: true, clientFlags: ["--initial-sync", "network"] });
    try {
      const until = async (what: string, check: (status: any) => boolean) => {
        const deadline = Date.now() + 60_000;
        for (;;) {
          const status = await pair.status("client");
          if (check(status)) return status;
          if (Date.now() > deadline) throw new Error(`client status never showed ${what}: ${JSON.stringify(status)}`);
          await Bun.sleep(100);
        }
      };
      const first = await until("initialSync done", (status) => status.initialSync?.state === "done");
      expect(first.initialSync).toMatchObject({ mode: "network", progress: { doneBytes: 32 * MiB, totalBytes: 32 * MiB } });
      expect(first.lastResync?.sentBytes).toBe(32 * MiB);
      await pair.restart("client");
      const again = await until("initialSync done after the restart", (status) => status.initialSync?.state === "done");
      expect({ dirtyBytes: again.dirtyBytes, lastResync: again.lastResync, mode: again.mode }).toEqual({ dirtyBytes: 0, lastResync: null, mode: "connected" });
      await expectReplicaEqualsPrimary(pair);
    } finally {
      await pair.stop();
    }
  }, 120_000);
});
