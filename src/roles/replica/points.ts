/**
 * Choosing a point (`--at TIME|LSN|LABEL` of restore, snapshot and failover) among the points the
 * journal keeps (journal.ts). An LSN picks the latest point at or before it, a time the latest
 * point reached at or before it, a label the newest point with that label. A point older than the
 * oldest one kept is refused (POINT_OUTSIDE_RETENTION), as is a label never seen (POINT_UNKNOWN).
 * `label:NAME` is always a label (labels have no ':'), for one that reads as a time or an LSN:
 * new labels cannot (protocol/checkpoint-label.ts newCheckpointLabelProblem), older ones might.
 */
import { DruvaaError, exitCodes } from "../../errors.ts";
import type { Point } from "./journal.ts";

/** What an --at value names. */
export type PointSpec = { kind: "lsn"; lsn: number } | { kind: "time"; ms: number } | { kind: "label"; label: string } | { kind: "current" };

export function parsePointSpec(at: string): PointSpec {
  const text = at.trim();
  if (text.startsWith("label:")) return { kind: "label", label: text.slice("label:".length) };
  if (text === "" || text === "now" || text === "latest") return { kind: "current" };
  if (/^\d+$/.test(text)) return { kind: "lsn", lsn: Number(text) };
  const relative = /^-(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(text);
  if (relative !== null) {
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as "s" | "m" | "h" | "d"];
    return { kind: "time", ms: Date.now() - Number(relative[1]) * unit };
  }
  if (/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/.test(text)) {
    const ms = Date.parse(text.replace(" ", "T"));
    if (Number.isFinite(ms)) return { kind: "time", ms };
  }
  return { kind: "label", label: text };
}

export function resolvePoint(points: readonly Point[], at: string, journaled: boolean): Point {
  const spec = parsePointSpec(at);
  const current = points.at(-1);
  if (current === undefined) throw new DruvaaError("POINT_UNKNOWN", "this WRL has no point yet", "Wait for the first shipment to be applied", exitCodes.notFound);
  if (spec.kind === "current") return current;
  const oldest = points[0]!;
  const noJournal = journaled ? "" : " (this replica keeps no point-in-time journal: start it with --retention 24h to keep earlier points)";
  const outside = (what: string) =>
    new DruvaaError("POINT_OUTSIDE_RETENTION", `${what} is before the oldest point kept (LSN ${oldest.lsn}, ${oldest.time})${noJournal}`, "List the points with: druvaa replica points --replica HOST:6004 --device NAME", exitCodes.refused);
  if (spec.kind === "lsn") {
    if (spec.lsn > current.lsn) throw new DruvaaError("POINT_IN_FUTURE", `LSN ${spec.lsn} has not been applied yet (the replica is at LSN ${current.lsn})`, "Wait for it, or pick a point from: druvaa replica points", exitCodes.refused);
    const found = [...points].reverse().find((point) => point.lsn <= spec.lsn);
    if (found === undefined) throw outside(`LSN ${spec.lsn}`);
    return found;
  }
  if (spec.kind === "time") {
    const found = [...points].reverse().find((point) => Date.parse(point.time) <= spec.ms);
    if (found === undefined) throw outside(new Date(spec.ms).toISOString());
    return found;
  }
  const found = [...points].reverse().find((point) => point.label === spec.label);
  if (found === undefined) {
    const labels = [...new Set(points.flatMap((point) => (point.label === undefined ? [] : [point.label])))];
    throw new DruvaaError("POINT_UNKNOWN", `no point labelled ${JSON.stringify(spec.label)} is kept${noJournal}`, labels.length > 0 ? `Labels kept: ${labels.join(", ")}` : "Mark one on the client with: druvaa checkpoint --label NAME (after freezing the application)", exitCodes.notFound);
  }
  return found;
}
