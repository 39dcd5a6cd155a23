/**
 * `druvaa staging serve --encrypt-at-rest KEYFILE`, as real processes with a real `druvaa replica
 * apply`: a WRL made by `druvaa wrl create --encrypt-at-rest` relays client writes so the
 * replica equals what was written, while the WRL image never holds the written plaintext. The
 * same WRL is refused without the key, with another key, and with a key file others may read.
 */
import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { druvaa } from "../helpers/cli.ts";
import { startRole } from "../helpers/role-process.ts";
import { MiB } from "./helpers.ts";
import { sha256 } from "./process.ts";
import { TestClient } from "./test-client.ts";
import { processFixture } from "./process-fixture.ts";

const deviceBytes = 8 * MiB;
const fx = processFixture("encrypt", deviceBytes);
const { scratch, running, clients } = fx;
const marker = new TextEncoder().encode("SECRET-CLIENT-DATA-that-must-not-rest-in-the-clear;");

function markedData(index: number, lengthBytes: number): Uint8Array {
  const data = new Uint8Array(lengthBytes);
  for (let at = 0; at < lengthBytes; at += marker.length) data.set(marker.subarray(0, Math.min(marker.length, lengthBytes - at)), at);
  new DataView(data.buffer).setUint32(0, index, true);
  return data;
}

function keyFile(name: string, mode = 0o600): string {
  const path = join(scratch, name);
  writeFileSync(path, randomBytes(32), { mode });
  return path;
}

describe("druvaa staging serve --encrypt-at-rest (real processes)", () => {
  test("the replica equals what was written; the WRL image holds no written plaintext; wrong or missing keys are refused", async () => {
    const keyPath = keyFile("wrl.key");
    const wrlPath = join(scratch, "wrl-encrypted.img");
    const created = await druvaa(["wrl", "create", "--primary", wrlPath, "--size", "32M", "--encrypt-at-rest", keyPath, "--json"]);
    expect(created.exitCode).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ payloadEncryption: "aes-256-ctr" });
    const serveArgsTo = (replica: string) => ["staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--wrl", `w0=${wrlPath}`, "--replica", `w0=${replica}`, "--state-dir", join(scratch, "staging-state"), "--node-id", "staging-encrypt"];
    const serveArgs = serveArgsTo(fx.replica.ready.listen);

    const withoutKey = await druvaa([...serveArgs, "--json"]);
    expect(withoutKey.exitCode).toBe(4);
    expect(JSON.parse(withoutKey.stdout).error.code).toBe("WRL_KEY_REQUIRED");
    const otherKey = await druvaa([...serveArgs, "--encrypt-at-rest", keyFile("other.key"), "--json"]);
    expect(otherKey.exitCode).toBe(4);
    expect(JSON.parse(otherKey.stdout).error.code).toBe("WRL_KEY_MISMATCH");
    const loose = await druvaa([...serveArgs, "--encrypt-at-rest", keyFile("loose.key", 0o644)]);
    expect(loose.exitCode).toBe(4);
    expect(loose.stderr).toContain("chmod 600");

    // First with no replica listening (port 1): the records stay in the WRL. After a restart
    // they are relayed from disk, decrypted with the key; later ones from the in-memory cache.
    const model = new Uint8Array(deviceBytes);
    const writes = 60;
    const writeRange = async (client: TestClient, from: number, to: number) => {
      for (let index = from; index < to; index += 1) {
        const lengthBytes = (1 + (index % 8)) * 16 * 1024;
        const offset = ((index * 389) % 480) * 16 * 1024;
        const data = markedData(index, lengthBytes);
        expect((await client.write("w0", "d0", offset, data, lengthBytes)).type).toBe("writeAck");
        model.set(data, offset);
      }
    };
    const offline = await startRole([...serveArgsTo("127.0.0.1:1"), "--encrypt-at-rest", keyPath], join(scratch, "staging-offline.log"));
    running.add(offline);
    const first = await TestClient.connect(offline.ready.listen, "encrypt-client-1");
    clients.push(first);
    expect(await first.attach("w0", "d0", deviceBytes)).toMatchObject({ accepted: true });
    await writeRange(first, 0, writes / 2);
    first.connection.abort();
    offline.proc.kill("SIGTERM");
    expect(await offline.proc.exited).toBe(0);
    running.delete(offline);

    const staging = await startRole([...serveArgs, "--encrypt-at-rest", keyPath], join(scratch, "staging.log"));
    running.add(staging);
    const client = await TestClient.connect(staging.ready.listen, "encrypt-client");
    clients.push(client);
    expect(await client.attach("w0", "d0", deviceBytes)).toMatchObject({ accepted: true });
    await writeRange(client, writes / 2, writes);
    const drained = await druvaa(["status", "--connect", staging.ready.control, "--wait-drained", "--timeout", "30"]);
    expect(drained.exitCode).toBe(0);
    const target = join(scratch, "restored.img");
    expect((await druvaa(["restore", "--replica", fx.replica.ready.restore, "--device", "d0", "--to", target, "--json"])).exitCode).toBe(0);
    expect(sha256(readFileSync(target))).toBe(sha256(model));
    expect(readFileSync(target).indexOf(Buffer.from(marker))).toBeGreaterThanOrEqual(0); // the search can succeed

    // Every acknowledged write is durable in the WRL: its records are there, its plaintext is not.
    const image = readFileSync(wrlPath);
    let records = 0;
    for (let at = image.indexOf("WRLR"); at >= 0; at = image.indexOf("WRLR", at + 4)) records += 1;
    expect(records).toBeGreaterThanOrEqual(writes);
    expect(image.indexOf(Buffer.from(marker))).toBe(-1);
    expect(image.indexOf(Buffer.from(marker.subarray(4, 24)))).toBe(-1);
    const info = await druvaa(["wrl", "info", wrlPath, "--json"]);
    expect(JSON.parse(info.stdout)).toMatchObject({ payloadEncryption: "aes-256-ctr" });
  }, 60_000);
});
