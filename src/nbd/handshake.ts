/**
 * The NBD fixed-newstyle handshake, server side: greeting, client flags, then option haggling
 * until the client picks an export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) or gives up.
 *
 * Decision table (what the server does with each input):
 *   client flags with an unknown bit, or without FIXED_NEWSTYLE   -> log, close
 *   option header without the IHAVEOPT magic (garbage)            -> log, close
 *   more than nbdOptionsPerConnectionMax options                  -> log, close
 *   option length > nbdOptionDataBytesMax                         -> ERR_TOO_BIG, close (we will not
 *                                                                    read that much to resync)
 *   EXPORT_NAME known / unknown                                   -> size+flags, transmission / close
 *   GO, INFO known                                                -> INFO replies, ACK (GO: transmission)
 *   GO, INFO unknown name / malformed data                        -> ERR_UNKNOWN / ERR_INVALID, continue
 *   LIST                                                          -> one SERVER per export, ACK
 *   ABORT                                                         -> ACK, close
 *   STARTTLS, STRUCTURED_REPLY, EXTENDED_HEADERS, META_CONTEXT,
 *   anything else                                                 -> ERR_UNSUP, continue
 */
import type { ConsolaInstance } from "consola/basic";
import { nbdOptionDataBytesMax, nbdOptionsPerConnectionMax, nbdStringBytesMax } from "../constants.ts";
import type { ByteQueue } from "./byte-queue.ts";
import type { ExportTable, ExportTerms } from "./exports.ts";
import {
  clientFlags, clientFlagsKnown, encodeExportNameReply, encodeGreeting, encodeInfoBlockSize, encodeInfoExport,
  encodeInfoString, encodeOptionReply, encodeServerReplyData, encodeString, info, opt, optionHeaderBytes,
  optionMagic, optNames, readBigU64, readU16, readU32, rep,
} from "./protocol.ts";
import type { ReplyWriter } from "./reply-writer.ts";

export type HandshakeStep =
  | { kind: "need-more" }
  | { kind: "transmission"; terms: ExportTerms }
  | { kind: "close" };

const needMore: HandshakeStep = { kind: "need-more" };
const close: HandshakeStep = { kind: "close" };
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

export class Handshake {
  private stage: "client-flags" | "option-header" | "option-data" = "client-flags";
  private noZeroes = false;
  private optionsSeen = 0;
  private option = 0;
  private optionLength = 0;

  constructor(
    private readonly exports: ExportTable,
    private readonly writer: ReplyWriter,
    private readonly log: ConsolaInstance,
    private readonly peer: string,
  ) {}

  /** Sends the greeting; call once when the connection opens. */
  start(): void {
    this.writer.send(encodeGreeting());
  }

  /** Consumes whole messages from `input` until it needs more bytes or the phase ends. */
  step(input: ByteQueue): HandshakeStep {
    for (;;) {
      switch (this.stage) {
        case "client-flags": {
          if (input.length < 4) return needMore;
          const flags = readU32(input.take(4), 0);
          if ((flags & ~clientFlagsKnown) !== 0) return this.refuse(`client flags 0x${flags.toString(16)} have unknown bits`);
          if ((flags & clientFlags.fixedNewstyle) === 0) {
            return this.refuse("client does not speak fixed newstyle NBD (NBD_FLAG_C_FIXED_NEWSTYLE unset); use a current NBD client");
          }
          this.noZeroes = (flags & clientFlags.noZeroes) !== 0;
          this.stage = "option-header";
          break;
        }
        case "option-header": {
          if (input.length < optionHeaderBytes) return needMore;
          const header = input.take(optionHeaderBytes);
          if (readBigU64(header, 0) !== optionMagic) return this.refuse("option without the IHAVEOPT magic (not an NBD client?)");
          this.option = readU32(header, 8);
          this.optionLength = readU32(header, 12);
          this.optionsSeen += 1;
          if (this.optionsSeen > nbdOptionsPerConnectionMax) return this.refuse(`more than ${nbdOptionsPerConnectionMax} options without choosing an export`);
          if (this.optionLength > nbdOptionDataBytesMax) {
            this.reject(rep.errTooBig, `option ${this.optionName()} has ${this.optionLength} bytes of data; the limit is ${nbdOptionDataBytesMax}`);
            return close;
          }
          this.stage = "option-data";
          break;
        }
        case "option-data": {
          if (input.length < this.optionLength) return needMore;
          const data = input.take(this.optionLength);
          this.stage = "option-header";
          const outcome = this.handleOption(this.option, data);
          if (outcome !== needMore) return outcome;
          break;
        }
      }
    }
  }

