/** The panel database: migrations, reopening, a newer schema refused, parameterised queries. */
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DruvaaError } from "../../src/errors.ts";
import { schemaVersionLatest } from "../../src/roles/panel/migrations.ts";
import { hashPassword, passwordProblem, verifyPassword } from "../../src/roles/panel/password.ts";
import { PanelStore } from "../../src/roles/panel/store.ts";
import { LoginLimiter } from "../../src/roles/panel/limiter.ts";

const scratch = mkdtempSync(join(tmpdir(), "druvaa-panel-store-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("panel database", () => {
  test("a fresh database gets the whole schema, WAL and strict tables", () => {
    const path = join(scratch, "fresh.db");
    const store = PanelStore.open(path);
    expect(store.openedAtVersion).toBe(0);
    store.close();
    const db = new Database(path, { readonly: true, strict: true });
    const tables = (db.query("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string; sql: string }[]);
    expect(tables.map((t) => t.name)).toEqual(["activity", "alerts", "changemaps", "component_config", "components", "config_tx", "digest_settings", "hosts", "mail_recipients", "mail_settings", "metric_samples", "pairs", "schema_version", "sessions", "users", "wrls"]);
    for (const table of tables) expect(table.sql).toMatch(/\bSTRICT(, WITHOUT ROWID)?$/);
    expect(Number((db.query("SELECT version FROM schema_version").get() as { version: number }).version)).toBe(schemaVersionLatest);
    expect((db.query("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode).toBe("wal");
    db.close();
  });

  test("reopening keeps the data and does not migrate again", () => {
    const path = join(scratch, "reopen.db");
    const first = PanelStore.open(path);
    expect(first.addUser("alice", "operator", "scrypt$x", false)).toBe(true);
    expect(first.addComponent("dr1", "replica", "10.0.0.9:6004", "alice")).toBe(true);
    first.recordActivity("alice", "component.add", { name: "dr1" });
    first.close();
    const again = PanelStore.open(path);
    expect(again.openedAtVersion).toBe(schemaVersionLatest);
    expect(again.getUser("alice")?.role).toBe("operator");
    expect(again.listComponents().map((c) => c.name)).toEqual(["dr1"]);
    expect(again.listActivity(10)[0]).toMatchObject({ user: "alice", action: "component.add", detail: { name: "dr1" } });
    again.close();
  });

  test("a database from a newer druvaa is refused with a clear error, and left as it is", () => {
    const path = join(scratch, "newer.db");
    PanelStore.open(path).close();
    const db = new Database(path, { strict: true });
    db.run(`UPDATE schema_version SET version = ${schemaVersionLatest + 1}`);
    db.close();
    let error: unknown;
    try {
      PanelStore.open(path).close();
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(DruvaaError);
    expect((error as DruvaaError).code).toBe("PANEL_DB_TOO_NEW");
    expect((error as DruvaaError).message).toContain(`schema version ${schemaVersionLatest + 1}`);
    expect((error as DruvaaError).hint).toContain("newer druvaa");
    const check = new Database(path, { readonly: true, strict: true });
    expect(Number((check.query("SELECT version FROM schema_version").get() as { version: number }).version)).toBe(schemaVersionLatest + 1);
    check.close();
  });

  test("a file that is not a database is refused, not crashed on", async () => {
    const path = join(scratch, "garbage.db");
    await Bun.write(path, "this is not sqlite ".repeat(100));
    expect(() => PanelStore.open(path)).toThrow(/cannot be used|cannot open/);
  });

  test("values that look like SQL are stored as data (parameterised queries)", () => {
    const store = PanelStore.open(join(scratch, "inert.db"));
    const evil = "x'); DROP TABLE users; --";
    store.recordActivity(evil, evil, { note: evil });
    expect(store.addUser("bob", "viewer", "h", false)).toBe(true);
    expect(store.listActivity(1)[0]).toMatchObject({ user: evil, action: evil, detail: { note: evil } });
    expect(store.getUser(evil)).toBeUndefined();
    expect(store.countUsers()).toBe(1);
    store.close();
  });

  test("alerts: raised once while open, cleared, raised again; none for a removed component", () => {
    const store = PanelStore.open(join(scratch, "alerts.db"));
    store.addComponent("c1", "client", "127.0.0.1:6007", "admin");
    expect(store.raiseAlert("c1", "COMPONENT_UNREACHABLE", "down")).toBe(true);
    expect(store.raiseAlert("c1", "COMPONENT_UNREACHABLE", "down")).toBe(false);
    expect(store.clearAlert("c1", "COMPONENT_UNREACHABLE")).toBe(true);
    expect(store.clearAlert("c1", "COMPONENT_UNREACHABLE")).toBe(false);
    expect(store.raiseAlert("c1", "COMPONENT_UNREACHABLE", "down again")).toBe(true);
    store.deleteComponent("c1");
    expect(store.raiseAlert("c1", "COMPONENT_UNREACHABLE", "gone")).toBe(false);
    expect(store.listAlerts(10).every((alert) => alert.clearedAt !== null)).toBe(true);
    store.close();
  });
});

describe("panel passwords", () => {
  test("scrypt hashes: salted, parameters stored, right and wrong passwords", async () => {
    const [a, b] = [await hashPassword("a long passphrase"), await hashPassword("a long passphrase")];
    expect(a).toMatch(/^scrypt\$32768\$8\$1\$/);
    expect(a).not.toBe(b);
    expect(await verifyPassword("a long passphrase", a)).toBe(true);
    expect(await verifyPassword("a long passphrasE", a)).toBe(false);
    expect(await verifyPassword("anything", "not a hash")).toBe(false);
  });

  test("policy: at least 10 characters, not the user name, not druvaa", () => {
    expect(passwordProblem("short", "bob")).toContain("at least 10");
    expect(passwordProblem("operator01", "operator01")).toContain("user name");
    expect(passwordProblem("good long passphrase", "bob")).toBeUndefined();
  });

  test("login limiter: locks after 5 failures, until the lock runs out", () => {
    let now = 1_000_000;
    const limiter = new LoginLimiter(() => now, 60_000);
    for (let i = 0; i < 4; i += 1) limiter.fail("user:a");
    expect(limiter.retryAfterMs("user:a")).toBe(0);
    limiter.fail("user:a");
    expect(limiter.retryAfterMs("user:a")).toBe(60_000);
    now += 60_000;
    expect(limiter.retryAfterMs("user:a")).toBe(0);
    limiter.fail("user:a");
    expect(limiter.retryAfterMs("user:a")).toBe(0);
  });
});
