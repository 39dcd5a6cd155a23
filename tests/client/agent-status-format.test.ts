/** `druvaa status` of a client host's agent: its attachments, each with its child's own lines. */
import { expect, test } from "bun:test";
import { formatStatus } from "../../src/commands/status-format.ts";

test("an agent's status lists every attachment, its state and its child's staging and devices", () => {
  const text = formatStatus({
    role: "client", nodeId: "db1", version: "0.1.0", uptimeSeconds: 12, agent: true,
    managed: { version: 3, applied: { version: 3, atMs: 1 } },
    attachments: [
      { name: "pair-a", state: "running", pid: 4242, restarts: 1, lastExit: { code: null, signal: "SIGKILL" },
        status: { role: "client", nodeId: "db1", staging: { address: "10.0.0.5:6001", connected: true }, devices: [{ name: "disk0", path: "/dev/sdb", sizeBytes: 1048576, wrl: "fast", writes: 7, bytesWritten: 28672, ackedLsn: 9, inflightWrites: 0 }] } },
      { name: "pair-b", state: "stopped", pid: null, restarts: 0, lastExit: null, status: null },
    ],
  });
  const lines = text.split("\n");
  expect(lines[1]).toBe("  client agent: config version 3");
  expect(lines[2]).toBe("  attachment pair-a: running, pid 4242, 1 restart(s), last exit SIGKILL");
  expect(lines[3]).toBe("    staging 10.0.0.5:6001: connected");
  expect(lines[4]).toContain("device disk0 (/dev/sdb, 1.00 MiB) → WRL fast: 7 writes");
  expect(lines[5]).toBe("  attachment pair-b: stopped, 0 restart(s)");
  expect(text).not.toContain("staging ?");
});
