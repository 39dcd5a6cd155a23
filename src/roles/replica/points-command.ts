/**
 * `druvaa replica points --device NAME`: the consistent points a restore, snapshot or failover of
 * a replica device can go to (time, LSN, label), oldest first, from the replica's control port.
 * Points older than the current one exist only with a point-in-time journal (`druvaa replica
 * apply --retention 24h`). Exit 3 for an unknown device, 1 when the replica cannot be reached.
 */
import { command, jsonFlag, output } from "../../cli-support.ts";
import { replicaControlPortDefault } from "../../constants.ts";
import { formatBytes } from "../../units.ts";
import { checkName } from "../common.ts";
import { controlToolArgs, resolveControlToolSecurity } from "../link-security.ts";
import type { JournalStatus, Point } from "./journal.ts";
import { replicaControl } from "./replica-control.ts";

export default command({
  meta: { name: "points", description: "List the consistent points of a replica device (for restore, snapshot and failover --at)" },
  args: {
    device: { type: "string", valueHint: "NAME", required: true, description: "the replica device (its --device NAME)" },
    connect: { type: "string", valueHint: "HOST:PORT", default: `127.0.0.1:${replicaControlPortDefault}`, description: `the replica's control port (default 127.0.0.1:${replicaControlPortDefault})` },
    ...controlToolArgs,
    json: jsonFlag,
  },
  examples: [
    "druvaa replica points --device disk0",
    "druvaa replica points --device disk0 --connect 10.0.0.9:6004 --json",
    "druvaa restore --replica 10.0.0.9 --device disk0 --at before-upgrade --to /srv/restore/disk0.img   # a label listed here",
  ],
  async run({ args }) {
    const device = checkName(args.device, "--device");
    const tls = await resolveControlToolSecurity(args);
    const answer = await replicaControl<{ device: string; points: Point[]; omitted?: number; journal: JournalStatus | null }>(args.connect, `/points?device=${encodeURIComponent(device)}`, tls);
    output(args.json, { ok: true, ...answer }, () => {
      const lines = [`${answer.points.length} point(s) of ${device}${answer.points[0] === undefined ? "" : ` (WRL ${answer.points[0].wrl})`}${(answer.omitted ?? 0) > 0 ? `; ${answer.omitted} more unlabelled ones between the oldest and the newest not listed` : ""}:`];
      lines.push("  TIME                       LSN          LABEL");
      for (const point of answer.points) lines.push(`  ${point.time.padEnd(26)} ${String(point.lsn).padEnd(12)} ${point.label ?? ""}${point.current ? "  (current)" : ""}`);
      const journal = answer.journal;
      lines.push(journal === null ? "no point-in-time journal: start the replica with --retention 24h to keep earlier points" : `journal ${journal.directory}: ${formatBytes(journal.bytes)}, retention ${journal.retentionSeconds / 3600} h or ${formatBytes(journal.retentionBytes)}${journal.droppedChunks > 0 ? `; ${journal.droppedChunks} older point(s) dropped` : ""}`);
      return lines.join("\n");
    });
  },
});
