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
 * A new label (made by `druvaa checkpoint` or the client's control port) must also be one that
 * `--at NAME` selects: newCheckpointLabelProblem. The wire and the logs keep the syntax rule alone,
 * so records logged before that rule stay valid (`--at label:NAME` selects them).
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

/** Why a new label could not be selected with --at NAME, for the hint. */
export const checkpointLabelAmbiguityHint = "a label needs a letter and must not look like a time or an LSN";

/**
 * The time forms of --at (roles/replica/points.ts parsePointSpec; kept equal to its pattern, a
 * test checks they agree). Of them only a date with a Z zone (2026-01-31Z) is valid label syntax.
 */
const pointTimePattern = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/;

/**
 * Why `label` cannot name a new checkpoint, or undefined when it can: not the label syntax, or
 * read by --at as something else: no letter (all digits is an LSN, 2026-01-31 a date), a date
 * with a zone (2026-01-31Z), now or latest in any case (the current point). The relative -5m
 * form cannot start a label.
 */
export function newCheckpointLabelProblem(label: unknown): string | undefined {
  if (!isCheckpointLabel(label)) return `it is not ${checkpointLabelRule}`;
  if (!/[A-Za-z]/.test(label)) return "it has no letter: --at reads it as an LSN or a time";
  if (/^(now|latest)$/i.test(label)) return "--at reads it as the current point";
  if (pointTimePattern.test(label)) return "--at reads it as a time";
  return undefined;
}

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
