/**
 * `druvaa staging serve --managed`: checking a pushed config at prepare (managed-validate.ts).
 * Every refusal names the JSON path of the field at fault, so the panel shows it next to the
 * form field; nothing is created or changed by a check, even for a config it accepts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigRefusal } from "../../src/roles/managed/config-routes.ts";
import { validateStagingConfig, type ManagedStagingConfig, type RunningWrl, type ValidateContext } from "../../src/roles/staging/managed-validate.ts";
import { createWrlAtPaths } from "../../src/wrl/paths.ts";

const MiB = 1024 * 1024;
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "druvaa-managed-staging-"));
  dirs.push(dir);
  return dir;
}

function context(over: Partial<ValidateContext> = {}, running: Record<string, RunningWrl> = {}): ValidateContext {
  return { flagWrls: new Map(), payloadKey: undefined, loopbackOnly: true, running: (name) => running[name], ...over };
}

const empty: ManagedStagingConfig = { wrls: [] };

/** The refusal `raw` gets: its code and field (fails the test if it is accepted). */
async function refusalOf(raw: unknown, ctx = context(), current = empty): Promise<{ code: string; field: string; message: string; hint?: string }> {
  try {
    await validateStagingConfig(raw, current, ctx);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigRefusal);
    const refusal = error as ConfigRefusal;
    return { code: refusal.code, field: refusal.field, message: refusal.message, ...(refusal.hint === undefined ? {} : { hint: refusal.hint }) };
  }
  throw new Error(`accepted: ${JSON.stringify(raw)}`);
}

