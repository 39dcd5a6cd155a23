/**
 * The scratch directory, WRL and real `druvaa replica apply` that the staging process tests run
 * against: created before the file's tests, every process started and every test client killed
 * and the directory removed after them (also when a test failed).
 */
import { afterAll, beforeAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { druvaa } from "../helpers/cli.ts";
import { startRole, type RoleProcess } from "../helpers/role-process.ts";
import { createReplicaImageSync } from "../helpers/replica-image.ts";
import type { TestClient } from "./test-client.ts";

export interface ProcessFixture {
  scratch: string;
  wrlPath: string;
  replicaPath: string;
  /** Processes to kill at the end (the replica is one). */
  running: Set<RoleProcess>;
  clients: TestClient[];
  /** Set once beforeAll ran. */
  replica: RoleProcess;
}

/** Registers the hooks; `tag` names the scratch dir and the replica's node id. */
export function processFixture(tag: string, deviceBytes: number): ProcessFixture {
  const scratch = mkdtempSync(join(tmpdir(), `druvaa-staging-${tag}-`));
  const fixture: ProcessFixture = { scratch, wrlPath: join(scratch, "wrl0.img"), replicaPath: join(scratch, "replica-d0.img"), running: new Set(), clients: [], replica: undefined as unknown as RoleProcess };
  beforeAll(async () => {
    const created = await druvaa(["wrl", "create", "--primary", fixture.wrlPath, "--size", "32M", "--json"]);
    if (created.exitCode !== 0) throw new Error(`wrl create failed: ${created.stderr}`);
    createReplicaImageSync(fixture.replicaPath, deviceBytes);
    fixture.replica = await startRole(
      ["replica", "apply", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--restore", "127.0.0.1:0", "--device", `d0=${fixture.replicaPath}`, "--state-dir", join(scratch, "replica-state"), "--node-id", `replica-${tag}`],
      join(scratch, "replica.log"),
    );
    fixture.running.add(fixture.replica);
  });
  afterAll(async () => {
    for (const client of fixture.clients) client.connection.abort();
    for (const role of fixture.running) role.proc.kill("SIGKILL");
    await Promise.all([...fixture.running].map((role) => role.proc.exited));
    rmSync(scratch, { recursive: true, force: true });
  });
  return fixture;
}
