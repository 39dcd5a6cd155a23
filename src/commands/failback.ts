/**
 * `druvaa failback`, run at the original site with the original client stopped: makes the
 * original primary and the failed-over DR device equal again, sending only what differs, then
 * swaps the roles back (the DR device is a protected replica again and replication resumes in the
 * original direction once the client is started again).
 *
 * What differs is the union of (failback-plan.ts)
 *   - the DR side's writes since the failover (the replica's DR map),
 *   - the original primary's writes since the failover point: records the rollback undid, records
 *     still waiting in staging's WRL past that point (GET /wrl/pending), and the client's change
 *     map (--changemap),
 *   - without --changemap, a checksum pass over every other block (neither side knows it).
 * Decision table:
 *   only the DR side wrote          DR → primary (keep dr)
 *   only the primary wrote          primary → DR (keep primary)
 *   both wrote (split brain)        refused (exit 4) with what each side wrote and the two
 *                                   commands; done only with --keep dr|primary
 *   a failback began before         the side it chose (a re-run finishes it; --abort ends it)
 * Steps, each safe to run again: the primaries checked free (not mounted, attached or held open);
 * the primary's generation checked (--client-state); begin (the DR export takes no more DR-side
 * writes); copy; staging drops its records through its head (POST /wrl/discard); the change map
 * cleared; the client's generation marked pending; complete (the replica resumes after that
 * LSN); the client's generation written.
 */
import { join } from "node:path";
import { command, jsonFlag, output, repeatedFlag } from "../cli-support.ts";
import { replicaControlPortDefault, stagingControlPortDefault } from "../constants.ts";
import { DruvaaError, exitCodes, usageError } from "../errors.ts";
import { inUseBy } from "../io/mounts.ts";
import { controlRequest } from "./status-format.ts";
import { readJsonState, writeJsonState } from "../io/state-file.ts";
import { checkName } from "../roles/common.ts";
import { controlToolArgs, resolveControlToolSecurity } from "../roles/link-security.ts";
import { replicaControl } from "../roles/replica/replica-control.ts";
import type { PreparedTls } from "../tls/transport-tls.ts";
import { formatBytes } from "../units.ts";
import { copyRanges, describeSides, planFailback, type FailoverView } from "./failback-plan.ts";

type Keep = "dr" | "primary";

