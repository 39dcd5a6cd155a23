/**
 * `druvaa restore` (restoreFromReplica, against an in-process ReplicaServer) onto an O_DIRECT image
 * on ext4 with 4 KiB sectors (a loop device): an image whose size is whole 512-byte sectors but not
 * whole 4 KiB ends in a chunk O_DIRECT refuses there (EINVAL); it must go through the buffered
 * handle, and the result must be byte-identical.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAddress } from "../../src/io/transport.ts";
import { restoreFromReplica } from "../../src/roles/replica/restore-client.ts";
import { ReplicaServer } from "../../src/roles/replica/server.ts";
import { mountSector4kExt4, type Sector4kFs } from "../io/sector4k-fs.ts";
import { applyModel, dataRecord, memoryCore, shipment } from "./helpers.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

describe("restore to an O_DIRECT file on a 4 KiB-sector file system", () => {
  let fs: Sector4kFs;
  beforeAll(async () => {
    fs = await mountSector4kExt4();
  });
  afterAll(async () => {
    await fs?.cleanup();
  });

  test("a declared size of 4 MiB + 512 bytes restores whole and byte-identical (new file and empty file)", async () => {
    const declaredBytes = 4 * MiB + 512;
    const { core } = await memoryCore({ disk0: 8 * MiB });
    // Data in the last, partial 4 KiB of the image, and in the first chunk.
    const records = [dataRecord(1, "disk0", 0, 64 * KiB), dataRecord(2, "disk0", 4 * MiB - 3584, 4096)];
    const built = shipment(records, { devices: [{ name: "disk0", sizeBytes: declaredBytes }] });
    expect((await core.ship(built.message, built.payload)).type).toBe("shipAck");
    const images = new Map([["disk0", new Uint8Array(8 * MiB)]]);
    applyModel(images, records);
    const expected = images.get("disk0")!.subarray(0, declaredBytes);
    const anywhere = parseAddress("127.0.0.1:0", 0);
    const server = await ReplicaServer.start({ core, nodeId: "replica-4k", listen: anywhere, restore: anywhere, control: anywhere });
    try {
      const empty = join(fs.dir, "empty.img");
      writeFileSync(empty, "");
      for (const to of [join(fs.dir, "restored.img"), empty]) {
        const summary = await restoreFromReplica({ replica: parseAddress(server.addresses.restore, 0), device: "disk0", to, force: false, nodeId: "restorer-4k" });
        expect(summary.sizeBytes).toBe(declaredBytes);
        expect(summary.created).toBe(true);
        expect(statSync(to).size).toBe(declaredBytes);
        const restored = readFileSync(to);
        expect(Buffer.compare(restored, expected)).toBe(0);
        expect(summary.sha256).toBe(createHash("sha256").update(expected).digest("hex"));
      }
    } finally {
      await server.stop();
    }
  });
});
