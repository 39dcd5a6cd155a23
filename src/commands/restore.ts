/**
 * `druvaa restore` (also `drrestore`):
 *   --to PATH [--at POINT]           persistent full restore: copies a replica device, as of a
 *                                    consistent point, to an image file or a failover device
 *                                    (restore-client.ts); the replica takes a fast snapshot and
 *                                    streams it, so apply pauses only for that instant
 *   --snapshot --export ADDR [--at POINT] [--writable]
 *                                    a fast snapshot served over NBD by the replica at ADDR
 *                                    (unix:PATH or HOST:PORT on the replica host) until released
 *   --snapshot --to PATH             the same as --to (it always starts from a fast snapshot)
 *   --release ID / --list            release an exported snapshot / list them
 * Exit codes: 0 done, 1 failed, 2 usage, 3 no such device/snapshot/label, 4 refused (target in
 * use or too small, point outside retention, ...), 5 stalled.
 */
import { command, jsonFlag, output } from "../cli-support.ts";
import { replicaControlPortDefault, replicaRestorePortDefault } from "../constants.ts";
import { usageError } from "../errors.ts";
import { snapshotCommand } from "./restore-snapshot.ts";
import { parseAddress } from "../io/transport.ts";
import { checkName, defaultNodeId } from "../roles/common.ts";
import { linkSecurityArgs, resolveToolSecurity } from "../roles/link-security.ts";
import { restoreFromReplica } from "../roles/replica/restore-client.ts";
import { formatBytes } from "../units.ts";

export default command({
  meta: { name: "restore", description: "Copy a replica device, at a consistent point, to an image file or block device" },
  args: {
    replica: { type: "string", valueHint: "HOST:PORT", default: "127.0.0.1", description: `the replica's restore port (default port ${replicaRestorePortDefault})` },
    device: { type: "string", valueHint: "NAME", description: "the replica device to restore (its --device NAME)" },
    to: { type: "string", valueHint: "PATH", description: "target: a new image file (created at the image's size), or with --force an existing file or block device (refused while mounted)" },
    at: { type: "string", valueHint: "TIME|LSN|LABEL", description: "the consistent point: a label (druvaa checkpoint --label; label:NAME to be explicit), an LSN, a time (2026-12-05T10:00:00Z, or -10m); default the latest (druvaa replica points lists them)" },
    snapshot: { type: "boolean", description: "a fast snapshot: with --export, served over NBD by the replica while apply goes on" },
    export: { type: "string", valueHint: "unix:PATH|HOST:PORT", description: "with --snapshot: where the replica serves the snapshot (an address on the replica host)" },
    writable: { type: "boolean", description: "with --snapshot --export: accept writes (kept in the snapshot, never on the replica): for drills and file-system journal replay" },
    release: { type: "string", valueHint: "ID", description: "release the exported snapshot ID (its export stops)" },
    list: { type: "boolean", description: "list the exported snapshots" },
    control: { type: "string", valueHint: "HOST:PORT", description: `the replica's control port, for --snapshot --export, --release and --list (default: the --replica host, port ${replicaControlPortDefault})` },
    force: { type: "boolean", description: "overwrite an existing non-empty file or a block device" },
    ...linkSecurityArgs,
    json: jsonFlag,
  },
  examples: [
    "druvaa restore --replica 10.0.0.9:6005 --device disk0 --to /srv/restore/disk0.img",
    "druvaa restore --replica 10.0.0.9 --device disk0 --to /dev/sdd --force      # failover device",
    "drrestore --replica 127.0.0.1:6005 --device disk0 --to disk0.img --json",
    "druvaa restore --replica 10.0.0.9 --device disk0 --at before-upgrade --to disk0-before.img   # a checkpoint label",
    "druvaa restore --replica 10.0.0.9 --device disk0 --snapshot --export 10.0.0.9:10809 --at -15m   # then: nbdinfo nbd://10.0.0.9:10809",
    "druvaa restore --replica 10.0.0.9 --release 3",
    "druvaa restore --replica dr-site:6005 --device disk0 --to disk0.img --tls-cert /etc/druvaa/tls/admin.pem --tls-key /etc/druvaa/tls/admin.key --tls-ca /etc/druvaa/tls/ca.pem",
  ],
  async run({ args }) {
    const replica = parseAddress(args.replica, replicaRestorePortDefault);
    if (args.release !== undefined || args.list === true || (args.snapshot === true && args.export !== undefined)) return snapshotCommand(args, replica);
    if (args.export !== undefined || args.writable === true) throw usageError("--export and --writable go with --snapshot", "e.g. druvaa restore --device disk0 --snapshot --export unix:/run/druvaa/snap.sock");
    if (args.device === undefined || args.to === undefined) throw usageError("--device and --to are needed (or --snapshot --export, --release, --list)", "e.g. druvaa restore --replica 10.0.0.9 --device disk0 --to /srv/restore/disk0.img");
    const device = checkName(args.device, "--device");
    const tls = await resolveToolSecurity(args, replica, "replica");
    const tty = process.stderr.isTTY === true && !args.json;
    let lastDrawnMs = 0;
    const startedMs = performance.now();
    const summary = await restoreFromReplica({
      replica,
      device,
      to: args.to,
      at: args.at,
      force: args.force === true,
      nodeId: defaultNodeId(),
      tls,
      onBegin: (begin) => {
        if (tty) process.stderr.write(`restoring ${begin.device} (${formatBytes(begin.sizeBytes)}, applied LSN ${begin.appliedLsn}) to ${args.to}\n`);
      },
      onProgress: (writtenBytes, sizeBytes) => {
        if (!tty) return;
        const nowMs = performance.now();
        if (nowMs - lastDrawnMs < 200 && writtenBytes < sizeBytes) return;
        lastDrawnMs = nowMs;
        const rate = writtenBytes / 1e6 / Math.max((nowMs - startedMs) / 1000, 1e-3);
        process.stderr.write(`\r  ${((writtenBytes / sizeBytes) * 100).toFixed(1).padStart(5)} %  ${formatBytes(writtenBytes)} of ${formatBytes(sizeBytes)}  ${rate.toFixed(1)} MB/s   `);
      },
    });
    if (tty) process.stderr.write("\n");
    const megabytesPerSecond = summary.bytesPerSecond / 1e6;
    output(args.json, { ok: true, ...summary, megabytesPerSecond }, () =>
      [
        `restored ${summary.device} from ${summary.replica} to ${summary.to}${summary.created ? " (created)" : ""}`,
        `  ${summary.sizeBytes} bytes (${formatBytes(summary.sizeBytes)}) at ${args.at === undefined ? "applied LSN" : `the point ${args.at}: LSN`} ${summary.appliedLsn}, ${summary.seconds.toFixed(2)} s, ${megabytesPerSecond.toFixed(1)} MB/s`,
        `  sha256 ${summary.sha256} (verified)`,
        ...(summary.targetSizeBytes > summary.sizeBytes ? [`  note: the target has ${summary.targetSizeBytes} bytes; bytes past ${summary.sizeBytes} were left as they were`] : []),
      ].join("\n"),
    );
  },
});
