/**
 * The configs the panel computes from its tables (config-store.ts) are what the real components
 * accept: each is fed to the role's own prepare-time validation (staging managed-validate.ts,
 * replica managed-validate.ts, client agent-config.ts) against real files in a temp directory,
 * and comes back with the same WRLs, devices and attachments.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { protectReserveBytesDefault } from "../../src/protect-constants.ts";
import { validateAgentConfig } from "../../src/roles/client/agent-config.ts";
import { ConfigStore } from "../../src/roles/panel/config-store.ts";
import { PanelStore } from "../../src/roles/panel/store.ts";
import { validateReplicaConfig } from "../../src/roles/replica/managed-validate.ts";
import { validateStagingConfig } from "../../src/roles/staging/managed-validate.ts";

const MiB = 1024 ** 2;
const dir = mkdtempSync(join(tmpdir(), "druvaa-panel-shapes-"));
const store = PanelStore.open(join(dir, "panel.db"));
afterAll(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

test("the staging, replica and client configs computed for a pair pass each role's own validation unchanged", async () => {
  for (const sub of ["wrl", "replica", "client", "agent"]) mkdirSync(join(dir, sub));
  const devicePath = join(dir, "client", "disk0.img");
  writeFileSync(devicePath, "");
  truncateSync(devicePath, 64 * MiB);
  const config = new ConfigStore(store);
  store.addComponent("s1", "staging", "127.0.0.1:6002", "admin");
  store.addComponent("r1", "replica", "127.0.0.1:6004", "admin");
  store.addComponent("c1", "client", "127.0.0.1:6007", "admin");
  config.addWrl({ name: "fast", staging: "s1", paths: [join(dir, "wrl", "fast.img")], sizeBytes: 256 * MiB, replica: "r1", replicaAddress: "127.0.0.1:6003", options: { compression: "auto", rateLimit: "20MiB/s", rpo: "30s", stagingAddress: "127.0.0.1:6001" }, createdBy: "admin" });
  config.addChangemap({ name: "cm-db", client: "c1", path: join(dir, "client", "pair-db.map"), createdBy: "admin" });
  config.addPair({
    name: "pair-db", client: "c1", deviceName: "disk0", devicePath, deviceSizeBytes: 64 * MiB, export: `unix:${join(dir, "client", "disk0.sock")}`, wrl: "fast", changemap: "cm-db",
    replicaDevicePath: join(dir, "replica", "disk0.img"), replicaSizeBytes: 64 * MiB + protectReserveBytesDefault, initialSync: "checksum", options: { rateLimit: "50MiB/s" }, enabled: true, createdBy: "admin",
  });

  const staging = config.stagingConfig("s1");
  const stagingChecked = await validateStagingConfig(staging, { wrls: [] }, { flagWrls: new Map(), payloadKey: undefined, running: () => undefined, loopbackOnly: true });
  expect(stagingChecked.wrls).toHaveLength(1);
  expect(stagingChecked.wrls[0]).toMatchObject({ name: "fast", paths: [join(dir, "wrl", "fast.img")], sizeBytes: 256 * MiB, replica: "127.0.0.1:6003", rateLimit: "20MiB/s", rpo: "30s" });

  const replica = config.replicaConfig("r1");
  const replicaChecked = await validateReplicaConfig(replica, { devices: [] }, { flagDevices: new Map(), protectHeadersBytes: protectReserveBytesDefault, rsWrlPath: undefined, declaredSizeBytes: () => undefined, removalBlocker: () => undefined });
  expect(replicaChecked.devices).toEqual([{ name: "disk0", path: join(dir, "replica", "disk0.img"), sizeBytes: 64 * MiB + protectReserveBytesDefault, primarySizeBytes: 64 * MiB }]);

  const client = config.clientConfig("c1");
  const clientChecked = await validateAgentConfig(client, { stateDir: join(dir, "agent"), allowRemoteExport: false });
  expect(clientChecked.attachments).toHaveLength(1);
  expect(clientChecked.attachments[0]).toMatchObject({ name: "pair-db", devices: [{ name: "disk0", path: devicePath }], staging: "127.0.0.1:6001", wrl: "fast", changemap: join(dir, "client", "pair-db.map"), initialSync: "checksum", rateLimit: "50MiB/s", enabled: true });
});
