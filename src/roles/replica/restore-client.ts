/**
 * The restorer's side of the replica's restore port (what `druvaa restore` and, later,
 * `drrestore` run): ask for a device, write the image it streams to a target path, check it.
 *
 * Target rules (checked before anything is written; the first two before even connecting):
 *   - a directory, or a non-empty file / block device without --force: refused (TARGET_EXISTS);
 *   - missing path: a new image file of exactly the image's size is created (removed again if the
 *     restore fails); an existing empty file is grown to that size;
 *   - an existing file or block device smaller than the image: refused (TARGET_TOO_SMALL); a
 *     bigger one gets the image over its first bytes, the rest is left as it was.
 * The image is checked twice: chunks must arrive in order and cover the image exactly, and the
 * CRC32C of what was received must equal the replica's (restoreEnd). The SHA-256 of it is only
 * reported (compare with sha256sum of the source). The target is flushed (fdatasync) before
 * success is reported.
 *
 * The target is opened O_DIRECT (a whole device through the page cache only costs copies and
 * writeback). O_DIRECT refuses I/O not aligned to the file system's or device's sector (4 KiB on
 * a 4Kn disk) even where the device says 512, so a chunk whose offset or length is not a multiple
 * of 4096 (the last one of an image whose size is not) goes through a second, buffered handle on
 * the same file. No page is shared with a direct write (those cover whole 4 KiB pages), and both
 * handles are flushed at the end.
 */
import { createHash } from "node:crypto";
import { crc32c } from "../../wrl/crc32c.ts";
import { rm, stat, truncate } from "node:fs/promises";
import { directIoAlignmentBytes, restoreStallTimeoutMs, restoreWritesInflightMax } from "../../constants.ts";
import { DruvaaError, exitCodes, fromSystemError } from "../../errors.ts";
import type { BlockDevice } from "../../io/block-device.ts";
import { sharedBufferPool } from "../../io/buffer-pool.ts";
import { inUseBy } from "../../io/mounts.ts";
import { openBlockDevice } from "../../io/open-device.ts";
import { connect, formatAddress, type Address, type Connection , type PreparedTls } from "../../io/transport.ts";
import type { Frame } from "../../protocol/frame.ts";
import { clientHandshake } from "../../protocol/handshake.ts";
import type { RestoreBeginMessage } from "../../protocol/messages.ts";

export interface RestoreOptions {
  /** The replica's restore port. */
  replica: Address;
  device: string;
  /** The point to restore (TIME|LSN|LABEL); the current one when absent. */
  at?: string | undefined;
  /** Target path: a new image file, an empty file, or (with force) an existing file or block device. */
  to: string;
  force: boolean;
  nodeId: string;
  /** TLS to the restore port (the replica must show a replica certificate); plaintext when absent. */
  tls?: PreparedTls | undefined;
  /** Called once the replica has said what it sends. */
  onBegin?: (begin: RestoreBeginMessage) => void;
  /** Called after each chunk is written. */
  onProgress?: (writtenBytes: number, sizeBytes: number) => void;
  /** Milliseconds, monotonic enough for a rate; performance.now unless a test gives a clock. */
  now?: () => number;
}

export interface RestoreSummary {
  device: string;
  to: string;
  replica: string;
  sizeBytes: number;
  appliedLsn: number;
  sha256: string;
  /** True when the target file was created (or grown from empty) by this restore. */
  created: boolean;
  targetSizeBytes: number;
  seconds: number;
  bytesPerSecond: number;
}

type TargetKind = { kind: "missing" } | { kind: "empty-file" } | { kind: "file" | "block-device"; sizeBytes: number };

async function inspectTarget(path: string, force: boolean): Promise<TargetKind> {
  let stats;
  try {
    stats = await stat(path);
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") return { kind: "missing" };
    throw fromSystemError(error, `--to ${path}`);
  }
  if (stats.isDirectory()) throw new DruvaaError("IS_DIRECTORY", `--to ${path}: is a directory`, `Give a file name, e.g. --to ${path.replace(/\/$/, "")}/disk0.img`, exitCodes.usage);
  if (stats.isFile() && stats.size === 0) return { kind: "empty-file" };
  if (!stats.isFile() && !stats.isBlockDevice()) throw new DruvaaError("UNSUPPORTED_DEVICE_TYPE", `--to ${path}: is neither a regular file nor a block device`, "Restore to an image file or a block device", exitCodes.usage);
  const kind = stats.isFile() ? "file" : "block-device";
  const user = await inUseBy(path);
  if (user !== undefined) {
    throw new DruvaaError("TARGET_IN_USE", `--to ${path}: ${user}; restoring over it would corrupt what is using it`, "Unmount it (and detach its loop device: losetup -d) first, or restore to another target; --force does not override this", exitCodes.refused);
  }
  if (kind === "block-device") {
    const device = await openBlockDevice(path, { readOnly: true });
    const sizeBytes = device.sizeBytes;
    await device.close();
    if (!force) throw new DruvaaError("TARGET_EXISTS", `--to ${path}: is a block device; restoring would overwrite it`, "Add --force to overwrite it, or give a new file name", exitCodes.refused);
    return { kind, sizeBytes };
  }
  if (!force) {
    throw new DruvaaError("TARGET_EXISTS", `--to ${path}: ${kind === "file" ? "the file exists and is not empty" : "is a block device"}; restoring would overwrite it`, "Add --force to overwrite it, or give a new file name", exitCodes.refused);
  }
  return { kind, sizeBytes: stats.size };
}