export default command({
  meta: { name: "failback", description: "Make the original primary equal to the DR side (or the other way), sending only what differs, then swap roles back" },
  args: {
    connect: { type: "string", valueHint: "HOST:PORT", default: `127.0.0.1:${replicaControlPortDefault}`, description: "the DR replica's control port" },
    device: { type: "string", valueHint: "NAME", description: "the failed-over device (or --wrl for a group)" },
    wrl: { type: "string", valueHint: "NAME", description: "the failed-over WRL (its devices fail back together)" },
    primary: { type: "string", valueHint: "[NAME=]PATH", description: "the original primary device or image (the client stopped); NAME=PATH per device of a group" },
    staging: { type: "string", valueHint: "HOST:PORT", description: "staging's control port (its WRL holds the primary's records since the failover)" },
    changemap: { type: "string", valueHint: "PATH", description: "the original client's change map (its writes while disconnected); without it, blocks nobody tracked are compared by checksum" },
    keep: { type: "string", valueHint: "dr|primary", description: "which side's data wins where both were written (split brain)" },
    "client-state": { type: "string", valueHint: "DIR", description: "the original client's state directory: its generation id is checked against the one the DR side forked from, and the new one written there" },
    "dry-run": { type: "boolean", description: "say what would be sent, change nothing" },
    abort: { type: "boolean", description: "end a failback that began (the DR side takes writes again); nothing is copied" },
    ...controlToolArgs,
    json: jsonFlag,
  },
  examples: [
    "druvaa failback --connect 10.0.0.9:6004 --device disk0 --primary /dev/sdb --staging 10.0.0.5:6002 --changemap /var/lib/druvaa/changemap.img --client-state /var/lib/druvaa/client",
    "druvaa failback --connect 10.0.0.9:6004 --device disk0 --primary /dev/sdb --staging 10.0.0.5:6002 --keep dr   # split brain: the DR side wins",
    "druvaa failback --connect 10.0.0.9:6004 --wrl wrl0 --primary disk0=/dev/sdb --primary disk1=/dev/sdc --staging 10.0.0.5:6002 --dry-run --json",
    "druvaa failback --connect 10.0.0.9:6004 --device disk0 --abort",
  ],
  async run({ args, rawArgs }) {
    if ((args.device === undefined) === (args.wrl === undefined)) throw usageError("give --device NAME or --wrl NAME (one of them)", "e.g. druvaa failback --device disk0 --primary /dev/sdb --staging 10.0.0.5:6002");
    if (args.keep !== undefined && args.keep !== "dr" && args.keep !== "primary") throw usageError(`--keep ${args.keep}: must be dr or primary`, "--keep dr: the DR side's data wins; --keep primary: the original primary's wins");
    const tls = await resolveControlToolSecurity(args);
    const query = args.device === undefined ? `wrl=${encodeURIComponent(checkName(args.wrl!, "--wrl"))}` : `device=${encodeURIComponent(checkName(args.device, "--device"))}`;
    const clientState = args["client-state"];
    const view = await replicaControl<FailoverView>(args.connect, `/failover?${query}`, tls).catch(async (error: unknown) => {
      // Completed already, but this tool stopped before writing the client's generation: write it now.
      const finished = error instanceof DruvaaError && error.code === "NOT_FAILED_OVER" && clientState !== undefined ? await finishClientGeneration(clientState) : undefined;
      if (finished === undefined) throw error;
      return finished;
    });
    if ("finished" in view) {
      output(args.json, { ok: true, ...view }, () => `the failback had completed; the client's generation is now ${view.generation} (${join(clientState!, "generation.json")})`);
      return;
    }
    if (args.abort === true) {
      const ended = await replicaControl<{ aborted: boolean }>(args.connect, "/failback/abort", tls, { wrl: view.wrl });
      output(args.json, { ok: true, wrl: view.wrl, aborted: ended.aborted }, () => (ended.aborted ? `failback of WRL ${view.wrl} aborted: the DR side takes writes again` : `no failback of WRL ${view.wrl} had begun: nothing to abort`));
      return;
    }
    if (view.phase === "failing-back") {
      // An interrupted completion: the copy and the discard were done; finish it.
      const { throughLsn, generation } = view.failback!;
      await replicaControl(args.connect, "/failback/complete", tls, { wrl: view.wrl, throughLsn, generation });
      if (clientState !== undefined) await writeGeneration(clientState, view.wrlUuid, { generation: generation! });
      output(args.json, { ok: true, wrl: view.wrl, generation, appliedLsn: throughLsn, finishedInterrupted: true }, () => `finished the interrupted failback of WRL ${view.wrl}: the DR devices are replicas again (generation ${generation}), applying from LSN ${throughLsn! + 1}`);
      return;
    }
    if (args.primary === undefined || args.staging === undefined) throw usageError("--primary and --staging are needed", "e.g. --primary /dev/sdb --staging 10.0.0.5:6002");
    const primaries = primaryPaths(repeatedFlag(rawArgs, "primary"), view);
    for (const [name, path] of primaries) {
      const user = await inUseBy(path);
      if (user !== undefined) throw new DruvaaError("TARGET_IN_USE", `--primary ${name}=${path}: ${user}; nothing was changed`, "Stop what uses the original primary (the application, its mount, the druvaa client) before failing back", exitCodes.refused);
    }
    const primaryGeneration = clientState === undefined ? undefined : await checkPrimaryGeneration(clientState, view);
    const begun = view.failback?.keep;
    if (begun !== undefined && args.keep !== undefined && args.keep !== begun) {
      throw new DruvaaError("FAILBACK_IN_PROGRESS", `a failback of WRL ${view.wrl} keeping the ${begun === "dr" ? "DR side's" : "primary's"} data began already`, `Run it again with --keep ${begun} (or without --keep) to finish it, or end it: druvaa failback --abort`, exitCodes.refused);
    }
    const pending = await stagingJson<{ headLsn: number; records: number; ranges: { device: string; offset: number; length: number }[] }>(args.staging, `/wrl/pending?wrl=${encodeURIComponent(view.wrl)}&afterLsn=${view.atLsn}`, tls);
    if (view.failback !== undefined && pending.headLsn !== view.failback.stagingHeadLsn) {
      throw new DruvaaError("FAILBACK_PRIMARY_CHANGED", `the original primary was written after this failback began (staging's head moved from LSN ${view.failback.stagingHeadLsn} to ${pending.headLsn}): finishing it could overwrite those writes; nothing was changed`, "End it and look again: druvaa failback --abort, then run failback again (it compares both sides anew)", exitCodes.refused);
    }
    const foreign = [...new Set(pending.ranges.map((range) => range.device).filter((device) => !view.devices.some((entry) => entry.name === device)))];
    if (foreign.length > 0) throw new DruvaaError("FAILBACK_DEVICES", `staging holds writes of WRL ${view.wrl} for ${foreign.join(", ")}, which the DR side does not have: they would be lost`, "Fail back with the replica started with those devices too, or copy them by hand first", exitCodes.refused);
    const planOf = (drWritten: FailoverView["drWritten"]) => planFailback({ view: { ...view, drWritten }, primaries, pending: pending.ranges, changemap: args.changemap, digestsOf: (body) => replicaControl(args.connect, "/failover/digests", tls, body) });
    let plan = await planOf(view.drWritten);
    try {
      const refuseSplitBrain = () => {
        const base = `druvaa failback --connect ${args.connect} ${args.device === undefined ? `--wrl ${view.wrl}` : `--device ${args.device}`} --primary ${args.primary} --staging ${args.staging}${args.changemap === undefined ? "" : ` --changemap ${args.changemap}`}${clientState === undefined ? "" : ` --client-state ${clientState}`}`;
        return new DruvaaError(
          "SPLIT_BRAIN",
          `both sides were written since the failover of WRL ${view.wrl} at LSN ${view.atLsn} (DR generation ${view.generation}, forked from ${view.parentGeneration}): ${describeSides(plan, view)}. Nothing was changed`,
          `Choose which side's data to keep where they differ:\n    ${base} --keep dr        # the DR side wins: the primary's writes since the failover are overwritten\n    ${base} --keep primary   # the primary wins: the DR side's writes since the failover are overwritten`,
          exitCodes.refused,
        );
      };
      if (begun === undefined && plan.splitBrain && args.keep === undefined) throw refuseSplitBrain();
      if (view.failback?.changemapDirtyBytes !== undefined && plan.mappedBytes !== undefined && plan.mappedBytes !== view.failback.changemapDirtyBytes) {
        throw new DruvaaError("FAILBACK_PRIMARY_CHANGED", `the original primary's change map changed after this failback began (${view.failback.changemapDirtyBytes} → ${plan.mappedBytes} dirty bytes): finishing it could overwrite those writes; nothing was changed`, "End it and look again: druvaa failback --abort, then run failback again", exitCodes.refused);
      }
      const keep: Keep = begun ?? (args.keep as Keep | undefined) ?? (plan.drChanged || !plan.primaryChanged ? "dr" : "primary");
      const summary = { wrl: view.wrl, atLsn: view.atLsn, keep, direction: keep === "dr" ? "dr-to-primary" : "primary-to-dr", splitBrain: plan.splitBrain, sentBytes: plan.sentBytes, volumeBytes: plan.volumeBytes, sentPercent: (100 * plan.sentBytes) / Math.max(1, plan.volumeBytes), checksummedBytes: plan.checksummedBytes, pendingRecords: pending.records, ranges: plan.union.length, dryRun: args["dry-run"] === true, generation: view.generation, primaryGeneration: primaryGeneration ?? null };
      if (args["dry-run"] !== true) {
        // From here the DR side's writes are final: plan again with them (a write that slipped in
        // since the first look is sent too, or makes it a split brain).
        const frozen = await replicaControl<FailoverView>(args.connect, "/failback/begin", tls, { wrl: view.wrl, keep, explicit: args.keep !== undefined, stagingHeadLsn: pending.headLsn, ...(plan.mappedBytes === undefined ? {} : { changemapDirtyBytes: plan.mappedBytes }) });
        await plan.close();
        plan = await planOf(frozen.drWritten);
        if (begun === undefined && plan.splitBrain && args.keep === undefined) {
          await replicaControl(args.connect, "/failback/abort", tls, { wrl: view.wrl });
          throw refuseSplitBrain();
        }
        await copyRanges(plan, view, primaries, keep, async (device, offset, data) => {
          const response = await controlRequest(args.connect, `/failback/write?device=${encodeURIComponent(device)}&offset=${offset}`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: data }, replicaControlPortDefault, tls);
          if (!response.ok) throw new DruvaaError("FAILBACK_WRITE", `writing ${device} at ${offset} on the DR side failed: HTTP ${response.status} ${await response.text()}`, "Run druvaa failback again: it goes on where it stopped");
        });
        const discarded = await stagingJson<{ ackedLsn: number; discardedRecords: number }>(args.staging, "/wrl/discard", tls, { wrl: view.wrl, throughLsn: pending.headLsn });
        await plan.clearChangemap();
        const generation = keep === "dr" ? view.generation : `${view.generation}-primary`;
        if (clientState !== undefined) await writeGeneration(clientState, view.wrlUuid, { generation: primaryGeneration ?? view.parentGeneration, pending: generation });
        const done = await replicaControl<{ appliedLsn: number }>(args.connect, "/failback/complete", tls, { wrl: view.wrl, throughLsn: discarded.ackedLsn, generation });
        if (clientState !== undefined) await writeGeneration(clientState, view.wrlUuid, { generation });
        Object.assign(summary, { generation, sentBytes: plan.sentBytes, sentPercent: (100 * plan.sentBytes) / Math.max(1, plan.volumeBytes), ranges: plan.union.length, discardedRecords: discarded.discardedRecords, appliedLsn: done.appliedLsn });
      }
      output(args.json, { ok: true, ...summary }, () =>
        [
          `${summary.dryRun ? "would fail back" : "failed back"} WRL ${view.wrl} (${view.devices.map((device) => device.name).join(", ")}): ${keep === "dr" ? "DR side → original primary" : "original primary → DR side"}${plan.splitBrain ? ` (split brain resolved: --keep ${keep})` : ""}`,
          `  ${describeSides(plan, view)}`,
          `  ${summary.dryRun ? "would send" : "sent"} ${formatBytes(summary.sentBytes)} of ${formatBytes(plan.volumeBytes)} (${summary.sentPercent.toFixed(2)} % of the volume) in ${summary.ranges} range(s)${plan.checksummedBytes > 0 ? `; ${formatBytes(plan.checksummedBytes)} compared by checksum (without --changemap a primary write inside a range the DR side also wrote cannot be told apart)` : ""}`,
          summary.dryRun ? "  nothing changed (--dry-run)" : `  the DR devices are replicas again; both sides are at generation ${summary.generation}${clientState === undefined ? " (the primary's generation was not checked: --client-state DIR)" : ""}; start the original client again to resume replication`,
        ].join("\n"),
      );
    } finally {
      await plan.close();
    }
  },
});

