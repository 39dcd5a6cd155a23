/**
 * The replica's side of failback (the tool is src/commands/failback.ts, run at the original
 * site). While a WRL is failed over the replica answers, on its control port:
 *
 *   GET  /failover?wrl=NAME|device=NAME  the record (generations, point, devices), the DR side's
 *                                        writes since the failover (drWritten, from the DR map),
 *                                        the ranges the rollback undid, the export URIs
 *   POST /failover {device|wrl, at?, export}
 *                                        fails over (failover.ts)
 *   POST /failover/digests {device, offset, length, blockBytes}
 *                                        sha256 per block of the promoted device (the checksum
 *                                        pass where neither side's changes are known)
 *   POST /failback/begin {wrl, keep}     the DR side's writes are final: the export takes no
 *                                        more (keep dr: read-only; keep primary: only the
 *                                        failback's copy, not recorded); answers like GET
 *   POST /failback/abort {wrl}           the DR side takes writes again (before complete)
 *   POST /failback/complete {wrl, throughLsn, generation}
 *                                        the original primary now holds the chosen data and
 *                                        staging dropped its records through throughLsn: phase
 *                                        failing-back saved, then the export stops, header
 *                                        sectors are swapped in again, the WRL applies from
 *                                        throughLsn + 1 (roles swapped back); a restart in the
 *                                        middle finishes it
 */
import { createHash } from "node:crypto";
import { DruvaaError, exitCodes, usageError } from "../../errors.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { alignedBuffer } from "../../io/handle-device.ts";
import type { ControlRoute } from "../../io/control-server.ts";
import { logger } from "../../log.ts";
import { directIoAlignmentBytes } from "../../constants.ts";
import { protectCopyPieceBytesMax, protectMarkerBlockBytes } from "../../protect-constants.ts";
import { parseListenAddress } from "../../nbd/server.ts";
import { checkName } from "../common.ts";
import type { ReplicaDevice } from "./apply.ts";
import { recordGeneration, removeFailover, type FailoverRecord } from "./failover-state.ts";
import { closePromoted, type Failovers, type FailoverRequest, type Promoted } from "./failover.ts";
import type { JournalRange } from "./journal-format.ts";
import { protectedLogicalSizeBytes, ProtectedDevice } from "./protected-device.ts";
import { decodeMarker, encodeMarker } from "./protected-marker.ts";

const log = logger("replica:failback");
/** At most this many bytes digested per request. */
const digestRequestBytesMax = 256 * 1024 * 1024;

