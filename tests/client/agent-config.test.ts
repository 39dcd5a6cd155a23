/**
 * The client agent's config check (src/roles/client/agent-config.ts): every refusal names the
 * field the panel shows it next to, a valid config comes back with absolute paths, and validating
 * changes nothing on the host (a missing change map is not created until commit).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createChangeMapAtPath } from "../../src/changemap/index.ts";
import { attachArgs, attachmentPaths, ensureChangeMap, sameAttachment, validateAgentConfig, type Attachment } from "../../src/roles/client/agent-config.ts";
import { ManagedConfig } from "../../src/roles/managed/config-routes.ts";
import { inspectChangeMapAtPath } from "../../src/changemap/index.ts";

const MiB = 1024 * 1024;
let dir = "";
const context = () => ({ stateDir: join(dir, "agent"), allowRemoteExport: false });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "druvaa-agent-config-"));
  for (const name of ["a", "b", "c"]) writeFileSync(join(dir, `${name}.img`), new Uint8Array(0));
  for (const name of ["a", "b", "c"]) Bun.spawnSync(["truncate", "-s", `${4 * MiB}`, join(dir, `${name}.img`)]);
  writeFileSync(join(dir, "empty.img"), new Uint8Array(0));
  writeFileSync(join(dir, "junk.map"), new Uint8Array(1 * MiB).fill(7));
  mkdirSync(join(dir, "subdir"));
  await createChangeMapAtPath({ path: join(dir, "ok.map"), regions: [{ name: "disk0", volumeSizeBytes: 4 * MiB }], blockSizeBytes: 4096 });
  await createChangeMapAtPath({ path: join(dir, "small.map"), regions: [{ name: "disk0", volumeSizeBytes: 2 * MiB }], blockSizeBytes: 4096 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function attachment(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: "pair-a", devices: [{ name: "disk0", path: join(dir, "a.img") }], staging: "127.0.0.1:6001", wrl: "fast", export: `unix:${join(dir, "a.sock")}`, initialSync: "none", enabled: true, ...overrides };
}

async function refusal(config: unknown, allowRemoteExport = false): Promise<{ code: string; field: string; message: string }> {
  try {
    await validateAgentConfig(config, { ...context(), allowRemoteExport });
  } catch (error) {
    return error as { code: string; field: string; message: string };
  }
  throw new Error(`accepted: ${JSON.stringify(config)}`);
}

describe("client agent: validate", () => {
  test("a valid config comes back with absolute paths; nothing is created", async () => {
    const config = await validateAgentConfig({ attachments: [attachment({ changemap: join(dir, "subdir", "new.map"), initialSync: "network", rateLimit: "20MiB/s" }), attachment({ name: "pair-b", devices: [{ name: "disk1", path: join(dir, "b.img") }], export: "127.0.0.1:10809", changemap: join(dir, "ok.map"), enabled: false })] }, context());
    expect(config.attachments.map((a) => [a.name, a.enabled, a.changemap])).toEqual([["pair-a", true, join(dir, "subdir", "new.map")], ["pair-b", false, join(dir, "ok.map")]]);
    expect(existsSync(join(dir, "subdir", "new.map"))).toBe(false);
    expect(await readdir(dir)).not.toContain("agent");
  });

  const cases: [string, () => unknown, string, string][] = [
    ["not an object", () => [], "CONFIG_INVALID", "config"],
    ["attachments not a list", () => ({ attachments: {} }), "CONFIG_INVALID", "attachments"],
    ["bad name", () => ({ attachments: [attachment({ name: "../x" })] }), "NAME_INVALID", "attachments[0].name"],
    ["duplicate name", () => ({ attachments: [attachment(), attachment({ devices: [{ name: "disk1", path: join(dir, "b.img") }], export: "127.0.0.1:1" })] }), "ATTACHMENT_DUPLICATE", "attachments[1].name"],
    ["no devices", () => ({ attachments: [attachment({ devices: [] })] }), "CONFIG_INVALID", "attachments[0].devices"],
    ["missing device path", () => ({ attachments: [attachment({ devices: [{ name: "disk0", path: join(dir, "nope.img") }] })] }), "DEVICE_NOT_FOUND", "attachments[0].devices[0].path"],
    ["device path is a directory", () => ({ attachments: [attachment({ devices: [{ name: "disk0", path: join(dir, "subdir") }] })] }), "DEVICE_UNSUPPORTED", "attachments[0].devices[0].path"],
    ["empty image", () => ({ attachments: [attachment({ devices: [{ name: "disk0", path: join(dir, "empty.img") }] })] }), "DEVICE_SIZE_ZERO", "attachments[0].devices[0].path"],
    ["device name used twice on the host", () => ({ attachments: [attachment(), attachment({ name: "pair-b", devices: [{ name: "disk0", path: join(dir, "b.img") }], export: "127.0.0.1:1" })] }), "DEVICE_NAME_DUPLICATE", "attachments[1].devices[0].name"],
    ["device path used twice", () => ({ attachments: [attachment({ devices: [{ name: "disk0", path: join(dir, "a.img") }, { name: "disk1", path: join(dir, "a.img") }] })] }), "DEVICE_PATH_DUPLICATE", "attachments[0].devices[1].path"],
    ["bad staging address", () => ({ attachments: [attachment({ staging: "host:99999" })] }), "ADDRESS_INVALID", "attachments[0].staging"],
    ["bad export address", () => ({ attachments: [attachment({ export: "nowhere" })] }), "ADDRESS_INVALID", "attachments[0].export"],
    ["export of another attachment", () => ({ attachments: [attachment(), attachment({ name: "pair-b", devices: [{ name: "disk1", path: join(dir, "b.img") }] })] }), "EXPORT_IN_USE", "attachments[1].export"],
    ["remote export without TLS", () => ({ attachments: [attachment({ export: "10.1.2.3:10809" })] }), "EXPORT_NOT_LOCAL", "attachments[0].export"],
    ["not a change map", () => ({ attachments: [attachment({ changemap: join(dir, "junk.map") })] }), "CHANGEMAP_NOT_FOUND", "attachments[0].changemap"],
    ["change map region of another size", () => ({ attachments: [attachment({ changemap: join(dir, "small.map") })] }), "CHANGEMAP_REGION_SIZE", "attachments[0].changemap"],
    ["change map without the device's region", () => ({ attachments: [attachment({ devices: [{ name: "disk0", path: join(dir, "a.img") }, { name: "disk1", path: join(dir, "b.img") }], changemap: join(dir, "ok.map") })] }), "CHANGEMAP_REGION_UNKNOWN", "attachments[0].changemap"],
    ["change map in a missing directory", () => ({ attachments: [attachment({ changemap: join(dir, "no-dir", "x.map") })] }), "CHANGEMAP_DIR_MISSING", "attachments[0].changemap"],
    ["one change map for two attachments", () => ({ attachments: [attachment({ changemap: join(dir, "ok.map") }), attachment({ name: "pair-b", devices: [{ name: "disk1", path: join(dir, "b.img") }], export: "127.0.0.1:1", changemap: join(dir, "ok.map") })] }), "CHANGEMAP_IN_USE", "attachments[1].changemap"],
    ["unknown initial sync", () => ({ attachments: [attachment({ initialSync: "fast" })] }), "CONFIG_INVALID", "attachments[0].initialSync"],
    ["checksum sync without a change map", () => ({ attachments: [attachment({ initialSync: "checksum" })] }), "CHANGEMAP_NEEDED", "attachments[0].initialSync"],
    ["rate limit without a change map", () => ({ attachments: [attachment({ rateLimit: "20MiB/s" })] }), "CHANGEMAP_NEEDED", "attachments[0].rateLimit"],
    ["bad rate limit", () => ({ attachments: [attachment({ changemap: join(dir, "ok.map"), rateLimit: "fast" })] }), "RATE_INVALID", "attachments[0].rateLimit"],
    ["enabled not a boolean", () => ({ attachments: [attachment({ enabled: "yes" })] }), "CONFIG_INVALID", "attachments[0].enabled"],
    ["misspelt setting", () => ({ attachments: [attachment({ changeMap: join(dir, "ok.map") })] }), "CONFIG_INVALID", "attachments[0].changeMap"],
    ["misspelt device setting", () => ({ attachments: [attachment({ devices: [{ name: "disk0", path: join(dir, "a.img"), size: 1 }] })] }), "CONFIG_INVALID", "attachments[0].devices[0].size"],
  ];
  for (const [what, config, code, field] of cases) {
    test(`refused: ${what} → ${code} at ${field}`, async () => {
      const error = await refusal(config());
      expect({ code: error.code, field: error.field }).toEqual({ code, field });
      expect(error.message.startsWith(field)).toBe(true);
    });
  }

  test("a remote export is accepted with --insecure-allow-remote", async () => {
    const config = await validateAgentConfig({ attachments: [attachment({ export: "10.1.2.3:10809" })] }, { ...context(), allowRemoteExport: true });
    expect(config.attachments[0]!.export).toBe("10.1.2.3:10809");
  });

  test("through prepare: 409 with the field, nothing saved", async () => {
    const stateDir = join(dir, "managed");
    mkdirSync(stateDir, { recursive: true });
    const managed = await ManagedConfig.open(stateDir, { empty: { attachments: [] }, validate: (raw) => validateAgentConfig(raw, context()), apply: async () => undefined });
    const request = new Request("http://x/config/prepare", { method: "POST", body: JSON.stringify({ txid: "tx-1", version: 1, config: { attachments: [attachment({ devices: [{ name: "disk0", path: join(dir, "gone.img") }] })] } }) });
    const answer = (await managed.routes()["POST /config/prepare"]!(request)) as Response;
    expect(answer.status).toBe(409);
    expect(((await answer.json()) as { error: { field: string; code: string } }).error).toMatchObject({ code: "DEVICE_NOT_FOUND", field: "attachments[0].devices[0].path" });
    expect(await readdir(stateDir)).toEqual([]);
  });
});

describe("client agent: what a commit runs", () => {
  const sample = (): Attachment => ({ name: "pair-c", devices: [{ name: "disk0", path: join(dir, "c.img") }], staging: "10.0.0.5:6001", wrl: "fast", export: "unix:/run/x.sock", changemap: join(dir, "subdir", "c.map"), initialSync: "checksum", rateLimit: "50MiB/s", enabled: true });

  test("the child's command line carries every setting, its own state dir and socket, and the agent's security flags", () => {
    const paths = attachmentPaths(join(dir, "agent"), "pair-c");
    const args = attachArgs(sample(), paths, "db1", ["--insecure"]);
    const flag = (name: string) => args[args.indexOf(name) + 1];
    expect(args.slice(0, 2)).toEqual(["client", "attach"]);
    expect([flag("--device"), flag("--staging"), flag("--wrl"), flag("--export"), flag("--changemap"), flag("--initial-sync"), flag("--rate-limit"), flag("--node-id")]).toEqual([`disk0=${join(dir, "c.img")}`, "10.0.0.5:6001", "fast", "unix:/run/x.sock", join(dir, "subdir", "c.map"), "checksum", "50MiB/s", "db1"]);
    expect([flag("--state-dir"), flag("--control-socket"), flag("--control")]).toEqual([join(dir, "agent", "attachments", "pair-c"), join(dir, "agent", "run", "pair-c.sock"), "127.0.0.1:0"]);
    expect(args).toContain("--insecure");
    expect(args.at(-1)).toBe("--json");
  });

  test("a changed setting is a different child; key order is not", () => {
    const a = sample();
    expect(sameAttachment(a, { ...a })).toBe(true);
    expect(sameAttachment(a, { ...a, rateLimit: "10MiB/s" })).toBe(false);
    expect(sameAttachment(a, { ...a, devices: [{ path: join(dir, "c.img"), name: "disk0" }] })).toBe(true);
  });

  test("a missing change map is created with a region per device of its size; an existing one is left alone", async () => {
    const a = sample();
    expect(await ensureChangeMap(a)).toBe(true);
    const info = await inspectChangeMapAtPath(a.changemap!);
    expect(info.regions.map((r) => [r.name, r.volumeSizeBytes, r.dirtyBytes])).toEqual([["disk0", 4 * MiB, 0]]);
    expect(await ensureChangeMap(a)).toBe(false);
    expect((await validateAgentConfig({ attachments: [{ ...a, export: `unix:${join(dir, "c.sock")}` }] }, context())).attachments[0]!.changemap).toBe(a.changemap!);
  });
});
