/**
 * From one poll round's statuses to metric samples (history.ts stores them). Gauges are read as
 * they are (lag, RPO, WRL fill, compression ratio, resync progress); throughputs are counter deltas
 * between this round and the previous one of the same component, divided by the time between them.
 * A counter that went down (the component restarted) or a first sighting gives no sample, never a
 * negative or made-up rate. Fields a status lacks are skipped: roles may add fields, and older
 * ones lack some (docs/pipeline.md "Status").
 *
 * Series names: COMPONENT/… — client: `c/device/D/writeBytesPerSecond`, `c/resync/progressRatio`,
 * `c/initialSync/progressRatio`, `c/dirtyBytes` (a client agent: the same under
 * `c/attachment/A/…`); staging: `s/wrl/W/{lagMs, rpoMs, fillRatio, appendBytesPerSecond,
 * relayBytesPerSecond, appliedBytesPerSecond, compressionRatio}` (appliedBytesPerSecond: what the
 * replica acknowledged as applied); replica: `r/wrl/W/appliedLsnPerSecond`, `r/queuedShipments`.
 */
import type { ComponentStatus } from "./monitor.ts";

export interface Sample {
  series: string;
  component: string;
  value: number;
}

type Obj = Record<string, unknown>;

const objectOf = (value: unknown): Obj | undefined => (typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Obj) : undefined);
const arrayOf = (value: unknown): Obj[] => (Array.isArray(value) ? value.map(objectOf).filter((item): item is Obj => item !== undefined) : []);
const numberOf = (value: unknown): number | undefined => (typeof value === "number" && Number.isFinite(value) ? value : undefined);
/** A name usable inside a series name (no "/" that would split it). */
const partOf = (value: unknown): string | undefined => (typeof value === "string" && value.length > 0 && value.length <= 128 && !value.includes("/") ? value : undefined);

/** The unit of a series, from its name's last part. */
export function unitOf(series: string): string {
  const last = series.slice(series.lastIndexOf("/") + 1);
  if (last.endsWith("BytesPerSecond")) return "bytes/s";
  if (last.endsWith("PerSecond")) return "1/s";
  if (last.endsWith("Ms")) return "ms";
  if (last.endsWith("Ratio")) return "ratio";
  if (last.endsWith("Bytes")) return "bytes";
  return "count";
}

/** Counter readings of the previous round, to turn counters into rates. */
export class CounterMemory {
  private readonly last = new Map<string, { value: number; tMs: number }>();

  /** The rate of `counter` since its last reading (undefined on a first reading or a reset). */
  rate(key: string, counter: number | undefined, tMs: number): number | undefined {
    if (counter === undefined) return undefined;
    const before = this.last.get(key);
    this.last.set(key, { value: counter, tMs });
    if (before === undefined || counter < before.value || tMs <= before.tMs) return undefined;
    return ((counter - before.value) * 1000) / (tMs - before.tMs);
  }

  /** Forgets components no longer polled (bounded by the component count). */
  keepOnly(components: ReadonlySet<string>): void {
    for (const key of this.last.keys()) if (!components.has(key.slice(0, key.indexOf("/")))) this.last.delete(key);
  }
}

/** The series of a client device's write rate (`prefix`: the client, or CLIENT/attachment/A); PairStates looks its rates up by it. */
export function deviceWriteSeries(prefix: string, device: string): string {
  return `${prefix}/device/${device}/writeBytesPerSecond`;
}

