/**
 * A deliberately small NBD client over a raw socket, written from the spec independently of
 * src/nbd (so a shared misunderstanding cannot make both sides agree): it can send anything,
 * including garbage, and reads replies byte-exactly.
 */
import { assert } from "../../src/assert.ts";

export const NBD = {
  nbdMagic: 0x4e42444d41474943n,
  optMagic: 0x49484156454f5054n,
  optReplyMagic: 0x3e889045565a9n,
  requestMagic: 0x25609513,
  simpleReplyMagic: 0x67446698,
  opt: { exportName: 1, abort: 2, list: 3, startTls: 5, info: 6, go: 7, structuredReply: 8 },
  rep: { ack: 1, server: 2, info: 3, errUnsup: 0x80000001, errInvalid: 0x80000003, errUnknown: 0x80000006, errTooBig: 0x80000009 },
  cmd: { read: 0, write: 1, disc: 2, flush: 3, trim: 4, cache: 5, writeZeroes: 6, blockStatus: 7 },
  flag: { fua: 1, noHole: 2, df: 4, fastZero: 16 },
  errno: { EPERM: 1, EIO: 5, EINVAL: 22, ENOSPC: 28, EOVERFLOW: 75, ENOTSUP: 95, ESHUTDOWN: 108 },
} as const;

export class RawClient {
  private received: Uint8Array[] = [];
  private receivedBytes = 0;
  private waiter: (() => void) | undefined;
  private sendQueue: Uint8Array[] = [];
  closed = false;
  private socket!: Awaited<ReturnType<typeof Bun.connect>>;

