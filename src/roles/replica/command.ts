/** `druvaa replica …`: the replication server role. */
import { command } from "../../cli-support.ts";

export default command({
  meta: { name: "replica", description: "Run the replication server: apply shipments from staging to the replica devices" },
  subCommands: {
    apply: () => import("./apply-command.ts").then((m) => m.default),
    seed: () => import("./seed-command.ts").then((m) => m.default),
    points: () => import("./points-command.ts").then((m) => m.default),
  },
  examples: [
    "druvaa replica apply --listen 10.0.0.9:6003 --device disk0=/dev/sdc",
    "druvaa replica apply --device disk0=/srv/replica/disk0.img --device disk1=/srv/replica/disk1.img --json",
    "druvaa replica apply --device disk0=/dev/sdc --retention 24h --retention-size 50GiB   # keep 24 h of points (druvaa replica points)",
    "druvaa replica apply --device disk0=/dev/sdc --await-seed disk0   # then: druvaa replica seed --device disk0 --from /mnt/backup/disk0.img",
  ],
});
