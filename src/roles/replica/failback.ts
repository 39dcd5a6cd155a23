/**
 * The replica's side of failback (the tool is src/commands/failback.ts, run at the original
 * site). While a WRL is failed over the replica answers, on its control port:
 *
 *   GET  /failover?wrl=NAME|device=NAME  the record (generations, point, devices), the DR side's
 *                                        writes since the failover (drWritten, from the DR map),
 *                                        the ranges the rollback undid, the export URIs
 *   POST /failover {device|wrl, at?, export?}
 *                                        fails over (failover.ts)
 *   POST /failover/digests {device, offset, length, blockBytes}
 *                                        sha256 per block of the promoted device (the checksum
 *                                        pass where neither side's changes are known)
 *   POST /failback/complete {wrl, throughLsn}
 *                                        the original primary now holds the chosen data and
 *                                        staging dropped its records through throughLsn: the
 *                                        export stops, header sectors are swapped in again, the
 *                                        WRL applies from throughLsn + 1 (roles swapped back)
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
import { recordGeneration, removeFailover } from "./failover-state.ts";
import type { Failovers, FailoverRequest, Promoted } from "./failover.ts";
import type { JournalRange } from "./journal-format.ts";
import { protectedLogicalSizeBytes, ProtectedDevice } from "./protected-device.ts";
import { decodeMarker, encodeMarker } from "./protected-marker.ts";

const log = logger("replica:failback");
/** At most this many bytes digested per request. */
const digestRequestBytesMax = 256 * 1024 * 1024;

export function failoverRoutes(failovers: Failovers): Record<string, ControlRoute> {
  return {
    "GET /failover": (request) => {
      const params = new URL(request.url).searchParams;
      return describePromoted(promotedOf(failovers, params.get("wrl") ?? undefined, params.get("device") ?? undefined), failovers);
    },
    "POST /failover": async (request) => {
      const body = (await request.json().catch(() => undefined)) as FailoverRequest | undefined;
      if (body === undefined || (typeof body.device !== "string" && typeof body.wrl !== "string") || typeof body.export !== "string") {
        throw usageError("POST /failover needs {device} or {wrl}, and {export}: the DR side is written through it, every write recorded for failback", "e.g. {\"device\":\"disk0\",\"export\":\"10.0.0.9:10810\"}");
      }
      parseListenAddress(body.export); // a bad address is refused before anything changes
      const record = await failovers.failover(body);
      return { ok: true, ...record, undone: undefined, undoneBytes: record.undone.reduce((sum, range) => sum + range.length, 0) };
    },
    "POST /failover/digests": async (request) => {
      const body = (await request.json().catch(() => undefined)) as { device?: unknown; offset?: unknown; length?: unknown; blockBytes?: unknown } | undefined;
      const device = checkName(String(body?.device ?? ""), "device");
      const [offset, length, blockBytes] = [body?.offset, body?.length, body?.blockBytes].map(Number) as [number, number, number];
      if (![offset, length, blockBytes].every(Number.isSafeInteger) || blockBytes <= 0 || offset % blockBytes !== 0 || length <= 0 || length > digestRequestBytesMax) {
        throw usageError("POST /failover/digests needs {device, offset, length, blockBytes}: block-aligned, length up to 256 MiB", "e.g. {\"device\":\"disk0\",\"offset\":0,\"length\":67108864,\"blockBytes\":65536}");
      }
      const promoted = promotedOf(failovers, undefined, device);
      return { device, offset, blockBytes, digests: await digests(promoted.plain.get(device)!, offset, length, blockBytes) };
    },
    "POST /failback/complete": async (request) => {
      const body = (await request.json().catch(() => undefined)) as { wrl?: unknown; throughLsn?: unknown; generation?: unknown } | undefined;
      if (typeof body?.wrl !== "string" || !Number.isSafeInteger(body.throughLsn) || (body.throughLsn as number) < 0 || (body.generation !== undefined && typeof body.generation !== "string")) {
        throw usageError("POST /failback/complete needs {wrl, throughLsn, generation?}", "druvaa failback sends it once the original primary holds the chosen data");
      }
      const promoted = promotedOf(failovers, body.wrl, undefined);
      return completeFailback(failovers, promoted, body.throughLsn as number, (body.generation as string | undefined) ?? promoted.record.generation);
    },
  };
}

function promotedOf(failovers: Failovers, wrl: string | undefined, device: string | undefined): Promoted {
  const found = [...failovers.promoted.values()].find((promoted) => promoted.record.wrl === wrl || promoted.record.devices.some((entry) => entry.name === device));
  if (found === undefined) throw new DruvaaError("NOT_FAILED_OVER", `${wrl === undefined ? `device ${device}` : `WRL ${wrl}`} is not failed over on this replica`, "druvaa failover --device NAME fails it over; druvaa status --connect REPLICA:6004 shows what is", exitCodes.refused);
  return found;
}

function describePromoted(promoted: Promoted, failovers: Failovers) {
  const drWritten: JournalRange[] = [];
  for (const device of promoted.record.devices) {
    for (const range of promoted.map.region(device.name).dirtyRanges()) drWritten.push({ device: device.name, offset: range.offsetBytes, length: range.lengthBytes });
  }
  return { ...promoted.record, drWritten, uris: failovers.uris(promoted.record.wrlUuid) };
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

/** Ends the failover of `promoted` (see the file comment); holds the apply lock. */
function completeFailback(failovers: Failovers, promoted: Promoted, throughLsn: number, generation: string) {
  const host = failovers.host;
  return host.exclusive(async () => {
    const { record } = promoted;
    await promoted.server?.close();
    for (const device of promoted.plain.values()) await device.flush();
    await Promise.allSettled([...promoted.plain.values()].map((device) => device.close()));
    await promoted.map.close();
    for (const device of record.devices) {
      const entry = host.devices.get(device.name);
      if (entry?.device instanceof ProtectedDevice) await reprotect(entry.device.physical, entry.device.reserveBytes);
    }
    const state = host.state();
    await host.save({ ...state, wrls: state.wrls.map((wrl) => (wrl.uuid === record.wrlUuid ? { ...wrl, appliedLsn: throughLsn } : wrl)) });
    await host.history?.forget(record.wrlUuid, Math.max(throughLsn, record.appliedLsnBefore));
    await recordGeneration(failovers.stateDir, record.wrlUuid, generation);
    await removeFailover(failovers.stateDir, record.wrlUuid);
    failovers.promoted.delete(record.wrlUuid);
    failovers.failedOver.delete(record.wrlUuid);
    log.info(`WRL ${record.wrl} failed back: the devices are replicas again (header sectors swapped), applying from LSN ${throughLsn + 1}; generation ${generation} is the history now`);
    return { ok: true, wrl: record.wrl, generation, appliedLsn: throughLsn, devices: record.devices.map((device) => device.name) };
  });
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
