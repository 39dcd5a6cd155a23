/**
 * The NBD transmission phase of one connection: parse requests, check them at the edge, run them
 * concurrently against the export's backend, reply (simple replies) as each completes, in any order.
 *
 * Request checks, in order; a refused request gets an error reply, touches nothing, and the
 * connection keeps serving (NBD spec "Error values" and "Block size constraints"):
 *   wrong request magic                                    -> stop parsing, finish in-flight, close
 *                                                             (framing cannot be recovered)
 *   unknown type (incl. BLOCK_STATUS: no metadata context) -> EINVAL
 *   command flag not valid for the type                    -> EINVAL
 *   WRITE / TRIM / WRITE_ZEROES on a read-only export      -> EPERM
 *   FLUSH with nonzero offset or length                    -> EINVAL
 *   zero length (READ, WRITE, TRIM, WRITE_ZEROES, CACHE)   -> EINVAL
 *   READ / WRITE longer than nbdRequestSizeBytesMax         -> EINVAL (EOVERFLOW is reserved for DF
 *                                                             and payload-less commands)
 *   offset or length not a multiple of the minimum block   -> EINVAL
 *   range past the end: WRITE, WRITE_ZEROES / others       -> ENOSPC / EINVAL
 *   WRITE_ZEROES with FAST_ZERO                            -> ENOTSUP (fast zeroing never promised)
 *   server shutting down                                   -> ESHUTDOWN
 * A refused WRITE's payload is read and dropped (never buffered whole), so framing survives.
 *
 * Back-pressure: a request is admitted only while fewer than nbdInflightRequestsMax run and the
 * bytes held (payloads of running requests + replies not yet in the kernel) stay within
 * nbdInflightBytesMax; otherwise step() returns "blocked" and the connection stops reading the
 * socket until a reply goes out.
 */
import type { ConsolaInstance } from "consola/basic";
import { nbdInflightBytesMax, nbdInflightRequestsMax, nbdRequestSizeBytesMax } from "../constants.ts";
import type { ByteQueue } from "./byte-queue.ts";
import { errnoName, nbdErrnoOf } from "./errno.ts";
import type { ExportTerms } from "./exports.ts";
import { cmd, cmdFlag, cmdNames, encodeSimpleReply, nbdErrno, readU16, readU32, readU64, requestHeaderBytes, requestMagic } from "./protocol.ts";
import type { ReplyWriter } from "./reply-writer.ts";
import { sharedBufferPool } from "../io/buffer-pool.ts";

const takePooled = (bytes: number) => sharedBufferPool.take(bytes);

interface Request {
  readonly flags: number;
  readonly type: number;
  readonly cookie: Uint8Array;
  readonly offset: number;
  readonly length: number;
  /** Bytes charged against nbdInflightBytesMax while the request runs. */
  readonly costBytes: number;
}

export type TransmissionStep = "need-more" | "blocked" | "stop";

/** Rejections logged one by one per connection; past this they are only counted. */
const rejectionsLoggedMax = 20;

export class Transmission {
  private stage: "header" | "payload" | "skip" = "header";
  private current: Request | undefined;
  /** For stage "skip": payload bytes still to drop, and the error to reply once dropped. */
  private skipRemaining = 0;
  private skipErrno = 0;
  private stopped = false;
  /** Set by the server's close(): every request parsed from now on is refused with ESHUTDOWN. */
  shuttingDown = false;
  inflightCount = 0;
  private inflightBytes = 0;
  rejectionCount = 0;

  constructor(
    private readonly terms: ExportTerms,
    private readonly writer: ReplyWriter,
    private readonly log: ConsolaInstance,
    private readonly peer: string,
    /** Called whenever a request finishes (the connection may resume reading or finish closing). */
    private readonly onSettled: () => void,
  ) {}