interface GenerationEntry {
  generation: string;
  /** Set while a failback completes: the generation both sides take once it has. */
  pending?: string;
}

/**
 * The original primary's generation (DIR/generation.json) must be the one the DR side forked
 * from (or, after an interrupted failback, the one it was completing). No entry: not checked
 * (a primary that never failed back). Anything else is another history: refused.
 */
async function checkPrimaryGeneration(dir: string, view: FailoverView): Promise<string | undefined> {
  const entry = ((await readJsonState<Record<string, GenerationEntry>>(join(dir, "generation.json"))) ?? {})[view.wrlUuid];
  if (entry === undefined) return undefined;
  const known = [entry.generation, entry.pending].filter((value) => value !== undefined);
  if (known.includes(view.parentGeneration) || (entry.pending !== undefined && entry.pending === view.generation)) return entry.generation;
  throw new DruvaaError(
    "GENERATION_MISMATCH",
    `the original primary's history is generation ${entry.generation} (${join(dir, "generation.json")}), but the DR side of WRL ${view.wrl} was failed over from generation ${view.parentGeneration}: ${entry.generation === view.generation ? "it already holds the DR side's history (failed back before?)" : "this is not the primary the DR side forked from"}; nothing was changed`,
    "Check --primary and --client-state name the original primary of this WRL; druvaa status --connect REPLICA:6004 shows the failover's generations",
    exitCodes.refused,
  );
}