function clientSamples(prefix: string, status: Obj, counters: CounterMemory, tMs: number, push: (series: string, value: number | undefined) => void): void {
  for (const device of arrayOf(status.devices)) {
    const name = partOf(device.name);
    if (name === undefined) continue;
    const series = deviceWriteSeries(prefix, name);
    push(series, counters.rate(series, numberOf(device.bytesWritten), tMs));
  }
  const resync = objectOf(status.resync);
  if (resync !== undefined) {
    const sent = numberOf(resync.sentBytes);
    const remaining = numberOf(resync.remainingBytes);
    if (sent !== undefined && remaining !== undefined) push(`${prefix}/resync/progressRatio`, sent + remaining > 0 ? sent / (sent + remaining) : 1);
  }
  const progress = objectOf(objectOf(status.initialSync)?.progress);
  if (progress !== undefined) {
    const done = numberOf(progress.doneBytes);
    const total = numberOf(progress.totalBytes);
    if (done !== undefined && total !== undefined) push(`${prefix}/initialSync/progressRatio`, total > 0 ? done / total : 1);
  }
  push(`${prefix}/dirtyBytes`, numberOf(status.dirtyBytes));
}

function stagingSamples(prefix: string, status: Obj, counters: CounterMemory, tMs: number, push: (series: string, value: number | undefined) => void): void {
  for (const wrl of arrayOf(status.wrls)) {
    const name = partOf(wrl.name);
    if (name === undefined) continue;
    const base = `${prefix}/wrl/${name}`;
    const lagSeconds = numberOf(wrl.lagSeconds);
    push(`${base}/lagMs`, lagSeconds === undefined ? undefined : lagSeconds * 1000);
    const rpoSeconds = numberOf(objectOf(wrl.rpo)?.rpoSeconds);
    push(`${base}/rpoMs`, rpoSeconds === undefined ? undefined : rpoSeconds * 1000);
    push(`${base}/fillRatio`, numberOf(wrl.fillRatio));
    push(`${base}/appendBytesPerSecond`, counters.rate(`${base}/appendBytesPerSecond`, numberOf(wrl.appendedBytes), tMs));
    push(`${base}/appliedBytesPerSecond`, counters.rate(`${base}/appliedBytesPerSecond`, numberOf(wrl.ackedBytes), tMs));
    const replica = objectOf(wrl.replica);
    push(`${base}/relayBytesPerSecond`, counters.rate(`${base}/relayBytesPerSecond`, numberOf(replica?.bytesShipped), tMs));
    push(`${base}/compressionRatio`, numberOf(objectOf(replica?.compression)?.compressionRatio));
  }
}

function replicaSamples(prefix: string, status: Obj, counters: CounterMemory, tMs: number, push: (series: string, value: number | undefined) => void): void {
  for (const wrl of arrayOf(status.wrls)) {
    const name = partOf(wrl.name);
    if (name === undefined) continue;
    const series = `${prefix}/wrl/${name}/appliedLsnPerSecond`;
    push(series, counters.rate(series, numberOf(wrl.appliedLsn), tMs));
  }
  push(`${prefix}/queuedShipments`, numberOf(status.queuedShipments));
}

/** The samples of one round (reachable components only; an unreachable one has no values). */
export function deriveSamples(statuses: readonly ComponentStatus[], counters: CounterMemory, tMs: number): Sample[] {
  const samples: Sample[] = [];
  counters.keepOnly(new Set(statuses.map((status) => status.name)));
  for (const component of statuses) {
    if (!component.reachable) continue;
    const push = (series: string, value: number | undefined) => {
      if (value !== undefined && Number.isFinite(value)) samples.push({ series, component: component.name, value });
    };
    const status = component.status;
    if (component.role === "staging") stagingSamples(component.name, status, counters, tMs, push);
    else if (component.role === "replica") replicaSamples(component.name, status, counters, tMs, push);
    else {
      clientSamples(component.name, status, counters, tMs, push);
      // A client host agent: one client status per attachment (docs/panel.md "Client host").
      for (const attachment of arrayOf(status.attachments)) {
        const name = partOf(attachment.name);
        const child = objectOf(attachment.status) ?? attachment;
        if (name !== undefined) clientSamples(`${component.name}/attachment/${name}`, child, counters, tMs, push);
      }
    }
  }
  return samples;
}