export function failoverRoutes(failovers: Failovers): Record<string, ControlRoute> {
  const body = async (request: Request) => ((await request.json().catch(() => undefined)) ?? {}) as Record<string, unknown>;
  return {
    "GET /failover": (request) => {
      const params = new URL(request.url).searchParams;
      return describe(failovers, recordOf(failovers, params.get("wrl") ?? undefined, params.get("device") ?? undefined));
    },
    "POST /failover": async (request) => {
      const asked = (await body(request)) as FailoverRequest;
      if ((typeof asked.device !== "string" && typeof asked.wrl !== "string") || typeof asked.export !== "string") {
        throw usageError("POST /failover needs {device} or {wrl}, and {export}: the DR side is written through it, every write recorded for failback", "e.g. {\"device\":\"disk0\",\"export\":\"10.0.0.9:10810\"}");
      }
      parseListenAddress(asked.export); // a bad address is refused before anything changes
      const record = await failovers.failover(asked);
      return { ok: true, ...record, undone: undefined, undoneBytes: record.undone.reduce((sum, range) => sum + range.length, 0) };
    },
    "POST /failover/digests": async (request) => {
      const asked = await body(request);
      const device = checkName(String(asked.device ?? ""), "device");
      const [offset, length, blockBytes] = [asked.offset, asked.length, asked.blockBytes].map(Number) as [number, number, number];
      if (![offset, length, blockBytes].every(Number.isSafeInteger) || blockBytes <= 0 || offset % blockBytes !== 0 || length <= 0 || length > digestRequestBytesMax) {
        throw usageError("POST /failover/digests needs {device, offset, length, blockBytes}: block-aligned, length up to 256 MiB", "e.g. {\"device\":\"disk0\",\"offset\":0,\"length\":67108864,\"blockBytes\":65536}");
      }
      const promoted = servedOf(failovers, recordOf(failovers, undefined, device));
      return { device, offset, blockBytes, digests: await digests(promoted.plain.get(device)!, offset, length, blockBytes) };
    },
    "POST /failback/begin": async (request) => {
      const asked = await body(request);
      if (typeof asked.wrl !== "string" || (asked.keep !== "dr" && asked.keep !== "primary")) throw usageError("POST /failback/begin needs {wrl, keep: dr|primary}", "druvaa failback sends it before it copies");
      const record = recordOf(failovers, asked.wrl, undefined);
      servedOf(failovers, record);
      if (record.failback !== undefined && record.failback.keep !== asked.keep) {
        throw new DruvaaError("FAILBACK_IN_PROGRESS", `a failback of WRL ${record.wrl} keeping the ${record.failback.keep === "dr" ? "DR side's" : "primary's"} data has begun`, `Run it again with --keep ${record.failback.keep} to finish it, or abort it: druvaa failback --abort --wrl ${record.wrl}`, exitCodes.refused);
      }
      // From now on the export takes no DR-side writes: what the DR side wrote is final.
      await failovers.save({ ...record, failback: { keep: asked.keep } });
      return describe(failovers, failovers.records.get(record.wrlUuid)!);
    },
    "POST /failback/abort": async (request) => {
      const asked = await body(request);
      const record = recordOf(failovers, typeof asked.wrl === "string" ? asked.wrl : undefined, typeof asked.device === "string" ? asked.device : undefined);
      if (record.phase === "failing-back") throw new DruvaaError("FAILBACK_COMPLETING", `the failback of WRL ${record.wrl} is completing`, "Run druvaa failback again to finish it", exitCodes.refused);
      const { failback: _ended, ...rest } = record;
      await failovers.save(rest);
      log.info(`failback of WRL ${record.wrl} aborted: the DR side takes writes again`);
      return { ok: true, wrl: record.wrl };
    },
    "POST /failback/complete": async (request) => {
      const asked = await body(request);
      if (typeof asked.wrl !== "string" || !Number.isSafeInteger(asked.throughLsn) || typeof asked.generation !== "string") throw usageError("POST /failback/complete needs {wrl, throughLsn, generation}", "druvaa failback sends it once the original primary holds the chosen data");
      const record = recordOf(failovers, asked.wrl, undefined);
      const throughLsn = asked.throughLsn as number;
      if (record.failback === undefined) throw new DruvaaError("FAILBACK_NOT_BEGUN", `no failback of WRL ${record.wrl} has begun`, "druvaa failback begins it (POST /failback/begin) before it copies", exitCodes.refused);
      if (throughLsn < record.appliedLsnBefore) {
        throw new DruvaaError("FAILBACK_LSN", `the WRL would resume at LSN ${throughLsn + 1}, but the replica had applied up to LSN ${record.appliedLsnBefore} before the failover: staging must have dropped its records through its head`, "Let druvaa failback do it (it asks staging to drop them, POST /wrl/discard)", exitCodes.refused);
      }
      return failovers.host.exclusive(async () => {
        const failing: FailoverRecord = { ...record, phase: "failing-back", failback: { ...record.failback!, throughLsn, generation: asked.generation as string } };
        await failovers.save(failing);
        await failovers.finish(failing);
        return { ok: true, wrl: record.wrl, generation: asked.generation, appliedLsn: throughLsn, devices: record.devices.map((device) => device.name) };
      });
    },
  };
}

function recordOf(failovers: Failovers, wrl: string | undefined, device: string | undefined): FailoverRecord {
  const found = [...failovers.records.values()].find((record) => record.wrl === wrl || record.devices.some((entry) => entry.name === device));
  if (found === undefined) throw new DruvaaError("NOT_FAILED_OVER", `${wrl === undefined ? `device ${device}` : `WRL ${wrl}`} is not failed over on this replica`, "druvaa failover --device NAME fails it over; druvaa status --connect REPLICA:6004 shows what is", exitCodes.refused);
  return found;
}

function servedOf(failovers: Failovers, record: FailoverRecord): Promoted {
  const promoted = failovers.promoted.get(record.wrlUuid);
  if (promoted === undefined) throw new DruvaaError("FAILOVER_NOT_SERVED", `WRL ${record.wrl} is failed over but not served (phase ${record.phase})`, `Serve it: druvaa failover --wrl ${record.wrl} --export HOST:PORT (it finishes the failover)`, exitCodes.refused);
  return promoted;
}

