/**
 * The panel's coordinator against the real component side of the contract (ManagedConfig of
 * src/roles/managed/config-routes.ts on a real control server), with small roles whose validate
 * refuses what a test asks: a WRL and a pair committed and saved in each component's state
 * directory; a refusal naming its field aborts everywhere and nothing is saved.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startControlServer, type ControlServer } from "../../src/io/control-server.ts";
import { ConfigRefusal, ManagedConfig, type ManagedRole } from "../../src/roles/managed/config-routes.ts";
import { adminClient, startTestPanel, type ApiClient, type TestPanel } from "./helpers.ts";

type Role = "client" | "staging" | "replica";
interface Component {
  name: string;
  role: Role;
  dir: string;
  managed: ManagedConfig<any>;
  control: ControlServer;
  applied: unknown[];
}

const refusedPaths = new Set<string>();
const components: Component[] = [];
let panel: TestPanel;
let admin: ApiClient;
const root = mkdtempSync(join(tmpdir(), "druvaa-panel-managed-"));

/** Refuses any string value in `refusedPaths`, naming its JSON path, as a role's validate would. */
function findRefused(value: unknown, path: string): string | undefined {
  if (typeof value === "string") return refusedPaths.has(value) ? path : undefined;
  if (Array.isArray(value)) return value.map((item, i) => findRefused(item, `${path}[${i}]`)).find((p) => p !== undefined);
  if (typeof value === "object" && value !== null) return Object.entries(value).map(([key, item]) => findRefused(item, path === "" ? key : `${path}.${key}`)).find((p) => p !== undefined);
  return undefined;
}

async function startComponent(name: string, role: Role, listen: string): Promise<Component> {
  const dir = join(root, name);
  const applied: unknown[] = [];
  const roleOf: ManagedRole<unknown> = {
    empty: role === "staging" ? { wrls: [] } : role === "replica" ? { devices: [] } : { attachments: [] },
    async validate(raw) {
      const field = findRefused(raw, "");
      if (field !== undefined) throw new ConfigRefusal("NOT_A_DEVICE", `${field}: not a block device or image file on this host`, "Pick another path", field);
      return raw;
    },
    async apply(next) {
      applied.push(next);
    },
  };
  mkdirSync(dir, { recursive: true });
  const managed = await ManagedConfig.open(dir, roleOf);
  await managed.start();
  const control = await startControlServer({ kind: "tcp", host: "127.0.0.1", port: 0 }, {
    "/status": () => ({ role, addresses: { listen } }),
    ...(role === "client" ? { "/probe": () => ({ ok: true, exists: true, kind: "block", sizeBytes: 1024 ** 3, inUse: null }) } : {}),
    ...managed.routes(),
  }, `test-${name}`);
  const component = { name, role, dir, managed, control, applied };
  components.push(component);
  return component;
}

beforeAll(async () => {
  panel = await startTestPanel({ pollIntervalMs: 60_000, config: { requestTimeoutMs: 5_000, convergeIntervalMs: 60_000 } });
  admin = await adminClient(panel.url);
  for (const [name, role, listen] of [["s1", "staging", "127.0.0.1:16401"], ["r1", "replica", "127.0.0.1:16403"], ["c1", "client", "127.0.0.1:16407"]] as const) {
    const component = await startComponent(name, role, listen);
    expect((await admin.post("/api/components", { name, role, control: component.control.address })).status).toBe(201);
  }
});

afterAll(async () => {
  await panel?.close();
  for (const component of components) await component.control.stop();
  rmSync(root, { recursive: true, force: true });
});

const saved = (name: string) => JSON.parse(readFileSync(join(root, name, "managed-config.json"), "utf8"));

test("a WRL and a pair are committed by real managed components: saved in their state directories and applied", async () => {
  const wrl = await admin.post("/api/wrls", { name: "fast", staging: "s1", paths: ["/var/lib/druvaa/wrl/fast.img"], sizeBytes: 1024 ** 3, replica: "r1" });
  expect(wrl.status).toBe(201);
  const pair = await admin.post("/api/pairs", { name: "pair-db", client: "c1", deviceName: "disk0", devicePath: "/dev/sdb", export: "unix:/run/druvaa/disk0.sock", wrl: "fast", replicaDevicePath: "/srv/replica/disk0.img", initialSync: "none" });
  expect(pair.status).toBe(201);
  expect(saved("s1")).toMatchObject({ version: 1, txid: wrl.body.tx.txid, config: { wrls: [{ name: "fast", replica: "127.0.0.1:16403" }] } });
  expect(saved("c1")).toMatchObject({ version: 1, txid: pair.body.tx.txid, config: { attachments: [{ name: "pair-db", staging: "127.0.0.1:16401", devices: [{ name: "disk0", path: "/dev/sdb" }] }] } });
  expect(saved("r1").config).toEqual({ devices: [{ name: "disk0", path: "/srv/replica/disk0.img", sizeBytes: 1024 ** 3 + 1024 ** 2, primarySizeBytes: 1024 ** 3 }] });
  const client = components.find((c) => c.name === "c1")!;
  expect(client.applied.at(-1)).toEqual(saved("c1").config);
});

test("a real component's refusal aborts the pair everywhere: 409 with the form field, no pending file left, versions unchanged", async () => {
  refusedPaths.add("/srv/replica/bad.img");
  try {
    const answer = await admin.post("/api/pairs", { name: "pair-bad", client: "c1", deviceName: "disk1", devicePath: "/dev/sdc", export: "unix:/run/druvaa/disk1.sock", wrl: "fast", replicaDevicePath: "/srv/replica/bad.img", initialSync: "none" });
    expect(answer.status).toBe(409);
    expect(answer.body.error).toMatchObject({ code: "CONFIG_REFUSED", field: "pair.replicaDevicePath", reason: "NOT_A_DEVICE" });
    expect(answer.body.tx.reasons).toEqual([expect.objectContaining({ component: "r1", field: "devices[1].path", formField: "pair.replicaDevicePath" })]);
  } finally {
    refusedPaths.clear();
  }
  for (const name of ["s1", "r1", "c1"]) {
    expect(existsSync(join(root, name, "managed-config.pending.json"))).toBe(false);
    expect(saved(name).version).toBe(1);
  }
});