/** After a completed failback whose tool stopped early: the pending generation becomes the client's. */
async function finishClientGeneration(dir: string): Promise<{ finished: true; generation: string } | undefined> {
  const generations = (await readJsonState<Record<string, GenerationEntry>>(join(dir, "generation.json"))) ?? {};
  const waiting = Object.entries(generations).find(([, entry]) => entry.pending !== undefined);
  if (waiting === undefined) return undefined;
  const [wrlUuid, entry] = waiting;
  await writeGeneration(dir, wrlUuid, { generation: entry.pending! });
  return { finished: true, generation: entry.pending! };
}

async function writeGeneration(dir: string, wrlUuid: string, entry: GenerationEntry): Promise<void> {
  const path = join(dir, "generation.json");
  const generations = (await readJsonState<Record<string, GenerationEntry>>(path)) ?? {};
  await writeJsonState(path, { ...generations, [wrlUuid]: entry });
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

/** A staging control-port request (GET, or POST with `body`); its refusals keep their exit codes (404: 3, 409: 4). */
async function stagingJson<T>(connect: string, path: string, tls: PreparedTls | undefined, body?: unknown): Promise<T> {
  const init: RequestInit = body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
  const response = await controlRequest(connect, path, init, stagingControlPortDefault, tls);
  const parsed = (await response.json().catch(() => undefined)) as (T & { error?: { code?: string; message?: string; hint?: string } }) | undefined;
  if (response.ok && parsed !== undefined) return parsed;
  const error = parsed?.error;
  const exitCode = response.status === 404 ? exitCodes.notFound : response.status === 409 ? exitCodes.refused : response.status === 400 ? exitCodes.usage : exitCodes.failure;
  throw new DruvaaError(error?.code ?? "STAGING_REFUSED", `staging ${connect}: ${error?.message ?? `HTTP ${response.status}`}`, error?.hint ?? "Give staging's control port (druvaa staging serve --control, default 6002)", exitCode);
}

