/**
 * Checkpoint labels (recordFlags.checkpoint): the name an operator gives an application-consistent
 * point (`druvaa checkpoint --label NAME`). On the client -> staging flow the label is a header
 * field of the write (`write.label`, checked here at decode); in the WRL and in shipments it is the
 * record's payload (UTF-8, its byte count in the flags: checkpointFlags). A shipment's payload is
 * only known once the frame (and, compressed, its zstd payload) is open, so openShipment checks
 * its labels with checkShipCheckpoints: a bad one is a ProtocolError, never a crash further in.
 *
 * Rules: those of device and WRL names (roles/common.ts checkName): 1..64 letters, digits, '.',
 * '_' or '-', starting with a letter or digit. ASCII only, so characters and UTF-8 bytes agree.
 */
import { ProtocolError } from "./errors.ts";
import { badField, type Fields } from "./fields.ts";
import { recordFlags, shipRecordPayloadBytes } from "./record-flags.ts";

/** Most UTF-8 bytes of a checkpoint label (it fits the 8 bits of the flags that carry its size). */
export const checkpointLabelBytesMax = 64;

const labelPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** True for a valid label (see the file comment). */
export function isCheckpointLabel(label: unknown): label is string {
  return typeof label === "string" && labelPattern.test(label) && encoder.encode(label).length <= checkpointLabelBytesMax;
}

/** What a label must be, for messages. */
export const checkpointLabelRule = `1..${checkpointLabelBytesMax} letters, digits, '.', '_' or '-', starting with a letter or digit`;

/** The label's bytes as a record payload. */
export function checkpointLabelPayload(label: string): Uint8Array {
  return encoder.encode(label);
}

/** The label a record payload holds, or undefined when the bytes are not a valid label. */
export function checkpointLabelOf(payload: Uint8Array): string | undefined {
  let label: string;
  try {
    label = decoder.decode(payload);
  } catch {
    return undefined;
  }
  return isCheckpointLabel(label) ? label : undefined;
}

/** `write.label` (kind checkpoint): a valid label, else PROTO_BAD_FIELD. */
export function readCheckpointLabel(fields: Fields, where: string, key: string): string {
  const value = fields[key];
  if (!isCheckpointLabel(value)) throw badField(`${where}.${key}`, `a checkpoint label of ${checkpointLabelRule}`, value);
  return value;
}

/**
 * Checks the label of every checkpoint record of an opened shipment (plain payload, records in
 * order); PROTO_BAD_PAYLOAD names the first bad one. The frame codec already checked the sizes.
 */
export function checkShipCheckpoints(ship: { wrl: string; records: readonly { lsn: number; flags: number; length: number }[] }, payload: Uint8Array): void {
  let position = 0;
  for (const record of ship.records) {
    const bytes = shipRecordPayloadBytes(record);
    if ((record.flags & recordFlags.checkpoint) !== 0 && checkpointLabelOf(payload.subarray(position, position + bytes)) === undefined) {
      throw new ProtocolError("PROTO_BAD_PAYLOAD", `ship of WRL ${ship.wrl}: the checkpoint record at LSN ${record.lsn} carries a label that is not ${checkpointLabelRule}`, "Run the same druvaa release on staging and replica");
    }
    position += bytes;
  }
}
