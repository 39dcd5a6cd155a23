/**
 * A small NBD client: fixed-newstyle handshake with OPT_GO, then READ / WRITE / FLUSH / TRIM /
 * WRITE_ZEROES with many requests in flight (simple replies, matched by cookie). It is what
 * `druvaa demo` writes with when no external NBD client (nbdcopy, qemu-io) is installed, and what
 * tests use to speak to an export without a third-party tool. It is not a general-purpose client:
 * no TLS, no structured replies, no block status.
 */
import { DruvaaError } from "../errors.ts";
import { ByteQueue } from "./byte-queue.ts";
import { ReplyWriter } from "./reply-writer.ts";
import {
  clientFlags, cmd, cmdFlag, encodeString, info, nbdMagic, opt, optionMagic, optionReplyMagic, readBigU64, readU16, readU32, readU64,
  rep, requestHeaderBytes, requestMagic, simpleReplyHeaderBytes, simpleReplyMagic, tflag, writeU16, writeU32, writeU64,
} from "./protocol.ts";

export interface NbdExportInfo {
  sizeBytes: number;
  transmissionFlags: number;
  minimumBlockSizeBytes: number;
  preferredBlockSizeBytes: number;
  maximumBlockSizeBytes: number;
}

interface Pending {
  resolve: (data: Uint8Array) => void;
  reject: (error: Error) => void;
  readLength: number;
}

const errnoNames: Record<number, string> = { 1: "EPERM", 5: "EIO", 12: "ENOMEM", 22: "EINVAL", 28: "ENOSPC", 75: "EOVERFLOW", 95: "ENOTSUP", 108: "ESHUTDOWN" };

/** Connects to `unix:PATH` or `HOST:PORT` and opens export `exportName` with OPT_GO. */
export async function connectNbd(address: string, exportName = ""): Promise<NbdClient> {
  const client = new NbdClient();
  await client.open(address, exportName);
  return client;
}

export class NbdClient {
  private socket: Bun.Socket<undefined> | undefined;
  private writer: ReplyWriter | undefined;
  private readonly incoming = new ByteQueue();
  private waiter: (() => void) | undefined;
  private readonly pending = new Map<bigint, Pending>();
  private nextCookie = 1n;
  /** One settled-promise per request in flight, for close(). */
  private readonly outstanding = new Set<Promise<void>>();
  private closedError: Error | undefined;
  private inTransmission = false;
  info: NbdExportInfo = { sizeBytes: 0, transmissionFlags: 0, minimumBlockSizeBytes: 1, preferredBlockSizeBytes: 4096, maximumBlockSizeBytes: 32 * 1024 * 1024 };

