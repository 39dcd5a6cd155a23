/**
 * `--encrypt-at-rest KEYFILE`: the forms a key file may take, and what is refused with which
 * code and hint (missing, readable by others, wrong length, all zeros); plus `druvaa wrl create
 * --encrypt-at-rest` and `druvaa wrl info` through the CLI.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DruvaaError } from "../../src/errors.ts";
import { readWrlKeyFile } from "../../src/wrl/key-file.ts";
import { runCli } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "druvaa-keyfile-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const key = new Uint8Array(randomBytes(32));

function keyFile(name: string, contents: string | Uint8Array, mode = 0o600): string {
  const path = join(dir, name);
  writeFileSync(path, contents, { mode });
  chmodSync(path, mode);
  return path;
}

async function refusal(path: string): Promise<DruvaaError> {
  const error = await readWrlKeyFile(path).then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(DruvaaError);
  return error as DruvaaError;
}

describe("WRL key files", () => {
  test("raw, hex and base64 forms give the same key", async () => {
    expect(await readWrlKeyFile(keyFile("raw.key", key))).toEqual(key);
    expect(await readWrlKeyFile(keyFile("hex.key", `${Buffer.from(key).toString("hex")}\n`))).toEqual(key);
    expect(await readWrlKeyFile(keyFile("b64.key", `${Buffer.from(key).toString("base64")}\n`))).toEqual(key);
  });

  test("missing, group-readable, wrong length and all-zero files are refused with a hint", async () => {
    const missing = await refusal(join(dir, "nope.key"));
    expect([missing.code, missing.exitCode]).toEqual(["WRL_KEY_FILE_NOT_FOUND", 3]);
    expect(missing.hint).toContain("head -c 32 /dev/urandom");
    const open = await refusal(keyFile("open.key", key, 0o644));
    expect([open.code, open.exitCode]).toEqual(["WRL_KEY_FILE_INVALID", 4]);
    expect(open.message).toContain("mode 644");
    expect(open.hint).toContain("chmod 600");
    const short = await refusal(keyFile("short.key", key.subarray(0, 16)));
    expect(short.message).toContain("not a key of 32 bytes");
    expect((await refusal(keyFile("zero.key", new Uint8Array(32)))).message).toContain("all zeros");
  });

  test("druvaa wrl create --encrypt-at-rest, then wrl info shows the payloads are encrypted", async () => {
    const keyPath = keyFile("cli.key", key);
    const image = join(dir, "enc.img");
    const created = await runCli(["wrl", "create", "--primary", image, "--size", "16M", "--encrypt-at-rest", keyPath, "--json"]);
    expect(created.exitCode).toBe(0);
    expect(created.json).toMatchObject({ ok: true, payloadEncryption: "aes-256-ctr", formatVersion: 2 });
    const info = await runCli(["wrl", "info", image]);
    expect(info.exitCode).toBe(0);
    expect(info.stdout).toContain("payloads   encrypted at rest (AES-256-CTR");
    const refused = await runCli(["wrl", "create", "--primary", join(dir, "other.img"), "--size", "16M", "--encrypt-at-rest", keyFile("loose.key", key, 0o640), "--json"]);
    expect(refused.exitCode).toBe(4);
    expect(refused.json.error).toMatchObject({ code: "WRL_KEY_FILE_INVALID" });
  }, 30_000);
});
