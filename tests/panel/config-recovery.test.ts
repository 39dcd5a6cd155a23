/**
 * The coordinator's edges across panel restarts and databases: a transaction left `preparing`
 * by a panel that stopped is recorded aborted (and aborted at its components) when the panel
 * starts; a component whose committed version is ahead of the panel's (a new or restored panel
 * database) is prepared at its own version + 1 instead of being refused CONFIG_STALE.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigStore } from "../../src/roles/panel/config-store.ts";
import { PanelServer } from "../../src/roles/panel/server.ts";
import { PanelStore } from "../../src/roles/panel/store.ts";
import { FakeComponent } from "./config-fake.ts";
import { adminClient } from "./helpers.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startPanel(prepare: (store: PanelStore) => void): Promise<{ store: PanelStore; server: PanelServer }> {
  const dir = mkdtempSync(join(tmpdir(), "druvaa-panel-config-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const store = PanelStore.open(join(dir, "panel.db"));
  cleanups.push(() => store.close());
  prepare(store);
  const server = await PanelServer.start({ store, listen: { kind: "tcp", host: "127.0.0.1", port: 0 }, pollIntervalMs: 60_000, config: { requestTimeoutMs: 2_000, convergeIntervalMs: 60_000 } });
  cleanups.push(() => server.stop());
  return { store, server };
}

function fake(role: "client" | "staging" | "replica", listen: string): FakeComponent {
  const component = new FakeComponent(role, listen);
  component.start();
  cleanups.push(() => component.stop());
  return component;
}

test("a transaction left preparing by a stopped panel is aborted at start: recorded with the reason, its pending config dropped", async () => {
  const staging = fake("staging", "127.0.0.1:16201");
  staging.pending = { txid: "tx-left-1", version: 1, config: { wrls: [] } };
  const { store, server } = await startPanel((store) => {
    store.addComponent("s1", "staging", staging.control, "admin");
    new ConfigStore(store).insertTx({ txid: "tx-left-1", time: new Date().toISOString(), user: "admin", summary: "create WRL fast on s1", state: "preparing", components: [{ component: "s1", version: 1, result: "preparing" }], reasons: [] });
  });
  const admin = await adminClient(server.url);
  const tx = (await admin.get("/api/transactions")).body.transactions[0];
  expect(tx).toMatchObject({ txid: "tx-left-1", state: "aborted", components: [{ component: "s1", version: 1, result: "aborted" }] });
  expect(tx.reasons[0].code).toBe("PANEL_RESTARTED");
  expect(staging.pending).toBeUndefined();
  expect(staging.committed.version).toBe(0);
  expect(new ConfigStore(store).getDecided("s1")).toBeUndefined();
});

test("a component ahead of the panel's numbering is prepared at its own version + 1 and commits", async () => {
  const staging = fake("staging", "127.0.0.1:16301");
  const replica = fake("replica", "127.0.0.1:16303");
  staging.committed = { txid: "tx-old-panel", version: 7, config: { wrls: [] } };
  const { store, server } = await startPanel(() => undefined);
  const admin = await adminClient(server.url);
  for (const [name, component] of [["s1", staging], ["r1", replica]] as const) {
    expect((await admin.post("/api/components", { name, role: component.role, control: component.control })).status).toBe(201);
  }
  // Registering a component records its host (the control address's host).
  expect(new ConfigStore(store).hostOf("s1")).toBe("127.0.0.1");
  const answer = await admin.post("/api/wrls", { name: "fast", staging: "s1", paths: ["/var/lib/druvaa/wrl/fast.img"], sizeBytes: 1024 ** 3, replica: "r1" });
  expect(answer.status).toBe(201);
  expect(answer.body.tx.components).toEqual([{ component: "s1", version: 8, result: "committed" }]);
  expect(staging.committed.version).toBe(8);
  expect((staging.committed.config as { wrls: { name: string }[] }).wrls.map((w) => w.name)).toEqual(["fast"]);
});
