/**
 * `druvaa panel` as a real process, watching a real `druvaa replica apply`: live status, the
 * COMPONENT_UNREACHABLE alert after a SIGKILL and its clearing after a restart, a clean SIGTERM,
 * and the database kept across panel restarts (and refused when newer).
 */
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { schemaVersionLatest } from "../../src/roles/panel/migrations.ts";
import { druvaa } from "../helpers/cli.ts";
import { createReplicaImageSync } from "../helpers/replica-image.ts";
import { startRole, type RoleProcess } from "../helpers/role-process.ts";
import { adminClient, ApiClient, strongPassword } from "./helpers.ts";

const scratch = mkdtempSync(join(tmpdir(), "druvaa-panel-proc-"));
const dbPath = join(scratch, "panel.db");
const running = new Set<RoleProcess>();

afterAll(async () => {
  for (const role of running) role.proc.kill("SIGKILL");
  await Promise.all([...running].map((role) => role.proc.exited));
  rmSync(scratch, { recursive: true, force: true });
});

async function startPanel(tag: string): Promise<RoleProcess> {
  const panel = await startRole(["panel", "--listen", "127.0.0.1:0", "--db", dbPath, "--insecure"], join(scratch, `panel-${tag}.log`));
  running.add(panel);
  return panel;
}

async function startReplica(tag: string, control = "127.0.0.1:0"): Promise<RoleProcess> {
  const replica = await startRole(["replica", "apply", "--listen", "127.0.0.1:0", "--control", control, "--restore", "127.0.0.1:0", "--device", `disk0=${join(scratch, "disk0.img")}`, "--state-dir", join(scratch, "replica-state"), "--node-id", "dr-site"], join(scratch, `replica-${tag}.log`));
  running.add(replica);
  return replica;
}

async function stop(role: RoleProcess, signal: "SIGTERM" | "SIGKILL"): Promise<number> {
  role.proc.kill(signal);
  const code = await role.proc.exited;
  running.delete(role);
  return code;
}

/** Polls `check` every 200 ms until it returns a value, or fails after `timeoutMs`. */
async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(200);
  }
}

describe("druvaa panel process", () => {
  test("shows a live replica, raises COMPONENT_UNREACHABLE after SIGKILL, clears it after a restart, stops cleanly", async () => {
    createReplicaImageSync(join(scratch, "disk0.img"), 1024 * 1024);
    const panel = await startPanel("first");
    expect(panel.ready).toMatchObject({ event: "ready", role: "panel", schemaVersion: schemaVersionLatest });
    const url = String(panel.ready.url);
    const admin = await adminClient(url);
    let replica = await startReplica("first");
    const control = String(replica.ready.control);
    expect((await admin.post("/api/components", { name: "dr1", role: "replica", control })).status).toBe(201);

    const status = await admin.get("/api/status");
    expect(status.status).toBe(200);
    expect(status.body.components).toHaveLength(1);
    expect(status.body.components[0]).toMatchObject({ name: "dr1", role: "replica", control, reachable: true, status: { role: "replica", nodeId: "dr-site" } });

    await stop(replica, "SIGKILL");
    const raised = await waitFor("the unreachable alert", 10_000, async () => {
      const alerts = (await admin.get("/api/alerts")).body.alerts as { component: string; code: string; clearedAt: string | null; message: string }[];
      return alerts.find((alert) => alert.component === "dr1" && alert.code === "COMPONENT_UNREACHABLE" && alert.clearedAt === null);
    });
    expect(raised.message).toContain(control);
    const down = await admin.get("/api/status");
    expect(down.body.components[0]).toMatchObject({ name: "dr1", reachable: false, error: { code: "NET_CONNECT_FAILED" } });
    await Bun.sleep(2_500); // another poll round or two: still one alert, not one a round
    expect(((await admin.get("/api/alerts")).body.alerts as unknown[]).length).toBe(1);

    replica = await startReplica("second", control);
    await waitFor("the alert to clear", 10_000, async () => {
      const alerts = (await admin.get("/api/alerts")).body.alerts as { clearedAt: string | null }[];
      return alerts.length === 1 && alerts[0]!.clearedAt !== null ? true : undefined;
    });
    expect((await admin.get("/api/status")).body.components[0].reachable).toBe(true);

    expect(await stop(panel, "SIGTERM")).toBe(0);
    await stop(replica, "SIGTERM");

    // A restarted panel keeps its users, components and alerts (no first-run admin again).
    const again = await startPanel("second");
    const client = new ApiClient(String(again.ready.url));
    expect((await client.login("admin", "druvaa")).status).toBe(401);
    expect((await client.login("admin", strongPassword)).body.mustChangePassword).toBe(false);
    expect((await client.get("/api/components")).body.components.map((c: { name: string }) => c.name)).toEqual(["dr1"]);
    // The cleared alert is kept; the replica is stopped now, so a new one may be open already.
    const kept = (await client.get("/api/alerts")).body.alerts as { code: string; clearedAt: string | null }[];
    expect(kept.filter((alert) => alert.clearedAt !== null)).toHaveLength(1);
    expect(await stop(again, "SIGTERM")).toBe(0);
  }, 60_000);

  test("a database from a newer druvaa: the panel refuses to start, with the reason and a hint", async () => {
    const path = join(scratch, "newer.db");
    const db = new Database(path, { create: true, strict: true });
    db.run(`CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT; INSERT INTO schema_version VALUES (${schemaVersionLatest + 5})`);
    db.close();
    const result = await druvaa(["panel", "--listen", "127.0.0.1:0", "--db", path, "--insecure"]);
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toContain(`schema version ${schemaVersionLatest + 5}, newer than this druvaa knows`);
    expect(result.stderr).toContain("hint:");
  });

  test("without --db the database is panel.db in the panel's state directory, and a restart finds it there", async () => {
    const stateRoot = join(scratch, "state-root");
    const env = { DRUVAA_STATE_DIR: stateRoot };
    const first = await startRole(["panel", "--listen", "127.0.0.1:0", "--insecure"], join(scratch, "panel-default-db-1.log"), env);
    running.add(first);
    const expected = join(stateRoot, "panel", "panel.db");
    expect(first.ready.db).toBe(expected);
    await adminClient(String(first.ready.url)); // changes the first-run password
    expect(await stop(first, "SIGTERM")).toBe(0);
    expect(await Bun.file(expected).exists()).toBe(true);

    const second = await startRole(["panel", "--listen", "127.0.0.1:0", "--insecure"], join(scratch, "panel-default-db-2.log"), env);
    running.add(second);
    const client = new ApiClient(String(second.ready.url));
    expect((await client.login("admin", "druvaa")).status).toBe(401);
    expect((await client.login("admin", strongPassword)).status).toBe(200);
    expect(await stop(second, "SIGTERM")).toBe(0);
  });

  test("plain HTTP is refused on a non-loopback address, and without --insecure", async () => {
    const remote = await druvaa(["panel", "--listen", "0.0.0.0:0", "--db", join(scratch, "x.db"), "--insecure"]);
    expect(remote.exitCode).toBe(2);
    expect(remote.stderr).toContain("not a loopback address");
    const bare = await druvaa(["panel", "--db", join(scratch, "x.db")]);
    expect(bare.exitCode).toBe(2);
    expect(bare.stderr).toContain("plaintext was not asked for");
    const help = await druvaa(["panel", "--help"]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain("EXAMPLES");
  });
});
