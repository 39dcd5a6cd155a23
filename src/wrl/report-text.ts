/** The human-readable form of a write log report (`druvaa wrl create|add-device|info`). */
import { formatBytes } from "../units.ts";
import type { WrlReport } from "./paths.ts";

export function describeWrl(report: WrlReport): string {
  const percent = report.sizeBytes === 0 ? 0 : (100 * report.usedBytes) / report.sizeBytes;
  const lines = [
    `write log ${report.uuid} (format ${report.formatVersion})`,
    `  size       ${formatBytes(report.sizeBytes)} (${report.sizeBytes} bytes)`,
    `  used       ${formatBytes(report.usedBytes)} (${percent.toFixed(1)}%), free ${formatBytes(report.freeBytes)}`,
    `  records    ${report.recordCount} held: LSN ${report.tailLsn + 1}..${report.headLsn} (tail LSN ${report.tailLsn}, head LSN ${report.headLsn})`,
    `  max record ${formatBytes(report.maxPayloadBytes)} of payload`,
    `  payloads   ${report.payloadEncryption === "none" ? "not encrypted" : "encrypted at rest (AES-256-CTR; key: --encrypt-at-rest KEYFILE)"}`,
    `  devices`,
    ...report.devices.map((d) => `    ${d.index} ${d.index === 0 ? "primary  " : "secondary"} ${d.pathHint}  ${formatBytes(d.dataBytes)} of log (device ${d.uuid})`),
  ];
  if (report.recovery !== undefined) {
    const copy = report.recovery.superblockCopy === 0 ? "A" : "B";
    lines.push(`  recovery   superblock copy ${copy} (other copy: ${report.recovery.otherCopy}); scan stopped at ${report.recovery.stopReason}`);
  }
  return lines.join("\n");
}
