/**
 * Fast snapshots exported over NBD by the replica, and the control-port routes of recovery:
 *
 *   GET  /points?device=NAME          the consistent points of the device's WRL (journal.ts)
 *   GET  /snapshots                   live snapshots and their exports
 *   POST /snapshots {device, at?, export, writable?}
 *                                     takes a fast snapshot (snapshot.ts) and serves it at
 *                                     `export` (unix:PATH or HOST:PORT); read-only unless
 *                                     `writable` (a drill: writes stay in the snapshot)
 *   POST /snapshots/release {id}      stops its export and releases it
 *
 * An exported snapshot lives until it is released or the replica stops (not persistent).
 * Writes into a writable snapshot go to a scratch file beside the copy-on-write journal and
 * never reach the replica device.
 */
import { checkName } from "../common.ts";
import { DruvaaError, exitCodes, usageError } from "../../errors.ts";
import { AppendFile, removeDirectory } from "../../io/append-file.ts";
import type { ControlRoute } from "../../io/control-server.ts";
import { logger } from "../../log.ts";
import type { NbdExport } from "../../nbd/backend.ts";
import { parseListenAddress, startNbdServer, type NbdServer } from "../../nbd/server.ts";
import type { ReplicaCore } from "./core.ts";
import type { OverlaySource } from "./overlay.ts";
import type { Snapshot } from "./snapshot.ts";
import type { Point } from "./journal.ts";
import { mkdir } from "node:fs/promises";

const log = logger("replica:snapshot");

interface Exported {
  snapshot: Snapshot;
  server: NbdServer;
  uri: string;
  writable: boolean;
  scratch: AppendFile | undefined;
}

export class SnapshotExports {
  readonly #exports = new Map<number, Exported>();
  #scratchCount = 0;

  constructor(
    private readonly core: ReplicaCore,
    /** Where writable snapshots keep their writes (emptied at start and stop). */
    private readonly scratchDirectory: string,
  ) {}

  routes(): Record<string, ControlRoute> {
    return {
      "GET /points": (request) => {
        const device = checkName(new URL(request.url).searchParams.get("device") ?? "", "device");
        return { device, ...listed(this.core.points(device)), journal: this.core.history?.status().journal ?? null };
      },
      "GET /snapshots": () => ({ snapshots: this.list() }),
      "POST /snapshots": async (request) => this.create(await request.json().catch(() => undefined)),
      "POST /snapshots/release": async (request) => {
        const body = (await request.json().catch(() => undefined)) as { id?: unknown } | undefined;
        if (typeof body?.id !== "number") throw usageError("POST /snapshots/release needs {id}", "The id is in the answer of POST /snapshots and in GET /snapshots");
        return this.release(body.id);
      },
    };
  }

