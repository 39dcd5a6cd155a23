/**
 * The replica's control routes of failover and failback (the tools: src/commands/failover.ts,
 * failback.ts). While a WRL is failed over:
 *
 *   GET  /failover?wrl=NAME|device=NAME  the record (generations, point, phase, devices, failback),
 *                                        the DR side's writes since the failover (drWritten), the
 *                                        ranges the rollback undid, the export URIs
 *   POST /failover {device|wrl, at?, export}
 *                                        fails over (failover.ts)
 *   POST /failover/digests {device, offset, length, blockBytes}
 *                                        sha256 per block (the checksum pass)
 *   POST /failback/begin {wrl, keep, explicit, stagingHeadLsn, changemapDirtyBytes?}
 *                                        the export turns read-only and the DR writes in flight
 *                                        settle: what the DR side wrote is final; answers like GET
 *   POST /failback/write?device=NAME&offset=N  (body: the bytes)
 *                                        keep primary: failback's copy to the DR device,
 *                                        recorded in the DR map like any write
 *   POST /failback/abort {wrl}           the DR side takes writes again (not once completing)
 *   POST /failback/complete {wrl, throughLsn, generation}
 *                                        phase failing-back saved, then failback.ts completes it;
 *                                        sent again (same throughLsn), it finishes an interrupted one
 * begin, abort and complete run in turns of the apply lock and look at the record as it is then.
 */
import { createHash } from "node:crypto";
import { DruvaaError, exitCodes, usageError } from "../../errors.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import type { ControlRoute } from "../../io/control-server.ts";
import { logger } from "../../log.ts";
import { parseListenAddress } from "../../nbd/server.ts";
import { checkName } from "../common.ts";
import type { FailoverRecord } from "./failover-state.ts";
import type { Failovers, FailoverRequest, Promoted } from "./failover.ts";
import type { JournalRange } from "./journal-format.ts";

const log = logger("replica:failback");
/** At most this many bytes digested per request. */
const digestRequestBytesMax = 256 * 1024 * 1024;
/** At most this many bytes in one POST /failback/write. */
const failbackWriteBytesMax = 8 * 1024 * 1024;

