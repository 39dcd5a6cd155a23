/**
 * `druvaa failback`, run at the original site with the original client stopped: makes the
 * original primary and the failed-over DR device equal again, sending only what differs, then
 * swaps the roles back (the DR device is a protected replica again and replication resumes in the
 * original direction once the client is started again).
 *
 * What differs is the union of
 *   - the DR side's writes since the failover (the replica's DR map),
 *   - the original primary's writes since the failover point: records the rollback undid, records
 *     still waiting in staging's WRL (GET /wrl/pending), and the client's change map (--changemap),
 *   - without --changemap, a checksum pass over every other block (neither side knows it).
 * Decision table (fail-back.ts's plan):
 *   only the DR side wrote          DR → primary (--keep dr)
 *   only the primary wrote          primary → DR (--keep primary)
 *   both wrote (split brain)        refused (exit 4) with what each side wrote and the two
 *                                   commands; done only with --keep dr|primary
 * Then staging drops its records through its head (POST /wrl/discard), the change map is
 * cleared, and the replica resumes after that LSN (POST /failback/complete).
 */
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { command, jsonFlag, output, repeatedFlag } from "../cli-support.ts";
import { readJsonState, writeJsonState } from "../io/state-file.ts";
import { replicaControlPortDefault } from "../constants.ts";
import { DruvaaError, exitCodes, usageError } from "../errors.ts";
import { checkName } from "../roles/common.ts";
import { controlToolArgs, resolveControlToolSecurity } from "../roles/link-security.ts";
import { replicaControl } from "../roles/replica/replica-control.ts";
import { formatBytes } from "../units.ts";
import { copyRanges, describeSides, planFailback, type FailoverView } from "./failback-plan.ts";
import { controlRequest } from "./status-format.ts";