  private handleOption(option: number, data: Uint8Array): HandshakeStep {
    switch (option) {
      case opt.exportName: {
        const name = decodeName(data);
        const terms = name === undefined ? undefined : this.exports.find(name);
        if (terms === undefined) {
          // EXPORT_NAME cannot carry an error: the spec says terminate the session.
          return this.refuse(`unknown export ${JSON.stringify(name ?? "(invalid UTF-8)")} requested with NBD_OPT_EXPORT_NAME; exports: ${this.exports.describeNames()}`);
        }
        this.writer.send(encodeExportNameReply(terms.backend.sizeBytes, terms.transmissionFlags, this.noZeroes));
        return { kind: "transmission", terms };
      }
      case opt.abort:
        this.writer.send(encodeOptionReply(option, rep.ack));
        return close;
      case opt.list:
        if (data.length !== 0) return this.reject(rep.errInvalid, "NBD_OPT_LIST takes no data");
        for (const terms of this.exports.all) {
          this.writer.send(encodeOptionReply(option, rep.server, encodeServerReplyData(terms.backend.name)));
        }
        this.writer.send(encodeOptionReply(option, rep.ack));
        return needMore;
      case opt.info:
      case opt.go:
        return this.infoOrGo(option, data);
      case opt.startTls:
        return this.reject(rep.errUnsup, "TLS is not supported by this server; use a Unix socket or a trusted network");
      case opt.structuredReply:
      case opt.extendedHeaders:
      case opt.listMetaContext:
      case opt.setMetaContext:
        return this.reject(rep.errUnsup, "this server sends simple replies only");
      default:
        return this.reject(rep.errUnsup, `option ${this.optionName()} is not supported`);
    }
  }

  /** INFO and GO share a request format: u32 name length, name, u16 count, count x u16 info type. */
  private infoOrGo(option: number, data: Uint8Array): HandshakeStep {
    if (data.length < 6) return this.reject(rep.errInvalid, "option data shorter than its fixed fields");
    const nameLength = readU32(data, 0);
    if (nameLength > data.length - 6) return this.reject(rep.errInvalid, "export name length runs past the option data");
    if (nameLength > nbdStringBytesMax) return this.reject(rep.errInvalid, `export name longer than ${nbdStringBytesMax} bytes`);
    const requestCount = readU16(data, 4 + nameLength);
    if (6 + nameLength + 2 * requestCount !== data.length) {
      return this.reject(rep.errInvalid, "number of information requests does not match the option length");
    }
    const name = decodeName(data.subarray(4, 4 + nameLength));
    if (name === undefined) return this.reject(rep.errInvalid, "export name is not valid UTF-8");
    const terms = this.exports.find(name);
    if (terms === undefined) {
      return this.reject(rep.errUnknown, `no export named ${JSON.stringify(name)}; exports: ${this.exports.describeNames()}`);
    }
    // The requested info types only matter to a server that sends some info conditionally; we
    // always send everything (export, name, description, block size) so clients honour our
    // minimum block size even when they did not ask for it.
    const backend = terms.backend;
    this.writer.send(encodeOptionReply(option, rep.info, encodeInfoExport(backend.sizeBytes, terms.transmissionFlags)));
    this.writer.send(encodeOptionReply(option, rep.info, encodeInfoString(info.name, backend.name)));
    if (backend.description !== undefined) {
      this.writer.send(encodeOptionReply(option, rep.info, encodeInfoString(info.description, backend.description)));
    }
    this.writer.send(encodeOptionReply(option, rep.info, encodeInfoBlockSize(terms.minimumBlockSizeBytes, terms.preferredBlockSizeBytes, terms.maximumBlockSizeBytes)));
    this.writer.send(encodeOptionReply(option, rep.ack));
    return option === opt.go ? { kind: "transmission", terms } : needMore;
  }

  /** An option error reply with a message; negotiation continues unless the caller returns close. */
  private reject(replyType: number, message: string): HandshakeStep {
    const level = replyType === rep.errUnsup ? "debug" : "info";
    this.log[level](`${this.peer}: ${this.optionName()} refused: ${message}`);
    this.writer.send(encodeOptionReply(this.option, replyType, encodeString(message)));
    return needMore;
  }

  private refuse(reason: string): HandshakeStep {
    this.log.warn(`${this.peer}: handshake refused, closing: ${reason}`);
    return close;
  }

  private optionName(): string {
    return `NBD_OPT_${optNames[this.option] ?? this.option}`;
  }
}

function decodeName(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}