export function failoverRoutes(failovers: Failovers): Record<string, ControlRoute> {
  const body = async (request: Request) => ((await request.json().catch(() => undefined)) ?? {}) as Record<string, unknown>;
  const inTurn = <T>(task: () => Promise<T>): Promise<T> => failovers.host.exclusive(task);
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
      if (typeof asked.wrl !== "string" || (asked.keep !== "dr" && asked.keep !== "primary") || !Number.isSafeInteger(asked.stagingHeadLsn)) {
        throw usageError("POST /failback/begin needs {wrl, keep: dr|primary, explicit, stagingHeadLsn, changemapDirtyBytes?}", "druvaa failback sends it before it copies");
      }
      const keep = asked.keep;
      return inTurn(async () => {
        const record = recordOf(failovers, asked.wrl as string, undefined);
        const promoted = servedOf(failovers, record);
        if (record.failback !== undefined && record.failback.keep !== keep) {
          throw new DruvaaError("FAILBACK_IN_PROGRESS", `a failback of WRL ${record.wrl} keeping the ${record.failback.keep === "dr" ? "DR side's" : "primary's"} data has begun`, `Run it again with --keep ${record.failback.keep} to finish it, or abort it: druvaa failback --abort --wrl ${record.wrl}`, exitCodes.refused);
        }
        if (record.failback === undefined) {
          const changemapDirtyBytes = Number.isSafeInteger(asked.changemapDirtyBytes) ? { changemapDirtyBytes: asked.changemapDirtyBytes as number } : {};
          await failovers.save({ ...record, failback: { keep, explicit: asked.explicit === true, stagingHeadLsn: asked.stagingHeadLsn as number, ...changemapDirtyBytes } });
          // The export refuses new writes from now on; the ones already in flight settle first.
          await Promise.allSettled([...promoted.inflight]);
          log.warn(`failback of WRL ${record.wrl} began (keep ${keep}): the DR export is read-only now`);
        }
        return describe(failovers, failovers.records.get(record.wrlUuid)!);
      });
    },
    "POST /failback/write": async (request) => {
      const params = new URL(request.url).searchParams;
      const device = checkName(params.get("device") ?? "", "device");
      const offset = Number(params.get("offset"));
      const data = new Uint8Array(await request.arrayBuffer());
      const record = recordOf(failovers, undefined, device);
      const promoted = servedOf(failovers, record);
      const target = promoted.plain.get(device)!;
      if (record.failback?.keep !== "primary") throw new DruvaaError("FAILBACK_NOT_BEGUN", `no failback keeping the primary's data has begun for WRL ${record.wrl}`, "druvaa failback --keep primary begins it", exitCodes.refused);
      if (!Number.isSafeInteger(offset) || offset < 0 || data.length === 0 || data.length > failbackWriteBytesMax || offset % target.logicalBlockSizeBytes !== 0 || data.length % target.logicalBlockSizeBytes !== 0 || offset + data.length > record.devices.find((entry) => entry.name === device)!.sizeBytes) {
        throw usageError("POST /failback/write needs ?device=NAME&offset=N and a body of whole blocks, up to 8 MiB, inside the device", "druvaa failback sends these");
      }
      await promoted.map.region(device).markDirty(offset, data.length);
      await target.write(offset, data);
      await target.flush();
      return { ok: true, device, offset, length: data.length };
    },
    "POST /failback/abort": async (request) => {
      const asked = await body(request);
      return inTurn(async () => {
        const record = recordOf(failovers, typeof asked.wrl === "string" ? asked.wrl : undefined, typeof asked.device === "string" ? asked.device : undefined);
        if (record.phase === "failing-back") throw new DruvaaError("FAILBACK_COMPLETING", `the failback of WRL ${record.wrl} is completing`, "Run druvaa failback again to finish it", exitCodes.refused);
        if (record.failback === undefined) return { ok: true, wrl: record.wrl, aborted: false };
        const { failback: _ended, ...rest } = record;
        await failovers.save(rest);
        log.info(`failback of WRL ${record.wrl} aborted: the DR side takes writes again`);
        return { ok: true, wrl: record.wrl, aborted: true };
      });
    },
    "POST /failback/complete": async (request) => {
      const asked = await body(request);
      if (typeof asked.wrl !== "string" || !Number.isSafeInteger(asked.throughLsn) || typeof asked.generation !== "string") throw usageError("POST /failback/complete needs {wrl, throughLsn, generation}", "druvaa failback sends it once the original primary holds the chosen data");
      const throughLsn = asked.throughLsn as number;
      const generation = asked.generation;
      return inTurn(async () => {
        const record = recordOf(failovers, asked.wrl as string, undefined);
        let failing: FailoverRecord;
        if (record.phase === "failing-back") {
          if (record.failback?.throughLsn !== throughLsn) throw new DruvaaError("FAILBACK_COMPLETING", `the failback of WRL ${record.wrl} is completing at LSN ${record.failback?.throughLsn}`, "Run druvaa failback again: it finishes it", exitCodes.refused);
          failing = record;
        } else {
          if (record.failback === undefined) throw new DruvaaError("FAILBACK_NOT_BEGUN", `no failback of WRL ${record.wrl} has begun (or it was aborted)`, "Run druvaa failback again", exitCodes.refused);
          if (throughLsn < record.appliedLsnBefore) {
            throw new DruvaaError("FAILBACK_LSN", `the WRL would resume at LSN ${throughLsn + 1}, but the replica had applied up to LSN ${record.appliedLsnBefore} before the failover: staging must have dropped its records through its head`, "Let druvaa failback do it (it asks staging to drop them, POST /wrl/discard)", exitCodes.refused);
          }
          failing = { ...record, phase: "failing-back", failback: { ...record.failback, throughLsn, generation } };
          await failovers.save(failing);
        }
        await failovers.finish(failing);
        return { ok: true, wrl: record.wrl, generation: failing.failback!.generation, appliedLsn: throughLsn, devices: record.devices.map((device) => device.name) };
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
  if (promoted !== undefined) return promoted;
  const hint = record.phase === "failing-back" ? "A failback is completing: run druvaa failback again to finish it" : `Serve it: druvaa failover --wrl ${record.wrl} --export HOST:PORT (it finishes the failover)`;
  throw new DruvaaError("FAILOVER_NOT_SERVED", `WRL ${record.wrl} is failed over but not served (phase ${record.phase})`, hint, exitCodes.refused);
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
