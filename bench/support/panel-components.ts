/**
 * Stand-ins for one staging server, one replica and one client host agent, for bench/panel.ts: run
 * as their own process (`bun bench/support/panel-components.ts`), so their CPU is not counted
 * with the panel's. Each is a Bun.serve control port keeping the managed-config contract of
 * docs/panel.md (GET /config, POST /config/prepare|commit|abort, with CONFIG_STALE and
 * CONFIG_NOT_PREPARED; GET /probe on the client) and answering GET /status in the shape real roles
 * give (docs/pipeline.md "Status", docs/panel.md "Client host"), built from the committed config:
 * one attachment per pair with a full client status, one staging WRL status per WRL, one replica
 * device per pair. Counters (bytesWritten, appendedBytes, LSNs) grow with time at a steady rate
 * per device; lag and fill move a little, so every poll round changes some cells as a real
 * system's would. Prints one JSON line {event: "ready", staging, replica, client} (HOST:PORT each),
 * then serves until SIGTERM/SIGINT.
 */

type Obj = Record<string, any>;
const MiB = 1024 * 1024;
const startedMs = Date.now();
const seconds = () => (Date.now() - startedMs) / 1000;

interface Saved {
  txid: string;
  version: number;
  config: Obj | null;
}

/** A device's steady write rate: 1–8 MiB/s, by its index. */
const rateOf = (index: number) => (1 + (index % 8)) * MiB;
const wave = (index: number, periodSeconds: number) => (1 + Math.sin(seconds() / periodSeconds + index)) / 2;
const lastError = null;

function clientChildStatus(attachment: Obj, index: number, stagingAddress: string): Obj {
  const device = attachment.devices?.[0] ?? { name: `disk${index}`, path: `/dev/vd${index}` };
  const bytesWritten = Math.floor(rateOf(index) * seconds());
  const writes = Math.floor(bytesWritten / 16384);
  return {
    role: "client", nodeId: `client-host-${attachment.name}`, version: "0.9.0", uptimeSeconds: Math.floor(seconds()),
    staging: { address: stagingAddress, connected: true, lastError },
    devices: [{ name: device.name, path: device.path, sizeBytes: 107374182400, wrl: attachment.wrl, export: attachment.export, ackedLsn: writes, writes, bytesWritten, inflightWrites: index % 3 }],
    verify: [],
    initialSync: { mode: attachment.initialSync ?? "none", state: "done", progress: { doneBytes: 107374182400, totalBytes: 107374182400 }, note: null, devices: [{ name: device.name, mode: attachment.initialSync ?? "none", state: "done", doneBytes: 107374182400, totalBytes: 107374182400, verifyRun: null, error: null }] },
    mode: "normal", dirtyBytes: 0, disconnectedSeconds: 0, resync: null, lastResync: { endedAt: new Date(startedMs - 3_600_000).toISOString(), sentBytes: 1048576, durationSeconds: 2.5 }, resyncSetsOpen: [],
    activityLog: { path: attachment.changemap ?? `/var/lib/druvaa/${attachment.name}.map`, extentBytes: 4194304, slotsMax: 1024, activeSlots: 17 + (index % 5), activeExtents: 17 + (index % 5), writes, waitsForRoom: 0, recoveredExtents: 0 },
    addresses: { export: attachment.export, control: `127.0.0.1:${7100 + index}` },
  };
}

function clientStatus(saved: Saved, stagingAddress: string): Obj {
  const attachments = (saved.config?.attachments ?? []) as Obj[];
  return {
    role: "client", nodeId: "client-agent-1", version: "0.9.0", uptimeSeconds: Math.floor(seconds()), agent: true,
    managed: { version: saved.version, txid: saved.txid, pending: null, applied: { version: saved.version, atMs: startedMs } },
    attachments: attachments.map((attachment, index) => ({
      name: attachment.name, enabled: attachment.enabled !== false, state: attachment.enabled === false ? "stopped" : "running", pid: 20_000 + index, restarts: 0, lastExit: null,
      addresses: { export: attachment.export, exports: [attachment.export], control: `127.0.0.1:${7100 + index}`, controlSocket: `/run/druvaa/attachments/${attachment.name}.sock` },
      status: attachment.enabled === false ? null : clientChildStatus(attachment, index, stagingAddress),
    })),
  };
}

function stagingStatus(saved: Saved, devicesOfWrl: (wrl: string) => string[]): Obj {
  const wrls = (saved.config?.wrls ?? []) as Obj[];
  return {
    role: "staging", nodeId: "staging-1", version: "0.9.0", uptimeSeconds: Math.floor(seconds()),
    managed: { version: saved.version, txid: saved.txid, pending: null, applied: { version: saved.version, atMs: startedMs } },
    wrls: wrls.map((wrl, index) => {
      const devices = devicesOfWrl(wrl.name);
      const rate = devices.reduce((sum, _d, i) => sum + rateOf(i), 0);
      const appendedBytes = Math.floor(rate * seconds());
      const lagBytes = Math.floor(rate * 0.4 * wave(index, 7));
      const headLsn = Math.floor(appendedBytes / 16384);
      const sizeBytes = Number(wrl.sizeBytes ?? 10737418240);
      const usedBytes = Math.min(sizeBytes, 64 * MiB + lagBytes);
      return {
        name: wrl.name, uuid: `00000000-0000-4000-8000-${String(index).padStart(12, "0")}`, devicePaths: wrl.paths, sizeBytes, usedBytes, freeBytes: sizeBytes - usedBytes, fillRatio: usedBytes / sizeBytes,
        headLsn, tailLsn: Math.max(0, headLsn - 4096), recordCount: 4096, lagBytes, lagSeconds: Number((0.4 * wave(index, 7)).toFixed(3)),
        replica: { address: wrl.replica, connected: true, appliedLsn: headLsn - Math.floor(lagBytes / 16384), lastError, failedOverSince: null, compression: { mode: wrl.compression ?? "auto", level: 1, bytesIn: appendedBytes, bytesOut: Math.floor(appendedBytes / 2.3), compressionRatio: 2.3 }, coalescing: { mode: "on", spans: 12, bytesSaved: 0 }, bytesShipped: Math.floor(appendedBytes / 2.3) },
        devices: devices.map((name) => ({ name, sizeBytes: 107374182400, clientNodeId: `client-host-${name}`, connected: true })),
        appendedBytes, ackedBytes: appendedBytes - lagBytes,
        rateLimit: null, schedule: null,
        rpo: { targetSeconds: 30, rpoSeconds: Number((0.5 + wave(index, 11)).toFixed(3)), trend: "steady", drainEtaSeconds: 0.4, state: "ok" },
      };
    }),
    clients: [{ nodeId: "client-agent-1", address: "127.0.0.1:50000", devices: wrls.flatMap((wrl) => devicesOfWrl(wrl.name)) }],
    events: [],
    addresses: { listen: stagingListen },
  };
}

