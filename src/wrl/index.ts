/** The write log's public surface: what the staging server, the relay and the CLI use. */
export { WriteLog } from "./write-log.ts";
export type { CreateOptions, OpenOptions } from "./lifecycle.ts";
export { addDeviceAtPath, createWrlAtPaths, inspectWrlAtPath, openWrlAtPath, type WrlReport } from "./paths.ts";
export type {
  WrlAppend,
  WrlAppendResult,
  WrlDeviceEntry,
  WrlDeviceResolver,
  WrlInfo,
  WrlRecord,
  WrlRecordType,
  WrlRecoveryReport,
} from "./types.ts";
export { crc32c } from "./crc32c.ts";