export default command({
  meta: { name: "failback", description: "Make the original primary equal to the DR side (or the other way), sending only what differs, then swap roles back" },
  args: {
    connect: { type: "string", valueHint: "HOST:PORT", default: `127.0.0.1:${replicaControlPortDefault}`, description: "the DR replica's control port" },
    device: { type: "string", valueHint: "NAME", description: "the failed-over device (or --wrl for a group)" },
    wrl: { type: "string", valueHint: "NAME", description: "the failed-over WRL (its devices fail back together)" },
    primary: { type: "string", valueHint: "[NAME=]PATH", required: true, description: "the original primary device or image (the client stopped); NAME=PATH per device of a group" },
    staging: { type: "string", valueHint: "HOST:PORT", required: true, description: "staging's control port (its WRL holds the primary's records since the failover)" },
    changemap: { type: "string", valueHint: "PATH", description: "the original client's change map (its writes while disconnected); without it, blocks nobody tracked are compared by checksum" },
    keep: { type: "string", valueHint: "dr|primary", description: "which side's data wins where both were written (split brain)" },
    "client-state": { type: "string", valueHint: "DIR", description: "the original client's state directory: its generation id is checked against the one the DR side forked from, and the new one written there" },
    "dry-run": { type: "boolean", description: "say what would be sent, change nothing" },
    ...controlToolArgs,
    json: jsonFlag,
  },
  examples: [
    "druvaa failback --connect 10.0.0.9:6004 --device disk0 --primary /dev/sdb --staging 10.0.0.5:6002 --changemap /var/lib/druvaa/changemap.img",
    "druvaa failback --connect 10.0.0.9:6004 --device disk0 --primary /dev/sdb --staging 10.0.0.5:6002 --keep dr   # split brain: the DR side wins",
    "druvaa failback --connect 10.0.0.9:6004 --wrl wrl0 --primary disk0=/dev/sdb --primary disk1=/dev/sdc --staging 10.0.0.5:6002 --dry-run --json",
  ],
  async run({ args, rawArgs }) {
    if ((args.device === undefined) === (args.wrl === undefined)) throw usageError("give --device NAME or --wrl NAME (one of them)", "e.g. druvaa failback --device disk0 --primary /dev/sdb --staging 10.0.0.5:6002");
    if (args.keep !== undefined && args.keep !== "dr" && args.keep !== "primary") throw usageError(`--keep ${args.keep}: must be dr or primary`, "--keep dr: the DR side's data wins; --keep primary: the original primary's wins");
    const tls = await resolveControlToolSecurity(args);
    const query = args.device === undefined ? `wrl=${encodeURIComponent(checkName(args.wrl!, "--wrl"))}` : `device=${encodeURIComponent(checkName(args.device, "--device"))}`;
    const view = await replicaControl<FailoverView>(args.connect, `/failover?${query}`, tls);
    const primaries = primaryPaths(repeatedFlag(rawArgs, "primary"), view);
    const primaryGeneration = args["client-state"] === undefined ? undefined : await checkPrimaryGeneration(args["client-state"], view);
    const pending = await stagingJson<{ headLsn: number; ackedLsn: number; records: number; ranges: { device: string; offset: number; length: number }[] }>(args.staging, `/wrl/pending?wrl=${encodeURIComponent(view.wrl)}`, tls);
    const plan = await planFailback({ view, primaries, pending: pending.ranges, changemap: args.changemap, digestsOf: (body) => replicaControl(args.connect, "/failover/digests", tls, body) });
    const sides = describeSides(plan, view);
    if (plan.splitBrain && args.keep === undefined) {
      const base = `druvaa failback --connect ${args.connect} ${args.device === undefined ? `--wrl ${view.wrl}` : `--device ${args.device}`} --primary ${args.primary} --staging ${args.staging}${args.changemap === undefined ? "" : ` --changemap ${args.changemap}`}`;
      throw new DruvaaError(
        "SPLIT_BRAIN",
        `both sides were written since the failover of WRL ${view.wrl} at LSN ${view.atLsn} (DR generation ${view.generation}, forked from ${view.parentGeneration}): ${sides}. Nothing was changed`,
        `Choose which side's data to keep where they differ:\n    ${base} --keep dr        # the DR side wins: the primary's writes since the failover are overwritten\n    ${base} --keep primary   # the primary wins: the DR side's writes since the failover are overwritten`,
        exitCodes.refused,
      );
    }
    const keep = (args.keep as "dr" | "primary" | undefined) ?? (plan.drChanged || !plan.primaryChanged ? "dr" : "primary");
    const generation = keep === "dr" ? view.generation : randomUUID();
    const summary = { wrl: view.wrl, generation, primaryGeneration: primaryGeneration ?? null, atLsn: view.atLsn, keep, direction: keep === "dr" ? "dr-to-primary" : "primary-to-dr", splitBrain: plan.splitBrain, sentBytes: plan.sentBytes, volumeBytes: plan.volumeBytes, sentPercent: (100 * plan.sentBytes) / Math.max(1, plan.volumeBytes), checksummedBytes: plan.checksummedBytes, pendingRecords: pending.records, ranges: plan.union.length, dryRun: args["dry-run"] === true };
    if (args["dry-run"] !== true) {
      await copyRanges(plan, view, primaries, keep);
      const discarded = await stagingJson<{ ackedLsn: number; discardedRecords: number }>(args.staging, "/wrl/discard", tls, { wrl: view.wrl, throughLsn: pending.headLsn });
      await plan.clearChangemap();
      const done = await replicaControl<{ appliedLsn: number }>(args.connect, "/failback/complete", tls, { wrl: view.wrl, throughLsn: discarded.ackedLsn, generation });
      if (args["client-state"] !== undefined) await writeGeneration(args["client-state"], view.wrlUuid, generation);
      Object.assign(summary, { discardedRecords: discarded.discardedRecords, appliedLsn: done.appliedLsn });
    }
    output(args.json, { ok: true, ...summary }, () =>
      [
        `${summary.dryRun ? "would fail back" : "failed back"} WRL ${view.wrl} (${view.devices.map((device) => device.name).join(", ")}): ${keep === "dr" ? "DR side → original primary" : "original primary → DR side"}${plan.splitBrain ? ` (split brain resolved: --keep ${keep})` : ""}`,
        `  ${sides}`,
        `  sent ${formatBytes(plan.sentBytes)} of ${formatBytes(plan.volumeBytes)} (${summary.sentPercent.toFixed(2)} % of the volume) in ${plan.union.length} range(s)${plan.checksummedBytes > 0 ? `; ${formatBytes(plan.checksummedBytes)} compared by checksum` : ""}`,
        summary.dryRun ? "  nothing changed (--dry-run)" : `  the DR devices are replicas again; both sides are at generation ${generation}${args["client-state"] === undefined ? " (the primary's generation was not checked: --client-state DIR)" : ""}; start the original client again to resume replication`,
      ].join("\n"),
    );
  },
});

