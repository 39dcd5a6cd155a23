/**
 * How client writes become WRL records, and WRL records ship records. Ordered writes are `write`
 * (or `zero`) records, resync data `resync` records; the end of a resync set and verify probes are
 * markers whose flags say which (recordFlags; a probe's data are its digests, its extent the range
 * it covers), and so are checkpoints (their data the label, no extent). Other markers (nothing to
 * apply) are not shipped.
 */
import { checkpointLabelPayload } from "../../protocol/checkpoint-label.ts";
import { checkpointFlags, recordFlags, verifyFlags, type ShipRecord, type WriteMessage } from "../../protocol/messages.ts";
import type { WrlAppend, WrlRecord } from "../../wrl/types.ts";

/**
 * The WRL record of a client write: ordered writes as `write` (or `zero`), resync data as
 * `resync`, the end of a resync set and verify probes as markers whose flags say which
 * (recordFlags; a probe's data are its digests and its extent the range it covers).
 */
export function wrlAppendOf(message: WriteMessage, data: Uint8Array): WrlAppend {
  // One object per write, no spreads: this runs for every client write.
  const record: WrlAppend = { type: "write", epoch: message.epoch, device: message.device, seq: message.reqId, offset: message.offset, data };
  if (message.zero === true) {
    record.type = "zero";
    record.data = new Uint8Array(0);
    record.lengthBytes = message.length;
  } else if (message.kind === "resync") {
    record.type = "resync";
  } else if (message.kind === "resyncEnd") {
    record.type = "marker";
    record.data = new Uint8Array(0);
    record.lengthBytes = 0;
    record.flags = recordFlags.resyncEnd;
  } else if (message.kind === "verify") {
    record.type = "marker";
    record.lengthBytes = message.length;
    record.flags = verifyFlags(message.verifyBlockBytes!);
  } else if (message.kind === "checkpoint") {
    // The label (checked at decode) is the payload; offset 0, length 0: it writes nothing.
    record.type = "marker";
    record.data = checkpointLabelPayload(message.label!);
    record.lengthBytes = 0;
    record.flags = checkpointFlags(record.data.length);
  }
  return record;
}

const shippedMarkerFlags = recordFlags.resyncEnd | recordFlags.verify | recordFlags.checkpoint;

/** The ship record of a WRL record (without its data), or undefined for a marker not shipped. */
export function shipRecordOf(record: WrlRecord, device: string): ShipRecord | undefined {
  const base = { lsn: record.lsn, epoch: record.epoch, device, offset: record.offset };
  switch (record.type) {
    case "zero":
    case "trim":
      return { ...base, length: record.lengthBytes, flags: recordFlags.zero };
    case "resync":
      return { ...base, length: record.data.length, flags: recordFlags.resync };
    case "marker":
      return (record.flags & shippedMarkerFlags) === 0 ? undefined : { ...base, length: record.lengthBytes, flags: record.flags };
    default:
      return { ...base, length: record.data.length, flags: 0 };
  }
}
