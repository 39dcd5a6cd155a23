/**
 * `druvaa verify` as cron runs it: a real `druvaa client attach` process (no change map) against
 * the fake staging of fake-staging.ts, which answers probes from the replay of what it logged
 * (plus damage the test adds), over real sockets and the real protocol. Exit codes: 0 equal,
 * 1 differences (listed), 2 usage, 4 refused; the --json object carries the ranges.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectNbd } from "../../src/nbd/client.ts";
import { druvaa } from "../helpers/cli.ts";
import { FakeStaging } from "./fake-staging.ts";
import { runClientToEnd, startClient, type ClientProcess } from "./process.ts";

const MiB = 1024 * 1024;
const sizeBytes = 16 * MiB;

let dir: string;
let staging: FakeStaging;
let client: ClientProcess | undefined;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "druvaa-verify-cli-"));
  writeFileSync(join(dir, "disk0.img"), new Uint8Array(sizeBytes));
  staging = await FakeStaging.start({ answerProbes: true });
  client = await startClient([
    "--device", `disk0=${join(dir, "disk0.img")}`,
    "--staging", staging.address,
    "--wrl", "w1",
    "--export", `unix:${join(dir, "nbd.sock")}`,
    "--control", "127.0.0.1:0",
    "--state-dir", join(dir, "state"),
  ]);
  const nbd = await connectNbd(`unix:${join(dir, "nbd.sock")}`, "disk0");
  try {
    for (let i = 0; i < 8; i += 1) await nbd.write(i * 2 * MiB + 4096, new Uint8Array(64 * 1024).fill(i + 1));
  } finally {
    await nbd.close();
  }
});

afterAll(async () => {
  await client?.stop(3_000);
  await staging?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const verify = (args: string[]) => druvaa(["verify", "--connect", client!.ready.control, ...args]);

describe("druvaa verify", () => {
  test("equal: exit 0, the JSON names the device, the bytes checked and no range", async () => {
    const result = await verify(["--device", "disk0", "--json"]);
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    const parsed = JSON.parse(result.stdout);
    expect(parsed).toMatchObject({ ok: true, device: "disk0", equal: true, checkedBytes: sizeBytes, differing: [] });
    expect(typeof parsed.seconds).toBe("number");
    expect(typeof parsed.mbPerSecond).toBe("number");
  });

  test("a replica block damaged: exit 1 and exactly that 64 KiB block listed, in bytes and human sizes", async () => {
    staging.corruptReplica("disk0", 5 * MiB + 100, new Uint8Array([1, 2, 3]));
    const result = await verify(["--device", "disk0"]);
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toContain("disk0: 1 differing range(s), 64.0 KiB");
    expect(result.stdout).toContain("offset 5242880 (5.00 MiB)  length 65536 (64.0 KiB)");
    const json = JSON.parse((await verify(["--device", "disk0", "--json", "--offset", "4MiB", "--length", "2MiB"])).stdout);
    expect(json).toMatchObject({ equal: false, checkedBytes: 2 * MiB, differing: [{ offset: 5 * MiB, length: 65536 }] });
  });

  test("refusals: an unknown device and --repair without a change map exit 4 with the reason", async () => {
    const unknown = await verify(["--device", "nope"]);
    expect(unknown.exitCode).toBe(4);
    expect(unknown.stderr).toContain("this client serves no device named nope");
    expect(unknown.stderr).toContain("It serves: disk0");
    const repair = await verify(["--device", "disk0", "--repair", "--json"]);
    expect(repair.exitCode).toBe(4);
    expect(JSON.parse(repair.stdout)).toMatchObject({ ok: false, error: { code: "NO_CHANGEMAP" } });
  });

  test("usage errors exit 2: a bad --timeout, a bad --offset, a missing --device, a range off the device", async () => {
    for (const args of [["--device", "disk0", "--timeout", "soon"], ["--device", "disk0", "--timeout", "0"], ["--device", "disk0", "--offset", "lots"], ["--timeout", "1m"], ["--device", "disk0", "--offset", "15MiB", "--length", "2MiB"], ["--device", "disk0", "--offset", "100"]]) {
      const result = await verify(args);
      expect({ args, exitCode: result.exitCode }).toEqual({ args, exitCode: 2 });
    }
    expect((await verify(["--device", "disk0", "--timeout", "soon"])).stderr).toContain('--timeout: cannot read "soon" as a duration');
  });

  test("--help shows a cron example; a port that is not a client's is a usage error", async () => {
    const help = await druvaa(["verify", "--help"]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain("0 3 * * 0  druvaa verify --device disk0");
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({ ok: false, error: { code: "NOT_FOUND", message: "no" } }, { status: 404 }) });
    try {
      const result = await druvaa(["verify", "--connect", `127.0.0.1:${server.port}`, "--device", "disk0"]);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toContain("is not a druvaa client's control port");
    } finally {
      await server.stop(true);
    }
  });

  test("client attach --initial-sync: network or checksum without --changemap, or an unknown mode, is a usage error", async () => {
    for (const mode of ["network", "checksum", "sideways"]) {
      const result = await runClientToEnd(["--device", `disk0=${join(dir, "disk0.img")}`, "--staging", staging.address, "--wrl", "w1", "--export", `unix:${join(dir, "other.sock")}`, "--control", "127.0.0.1:0", "--state-dir", join(dir, "other-state"), "--initial-sync", mode]);
      expect({ mode, exitCode: result.exitCode }).toEqual({ mode, exitCode: 2 });
      expect(result.stderr).toContain(mode === "sideways" ? "not one of none, network, checksum, media" : "needs --changemap");
    }
  });
});
