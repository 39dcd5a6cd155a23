/**
 * Measuring helpers for bench/panel.ts: CPU time of processes from /proc/PID/stat (utime + stime,
 * in clock ticks of 10 ms on Linux x86-64), Chromium's renderer processes among this process's
 * descendants, and the static reference page (the same 50-row table as plain HTML).
 */
import { readdirSync, readFileSync } from "node:fs";

/** Linux's USER_HZ (`getconf CLK_TCK`): 100 on every x86-64 and arm64 kernel. */
const ticksPerSecond = 100;

interface ProcInfo {
  pid: number;
  ppid: number;
  cpuTicks: number;
}

function procInfo(pid: number): ProcInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after "(comm)": state ppid … utime (14th field overall) stime (15th).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { pid, ppid: Number(fields[1]), cpuTicks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return undefined; // exited meanwhile
  }
}

/** CPU time used so far by `pid` (user + system), in ms; NaN when it is gone. */
export function cpuMs(pid: number): number {
  const info = procInfo(pid);
  return info === undefined ? Number.NaN : (info.cpuTicks * 1000) / ticksPerSecond;
}

/** Every live descendant of `root`, with its command line. */
export function descendants(root: number): { pid: number; cmdline: string }[] {
  const all: ProcInfo[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const info = procInfo(Number(entry));
    if (info !== undefined) all.push(info);
  }
  const found: { pid: number; cmdline: string }[] = [];
  const parents = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const info of all) {
      if (parents.has(info.ppid) && !parents.has(info.pid)) {
        parents.add(info.pid);
        let cmdline = "";
        try {
          cmdline = readFileSync(`/proc/${info.pid}/cmdline`, "utf8").replaceAll("\0", " ");
        } catch {
          // gone meanwhile
        }
        found.push({ pid: info.pid, cmdline });
        grew = true;
      }
    }
  }
  return found;
}

/** Chromium's processes under this process: renderers, and all of them (browser, GPU, network…). */
export function chromiumPids(): { renderers: number[]; all: number[] } {
  const chromium = descendants(process.pid).filter((p) => /chrom/i.test(p.cmdline.split(" ")[0] ?? ""));
  return { renderers: chromium.filter((p) => p.cmdline.includes("--type=renderer")).map((p) => p.pid), all: chromium.map((p) => p.pid) };
}

/** Sums the CPU ms of `pids` (those gone count as 0 from then on: take both readings of one set). */
export function cpuMsOf(pids: readonly number[]): Map<number, number> {
  return new Map(pids.map((pid) => [pid, cpuMs(pid)]));
}

/** CPU of `pids` between two readings, as % of one core over `wallMs`; a process gone at the end counts its start reading only. */
export function cpuPercent(before: Map<number, number>, after: Map<number, number>, wallMs: number): number {
  let ms = 0;
  for (const [pid, start] of before) {
    const end = after.get(pid);
    if (Number.isFinite(start) && end !== undefined && Number.isFinite(end)) ms += end - start;
  }
  return (ms / wallMs) * 100;
}

const escape = (text: unknown) => String(text ?? "–").replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** The reference: the same pairs as a plain HTML table (no script, no fetch), the panel's stylesheet not included. */
export function staticPairsPage(pairs: Record<string, any>[]): string {
  const rows = pairs.map((p) => `<tr data-pair="${escape(p.name)}" data-state="${escape(p.state)}"><td data-field="name">${escape(p.name)}</td><td data-field="client">${escape(p.client)}: ${escape(p.deviceName)} ${escape(p.devicePath)}</td><td data-field="wrl">${escape(p.staging)} / ${escape(p.wrl)}</td><td data-field="replica">${escape(p.replica)}: ${escape(p.replicaDevicePath)}</td><td data-field="state">${escape(p.state)}</td><td data-field="lagMs">${escape(p.lagMs)} ms</td><td data-field="rpoMs">${escape(p.rpoMs)} ms</td><td data-field="wrlFillRatio">${escape(p.wrlFillRatio)}</td><td data-field="throughputBytesPerSecond">${escape(p.throughputBytesPerSecond)}</td><td data-field="resync">–</td><td data-field="configVersion">v${escape(p.configVersion?.decided)}</td></tr>`);
  return `<!doctype html><html><head><meta charset="utf-8"><title>pairs</title></head><body><h1>Pairs</h1><table id="pairs"><thead><tr><th>Pair</th><th>Client / device</th><th>Staging / WRL</th><th>Replica</th><th>State</th><th>Lag</th><th>RPO</th><th>WRL fill</th><th>Throughput</th><th>Resync</th><th>Config</th></tr></thead><tbody>${rows.join("")}</tbody></table></body></html>`;
}