function describe(failovers: Failovers, record: FailoverRecord) {
  const promoted = failovers.promoted.get(record.wrlUuid);
  const drWritten: JournalRange[] = [];
  for (const device of record.devices) {
    for (const range of promoted?.map.region(device.name).dirtyRanges() ?? []) drWritten.push({ device: device.name, offset: range.offsetBytes, length: range.lengthBytes });
  }
  return { ...record, served: promoted !== undefined, drWritten, uris: failovers.uris(record.wrlUuid) };
}

async function digests(device: BlockDevice, offset: number, length: number, blockBytes: number): Promise<string[]> {
  const result: string[] = [];
  const end = Math.min(offset + length, device.sizeBytes);
  for (let at = offset; at < end; at += blockBytes) {
    const data = await device.read(at, Math.min(blockBytes, end - at));
    result.push(createHash("sha256").update(data).digest("hex"));
  }
  return result;
}

/**
 * Completes the failback of `record` (phase failing-back; under the apply lock; idempotent): the
 * export closed, header sectors swapped in again, appliedLsn = failback.throughLsn, the older
 * history forgotten, the generation recorded, the record removed: the WRL is replicated again.
 */
export async function completeFailback(failovers: Failovers, record: FailoverRecord, devices: ReadonlyMap<string, ReplicaDevice>): Promise<void> {
  const host = failovers.host;
  const { throughLsn, generation } = record.failback!;
  const promoted = failovers.promoted.get(record.wrlUuid);
  if (promoted !== undefined) {
    failovers.promoted.delete(record.wrlUuid);
    await closePromoted(promoted);
  }
  for (const entry of devices.values()) if (entry.device instanceof ProtectedDevice) await reprotect(entry.device.physical, entry.device.reserveBytes);
  const state = host.state();
  await host.save({ ...state, wrls: state.wrls.map((wrl) => (wrl.uuid === record.wrlUuid ? { ...wrl, appliedLsn: throughLsn! } : wrl)) });
  await host.history?.forget(record.wrlUuid, Math.max(throughLsn!, record.appliedLsnBefore));
  await recordGeneration(failovers.stateDir, record.wrlUuid, generation!);
  await removeFailover(failovers.stateDir, record.wrlUuid);
  failovers.records.delete(record.wrlUuid);
  failovers.failedOver.delete(record.wrlUuid);
  log.info(`WRL ${record.wrl} failed back: the devices are replicas again (header sectors swapped), applying from LSN ${throughLsn! + 1}; generation ${generation} is the history now`);
}

/**
 * Makes a plain device a protected replica device again (the reverse of unprotect): the head
 * [0, R) is copied to [L, L + R) and flushed, then the marker block is written (from then on the
 * device opens protected and reads its head from the copy), then [B, R) is zeroed so no
 * signature is left. Idempotent: with a marker already there, only the zeroing is redone.
 */
export async function reprotect(physical: BlockDevice, reserveBytes: number): Promise<void> {
  const block = physical.logicalBlockSizeBytes;
  const logicalSizeBytes = protectedLogicalSizeBytes(physical.sizeBytes, reserveBytes, block);
  const marker = decodeMarker(await physical.read(0, protectMarkerBlockBytes), physical.name);
  if (marker === undefined) {
    for (let done = 0; done < reserveBytes; done += protectCopyPieceBytesMax) {
      const piece = Math.min(protectCopyPieceBytesMax, reserveBytes - done);
      await physical.write(logicalSizeBytes + done, await physical.read(done, piece));
    }
    await physical.flush();
    const markerBlock = alignedBuffer(protectMarkerBlockBytes, directIoAlignmentBytes);
    markerBlock.set(encodeMarker({ state: "protected", reserveBytes, logicalSizeBytes, logicalBlockSizeBytes: block, uuid: crypto.randomUUID().replaceAll("-", "") }));
    await physical.write(0, markerBlock);
    await physical.flush();
  }
  const zeros = alignedBuffer(Math.min(protectCopyPieceBytesMax, reserveBytes), directIoAlignmentBytes);
  for (let at = protectMarkerBlockBytes; at < reserveBytes; at += zeros.length) await physical.write(at, zeros.subarray(0, Math.min(zeros.length, reserveBytes - at)));
  await physical.flush();
}