function peerError(frame: Frame, where: string): DruvaaError | undefined {
  if (frame.message.type !== "error") return undefined;
  const { code, message, hint } = frame.message;
  const exitCode = code === "DEVICE_UNKNOWN" || code === "POINT_UNKNOWN" ? exitCodes.notFound : code.startsWith("POINT_") || code === "REPLICA_INCONSISTENT" || code === "FAILED_OVER" || code === "NOT_SEEDED" ? exitCodes.refused : exitCodes.failure;
  return new DruvaaError(code, `replica ${where}: ${message}`, hint, exitCode);
}

async function receive(connection: Connection, where: string, doing: string): Promise<Frame> {
  try {
    return await connection.receive(restoreStallTimeoutMs);
  } catch (error) {
    const reason = error instanceof DruvaaError ? error : fromSystemError(error, where);
    if (reason.code === "NET_TIMEOUT") throw new DruvaaError("RESTORE_STALLED", `replica ${where} sent nothing for ${restoreStallTimeoutMs / 1000} s while ${doing}`, "Is the replica overloaded or the network stuck? Run the restore again", exitCodes.timeout);
    if (reason.code.startsWith("NET_")) throw new DruvaaError("RESTORE_INTERRUPTED", `replica ${where} closed the connection while ${doing}`, "Is the replica still running? Check: druvaa status --connect REPLICA:6004; then run the restore again", exitCodes.failure, { cause: error });
    throw reason;
  }
}

