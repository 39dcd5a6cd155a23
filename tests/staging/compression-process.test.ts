/**
 * `druvaa staging serve --compression 3`, as real processes with a real `druvaa replica apply`:
 * compressible client writes reach the replica exactly, and the staging status shows a
 * compression ratio above 1 (JSON and `druvaa status`). (The default, auto, pauses on loopback:
 * the relay never waits on the link; tests/staging/compression.test.ts has its policy.)
 * A bad --compression value is a usage error with a hint.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { druvaa } from "../helpers/cli.ts";
import { startRole, type RoleProcess } from "../helpers/role-process.ts";
import { bytes, MiB } from "./helpers.ts";
import { sha256 } from "./process.ts";
import { TestClient } from "./test-client.ts";
import { processFixture } from "./process-fixture.ts";

const deviceBytes = 8 * MiB;
const fx = processFixture("zstd", deviceBytes);
const { scratch, wrlPath, running, clients } = fx;


/** What file systems write: text and zeros, with an incompressible block now and then. */
function blockData(index: number, lengthBytes: number): Uint8Array {
  if (index % 5 === 4) return bytes(lengthBytes, index + 1);
  const data = new Uint8Array(lengthBytes);
  const line = new TextEncoder().encode(`${index}: a line of a log file that druvaa replicates to the DR site\n`);
  for (let position = 0; position < lengthBytes; position += 4096) {
    if ((position / 4096) % 2 === 0) for (let at = 0; at < 4096; at += 1) data[position + at] = line[at % line.length]!;
  }
  return data;
}

describe("druvaa staging serve --compression (real processes)", () => {
  test("--compression 3: the replica equals what was written, the status shows a compression ratio above 1", async () => {
    const staging = await startRole(
      ["staging", "serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--wrl", `w0=${wrlPath}`, "--replica", `w0=${fx.replica.ready.listen}`, "--state-dir", join(scratch, "staging-state"), "--node-id", "staging-zstd", "--compression", "3"],
      join(scratch, "staging.log"),
    );
    running.add(staging);
    const client = await TestClient.connect(staging.ready.listen, "zstd-client");
    clients.push(client);
    expect(await client.attach("w0", "d0", deviceBytes)).toMatchObject({ accepted: true });
    const model = new Uint8Array(deviceBytes);
    for (let index = 0; index < 120; index += 1) {
      const lengthBytes = (1 + (index % 16)) * 16 * 1024;
      const offset = ((index * 389) % 480) * 16 * 1024;
      const data = blockData(index, lengthBytes);
      const answer = await client.write("w0", "d0", offset, data, lengthBytes);
      expect(answer.type).toBe("writeAck");
      model.set(data, offset);
    }
    const drained = await druvaa(["status", "--connect", staging.ready.control, "--wait-drained", "--timeout", "30"]);
    expect(drained.exitCode).toBe(0);
    const target = join(scratch, "restored.img");
    expect((await druvaa(["restore", "--replica", fx.replica.ready.restore, "--device", "d0", "--to", target, "--json"])).exitCode).toBe(0);
    expect(sha256(readFileSync(target))).toBe(sha256(model));

    const status = (await (await fetch(`http://${staging.ready.control}/status`)).json()) as any;
    const relay = status.wrls[0].replica;
    expect(relay).toMatchObject({ connected: true, appliedLsn: 120, lastError: null });
    expect(relay.shipmentsShipped).toBeGreaterThan(0);
    expect(relay.compression).toMatchObject({ mode: "fixed", level: 3 });
    expect(relay.compression.compressedShipments).toBeGreaterThan(0);
    expect(relay.compression.compressionRatio).toBeGreaterThan(1.5);
    expect(relay.compression.rawBytes).toBeGreaterThanOrEqual(model.length / 8);
    expect(relay.bytesShipped).toBe(relay.compression.wireBytes);
    console.log(`[compression process test] ${relay.shipmentsShipped} shipments: ${relay.compression.rawBytes} bytes of data sent as ${relay.compression.wireBytes} (ratio ${relay.compression.compressionRatio.toFixed(2)}, level ${relay.compression.level}, ${relay.compression.compressMs} ms compressing)`);
    const human = await druvaa(["status", "--connect", staging.ready.control]);
    expect(human.stdout).toMatch(/shipped .* of data \(zstd level 3, ratio \d+\.\d\d\)/);
  }, 60_000);

  test("--compression 25 is a usage error with a hint; nothing starts", async () => {
    const result = await druvaa(["staging", "serve", "--wrl", `w0=${wrlPath}`, "--replica", "w0=127.0.0.1:6003", "--compression", "25"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("--compression 25: not a zstd level in 1..19");
    expect(result.stderr).toContain("--compression auto");
    const json = await druvaa(["staging", "serve", "--wrl", `w0=${wrlPath}`, "--replica", "w0=127.0.0.1:6003", "--compression", "fast", "--json"]);
    expect(json.exitCode).toBe(2);
    expect(JSON.parse(json.stdout).error.code).toBe("USAGE");
  }, 30_000);
});
