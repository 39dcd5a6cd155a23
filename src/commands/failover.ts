/**
 * `druvaa failover`: makes a replica device (or a WRL's consistency group) a writable primary at
 * the DR site (src/roles/replica/failover.ts): apply stops for that WRL, the devices go back to
 * the chosen point (--at, default the latest), their header sectors are swapped back, and the
 * replica serves them read-write over NBD at --export, recording every write for failback. A new
 * generation id names the DR side's history.
 *
 * --test is a drill: a writable fast snapshot of the point is served instead, and replication goes
 * on untouched (release it with druvaa restore --release ID).
 *
 * Exit codes: 0 failed over, 2 usage, 3 unknown device/WRL/label, 4 refused (mid-resync, failed
 * over already, point outside retention, a device shared by a WRL without --wrl), 1 otherwise.
 */
import { command, jsonFlag, output } from "../cli-support.ts";
import { replicaControlPortDefault } from "../constants.ts";
import { usageError } from "../errors.ts";
import { checkName } from "../roles/common.ts";
import { controlToolArgs, resolveControlToolSecurity } from "../roles/link-security.ts";
import type { FailoverRecord } from "../roles/replica/failover-state.ts";
import { replicaControl } from "../roles/replica/replica-control.ts";
import { formatBytes } from "../units.ts";

export default command({
  meta: { name: "failover", description: "Make a replica device (or a WRL's group) a writable primary at the DR site, or run a drill (--test)" },
  args: {
    connect: { type: "string", valueHint: "HOST:PORT", default: `127.0.0.1:${replicaControlPortDefault}`, description: `the replica's control port (default 127.0.0.1:${replicaControlPortDefault})` },
    device: { type: "string", valueHint: "NAME", description: "the replica device to fail over (alone in its WRL; else use --wrl)" },
    wrl: { type: "string", valueHint: "NAME", description: "fail over every device of this WRL together (a consistency group)" },
    at: { type: "string", valueHint: "TIME|LSN|LABEL", description: "the consistent point to fail over to (druvaa replica points lists them); default the latest" },
    export: { type: "string", valueHint: "unix:PATH|HOST:PORT", required: true, description: "where the replica serves the promoted devices over NBD (export names: the device names); the DR side writes through it, every write recorded for failback" },
    test: { type: "boolean", description: "a drill: a writable fast snapshot is exported instead; replication goes on untouched" },
    ...controlToolArgs,
    json: jsonFlag,
  },
  examples: [
    "druvaa failover --connect 10.0.0.9:6004 --device disk0 --export 10.0.0.9:10810",
    "druvaa failover --connect 10.0.0.9:6004 --wrl wrl0 --at before-upgrade --export unix:/run/druvaa/dr.sock",
    "druvaa failover --connect 10.0.0.9:6004 --device disk0 --test --export 10.0.0.9:10811   # drill; release: druvaa restore --control 10.0.0.9:6004 --release ID",
  ],
  async run({ args }) {
    if ((args.device === undefined) === (args.wrl === undefined)) throw usageError("give --device NAME or --wrl NAME (one of them)", "e.g. druvaa failover --device disk0 --export 10.0.0.9:10810");
    const tls = await resolveControlToolSecurity(args);
    if (args.test === true) {
      if (args.device === undefined || args.export === undefined) throw usageError("a drill (--test) needs --device and --export", "e.g. druvaa failover --device disk0 --test --export unix:/run/druvaa/drill.sock");
      const device = checkName(args.device, "--device");
      const drill = await replicaControl<{ id: number; lsn: number; label?: string; uri: string; sizeBytes: number }>(args.connect, "/snapshots", tls, { device, export: args.export, writable: true, ...(args.at === undefined ? {} : { at: args.at }) });
      output(args.json, { ok: true, test: true, ...drill }, () =>
        [`drill: ${device} at LSN ${drill.lsn}${drill.label === undefined ? "" : ` (${drill.label})`} is served writable at ${drill.uri} (${formatBytes(drill.sizeBytes)}); replication goes on untouched`, `  end the drill with: druvaa restore --control ${args.connect} --release ${drill.id}`].join("\n"),
      );
      return;
    }
    const body = { ...(args.device === undefined ? {} : { device: checkName(args.device, "--device") }), ...(args.wrl === undefined ? {} : { wrl: checkName(args.wrl, "--wrl") }), ...(args.at === undefined ? {} : { at: args.at }), export: args.export };
    const record = await replicaControl<FailoverRecord & { uris: Record<string, string>; undoneBytes: number }>(args.connect, "/failover", tls, body);
    output(args.json, record, () =>
      [
        `failed over WRL ${record.wrl} (${record.devices.map((device) => device.name).join(", ")}) at LSN ${record.atLsn}: generation ${record.generation} (from ${record.parentGeneration})`,
        record.undoneBytes > 0 ? `  rolled back ${formatBytes(record.undoneBytes)} written after that point (LSN ${record.atLsn + 1}..${record.appliedLsnBefore})` : "  nothing rolled back: the latest point",
        ...Object.entries(record.uris).map(([name, uri]) => `  ${name}: ${uri} (read-write; every write is recorded for failback)`),
        "  replication of this WRL is held: staging keeps its records until druvaa failback",
      ].join("\n"),
    );
  },
});
