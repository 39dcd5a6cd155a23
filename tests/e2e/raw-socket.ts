/**
 * Raw byte-level access to any port for the bad-input tests: a socket that sends exactly the bytes
 * given (no framing, no checks) and reports what came back and whether the peer closed; and a
 * flood of garbage and stalled TLS handshakes for the TLS tests.
 */
import type { Socket } from "bun";
import { cbor } from "../../src/protocol/cbor.ts";

/** A raw socket to any port: send bytes, wait for replies or for the peer to close. */
export class RawSocket {
  received = Buffer.alloc(0);
  closed = false;
  #waiters: (() => void)[] = [];
  #socket!: Awaited<ReturnType<typeof Bun.connect>>;
  #pending: Uint8Array[] = [];

  static async connect(address: string): Promise<RawSocket> {
    const raw = new RawSocket();
    const handlers = {
      data: (_s: unknown, chunk: Uint8Array) => {
        raw.received = Buffer.concat([raw.received, chunk]);
        raw.#wake();
      },
      drain: () => raw.#flush(),
      close: () => {
        raw.closed = true;
        raw.#wake();
      },
      error: () => {
        raw.closed = true;
        raw.#wake();
      },
    };
    if (address.startsWith("unix:")) raw.#socket = await Bun.connect({ unix: address.slice(5), socket: handlers });
    else {
      const colon = address.lastIndexOf(":");
      raw.#socket = await Bun.connect({ hostname: address.slice(0, colon), port: Number(address.slice(colon + 1)), socket: handlers });
    }
    return raw;
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }

  #flush(): void {
    while (this.#pending.length > 0 && !this.closed) {
      const head = this.#pending[0]!;
      const written = this.#socket.write(head);
      if (written < head.length) {
        this.#pending[0] = head.subarray(Math.max(written, 0));
        return;
      }
      this.#pending.shift();
    }
  }

  send(bytes: Uint8Array): void {
    this.#pending.push(bytes);
    if (this.#pending.length === 1) this.#flush();
  }

  /** Resolves true once `predicate` holds, false after timeoutMs. */
  async until(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return true;
  }

  /** The peer closed the connection within timeoutMs. */
  peerClosed(timeoutMs = 5_000): Promise<boolean> {
    return this.until(() => this.closed, timeoutMs);
  }

  end(): void {
    this.#socket.end();
  }

  destroy(): void {
    this.#socket.terminate();
  }
}

export function frameOfHeader(header: Uint8Array, lengthOverride?: number): Uint8Array {
  const bytes = new Uint8Array(6 + header.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, lengthOverride ?? 2 + header.length);
  view.setUint16(4, header.length);
  bytes.set(header, 6);
  return bytes;
}

/** Decodes the headers of the complete druvaa frames in `bytes`. */
export function decodeFrames(bytes: Buffer): { type: string; code?: string }[] {
  const frames: { type: string; code?: string }[] = [];
  for (let at = 0; at + 6 <= bytes.length; ) {
    const length = bytes.readUInt32BE(at);
    if (at + 4 + length > bytes.length) break;
    const headerLength = bytes.readUInt16BE(at + 4);
    frames.push(cbor.decode(bytes.subarray(at + 6, at + 6 + headerLength)) as { type: string; code?: string });
    at += 4 + length;
  }
  return frames;
}

/** The `{"ok":false,"error":…}` line a failed command prints with --json. */
export function errorOf(stdout: string): { code: string; message: string; hint?: string } {
  const line = stdout.split("\n").find((l) => l.startsWith('{"ok":false'));
  if (line === undefined) throw new Error(`no JSON error line in: ${stdout}`);
  return (JSON.parse(line) as { error: { code: string; message: string; hint?: string } }).error;
}

/** Opens `count` sockets to HOST:PORT: half send garbage, half start a TLS ClientHello and stall. */
export async function flood(address: string, count: number): Promise<Socket[]> {
  const [hostname, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
  const garbage = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n\u0000\u0001\u0002 not a TLS record");
  const partialHello = new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]); // a ClientHello header, then silence
  const sockets: Socket[] = [];
  for (let index = 0; index < count; index += 1) {
    const socket = await Bun.connect({ hostname, port, socket: { data() {}, error() {}, close() {} } });
    socket.write(index % 2 === 0 ? garbage : partialHello);
    sockets.push(socket);
  }
  return sockets;
}