  /** Parses and starts requests from `input` until it needs more bytes, is over budget, or stops. */
  step(input: ByteQueue): TransmissionStep {
    while (!this.stopped) {
      switch (this.stage) {
        case "header": {
          if (input.length < requestHeaderBytes) return "need-more";
          const header = input.peek(requestHeaderBytes);
          if (readU32(header, 0) !== requestMagic) {
            this.log.warn(`${this.peer}: request without the NBD request magic (0x${readU32(header, 0).toString(16)}); cannot resynchronise, closing after ${this.inflightCount} in-flight request(s)`);
            this.stopped = true;
            return "stop";
          }
          const type = readU16(header, 6);
          const length = readU32(header, 24);
          const costBytes = (type === cmd.read || type === cmd.write) && length <= nbdRequestSizeBytesMax ? length : 0;
          if (!this.admits(costBytes)) return "blocked";
          input.skip(requestHeaderBytes);
          const request: Request = {
            flags: readU16(header, 4),
            type,
            cookie: header.slice(8, 16),
            offset: readU64(header, 16),
            length,
            costBytes,
          };
          if (type === cmd.disc) {
            this.log.debug(`${this.peer}: NBD_CMD_DISC, closing after ${this.inflightCount} in-flight request(s)`);
            this.stopped = true;
            return "stop";
          }
          const refusal = this.check(request);
          if (refusal !== undefined) this.noteRefusal(request, refusal.reason, refusal.errno);
          if (type === cmd.write) {
            this.current = request;
            if (refusal === undefined) {
              this.stage = "payload";
              this.begin(request);
            } else {
              this.stage = "skip";
              this.skipRemaining = length;
              this.skipErrno = refusal.errno;
            }
          } else if (refusal === undefined) {
            this.begin(request);
            void this.execute(request, undefined);
          } else {
            this.writer.send(encodeSimpleReply(refusal.errno, request.cookie));
          }
          break;
        }
        case "payload": {
          const request = this.current!;
          if (input.length < request.length) return "need-more";
          // A payload spanning socket chunks is copied into a pooled buffer, given back in
          // execute() once the backend's promise settled (the backend contract: lent until then).
          const payload = input.take(request.length, takePooled);
          this.stage = "header";
          this.current = undefined;
          void this.execute(request, payload);
          break;
        }
        case "skip": {
          this.skipRemaining -= input.skip(this.skipRemaining);
          if (this.skipRemaining > 0) return "need-more";
          this.writer.send(encodeSimpleReply(this.skipErrno, this.current!.cookie));
          this.stage = "header";
          this.current = undefined;
          break;
        }
      }
    }
    return "stop";
  }

  /** True when no request is running. */
  get idle(): boolean {
    return this.inflightCount === 0;
  }

  /**
   * The connection is closing with a WRITE still waiting for its payload: that request will never
   * run (and gets no reply, as the client's connection is going away), so stop counting it.
   */
  abandonPartial(): void {
    this.stopped = true;
    if (this.stage === "payload" && this.current !== undefined) {
      this.inflightCount -= 1;
      this.inflightBytes -= this.current.costBytes;
    }
    this.stage = "header";
    this.current = undefined;
  }

  private admits(costBytes: number): boolean {
    if (this.inflightCount >= nbdInflightRequestsMax) return false;
    const heldBytes = this.inflightBytes + this.writer.queuedBytes;
    // With nothing held, any single request is admitted (costBytes <= nbdRequestSizeBytesMax).
    return heldBytes === 0 || heldBytes + costBytes <= nbdInflightBytesMax;
  }

  private begin(request: Request): void {
    this.inflightCount += 1;
    this.inflightBytes += request.costBytes;
  }

  private check(request: Request): { errno: number; reason: string } | undefined {
    const { type, flags, offset, length } = request;
    const backend = this.terms.backend;
    const writes = type === cmd.write || type === cmd.trim || type === cmd.writeZeroes;
    if (type > cmd.writeZeroes) {
      const why = type === cmd.blockStatus ? "NBD_CMD_BLOCK_STATUS without a negotiated metadata context" : `unknown command type ${type}`;
      return { errno: nbdErrno.EINVAL, reason: why };
    }
    const allowedFlags = type === cmd.writeZeroes ? cmdFlag.fua | cmdFlag.noHole | cmdFlag.fastZero : cmdFlag.fua;
    if ((flags & ~allowedFlags) !== 0) return { errno: nbdErrno.EINVAL, reason: `command flags 0x${flags.toString(16)} not valid here` };
    if (this.shuttingDown) return { errno: nbdErrno.ESHUTDOWN, reason: "server is shutting down" };
    if (writes && backend.readOnly) return { errno: nbdErrno.EPERM, reason: "export is read-only" };
    if (type === cmd.flush) {
      return offset === 0 && length === 0 ? undefined : { errno: nbdErrno.EINVAL, reason: "FLUSH with nonzero offset or length" };
    }
    if (length === 0) return { errno: nbdErrno.EINVAL, reason: "zero length" };
    if ((type === cmd.read || type === cmd.write) && length > nbdRequestSizeBytesMax) {
      return { errno: nbdErrno.EINVAL, reason: `length ${length} exceeds the maximum ${nbdRequestSizeBytesMax}` };
    }
    const block = this.terms.minimumBlockSizeBytes;
    if (offset % block !== 0 || length % block !== 0) {
      return { errno: nbdErrno.EINVAL, reason: `not aligned to the ${block}-byte minimum block size` };
    }
    if (offset + length > backend.sizeBytes) {
      const errno = type === cmd.write || type === cmd.writeZeroes ? nbdErrno.ENOSPC : nbdErrno.EINVAL;
      return { errno, reason: `range past the end of the ${backend.sizeBytes}-byte export` };
    }
    if (type === cmd.writeZeroes && (flags & cmdFlag.fastZero) !== 0) {
      return { errno: nbdErrno.ENOTSUP, reason: "fast zero is not supported" };
    }
    return undefined;
  }

