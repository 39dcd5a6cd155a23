/** The client's state file: one test per row of the recovery table in src/roles/client/state.ts. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clientEpochReserve } from "../../src/constants.ts";
import { DruvaaError } from "../../src/errors.ts";
import { ClientStateFile, clientStateFileName } from "../../src/roles/client/state.ts";

const root = mkdtempSync(join(tmpdir(), "druvaa-client-state-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirCount = 0;
const freshDir = () => join(root, `s${(dirCount += 1)}`);
const details = () => ({ nodeId: "n1", staging: "127.0.0.1:6001", devices: [{ name: "disk0", path: "/dev/x", wrl: "w", ackedLsn: 0 }] });
const readState = (dir: string) => JSON.parse(readFileSync(join(dir, clientStateFileName), "utf8"));

async function openError(dir: string): Promise<DruvaaError> {
  const error = await ClientStateFile.open(dir, details).then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(DruvaaError);
  return error as DruvaaError;
}

describe("client state file", () => {
  test("no file: epochs start at 1 and a reservation is written before any is used", async () => {
    const dir = freshDir();
    const file = await ClientStateFile.open(dir, details);
    expect(file.startEpoch).toBe(1);
    expect(readState(dir)).toMatchObject({ nodeId: "n1", devices: [{ name: "disk0" }], epochReservedUpTo: 1 + clientEpochReserve });
  });

  test("a restart (even after a crash) starts above every epoch the previous run could have used", async () => {
    const dir = freshDir();
    const first = await ClientStateFile.open(dir, details);
    // The first run hands out epochs up to near the middle of its reservation, then dies.
    await first.save(clientEpochReserve / 2, details());
    const reserved = readState(dir).epochReservedUpTo;
    const second = await ClientStateFile.open(dir, details);
    expect(second.startEpoch).toBe(reserved + 1);
    expect(readState(dir).epochReservedUpTo).toBeGreaterThan(reserved + clientEpochReserve / 2);
  });

  test("using half the reservation extends it", async () => {
    const dir = freshDir();
    const file = await ClientStateFile.open(dir, details);
    const before = readState(dir).epochReservedUpTo;
    await file.save(before - clientEpochReserve / 2 + 1, details());
    expect(readState(dir).epochReservedUpTo).toBeGreaterThan(before);
  });

  test("a file that is not JSON: STATE_CORRUPT, nothing starts", async () => {
    const dir = freshDir();
    await ClientStateFile.open(dir, details);
    writeFileSync(join(dir, clientStateFileName), "{ torn");
    expect((await openError(dir)).code).toBe("STATE_CORRUPT");
  });

  test("a file without a usable reservation: STATE_CORRUPT with a hint", async () => {
    const dir = freshDir();
    await ClientStateFile.open(dir, details);
    writeFileSync(join(dir, clientStateFileName), JSON.stringify({ nodeId: "n1", epochReservedUpTo: "many" }));
    const error = await openError(dir);
    expect(error.code).toBe("STATE_CORRUPT");
    expect(error.hint).toContain("remove it");
  });
});