/** Pulls `options.device` from the replica into `options.to`; throws a DruvaaError on any failure. */
export async function restoreFromReplica(options: RestoreOptions): Promise<RestoreSummary> {
  const now = options.now ?? (() => performance.now());
  const where = formatAddress(options.replica);
  const target = await inspectTarget(options.to, options.force);
  // Frames land in pooled buffers with the payload aligned, so the target (opened O_DIRECT: a
  // restore of a whole device through the page cache only costs copies and writeback) takes
  // them without a bounce copy; each goes back to the pool once written.
  const allocateFrame = (bytes: number, payloadAt: number) => sharedBufferPool.take(bytes, payloadAt);
  const connection = await connect(options.replica, undefined, { allocateFrame, ...(options.tls === undefined ? {} : { tls: options.tls }) });
  let device: BlockDevice | undefined;
  /** The buffered handle for chunks O_DIRECT may refuse, opened at the first such chunk. */
  let unaligned: Promise<BlockDevice> | undefined;
  const openUnaligned = () => (unaligned ??= openBlockDevice(options.to, { direct: false }));
  let created = false;
  let succeeded = false;
  try {
    await clientHandshake(connection, { role: "control", nodeId: options.nodeId }, ["replica"]);
    await connection.send({ type: "restoreRequest", device: options.device, ...(options.at === undefined ? {} : { at: options.at }) });
    const first = await receive(connection, where, "waiting for the restore to begin");
    const refusal = peerError(first, where);
    if (refusal !== undefined) throw refusal;
    if (first.message.type !== "restoreBegin" || first.message.device !== options.device) {
      throw new DruvaaError("PROTO_UNEXPECTED", `replica ${where} answered ${first.message.type}, not restoreBegin for ${options.device}`, "Run the same druvaa release on both ends");
    }
    const begin = first.message;
    const sizeBytes = begin.sizeBytes;
    if (sizeBytes === 0) throw new DruvaaError("RESTORE_EMPTY", `replica ${where}: device ${options.device} has size 0`, "Check the replica's devices: druvaa status --connect REPLICA:6004");
    if ((target.kind === "file" || target.kind === "block-device") && target.sizeBytes < sizeBytes) {
      throw new DruvaaError("TARGET_TOO_SMALL", `--to ${options.to}: ${target.sizeBytes} bytes, but the image of ${options.device} has ${sizeBytes} bytes`, target.kind === "file" ? "Give a new file name (it is created at the right size), or remove the file" : "Restore to a device at least as big as the image", exitCodes.refused);
    }
    if (target.kind === "missing") {
      device = await openBlockDevice(options.to, { createSizeBytes: sizeBytes, direct: true });
      created = true;
    } else {
      if (target.kind === "empty-file") {
        await truncate(options.to, sizeBytes).catch((error: unknown) => {
          throw fromSystemError(error, `--to ${options.to}`);
        });
        created = true;
      }
      device = await openBlockDevice(options.to, { direct: true });
    }
    if (sizeBytes % device.logicalBlockSizeBytes !== 0) {
      throw new DruvaaError("TARGET_BLOCK_SIZE", `--to ${options.to}: the image (${sizeBytes} bytes) is not whole ${device.logicalBlockSizeBytes}-byte blocks of the target`, "Restore to an image file instead", exitCodes.refused);
    }
    options.onBegin?.(begin);
    const startedMs = now();
    // SHA-256 for the summary (compare with sha256sum of the source); CRC32C (native, cheap on
    // the replica) checks the bytes end to end against restoreEnd.
    const hash = createHash("sha256");
    let crc = 0;
    const writes = new Set<Promise<void>>();
    let receivedBytes = 0;
    let writtenBytes = 0;
    for (;;) {
      const frame = await receive(connection, where, `receiving ${options.device} (${receivedBytes} of ${sizeBytes} bytes)`);
      const failure = peerError(frame, where);
      if (failure !== undefined) throw failure;
      const message = frame.message;
      if (message.type === "restoreEnd") {
        await Promise.all(writes);
        if (receivedBytes !== sizeBytes || message.sizeBytes !== sizeBytes) {
          throw new DruvaaError("RESTORE_INCOMPLETE", `replica ${where} ended the restore after ${receivedBytes} of ${sizeBytes} bytes`, "Run the restore again; if it repeats, report it with the replica's log");
        }
        const sha256 = hash.digest("hex");
        if (crc >>> 0 !== message.crc32c) {
          throw new DruvaaError("RESTORE_CHECKSUM", `--to ${options.to}: CRC32C of what was received (${crc >>> 0}) differs from the replica's (${message.crc32c})`, "The data was damaged in transit or on the replica's disk; run the restore again");
        }
        await device.flush();
        if (unaligned !== undefined) await (await unaligned).flush();
        const seconds = Math.max((now() - startedMs) / 1000, 1e-3);
        succeeded = true;
        return { device: options.device, to: options.to, replica: where, sizeBytes, appliedLsn: begin.appliedLsn, sha256, created, targetSizeBytes: device.sizeBytes, seconds, bytesPerSecond: sizeBytes / seconds };
      }
      if (message.type !== "restoreData" || message.device !== options.device || message.offset !== receivedBytes || message.offset + message.length > sizeBytes) {
        const got = message.type === "restoreData" ? `data at ${message.offset}+${message.length}` : message.type;
        throw new DruvaaError("PROTO_UNEXPECTED", `replica ${where} sent ${got}, expected data at ${receivedBytes} of ${sizeBytes} bytes`, "Run the same druvaa release on both ends");
      }
      hash.update(frame.payload);
      crc = crc32c(frame.payload, crc);
      receivedBytes += message.length;
      const aligned = message.offset % directIoAlignmentBytes === 0 && message.length % directIoAlignmentBytes === 0;
      const direct = device;
      const write = (aligned ? direct.write(message.offset, frame.payload) : openUnaligned().then((buffered) => buffered.write(message.offset, frame.payload))).then(() => {
        sharedBufferPool.give(frame.payload);
        writtenBytes += message.length;
        options.onProgress?.(writtenBytes, sizeBytes);
      });
      write.catch(() => undefined); // awaited below; a failure must not go unhandled meanwhile
      writes.add(write);
      void write.then(() => writes.delete(write), () => undefined);
      // Back-pressure and early failure: at most a few chunks in flight; the first error ends it.
      if (writes.size >= restoreWritesInflightMax) await Promise.race(writes);
    }
  } finally {
    // A failed restore drops the connection at once: the replica stops streaming and resumes apply.
    if (connection.isOpen) {
      if (succeeded) await connection.close();
      else connection.abort();
    }
    await device?.close().catch(() => undefined);
    if (unaligned !== undefined) await unaligned.then((buffered) => buffered.close()).catch(() => undefined);
    if (!succeeded && created) {
      // Do not leave a partial image that looks like a restore.
      if (target.kind === "missing") await rm(options.to, { force: true }).catch(() => undefined);
      else await truncate(options.to, 0).catch(() => undefined);
    }
  }
}