  private noteRefusal(request: Request, reason: string, errno: number): void {
    // A client probing for fast zero is normal (qemu-img does it); not worth a warning.
    if (errno === nbdErrno.ENOTSUP || errno === nbdErrno.ESHUTDOWN) return;
    this.rejectionCount += 1;
    if (this.rejectionCount > rejectionsLoggedMax) return;
    const what = `NBD_CMD_${cmdNames[request.type] ?? request.type} offset=${request.offset} length=${request.length} flags=0x${request.flags.toString(16)}`;
    const more = this.rejectionCount === rejectionsLoggedMax ? " (further refusals on this connection are counted, not logged)" : "";
    this.log.warn(`${this.peer}: refused ${what}: ${reason} -> ${errnoName(errno)}${more}`);
  }

  private async execute(request: Request, payload: Uint8Array | undefined): Promise<void> {
    const backend = this.terms.backend;
    const fua = (request.flags & cmdFlag.fua) !== 0;
    let errno = 0;
    let data: Uint8Array | undefined;
    try {
      switch (request.type) {
        case cmd.read:
          data = await backend.read(request.offset, request.length);
          if (data.length !== request.length) {
            // A short payload would desynchronise the client; refuse instead.
            throw new Error(`backend read returned ${data.length} bytes, expected ${request.length}`);
          }
          break;
        case cmd.write:
          await backend.write(request.offset, payload!, fua);
          break;
        case cmd.flush:
          await backend.flush();
          break;
        case cmd.trim:
          for (const [offset, length] of pieces(request.offset, request.length)) await backend.trim(offset, length);
          if (fua) await backend.flush();
          break;
        case cmd.writeZeroes: {
          const noHole = (request.flags & cmdFlag.noHole) !== 0;
          const end = request.offset + request.length;
          // FUA on the last piece covers the earlier ones: they resolved before it was issued.
          for (const [offset, length] of pieces(request.offset, request.length)) {
            await backend.writeZeroes(offset, length, fua && offset + length === end, noHole);
          }
          break;
        }
        case cmd.cache:
          // A hint only; the backend has no cache worth warming.
          break;
      }
    } catch (error) {
      errno = nbdErrnoOf(error);
      data = undefined;
      const message = error instanceof Error ? error.message : String(error);
      this.log.error(`${this.peer}: NBD_CMD_${cmdNames[request.type]} offset=${request.offset} length=${request.length} failed -> ${errnoName(errno)}: ${message}`);
    }
    if (payload !== undefined) sharedBufferPool.give(payload); // no-op unless takePooled lent it
    const header = encodeSimpleReply(errno, request.cookie);
    if (data === undefined) this.writer.send(header);
    else this.writer.send(header, data);
    this.inflightCount -= 1;
    this.inflightBytes -= request.costBytes;
    this.onSettled();
  }
}

/** Splits a payload-less range into pieces the backend contract allows (<= nbdRequestSizeBytesMax). */
function* pieces(offset: number, length: number): Generator<[number, number]> {
  for (let at = offset; at < offset + length; at += nbdRequestSizeBytesMax) {
    yield [at, Math.min(nbdRequestSizeBytesMax, offset + length - at)];
  }
}