function replicaStatus(saved: Saved, wrlNames: string[]): Obj {
  const devices = (saved.config?.devices ?? []) as Obj[];
  return {
    role: "replica", nodeId: "replica-1", version: "0.9.0", uptimeSeconds: Math.floor(seconds()),
    managed: { version: saved.version, txid: saved.txid, pending: null, applied: { version: saved.version, atMs: startedMs } },
    devices: devices.map((device) => ({ name: device.name, path: device.path, sizeBytes: device.sizeBytes, declaredSizeBytes: device.primarySizeBytes, consistent: true })),
    wrls: wrlNames.map((name, index) => ({ name, uuid: `00000000-0000-4000-8000-${String(index).padStart(12, "0")}`, appliedLsn: Math.floor(seconds() * 300), lastAppliedAt: new Date().toISOString(), stagingConnected: true })),
    applying: false, restores: [], queuedShipments: 0, rsWrl: null, setApply: null, failovers: [],
    addresses: { listen: replicaListen },
  };
}

const stagingListen = "127.0.0.1:16001";
const replicaListen = "127.0.0.1:16003";

class Component {
  committed: Saved = { txid: "", version: 0, config: null };
  pending: Saved | undefined;
  server: ReturnType<typeof Bun.serve> | undefined;

  constructor(
    readonly role: "client" | "staging" | "replica",
    private readonly status: () => Obj,
  ) {}

  start(): string {
    this.server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (request) => this.handle(request) });
    return `127.0.0.1:${this.server.port}`;
  }

  private async handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const body = (request.method === "POST" ? await request.json().catch(() => undefined) : undefined) as Obj | undefined;
    const refuse = (code: string, message: string, field?: string) => Response.json({ ok: false, error: { code, message, ...(field === undefined ? {} : { field }) } }, { status: 409 });
    const route = `${request.method} ${url.pathname}`;
    if (route === "GET /status") return Response.json(this.status());
    if (route === "GET /probe" && this.role === "client") return Response.json({ ok: true, path: url.searchParams.get("path"), exists: true, kind: "block", sizeBytes: 107374182400, inUse: null });
    if (route === "GET /config") {
      return Response.json({ ok: true, version: this.committed.version, txid: this.committed.txid, config: this.committed.config, pending: this.pending === undefined ? null : { txid: this.pending.txid, version: this.pending.version }, applied: { version: this.committed.version, atMs: Date.now() } });
    }
    if (body === undefined && request.method === "POST") return refuse("BAD_REQUEST", "the body is not JSON");
    if (route === "POST /config/prepare") {
      if (body!.version <= this.committed.version) return refuse("CONFIG_STALE", `version ${body!.version} is not newer than ${this.committed.version}`, "version");
      this.pending = { txid: body!.txid, version: body!.version, config: body!.config };
      return Response.json({ ok: true, txid: body!.txid, version: body!.version });
    }
    if (route === "POST /config/commit") {
      if (this.committed.txid === body!.txid) return Response.json({ ok: true, txid: body!.txid, version: this.committed.version });
      if (this.pending === undefined || this.pending.txid !== body!.txid) return refuse("CONFIG_NOT_PREPARED", `no prepared config ${body!.txid}`, "txid");
      this.committed = this.pending;
      this.pending = undefined;
      return Response.json({ ok: true, txid: body!.txid, version: this.committed.version, applied: { version: this.committed.version, atMs: Date.now() } });
    }
    if (route === "POST /config/abort") {
      if (this.pending?.txid === body!.txid) this.pending = undefined;
      return Response.json({ ok: true, txid: body!.txid });
    }
    return Response.json({ ok: false, error: { code: "NOT_FOUND", message: `no such endpoint: ${route}` } }, { status: 404 });
  }
}

let stagingControl = "";
const client: Component = new Component("client", () => clientStatus(client.committed, stagingListen));
const devicesOfWrl = (wrl: string) => ((client.committed.config?.attachments ?? []) as Obj[]).filter((a) => a.wrl === wrl).map((a) => a.devices?.[0]?.name as string);
const staging: Component = new Component("staging", () => stagingStatus(staging.committed, devicesOfWrl));
const replica: Component = new Component("replica", () => replicaStatus(replica.committed, ((staging.committed.config?.wrls ?? []) as Obj[]).map((w) => w.name)));
stagingControl = staging.start();
const ready = { event: "ready", staging: stagingControl, replica: replica.start(), client: client.start(), pid: process.pid };
console.log(JSON.stringify(ready));
const stop = () => {
  for (const component of [client, staging, replica]) void component.server?.stop(true);
  process.exit(0);
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