  async open(address: string, exportName: string): Promise<void> {
    const handlers = {
      data: (_socket: Bun.Socket<undefined>, chunk: Buffer) => {
        this.incoming.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if (this.inTransmission) this.readReplies();
        else this.wake();
      },
      drain: () => this.writer?.drain(),
      close: () => this.fail(new DruvaaError("NBD_CLOSED", "NBD server closed the connection")),
      error: (_socket: Bun.Socket<undefined>, error: Error) => this.fail(new DruvaaError("NBD_CLOSED", `NBD connection failed: ${error.message}`)),
    };
    try {
      this.socket = address.startsWith("unix:")
        ? await Bun.connect({ unix: address.slice(5), socket: handlers })
        : await Bun.connect({ hostname: address.slice(0, address.lastIndexOf(":")).replace(/^\[|\]$/g, ""), port: Number(address.slice(address.lastIndexOf(":") + 1)), socket: handlers });
    } catch (error) {
      throw new DruvaaError("NBD_CONNECT_FAILED", `cannot connect to the NBD export at ${address}: ${error instanceof Error ? error.message : String(error)}`, "Is `druvaa client attach` running with that --export?");
    }
    this.writer = new ReplyWriter(this.socket, () => {});
    await this.handshake(exportName);
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  private fail(error: Error): void {
    if (this.closedError) return;
    this.closedError = error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
    this.wake();
  }

  /** Waits until `count` bytes are buffered during the handshake. */
  private async need(count: number): Promise<Uint8Array> {
    while (this.incoming.length < count) {
      if (this.closedError) throw this.closedError;
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
    return this.incoming.take(count);
  }

  private async handshake(exportName: string): Promise<void> {
    const greeting = await this.need(18);
    if (readBigU64(greeting, 0) !== nbdMagic || readBigU64(greeting, 8) !== optionMagic) {
      throw new DruvaaError("NBD_BAD_SERVER", "the peer is not a fixed-newstyle NBD server");
    }
    const flags = new Uint8Array(4);
    writeU32(flags, 0, clientFlags.fixedNewstyle | clientFlags.noZeroes);
    const name = encodeString(exportName);
    const data = new Uint8Array(4 + name.length + 2 + 2);
    writeU32(data, 0, name.length);
    data.set(name, 4);
    writeU16(data, 4 + name.length, 1);
    writeU16(data, 6 + name.length, info.blockSize);
    const header = new Uint8Array(16);
    writeU64(header, 0, optionMagic);
    writeU32(header, 8, opt.go);
    writeU32(header, 12, data.length);
    this.writer!.send(flags, header, data);
    for (;;) {
      const replyHeader = await this.need(20);
      if (readBigU64(replyHeader, 0) !== optionReplyMagic) throw new DruvaaError("NBD_BAD_SERVER", "bad option reply magic");
      const replyType = readU32(replyHeader, 12);
      const length = readU32(replyHeader, 16);
      const body = await this.need(length);
      if (replyType === rep.ack) break;
      if (replyType === rep.info) {
        const infoType = readU16(body, 0);
        if (infoType === info.export) {
          this.info.sizeBytes = readU64(body, 2);
          this.info.transmissionFlags = readU16(body, 10);
        } else if (infoType === info.blockSize) {
          this.info.minimumBlockSizeBytes = readU32(body, 2);
          this.info.preferredBlockSizeBytes = readU32(body, 6);
          this.info.maximumBlockSizeBytes = readU32(body, 10);
        }
        continue;
      }
      if (replyType >= 0x8000_0000) {
        const message = new TextDecoder().decode(body);
        throw new DruvaaError("NBD_EXPORT_REFUSED", `NBD server refused export "${exportName}": ${message || `error 0x${replyType.toString(16)}`}`, "List the exports with: nbdinfo --list URI");
      }
    }
    this.inTransmission = true;
    if (this.incoming.length > 0) this.readReplies();
  }

  private readReplies(): void {
    while (this.incoming.length >= simpleReplyHeaderBytes) {
      const header = this.incoming.peek(simpleReplyHeaderBytes);
      if (readU32(header, 0) !== simpleReplyMagic) {
        this.fail(new DruvaaError("NBD_BAD_SERVER", "bad reply magic from the NBD server"));
        this.socket?.end();
        return;
      }
      const error = readU32(header, 4);
      const cookie = readBigU64(header, 8);
      const pending = this.pending.get(cookie);
      if (pending === undefined) {
        this.fail(new DruvaaError("NBD_BAD_SERVER", `reply for unknown cookie ${cookie}`));
        this.socket?.end();
        return;
      }
      const payloadLength = error === 0 ? pending.readLength : 0;
      if (this.incoming.length < simpleReplyHeaderBytes + payloadLength) return;
      this.incoming.skip(simpleReplyHeaderBytes);
      const payload = this.incoming.take(payloadLength);
      this.pending.delete(cookie);
      if (error === 0) pending.resolve(payload);
      else pending.reject(new DruvaaError(`NBD_${errnoNames[error] ?? "ERROR"}`, `NBD request failed: ${errnoNames[error] ?? `error ${error}`}`));
    }
  }

  private request(type: number, flags: number, offset: number, length: number, payload?: Uint8Array): Promise<Uint8Array> {
    if (this.closedError) return Promise.reject(this.closedError);
    const cookie = this.nextCookie++;
    const header = new Uint8Array(requestHeaderBytes);
    writeU32(header, 0, requestMagic);
    writeU16(header, 4, flags);
    writeU16(header, 6, type);
    writeU64(header, 8, cookie);
    writeU64(header, 16, offset);
    writeU32(header, 24, length);
    const promise = new Promise<Uint8Array>((resolve, reject) => {
      this.pending.set(cookie, { resolve, reject, readLength: type === cmd.read ? length : 0 });
    });
    const settled: Promise<void> = promise.then(() => undefined, () => undefined).finally(() => this.outstanding.delete(settled));
    this.outstanding.add(settled);
    if (payload) this.writer!.send(header, payload);
    else this.writer!.send(header);
    return promise;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    return this.request(cmd.read, 0, offset, length);
  }

  async write(offset: number, data: Uint8Array, fua = false): Promise<void> {
    await this.request(cmd.write, fua ? cmdFlag.fua : 0, offset, data.length, data);
  }

  async flush(): Promise<void> {
    await this.request(cmd.flush, 0, 0, 0);
  }

  async trim(offset: number, length: number): Promise<void> {
    await this.request(cmd.trim, 0, offset, length);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    await this.request(cmd.writeZeroes, 0, offset, length);
  }

  get canTrim(): boolean {
    return (this.info.transmissionFlags & tflag.sendTrim) !== 0;
  }

  get inflight(): number {
    return this.pending.size;
  }

  /** Sends NBD_CMD_DISC once every request has been answered, then closes. */
  async close(): Promise<void> {
    await Promise.all([...this.outstanding]);
    if (!this.closedError && this.writer) {
      const header = new Uint8Array(requestHeaderBytes);
      writeU32(header, 0, requestMagic);
      writeU16(header, 6, cmd.disc);
      writeU64(header, 8, this.nextCookie++);
      this.writer.send(header);
      this.writer.endWhenFlushed();
    }
    this.closedError ??= new DruvaaError("NBD_CLOSED", "NBD client closed");
  }
}
