/**
 * The managed-config contract every role serves (src/roles/managed/config-routes.ts,
 * docs/panel.md): prepare/commit/abort, durability across a restart (the decision table's rows),
 * refusals with the field, and apply failures reported rather than thrown.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigRefusal, ManagedConfig, type ManagedRole } from "../../src/roles/managed/config-routes.ts";
import { DruvaaError } from "../../src/errors.ts";

interface Config {
  items: string[];
}

class FakeRole implements ManagedRole<Config> {
  readonly empty: Config = { items: [] };
  applied: Config[] = [];
  failApply = false;
  async validate(raw: unknown): Promise<Config> {
    const items = (raw as { items?: unknown })?.items;
    if (!Array.isArray(items)) throw new ConfigRefusal("CONFIG_INVALID", "items: a list is needed", undefined, "items");
    items.forEach((item, index) => {
      if (typeof item !== "string" || item === "bad") throw new ConfigRefusal("ITEM_BAD", `items[${index}]: not allowed`, "Pick another", `items[${index}]`);
      if (item === "missing") throw new DruvaaError("PATH_MISSING", "no such path", "Create it");
    });
    return { items: items as string[] };
  }
  async apply(next: Config): Promise<void> {
    if (this.failApply) throw new DruvaaError("DEVICE_GONE", "the device went away", "Plug it back");
    this.applied.push(next);
  }
}

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function opened(dir?: string, role = new FakeRole()) {
  const stateDir = dir ?? (await mkdtemp(join(tmpdir(), "druvaa-managed-")));
  if (dir === undefined) dirs.push(stateDir);
  const managed = await ManagedConfig.open(stateDir, role);
  await managed.start();
  const routes = managed.routes();
  const call = async (key: string, body?: unknown) => {
    const request = new Request(`http://x${key.split(" ").at(-1)}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) });
    const answer = await routes[key]!(request);
    return answer instanceof Response ? { status: answer.status, body: (await answer.json()) as any } : { status: 200, body: answer as any };
  };
  return { stateDir, managed, role, call };
}

describe("managed config: two-phase commit on a component", () => {
  test("prepare then commit applies the config; GET /config shows version and txid", async () => {
    const { call, role } = await opened();
    expect((await call("/config")).body).toMatchObject({ ok: true, version: 0, pending: null, config: { items: [] } });
    expect((await call("POST /config/prepare", { txid: "tx-1", version: 1, config: { items: ["a"] } })).body).toEqual({ ok: true, txid: "tx-1", version: 1 });
    expect((await call("/config")).body).toMatchObject({ version: 0, pending: { txid: "tx-1", version: 1 } });
    expect(role.applied).toEqual([{ items: [] }]);
    const committed = await call("POST /config/commit", { txid: "tx-1" });
    expect(committed.body).toMatchObject({ ok: true, version: 1 });
    expect(role.applied.at(-1)).toEqual({ items: ["a"] });
    expect((await call("/config")).body).toMatchObject({ version: 1, txid: "tx-1", pending: null, config: { items: ["a"] }, applied: { version: 1 } });
    // A re-sent commit of the committed txid is ok and applies nothing again.
    expect((await call("POST /config/commit", { txid: "tx-1" })).body).toMatchObject({ ok: true, version: 1 });
    expect(role.applied).toHaveLength(2);
  });

  test("refusals: 409 with code and field; nothing saved", async () => {
    const { call, stateDir } = await opened();
    const bad = await call("POST /config/prepare", { txid: "tx-1", version: 1, config: { items: ["a", "bad"] } });
    expect(bad.status).toBe(409);
    expect(bad.body.error).toMatchObject({ code: "ITEM_BAD", field: "items[1]", hint: "Pick another" });
    const other = await call("POST /config/prepare", { txid: "tx-1", version: 1, config: { items: ["missing"] } });
    expect(other.body.error).toMatchObject({ code: "PATH_MISSING", field: "config" });
    expect((await call("POST /config/prepare", { txid: "no spaces", version: 1, config: { items: [] } })).body.error.field).toBe("txid");
    expect((await call("POST /config/prepare", { txid: "tx-2", version: 0, config: { items: [] } })).body.error.field).toBe("version");
    expect((await call("/config")).body.pending).toBeNull();
    expect(await readdir(stateDir)).toEqual([]);
  });

  test("stale versions and unknown commits are refused; abort is idempotent", async () => {
    const { call } = await opened();
    await call("POST /config/prepare", { txid: "tx-1", version: 3, config: { items: ["a"] } });
    await call("POST /config/commit", { txid: "tx-1" });
    const stale = await call("POST /config/prepare", { txid: "tx-2", version: 3, config: { items: ["b"] } });
    expect(stale.body.error.code).toBe("CONFIG_STALE");
    expect((await call("POST /config/commit", { txid: "tx-9" })).body.error.code).toBe("CONFIG_NOT_PREPARED");
    await call("POST /config/prepare", { txid: "tx-3", version: 4, config: { items: ["c"] } });
    expect((await call("POST /config/abort", { txid: "tx-3" })).body).toEqual({ ok: true, txid: "tx-3" });
    expect((await call("POST /config/abort", { txid: "tx-3" })).body.ok).toBe(true);
    expect((await call("POST /config/commit", { txid: "tx-3" })).body.error.code).toBe("CONFIG_NOT_PREPARED");
    expect((await call("/config")).body).toMatchObject({ version: 3, config: { items: ["a"] }, pending: null });
  });

  test("a newer prepare replaces an older pending one", async () => {
    const { call } = await opened();
    await call("POST /config/prepare", { txid: "tx-1", version: 1, config: { items: ["a"] } });
    await call("POST /config/prepare", { txid: "tx-2", version: 2, config: { items: ["b"] } });
    expect((await call("POST /config/commit", { txid: "tx-1" })).body.error.code).toBe("CONFIG_NOT_PREPARED");
    expect((await call("POST /config/commit", { txid: "tx-2" })).body).toMatchObject({ ok: true, version: 2 });
  });

  test("a restart re-applies the committed config and keeps a pending one pending (decision table)", async () => {
    const first = await opened();
    await first.call("POST /config/prepare", { txid: "tx-1", version: 1, config: { items: ["a"] } });
    await first.call("POST /config/commit", { txid: "tx-1" });
    await first.call("POST /config/prepare", { txid: "tx-2", version: 2, config: { items: ["a", "b"] } });
    const again = await opened(first.stateDir);
    expect(again.role.applied).toEqual([{ items: ["a"] }]);
    expect((await again.call("/config")).body).toMatchObject({ version: 1, pending: { txid: "tx-2", version: 2 } });
    expect((await again.call("POST /config/commit", { txid: "tx-2" })).body).toMatchObject({ ok: true, version: 2 });
    expect(again.role.applied.at(-1)).toEqual({ items: ["a", "b"] });
    // Pending alone (nothing committed yet): runs empty, keeps it.
    const fresh = await opened();
    await fresh.call("POST /config/prepare", { txid: "tx-7", version: 1, config: { items: ["z"] } });
    const back = await opened(fresh.stateDir);
    expect(back.role.applied).toEqual([{ items: [] }]);
    expect((await back.call("/config")).body).toMatchObject({ version: 0, pending: { txid: "tx-7" } });
  });

  test("a failed apply stays committed and is reported, then applied at the next start", async () => {
    const role = new FakeRole();
    const first = await opened(undefined, role);
    await first.call("POST /config/prepare", { txid: "tx-1", version: 1, config: { items: ["a"] } });
    role.failApply = true;
    const committed = await first.call("POST /config/commit", { txid: "tx-1" });
    expect(committed.body).toMatchObject({ ok: true, version: 1, applied: { version: 1, error: { code: "DEVICE_GONE" } } });
    expect((await first.call("/config")).body.applied.error.code).toBe("DEVICE_GONE");
    const again = await opened(first.stateDir);
    expect(again.role.applied).toEqual([{ items: ["a"] }]);
    expect((await again.call("/config")).body.applied).not.toHaveProperty("error");
  });

  test("concurrent prepares and commits run one at a time", async () => {
    const { call } = await opened();
    const answers = await Promise.all([1, 2, 3, 4, 5].map((version) => call("POST /config/prepare", { txid: `tx-${version}`, version, config: { items: [String(version)] } })));
    expect(answers.every((answer) => answer.body.ok)).toBe(true);
    expect((await call("/config")).body.pending).toEqual({ txid: "tx-5", version: 5 });
  });

  test("a body that is not a JSON object is refused", async () => {
    const { managed } = await opened();
    const answer = (await managed.routes()["POST /config/prepare"]!(new Request("http://x/config/prepare", { method: "POST", body: "[1" }))) as Response;
    expect(answer.status).toBe(409);
    expect(((await answer.json()) as any).error).toMatchObject({ code: "CONFIG_INVALID", field: "body" });
  });
});