  static async connect(socketPath: string): Promise<RawClient> {
    const client = new RawClient();
    client.socket = await Bun.connect({
      unix: socketPath,
      allowHalfOpen: true,
      socket: {
        binaryType: "uint8array",
        data: (_socket, chunk: Uint8Array) => {
          client.received.push(chunk);
          client.receivedBytes += chunk.length;
          client.wake();
        },
        drain: () => client.flush(),
        close: () => {
          client.closed = true;
          client.wake();
        },
        error: () => {},
      },
    });
    return client;
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  /** Queues bytes; partial socket writes are resent on drain. */
  send(bytes: Uint8Array): void {
    this.sendQueue.push(bytes);
    this.flush();
  }

  private flush(): void {
    while (this.sendQueue.length > 0) {
      const head = this.sendQueue[0]!;
      const written = this.socket.write(head);
      if (written < 0) {
        this.sendQueue = [];
        return;
      }
      if (written < head.length) {
        this.sendQueue[0] = head.subarray(written);
        return;
      }
      this.sendQueue.shift();
    }
  }

  /** Exactly `count` bytes, or throws if the server closes first. */
  async read(count: number): Promise<Uint8Array> {
    while (this.receivedBytes < count) {
      if (this.closed) throw new Error(`connection closed with ${this.receivedBytes} of ${count} expected bytes`);
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
    const out = new Uint8Array(count);
    let filled = 0;
    while (filled < count) {
      const head = this.received[0]!;
      const piece = Math.min(head.length, count - filled);
      out.set(head.subarray(0, piece), filled);
      filled += piece;
      if (piece === head.length) this.received.shift();
      else this.received[0] = head.subarray(piece);
    }
    this.receivedBytes -= count;
    return out;
  }

  /** Resolves once the server has closed the connection; returns the bytes it sent before. */
  async untilClosed(): Promise<number> {
    while (!this.closed) await new Promise<void>((resolve) => (this.waiter = resolve));
    return this.receivedBytes;
  }

  end(): void {
    this.socket.end();
  }

  /** Half-close: send FIN but keep reading replies. */
  shutdownWrite(): void {
    this.socket.shutdown();
  }

  // ---- handshake ----

  async readGreeting(): Promise<number> {
    const greeting = new DataView((await this.read(18)).buffer);
    assert(greeting.getBigUint64(0) === NBD.nbdMagic && greeting.getBigUint64(8) === NBD.optMagic, "bad greeting");
    return greeting.getUint16(16);
  }

  sendOption(option: number, data: Uint8Array = new Uint8Array(0), lengthOverride?: number): void {
    const header = new DataView(new ArrayBuffer(16));
    header.setBigUint64(0, NBD.optMagic);
    header.setUint32(8, option);
    header.setUint32(12, lengthOverride ?? data.length);
    this.send(new Uint8Array(header.buffer));
    if (data.length > 0) this.send(data);
  }

  async readOptionReply(): Promise<{ option: number; type: number; data: Uint8Array }> {
    const header = new DataView((await this.read(20)).buffer);
    assert(header.getBigUint64(0) === NBD.optReplyMagic, "bad option reply magic");
    const length = header.getUint32(16);
    return { option: header.getUint32(8), type: header.getUint32(12), data: await this.read(length) };
  }

  /** Greeting + client flags (FIXED_NEWSTYLE | NO_ZEROES). */
  async start(): Promise<void> {
    await this.readGreeting();
    this.send(u32(3));
  }

  /** NBD_OPT_GO; returns the size and transmission flags from NBD_INFO_EXPORT. */
  async go(name = ""): Promise<{ sizeBytes: number; flags: number }> {
    this.sendOption(NBD.opt.go, goData(name));
    let sizeBytes = -1;
    let flags = -1;
    for (;;) {
      const reply = await this.readOptionReply();
      if (reply.type === NBD.rep.ack) break;
      if (reply.type !== NBD.rep.info) throw new Error(`GO refused: reply type 0x${reply.type.toString(16)}`);
      const view = new DataView(reply.data.buffer, reply.data.byteOffset);
      if (view.getUint16(0) === 0) {
        sizeBytes = Number(view.getBigUint64(2));
        flags = view.getUint16(10);
      }
    }
    return { sizeBytes, flags };
  }

  // ---- transmission ----

  request(type: number, cookie: number, offset: number, length: number, flags = 0, payload?: Uint8Array): void {
    const header = new DataView(new ArrayBuffer(28));
    header.setUint32(0, NBD.requestMagic);
    header.setUint16(4, flags);
    header.setUint16(6, type);
    header.setBigUint64(8, BigInt(cookie));
    header.setBigUint64(16, BigInt(offset));
    header.setUint32(24, length);
    this.send(new Uint8Array(header.buffer));
    if (payload !== undefined) this.send(payload);
  }

  /** One simple reply; `readLength` is how many data bytes follow a successful READ reply. */
  async reply(readLength = (_cookie: number) => 0): Promise<{ error: number; cookie: number; data: Uint8Array }> {
    const header = new DataView((await this.read(16)).buffer);
    assert(header.getUint32(0) === NBD.simpleReplyMagic, `bad simple reply magic 0x${header.getUint32(0).toString(16)}`);
    const error = header.getUint32(4);
    const cookie = Number(header.getBigUint64(8));
    const data = error === 0 ? await this.read(readLength(cookie)) : new Uint8Array(0);
    return { error, cookie, data };
  }

  async readAt(offset: number, length: number, cookie = 0xabc): Promise<Uint8Array> {
    this.request(NBD.cmd.read, cookie, offset, length);
    const reply = await this.reply(() => length);
    if (reply.error !== 0) throw new Error(`read failed with errno ${reply.error}`);
    return reply.data;
  }

  async writeAt(offset: number, data: Uint8Array, cookie = 0xdef): Promise<number> {
    this.request(NBD.cmd.write, cookie, offset, data.length, 0, data);
    return (await this.reply()).error;
  }

  disconnect(): void {
    this.request(NBD.cmd.disc, 0, 0, 0);
  }
}

export function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value);
  return bytes;
}

/** NBD_OPT_GO / NBD_OPT_INFO data asking for NBD_INFO_BLOCK_SIZE. */
export function goData(name: string): Uint8Array {
  const nameBytes = new TextEncoder().encode(name);
  const data = new Uint8Array(4 + nameBytes.length + 4);
  const view = new DataView(data.buffer);
  view.setUint32(0, nameBytes.length);
  data.set(nameBytes, 4);
  view.setUint16(4 + nameBytes.length, 1);
  view.setUint16(6 + nameBytes.length, 3);
  return data;
}

/** Bytes with a recognisable pattern per request (so misplaced data shows). */
export function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i += 1) bytes[i] = (seed * 31 + i * 7 + (i >> 9)) & 0xff;
  return bytes;
}
