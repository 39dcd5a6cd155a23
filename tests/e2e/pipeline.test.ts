/**
 * The whole pipeline with real processes and peers nobody here wrote: fio (libnbd engine, crc32c
 * verify) and qemu-io write through the client's NBD export; after the staging server reports the
 * replica drained, `druvaa restore` must give back exactly the primary (sha256). Staging and the
 * replica are SIGKILLed in the middle of a workload and restarted: fio must still finish without
 * an error (its writes just stall meanwhile) and the replica must converge to the primary.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { clientWrites, expectFioOk, expectReplicaEqualsPrimary, fio, MiB, qemuIo, readRange, startSystem, type Role, type RunResult, type System } from "./helpers.ts";

const sizeBytes = 32 * MiB;
let system: System | undefined;

afterEach(async () => {
  await system?.stop();
  system = undefined;
});



const randwrite = (size: string) => ["--rw=randwrite", "--bs=4k", "--iodepth=16", `--size=${size}`, "--verify=crc32c", "--do_verify=1", "--randseed=7"];

/** Resolves once the client has completed at least `writes` NBD writes (or fio ended first). */
async function untilClientWrote(sys: System, writes: number, fioDone: () => boolean): Promise<number> {
  for (;;) {
    const done = await clientWrites(sys);
    if (done >= writes || fioDone()) return done;
    await Bun.sleep(25);
  }
}

/** Runs fio in the background, SIGKILLs `victims` once it is well under way, restarts them. */
async function killMidWorkload(sys: System, victims: Role[]): Promise<{ fio: RunResult; writesAtKill: number }> {
  let finished = false;
  // Far more than the workload needs: a stalled fio (staging down) must wait, not give up.
  const running = fio(sys.exportUri("disk0"), "crash", randwrite("24M"), { timeoutMs: 75_000, cwd: sys.dir }).finally(() => (finished = true));
  const writesAtKill = await untilClientWrote(sys, 1500, () => finished);
  for (const role of victims) await sys.kill(role, "SIGKILL");
  await Bun.sleep(300);
  // The replica first: a restarted staging then reaches it at once.
  for (const role of (["replica", "staging", "client"] as Role[]).filter((r) => victims.includes(r))) await sys.restart(role);
  return { fio: await running, writesAtKill };
}

describe("real NBD clients through client → staging → replica", () => {
  test("fio random 4k, sequential 1M and a random read/write mix with crc32c verify; the restored replica equals the primary", async () => {
    const sys = (system = await startSystem({ sizeBytes }));
    const uri = sys.exportUri("disk0");
    expectFioOk(await fio(uri, "rand4k", randwrite("16M"), { cwd: sys.dir }));
    expectFioOk(await fio(uri, "seq1m", ["--rw=write", "--bs=1M", "--iodepth=8", "--size=32M", "--verify=crc32c", "--do_verify=1"], { cwd: sys.dir }));
    expectFioOk(await fio(uri, "mix", ["--rw=randrw", "--rwmixwrite=60", "--bs=8k", "--iodepth=16", "--size=16M", "--offset=8M", "--verify=crc32c", "--do_verify=1", "--randseed=11"], { cwd: sys.dir }));
    const status = await sys.status("client");
    expect(status.devices[0].writes).toBeGreaterThan(4096);
    await expectReplicaEqualsPrimary(sys);
    sys.assertAlive();
  }, 60_000);

  test("qemu-io overlapping pattern writes, concurrent overlapping aio writes, write -z and discard replicate exactly", async () => {
    const sys = (system = await startSystem({ sizeBytes }));
    const K = 1024;
    const result = await qemuIo(sys.exportUri("disk0"), [
      `write -P 0xa1 0 1M`,
      `write -P 0xb2 ${512 * K} 1M`, // overlaps the previous write: the later one wins
      `write -z ${768 * K} ${128 * K}`,
      `discard ${1536 * K} ${64 * K}`,
      `write -P 0xc3 ${1600 * K} 4k`,
      // Overlapping writes in flight together: whichever order the client gives them, the replica
      // must end up with the same bytes as the primary.
      `aio_write -P 0xd4 ${4 * MiB} 256k`,
      `aio_write -P 0xe5 ${4 * MiB + 128 * K} 256k`,
      `aio_write -z ${4 * MiB + 192 * K} 64k`,
      `aio_flush`,
      `write -P 0xf6 ${sizeBytes - 64 * K} 64k`, // the last block of the device
      `flush`,
    ]);
    expect(result.exitCode).toBe(0);
    await sys.waitDrained(60);
    const restored = await sys.restore("disk0");
    const expectFilled = async (offset: number, length: number, value: number) => {
      const bytes = await readRange(restored, offset, length);
      expect({ offset, length, differing: bytes.findIndex((b) => b !== value) }).toEqual({ offset, length, differing: -1 });
    };
    await expectFilled(0, 512 * K, 0xa1);
    await expectFilled(512 * K, 256 * K, 0xb2);
    await expectFilled(768 * K, 128 * K, 0);
    await expectFilled(896 * K, 640 * K, 0xb2);
    await expectFilled(1536 * K, 64 * K, 0);
    await expectFilled(1600 * K, 4 * K, 0xc3);
    await expectFilled(sizeBytes - 64 * K, 64 * K, 0xf6);
    await expectReplicaEqualsPrimary(sys);
  }, 60_000);

  test("SIGKILL staging mid-workload and restart it: fio finishes cleanly, the replica converges", async () => {
    const sys = (system = await startSystem({ sizeBytes }));
    const { fio: result, writesAtKill } = await killMidWorkload(sys, ["staging"]);
    expectFioOk(result);
    // The kill must have landed mid-workload, or this test proved nothing.
    expect(writesAtKill).toBeLessThan(6144);
    await expectReplicaEqualsPrimary(sys);
    sys.assertAlive();
  }, 90_000);

  test("SIGKILL the replica mid-stream and restart it: it resumes from its applied LSN and converges", async () => {
    const sys = (system = await startSystem({ sizeBytes }));
    const { fio: result, writesAtKill } = await killMidWorkload(sys, ["replica"]);
    expectFioOk(result);
    expect(writesAtKill).toBeLessThan(6144);
    await expectReplicaEqualsPrimary(sys);
    sys.assertAlive();
  }, 90_000);

  test("SIGKILL staging and the replica together mid-workload: both restart and nothing is lost", async () => {
    const sys = (system = await startSystem({ sizeBytes }));
    const { fio: result, writesAtKill } = await killMidWorkload(sys, ["staging", "replica"]);
    expectFioOk(result);
    expect(writesAtKill).toBeLessThan(6144);
    await expectReplicaEqualsPrimary(sys);
    sys.assertAlive();
  }, 90_000);

  test("two devices on one client in one WRL, written at once: both restored equal their primaries", async () => {
    const sys = (system = await startSystem({ sizeBytes, devices: ["disk0", "disk1"] }));
    const [a, b] = await Promise.all([
      fio(sys.exportUri("disk0"), "dev0", randwrite("12M"), { cwd: sys.dir }),
      fio(sys.exportUri("disk1"), "dev1", ["--rw=write", "--bs=256k", "--iodepth=8", "--size=24M", "--verify=crc32c", "--do_verify=1"], { cwd: sys.dir }),
    ]);
    expectFioOk(a!);
    expectFioOk(b!);
    const staging = await sys.status("staging");
    expect((staging.wrls[0].devices as { name: string }[]).map((d) => d.name).sort()).toEqual(["disk0", "disk1"]);
    await expectReplicaEqualsPrimary(sys);
  }, 60_000);
});