  list(): unknown[] {
    return [...this.#exports.values()].map((entry) => ({ ...entry.snapshot.info(), uri: entry.uri, writable: entry.writable }));
  }

  async create(body: unknown): Promise<Record<string, unknown>> {
    const request = body as { device?: unknown; at?: unknown; export?: unknown; writable?: unknown } | undefined;
    if (typeof request?.device !== "string" || typeof request.export !== "string") {
      throw usageError("POST /snapshots needs {device, export}", "e.g. {\"device\":\"disk0\",\"export\":\"unix:/run/druvaa/snap.sock\"}");
    }
    if (request.at !== undefined && typeof request.at !== "string") throw usageError("at must be TIME, LSN or LABEL", "e.g. \"before-upgrade\", \"1234\", \"2026-12-05T10:00:00Z\"");
    const device = checkName(request.device, "device");
    parseListenAddress(request.export); // refuses a bad address before the snapshot is taken
    const listen = request.export;
    const writable = request.writable === true;
    const snapshot = await this.core.snapshot(device, request.at as string | undefined);
    let server: NbdServer | undefined;
    let scratch: AppendFile | undefined;
    try {
      if (writable) {
        await mkdir(this.scratchDirectory, { recursive: true });
        scratch = await AppendFile.open(`${this.scratchDirectory}/drill-${process.pid}-${++this.#scratchCount}.dat`);
      }
      server = await startNbdServer({ listen, exports: [exportOf(snapshot, scratch)], log });
    } catch (error) {
      snapshot.release();
      await scratch?.close();
      throw error;
    }
    const uri = server.uri();
    snapshot.export = uri;
    this.#exports.set(snapshot.id, { snapshot, server, uri, writable, scratch });
    log.info(`snapshot ${snapshot.id} of ${device} at LSN ${snapshot.lsn}${snapshot.label === undefined ? "" : ` (${snapshot.label})`} exported at ${uri}${writable ? " (writable: writes stay in the snapshot)" : " (read-only)"}`);
    return { ok: true, ...snapshot.info(), uri, writable };
  }

  async release(id: number): Promise<Record<string, unknown>> {
    const entry = this.#exports.get(id);
    if (entry === undefined) throw new DruvaaError("SNAPSHOT_UNKNOWN", `no exported snapshot ${id} on this replica`, "List them: druvaa restore --list (GET /snapshots); they end when the replica restarts", exitCodes.notFound);
    this.#exports.delete(id);
    try {
      await entry.server.close();
    } finally {
      entry.snapshot.release();
      await entry.scratch?.close();
      if (entry.scratch !== undefined) await removeDirectory(entry.scratch.path); // rm -rf of one file
    }
    log.info(`snapshot ${id} of ${entry.snapshot.target.name} released`);
    return { ok: true, id, device: entry.snapshot.target.name };
  }

  /** Releases the exported snapshots of these devices (a failover makes them primaries). */
  async releaseDevices(names: readonly string[]): Promise<void> {
    for (const [id, entry] of [...this.#exports]) if (names.includes(entry.snapshot.target.name)) await this.release(id);
  }

  async stopAll(): Promise<void> {
    for (const id of [...this.#exports.keys()]) await this.release(id).catch((error: unknown) => log.warn(`releasing snapshot ${id}: ${(error as Error).message}`));
  }
}

/** Points listed at most (a busy replica keeps one per apply group): labelled ones, the oldest and the newest. */
const pointsListedMax = 1000;

function listed(points: Point[]): { points: Point[]; omitted: number } {
  if (points.length <= pointsListedMax) return { points, omitted: 0 };
  const newest = new Set(points.slice(-(pointsListedMax - 1)));
  const kept = points.filter((point, index) => index === 0 || point.label !== undefined || newest.has(point));
  return { points: kept, omitted: points.length - kept.length };
}

/**
 * The NBD export of a snapshot. Writable (a drill): every write is appended to `scratch` and laid
 * over the snapshot's view; flush syncs the scratch file; trim and zeroes write zeros.
 */
function exportOf(snapshot: Snapshot, scratch: AppendFile | undefined): NbdExport {
  const blockBytes = snapshot.target.device.logicalBlockSizeBytes;
  const source: OverlaySource | undefined = scratch === undefined ? undefined : { read: (position, length) => scratch.read(position, length) };
  const write = async (offset: number, data: Uint8Array) => {
    const position = await scratch!.append(data); // written before the promise settles: no copy
    snapshot.overlay.replace(offset, offset + data.length, source!, position);
  };
  return {
    name: "",
    description: `druvaa snapshot ${snapshot.id} of ${snapshot.target.name} at LSN ${snapshot.lsn}${snapshot.label === undefined ? "" : ` (${snapshot.label})`}`,
    sizeBytes: snapshot.sizeBytes - (snapshot.sizeBytes % blockBytes),
    logicalBlockSizeBytes: blockBytes,
    readOnly: scratch === undefined,
    canMultiConn: true,
    read: (offset, length) => snapshot.read(offset, length),
    write: async (offset, data, fua) => {
      await write(offset, data);
      if (fua) await scratch!.sync();
    },
    flush: async () => {
      await scratch?.sync();
    },
    trim: async () => undefined,
    writeZeroes: async (offset, length, fua) => {
      await write(offset, new Uint8Array(length));
      if (fua) await scratch!.sync();
    },
  };
}