describe("managed staging config: refusals at prepare name the field", () => {
  test("a name that is not a WRL name, or one a --wrl flag has", async () => {
    const dir = await tempDir();
    const wrl = (name: string) => ({ wrls: [{ name, paths: [join(dir, "w.img")], sizeBytes: 8 * MiB, replica: "127.0.0.1:6003" }] });
    expect(await refusalOf(wrl("bad name!"))).toMatchObject({ code: "WRL_NAME_INVALID", field: "wrls[0].name" });
    expect(await refusalOf(wrl("fast"), context({ flagWrls: new Map([["fast", [join(dir, "other.img")]]]) }))).toMatchObject({ code: "WRL_NAME_TAKEN", field: "wrls[0].name" });
    expect(await refusalOf({ wrls: [wrl("a").wrls[0], { ...wrl("a").wrls[0], paths: [join(dir, "x.img")] }] })).toMatchObject({ code: "WRL_NAME_TAKEN", field: "wrls[1].name" });
    expect(await refusalOf({ wrl: [] })).toMatchObject({ code: "CONFIG_INVALID", field: "wrls" });
  });

  test("a missing primary without sizeBytes, or in a missing directory; a relative path", async () => {
    const dir = await tempDir();
    const missing = await refusalOf({ wrls: [{ name: "w", paths: [join(dir, "nothing.img")], replica: "127.0.0.1:6003" }] });
    expect(missing).toMatchObject({ code: "NOT_FOUND", field: "wrls[0].paths[0]" });
    expect(missing.hint).toContain("sizeBytes");
    expect(await refusalOf({ wrls: [{ name: "w", paths: [join(dir, "no-dir", "w.img")], sizeBytes: 8 * MiB, replica: "127.0.0.1:6003" }] })).toMatchObject({ code: "NOT_FOUND", field: "wrls[0].paths[0]" });
    expect(await refusalOf({ wrls: [{ name: "w", paths: ["w.img"], sizeBytes: 8 * MiB, replica: "127.0.0.1:6003" }] })).toMatchObject({ code: "PATH_INVALID", field: "wrls[0].paths[0]" });
  });

  test("a primary that is not a druvaa WRL; a missing secondary of an existing WRL", async () => {
    const dir = await tempDir();
    const junk = join(dir, "junk.img");
    await writeFile(junk, new Uint8Array(4 * MiB).fill(7));
    const notWrl = await refusalOf({ wrls: [{ name: "w", paths: [junk], replica: "127.0.0.1:6003" }] });
    expect(notWrl).toMatchObject({ code: "WRL_NOT_FOUND", field: "wrls[0].paths[0]" });
    expect(notWrl.message).toContain("not a druvaa write log");
    const primary = join(dir, "wrl.img");
    await createWrlAtPaths({ primary, secondaries: [], sizeBytes: 8 * MiB });
    expect(await refusalOf({ wrls: [{ name: "w", paths: [primary, join(dir, "gone.img")], replica: "127.0.0.1:6003" }] })).toMatchObject({ code: "NOT_FOUND", field: "wrls[0].paths[1]" });
    const extra = join(dir, "extra.img");
    await writeFile(extra, new Uint8Array(2 * MiB));
    expect(await refusalOf({ wrls: [{ name: "w", paths: [primary, extra], replica: "127.0.0.1:6003" }] })).toMatchObject({ code: "WRL_DEVICE_NOT_MEMBER", field: "wrls[0].paths[1]" });
  });

  test("an existing WRL whose encryption at rest does not match --encrypt-at-rest", async () => {
    const dir = await tempDir();
    const primary = join(dir, "clear.img");
    await createWrlAtPaths({ primary, secondaries: [], sizeBytes: 8 * MiB });
    const payloadKey = new Uint8Array(32).fill(9);
    expect(await refusalOf({ wrls: [{ name: "w", paths: [primary], replica: "127.0.0.1:6003" }] }, context({ payloadKey }))).toMatchObject({ code: "WRL_NOT_ENCRYPTED", field: "wrls[0].paths[0]" });
    const sealed = join(dir, "sealed.img");
    await createWrlAtPaths({ primary: sealed, secondaries: [], sizeBytes: 8 * MiB, payloadKey });
    expect(await refusalOf({ wrls: [{ name: "w", paths: [sealed], replica: "127.0.0.1:6003" }] }, context({ payloadKey: new Uint8Array(32).fill(1) }))).toMatchObject({ code: "WRL_KEY_MISMATCH", field: "wrls[0].paths[0]" });
    await validateStagingConfig({ wrls: [{ name: "w", paths: [sealed], replica: "127.0.0.1:6003" }] }, empty, context({ payloadKey }));
  });

  test("a path used twice, in the config or by a --wrl flag", async () => {
    const dir = await tempDir();
    const path = join(dir, "shared.img");
    const spec = (name: string, paths: string[]) => ({ name, paths, sizeBytes: 8 * MiB, replica: "127.0.0.1:6003" });
    expect(await refusalOf({ wrls: [spec("a", [path]), spec("b", [join(dir, "b.img"), path])] })).toMatchObject({ code: "WRL_PATH_TAKEN", field: "wrls[1].paths[1]" });
    expect(await refusalOf({ wrls: [spec("a", [join(dir, "a.img"), join(dir, "a.img")])] })).toMatchObject({ code: "WRL_PATH_TAKEN", field: "wrls[0].paths[1]" });
    expect(await refusalOf({ wrls: [spec("a", [path])] }, context({ flagWrls: new Map([["flagged", [path]]]) }))).toMatchObject({ code: "WRL_PATH_TAKEN", field: "wrls[0].paths[0]" });
  });

  test("a replica address that does not parse, with port 0, or not on loopback under --insecure", async () => {
    const dir = await tempDir();
    const spec = (replica: unknown) => ({ wrls: [{ name: "w", paths: [join(dir, "w.img")], sizeBytes: 8 * MiB, replica }] });
    expect(await refusalOf(spec("127.0.0.1:0"))).toMatchObject({ code: "ADDRESS_INVALID", field: "wrls[0].replica" });
    expect(await refusalOf(spec("127.0.0.1:99999"))).toMatchObject({ code: "ADDRESS_INVALID", field: "wrls[0].replica" });
    expect(await refusalOf(spec(6003))).toMatchObject({ code: "ADDRESS_INVALID", field: "wrls[0].replica" });
    expect(await refusalOf(spec("10.0.0.9:6003"))).toMatchObject({ code: "ADDRESS_INVALID", field: "wrls[0].replica" });
    // With TLS (or --insecure-allow-remote) a remote replica is fine.
    await validateStagingConfig(spec("10.0.0.9"), empty, context({ loopbackOnly: false }));
  });

  test("rpo, rateLimit and compression as the flags take them", async () => {
    const dir = await tempDir();
    const spec = (extra: Record<string, unknown>) => ({ wrls: [{ name: "w", paths: [join(dir, "w.img")], sizeBytes: 8 * MiB, replica: "127.0.0.1:6003", ...extra }] });
    expect(await refusalOf(spec({ rpo: "soon" }))).toMatchObject({ code: "RPO_INVALID", field: "wrls[0].rpo" });
    expect(await refusalOf(spec({ rpo: "0s" }))).toMatchObject({ code: "RPO_INVALID", field: "wrls[0].rpo" });
    expect(await refusalOf(spec({ rateLimit: "fast" }))).toMatchObject({ code: "RATE_INVALID", field: "wrls[0].rateLimit" });
    expect(await refusalOf(spec({ rateLimit: "1bit" }))).toMatchObject({ code: "RATE_INVALID", field: "wrls[0].rateLimit" });
    expect(await refusalOf(spec({ compression: 42 }))).toMatchObject({ code: "COMPRESSION_INVALID", field: "wrls[0].compression" });
    const accepted = await validateStagingConfig(spec({ rpo: "30s", rateLimit: "20Mbit", compression: 3 }), empty, context());
    expect(accepted.wrls[0]).toMatchObject({ rpo: "30s", rateLimit: "20Mbit", compression: 3 });
  });

  test("a valid config is accepted and nothing is created: a missing primary waits for the commit", async () => {
    const dir = await tempDir();
    const existing = join(dir, "existing.img");
    await createWrlAtPaths({ primary: existing, secondaries: [], sizeBytes: 8 * MiB });
    const raw = { wrls: [{ name: "new", paths: [join(dir, "new.img")], sizeBytes: 8 * MiB, replica: "127.0.0.1:6003" }, { name: "old", paths: [existing], replica: "localhost" }] };
    expect(await validateStagingConfig(raw, empty, context())).toEqual(raw);
    expect((await readdir(dir)).sort()).toEqual(["existing.img"]);
  });

  test("a running WRL: dropped with unrelayed records or a connected client, or given other paths or size", async () => {
    const dir = await tempDir();
    const primary = join(dir, "w.img");
    const current: ManagedStagingConfig = { wrls: [{ name: "w", paths: [primary], sizeBytes: 8 * MiB, replica: "127.0.0.1:6003" }] };
    const busy = context({}, { w: { paths: [primary], unrelayedRecords: 12, connectedDevices: [] } });
    const notEmpty = await refusalOf(empty, busy, current);
    expect(notEmpty).toMatchObject({ code: "WRL_NOT_EMPTY", field: "wrls" });
    expect(notEmpty.message).toContain("12 record(s)");
    expect(await refusalOf(empty, context({}, { w: { paths: [primary], unrelayedRecords: 0, connectedDevices: ["disk0"] } }), current)).toMatchObject({ code: "WRL_IN_USE", field: "wrls" });
    expect(await validateStagingConfig(empty, current, context({}, { w: { paths: [primary], unrelayedRecords: 0, connectedDevices: [] } }))).toEqual(empty);
    const moved = { wrls: [{ ...current.wrls[0]!, paths: [join(dir, "elsewhere.img")] }] };
    expect(await refusalOf(moved, busy, current)).toMatchObject({ code: "WRL_CHANGE_UNSUPPORTED", field: "wrls[0].paths" });
    const resized = { wrls: [{ ...current.wrls[0]!, sizeBytes: 16 * MiB }] };
    expect(await refusalOf(resized, busy, current)).toMatchObject({ code: "WRL_CHANGE_UNSUPPORTED", field: "wrls[0].sizeBytes" });
    // Relay settings may change: the relay restarts with them at commit.
    const retargeted = { wrls: [{ ...current.wrls[0]!, replica: "127.0.0.1:7003", rpo: "1m", compression: "off" }] };
    expect(await validateStagingConfig(retargeted, current, busy)).toEqual(retargeted);
  });
});
