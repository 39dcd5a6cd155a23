/**
 * The fast-snapshot forms of `druvaa restore` (restore.ts): --snapshot --export, --release, --list,
 * through the replica's control port (snapshot-exports.ts on the replica).
 */
import { output } from "../cli-support.ts";
import { replicaControlPortDefault } from "../constants.ts";
import { usageError } from "../errors.ts";
import { formatAddress, type Address } from "../io/address.ts";
import { checkName } from "../roles/common.ts";
import { resolveControlToolSecurity } from "../roles/link-security.ts";
import { replicaControl } from "../roles/replica/replica-control.ts";
import type { SnapshotInfo } from "../roles/replica/snapshot.ts";
import { formatBytes } from "../units.ts";

interface SnapshotArgs {
  device?: string | undefined;
  at?: string | undefined;
  export?: string | undefined;
  writable?: boolean | undefined;
  release?: string | undefined;
  list?: boolean | undefined;
  control?: string | undefined;
  json?: boolean | undefined;
  to?: string | undefined;
  "tls-cert"?: string | undefined;
  "tls-key"?: string | undefined;
  "tls-ca"?: string | undefined;
  crl?: string | undefined;
}

type Exported = SnapshotInfo & { uri: string; writable: boolean };

/** The replica's control port: --control, else the --replica host at the default control port. */
function controlOf(args: SnapshotArgs, replica: Address): string {
  if (args.control !== undefined) return args.control;
  if (replica.kind === "unix") throw usageError("--control is needed when --replica is a unix: socket", "e.g. --control 127.0.0.1:6004");
  return formatAddress({ kind: "tcp", host: replica.host ?? "127.0.0.1", port: replicaControlPortDefault });
}

export async function snapshotCommand(args: SnapshotArgs, replica: Address): Promise<void> {
  const connect = controlOf(args, replica);
  const tls = await resolveControlToolSecurity(args);
  if (args.list === true) {
    const { snapshots } = await replicaControl<{ snapshots: Exported[] }>(connect, "/snapshots", tls);
    output(args.json, { ok: true, snapshots }, () => (snapshots.length === 0 ? "no exported snapshots" : snapshots.map(describe).join("\n")));
    return;
  }
  if (args.release !== undefined) {
    const id = Number(args.release);
    if (!Number.isSafeInteger(id) || id <= 0) throw usageError(`--release ${args.release}: not a snapshot id`, "The id is printed by druvaa restore --snapshot --export, and by --list");
    const released = await replicaControl<{ id: number; device: string }>(connect, "/snapshots/release", tls, { id });
    output(args.json, { ok: true, ...released }, () => `released snapshot ${released.id} of ${released.device}`);
    return;
  }
  if (args.to !== undefined) throw usageError("--snapshot takes either --export or --to", "--snapshot --to PATH is a full restore that starts from a fast snapshot: drop --export");
  if (args.device === undefined) throw usageError("--device is needed", "e.g. druvaa restore --device disk0 --snapshot --export unix:/run/druvaa/snap.sock");
  const device = checkName(args.device, "--device");
  const created = await replicaControl<Exported>(connect, "/snapshots", tls, { device, export: args.export, writable: args.writable === true, ...(args.at === undefined ? {} : { at: args.at }) });
  output(args.json, { ok: true, ...created }, () => `${describe(created)}\n  release it with: druvaa restore --control ${connect} --release ${created.id}`);
}

function describe(snapshot: Exported): string {
  return `snapshot ${snapshot.id} of ${snapshot.device} at LSN ${snapshot.lsn}${snapshot.label === undefined ? "" : ` (${snapshot.label})`}, ${formatBytes(snapshot.sizeBytes)}, ${snapshot.writable ? "writable" : "read-only"}: ${snapshot.uri}`;
}
