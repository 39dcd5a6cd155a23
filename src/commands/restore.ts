/**
 * `druvaa restore` (also `drrestore`): copies a replica device, as of a consistent point (a
 * shipment boundary), to an image file or a failover device. The work is in
 * src/roles/replica/restore-client.ts; this is the command line around it.
 */
import { command, jsonFlag, output } from "../cli-support.ts";
import { replicaRestorePortDefault } from "../constants.ts";
import { parseAddress } from "../io/transport.ts";
import { checkName, defaultNodeId } from "../roles/common.ts";
import { linkSecurityArgs, resolveToolSecurity } from "../roles/link-security.ts";
import { restoreFromReplica } from "../roles/replica/restore-client.ts";
import { formatBytes } from "../units.ts";

export default command({
  meta: { name: "restore", description: "Copy a replica device, at a consistent point, to an image file or block device" },
  args: {
    replica: { type: "string", valueHint: "HOST:PORT", required: true, description: `the replica's restore port (default port ${replicaRestorePortDefault})` },
    device: { type: "string", valueHint: "NAME", required: true, description: "the replica device to restore (its --device NAME)" },
    to: { type: "string", valueHint: "PATH", required: true, description: "target: a new image file (created at the image's size), or with --force an existing file or block device" },
    force: { type: "boolean", description: "overwrite an existing non-empty file or a block device" },
    ...linkSecurityArgs,
    json: jsonFlag,
  },
  examples: [
    "druvaa restore --replica 10.0.0.9:6005 --device disk0 --to /srv/restore/disk0.img",
    "druvaa restore --replica 10.0.0.9 --device disk0 --to /dev/sdd --force      # failover device",
    "drrestore --replica 127.0.0.1:6005 --device disk0 --to disk0.img --json",
    "druvaa restore --replica dr-site:6005 --device disk0 --to disk0.img --tls-cert /etc/druvaa/tls/admin.pem --tls-key /etc/druvaa/tls/admin.key --tls-ca /etc/druvaa/tls/ca.pem",
  ],
  async run({ args }) {
    const replica = parseAddress(args.replica, replicaRestorePortDefault);
    const device = checkName(args.device, "--device");
    const tls = await resolveToolSecurity(args, replica, "replica");
    const tty = process.stderr.isTTY === true && !args.json;
    let lastDrawnMs = 0;
    const startedMs = performance.now();
    const summary = await restoreFromReplica({
      replica,
      device,
      to: args.to,
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
        `  ${summary.sizeBytes} bytes (${formatBytes(summary.sizeBytes)}) at applied LSN ${summary.appliedLsn}, ${summary.seconds.toFixed(2)} s, ${megabytesPerSecond.toFixed(1)} MB/s`,
        `  sha256 ${summary.sha256} (verified)`,
        ...(summary.targetSizeBytes > summary.sizeBytes ? [`  note: the target has ${summary.targetSizeBytes} bytes; bytes past ${summary.sizeBytes} were left as they were`] : []),
      ].join("\n"),
    );
  },
});
