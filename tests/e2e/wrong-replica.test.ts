/**
 * Bad input: staging is restarted pointing its WRL at another replica server (a typo in
 * --replica, or a replica whose state directory was wiped). That replica never got the records
 * the WRL already freed, so neither the new writes nor a resync of the client's dirty blocks
 * may be applied there: the relay refuses it at resume with REPLICA_MISSING_RECORDS and a hint,
 * the replica's image is not touched, and pointing staging back at the right replica delivers
 * everything.
 */
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { createReplicaImage, druvaa, expectReplicaEqualsPrimary, expectResynced, MiB, qemuIo, sha256File, startSystem, startTracked, type System } from "./helpers.ts";

const sizeBytes = 16 * MiB;
let system: System | undefined;
const extra: Awaited<ReturnType<typeof startTracked>>[] = [];

afterEach(async () => {
  for (const role of extra.splice(0)) {
    role.proc.kill("SIGKILL");
    await role.proc.exited;
  }
  await system?.stop();
  system = undefined;
});

function stagingArgs(sys: System, replicaListen: string): string[] {
  return ["staging", "serve", "--listen", sys.stagingListen, "--control", sys.stagingControl, "--wrl", `${sys.wrlName}=${join(sys.dir, "wrl.img")}`, "--replica", `${sys.wrlName}=${replicaListen}`, "--state-dir", join(sys.dir, "staging-state")];
}

test("staging pointed at another replica: REPLICA_MISSING_RECORDS, that replica is not written; back at the right one, everything arrives", async () => {
  const sys = (system = await startSystem({ sizeBytes, changeMap: true }));
  expect((await qemuIo(sys.exportUri("disk0"), ["write -P 0x11 0 1M", "write -P 0x22 4M 512k"])).exitCode).toBe(0);
  await sys.waitDrained(30);

  const otherImage = join(sys.dir, "other-replica.img");
  await createReplicaImage(otherImage, sizeBytes);
  const other = await startTracked("replica", ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `disk0=${otherImage}`, "--state-dir", join(sys.dir, "other-replica-state")]);
  extra.push(other);
  // Started: the image now carries its replica marker (a new replica is formatted), nothing else.
  const pristine = await sha256File(otherImage);

  // Staging comes back on the same ports (the client reconnects) but relays to the other replica.
  const rightReplica = sys.replicaListen;
  const stagingControl = sys.stagingControl;
  await sys.kill("staging", "SIGTERM");
  const wrong = await startTracked("staging", stagingArgs(sys, String(other.ready.listen)));
  extra.push(wrong);
  expect((await qemuIo(sys.exportUri("disk0"), ["write -P 0x33 8M 1M"])).exitCode).toBe(0);

  type LastError = { code: string; message: string; hint?: string } | null;
  let lastError: LastError = null;
  for (let tries = 0; tries < 100 && lastError?.code !== "REPLICA_MISSING_RECORDS"; tries += 1) {
    await Bun.sleep(100);
    const status = (await (await fetch(`http://${stagingControl}/status`)).json()) as { wrls: { replica: { lastError: LastError } }[] };
    lastError = status.wrls[0]!.replica.lastError;
  }
  expect(lastError?.code).toBe("REPLICA_MISSING_RECORDS");
  expect(lastError?.message).toContain("not the replica this WRL replicates to");
  expect(lastError?.hint).toContain("--replica");
  // `druvaa status` shows the refusal to the operator too.
  const shown = await druvaa(["status", "--connect", stagingControl]);
  expect(shown.stdout + shown.stderr).toContain("REPLICA_MISSING_RECORDS");

  // Nothing reached the other replica.
  other.proc.kill("SIGTERM");
  await other.proc.exited;
  expect(await sha256File(otherImage)).toBe(pristine);

  // Back at the right replica: the writes logged meanwhile arrive, replica == primary.
  wrong.proc.kill("SIGTERM");
  await wrong.proc.exited;
  await sys.restart("staging");
  expect(sys.stagingListen).toBeDefined();
  expect(rightReplica).toBe(sys.replicaListen);
  // The client was disconnected while staging was down: in sync again first, then compared.
  await expectResynced(sys);
  await expectReplicaEqualsPrimary(sys);
}, 90_000);
