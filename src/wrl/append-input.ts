/** Validation of append() arguments: the WRL's edge towards the staging server. */
import { DruvaaError, exitCodes } from "../errors.ts";
import { wrlDeviceNameBytesMax } from "../constants.ts";
import { deviceNameBytes, isRecordType } from "./record-format.ts";
import type { WrlAppend, WrlRecordType } from "./types.ts";

export interface CheckedAppend {
  type: WrlRecordType;
  epoch: number;
  device: number | string;
  /** Encoded name when the device is named; the number otherwise. */
  deviceField: number | Uint8Array;
  seq: number;
  offset: number;
  lengthBytes: number;
  flags: number;
  data: Uint8Array;
}

function bad(message: string): DruvaaError {
  return new DruvaaError("WRL_BAD_APPEND", `write log append: ${message}`, "This is a bug in the caller of WriteLog.append()", exitCodes.usage);
}

function count(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) throw bad(`${name} must be a non-negative safe integer, got ${String(value)}`);
  return value;
}

export function checkAppend(input: WrlAppend): CheckedAppend {
  if (typeof input !== "object" || input === null) throw bad("expected a record object");
  const type = input.type ?? "write";
  if (!isRecordType(type)) throw bad(`unknown record type ${String(type)}`);
  if (!(input.data instanceof Uint8Array)) throw bad("data must be a Uint8Array");
  const data = input.data;
  const lengthBytes = input.lengthBytes === undefined ? data.length : count(input.lengthBytes, "lengthBytes");
  if ((type === "write" || type === "resync") && lengthBytes !== data.length) throw bad(`a ${type} record's lengthBytes (${lengthBytes}) must equal its data length (${data.length})`);
  if ((type === "zero" || type === "trim") && data.length !== 0) throw bad(`a ${type} record carries no data`);
  const flags = input.flags ?? 0;
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xffff_ffff) throw bad(`flags must be a u32, got ${flags}`);
  let deviceField: number | Uint8Array;
  if (typeof input.device === "number") {
    if (!Number.isInteger(input.device) || input.device < 0 || input.device > 0xffff_ffff) throw bad(`device number must be a u32, got ${input.device}`);
    deviceField = input.device;
  } else if (typeof input.device === "string") {
    const name = deviceNameBytes(input.device);
    if (name === undefined) throw bad(`device name must be 1..${wrlDeviceNameBytesMax} UTF-8 bytes`);
    deviceField = name;
  } else {
    throw bad("device must be a number or a name");
  }
  return {
    type,
    epoch: count(input.epoch, "epoch"),
    device: input.device,
    deviceField,
    seq: count(input.seq, "seq"),
    offset: count(input.offset, "offset"),
    lengthBytes,
    flags,
    data,
  };
}
