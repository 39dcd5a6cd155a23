/**
 * A TCP proxy that counts the bytes crossing it: the benchmark puts it between the client and
 * staging to measure what a resync really puts on the wire (frame headers included), the figure
 * to compare with rsync's "Total bytes sent". Each accepted connection gets its own upstream
 * connection; when either side closes or fails, the other is closed too, so a SIGKILLed staging
 * looks to the client exactly like a lost link. node:net streams queue what a socket cannot take
 * at once and pipe() applies backpressure, so nothing is dropped.
 *
 * Not for throughput figures: it is one more hop through this process's event loop.
 */
import { connect, createServer, type Socket } from "node:net";

export interface ByteProxy {
  /** HOST:PORT to give the client instead of staging's address. */
  readonly address: string;
  /** Bytes from the client towards staging, since the proxy started. */
  readonly upBytes: number;
  /** Bytes from staging towards the client. */
  readonly downBytes: number;
  /** Connections accepted (reconnects included). */
  readonly connections: number;
  close(): Promise<void>;
}

export async function startByteProxy(upstreamHost: string, upstreamPort: number): Promise<ByteProxy> {
  let upBytes = 0;
  let downBytes = 0;
  let connections = 0;
  const open = new Set<Socket>();
  const track = (socket: Socket) => {
    open.add(socket);
    socket.once("close", () => open.delete(socket));
  };
  const server = createServer((downstream) => {
    connections += 1;
    const upstream = connect(upstreamPort, upstreamHost);
    track(downstream);
    track(upstream);
    const closeBoth = () => {
      downstream.destroy();
      upstream.destroy();
    };
    // An error on either side ends the pair; the peers see a closed connection, not an error here.
    downstream.on("error", closeBoth).on("close", closeBoth);
    upstream.on("error", closeBoth).on("close", closeBoth);
    downstream.on("data", (chunk: Buffer) => (upBytes += chunk.length));
    upstream.on("data", (chunk: Buffer) => (downBytes += chunk.length));
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const bound = server.address();
  if (bound === null || typeof bound === "string") throw new Error("the byte proxy did not bind a TCP port");
  return {
    address: `127.0.0.1:${bound.port}`,
    get upBytes() {
      return upBytes;
    },
    get downBytes() {
      return downBytes;
    },
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