/**
 * The original primary's generation (DIR/generation.json, or the WRL's own history `wrl:UUID`
 * when none was ever written) must be the one the DR side forked from: anything else is another
 * history (the wrong primary, or one failed back elsewhere meanwhile), refused.
 */
async function checkPrimaryGeneration(dir: string, view: FailoverView): Promise<string> {
  const generations = (await readJsonState<Record<string, string>>(join(dir, "generation.json"))) ?? {};
  const primary = generations[view.wrlUuid] ?? `wrl:${view.wrlUuid}`;
  if (primary === view.parentGeneration) return primary;
  throw new DruvaaError(
    "GENERATION_MISMATCH",
    `the original primary's history is generation ${primary} (${join(dir, "generation.json")}), but the DR side of WRL ${view.wrl} was failed over from generation ${view.parentGeneration}: ${primary === view.generation ? "it already holds the DR side's history (failed back before?)" : "this is not the primary the DR side forked from"}; nothing was changed`,
    "Check --primary and --client-state name the original primary of this WRL; druvaa status --connect REPLICA:6004 shows the failover's generations",
    exitCodes.refused,
  );
}

async function writeGeneration(dir: string, wrlUuid: string, generation: string): Promise<void> {
  const path = join(dir, "generation.json");
  const generations = (await readJsonState<Record<string, string>>(path)) ?? {};
  await writeJsonState(path, { ...generations, [wrlUuid]: generation });
}

function primaryPaths(values: readonly string[], view: FailoverView): Map<string, string> {
  const paths = new Map<string, string>();
  for (const value of values) {
    const at = value.indexOf("=");
    if (at > 0) paths.set(value.slice(0, at), value.slice(at + 1));
    else if (view.devices.length === 1) paths.set(view.devices[0]!.name, value);
    else throw usageError(`--primary ${value}: WRL ${view.wrl} has several devices: give --primary NAME=PATH for each`, `Devices: ${view.devices.map((device) => device.name).join(", ")}`);
  }
  for (const device of view.devices) if (!paths.has(device.name)) throw usageError(`no --primary for device ${device.name}`, `Give --primary ${device.name}=PATH`);
  return paths;
}

async function stagingJson<T>(connect: string, path: string, tls: Parameters<typeof controlRequest>[4], body?: unknown): Promise<T> {
  const init: RequestInit = body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
  const response = await controlRequest(connect, path, init, 6002, tls);
  const parsed = (await response.json().catch(() => undefined)) as (T & { error?: { code?: string; message?: string; hint?: string } }) | undefined;
  if (response.ok && parsed !== undefined) return parsed;
  const error = parsed?.error;
  throw new DruvaaError(error?.code ?? "STAGING_REFUSED", `staging ${connect}: ${error?.message ?? `HTTP ${response.status}`}`, error?.hint ?? "Give staging's control port (druvaa staging serve --control, default 6002)", error?.code === "WRL_UNKNOWN" ? exitCodes.notFound : exitCodes.failure);
}
