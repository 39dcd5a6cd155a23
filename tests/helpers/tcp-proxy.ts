/**
 * A TCP forwarder between a test's peer and a real process, to lose chosen requests on the way:
 * while `dropMatching` is set, a connection whose client sends a chunk starting with text it
 * matches (e.g. /^POST \/config\/commit /) is closed at both ends before the chunk is forwarded,
 * as a network cut at that moment would. Everything else passes unchanged, both ways, with
 * partial writes queued until the socket drains.
 */
import type { Socket } from "bun";

interface Conn {
  client: Socket<Conn>;
  upstream: Socket<Conn> | undefined;
  /** Bytes waiting for the upstream socket (before it connects, or after a partial write). */
  toUpstream: Uint8Array[];
  /** Bytes waiting for the client socket after a partial write. */
  toClient: Uint8Array[];
  ended: boolean;
}

export interface TcpProxy {
  readonly port: number;
  /** HOST:PORT of the proxy, to give the peer instead of the target's. */
  readonly address: string;
  /** While set, connections sending a chunk that starts with matching text are cut there. */
  dropMatching: RegExp | undefined;
  /** How many connections were cut by dropMatching. */
  readonly dropped: number;
  close(): void;
}

function send(socket: Socket<Conn>, queue: Uint8Array[], chunk: Uint8Array): void {
  if (queue.length > 0) {
    queue.push(chunk.slice());
    return;
  }
  const written = socket.write(chunk);
  if (written < chunk.length) queue.push(chunk.slice(Math.max(written, 0)));
}

function flush(socket: Socket<Conn>, queue: Uint8Array[]): void {
  while (queue.length > 0) {
    const head = queue[0]!;
    const written = socket.write(head);
    if (written < head.length) {
      queue[0] = head.subarray(Math.max(written, 0));
      return;
    }
    queue.shift();
  }
}

function end(conn: Conn): void {
  if (conn.ended) return;
  conn.ended = true;
  conn.client.end();
  conn.upstream?.end();
}

export function startTcpProxy(target: { host: string; port: number }): TcpProxy {
  let dropped = 0;
  const connections = new Set<Conn>();
  const proxy = {
    dropMatching: undefined as RegExp | undefined,
    get dropped() {
      return dropped;
    },
  };
  const listener = Bun.listen<Conn>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(client) {
        const conn: Conn = { client, upstream: undefined, toUpstream: [], toClient: [], ended: false };
        client.data = conn;
        connections.add(conn);
        Bun.connect<Conn>({
          hostname: target.host,
          port: target.port,
          socket: {
            open(upstream) {
              upstream.data = conn;
              if (conn.ended) return void upstream.end();
              conn.upstream = upstream;
              flush(upstream, conn.toUpstream);
            },
            data(_upstream, chunk) {
              if (!conn.ended) send(conn.client, conn.toClient, chunk);
            },
            drain(upstream) {
              flush(upstream, conn.toUpstream);
            },
            close() {
              end(conn);
            },
            error() {
              end(conn);
            },
            connectError() {
              end(conn);
            },
          },
        }).catch(() => end(conn));
      },
      data(client, chunk) {
        const conn = client.data;
        if (conn.ended) return;
        const head = Buffer.from(chunk.subarray(0, 64)).toString("latin1");
        if (proxy.dropMatching?.test(head)) {
          dropped += 1;
          end(conn);
          return;
        }
        if (conn.upstream === undefined) conn.toUpstream.push(chunk.slice());
        else send(conn.upstream, conn.toUpstream, chunk);
      },
      drain(client) {
        flush(client, client.data.toClient);
      },
      close(client) {
        connections.delete(client.data);
        end(client.data);
      },
      error(client) {
        end(client.data);
      },
    },
  });
  return Object.assign(proxy, {
    port: listener.port,
    address: `127.0.0.1:${listener.port}`,
    close() {
      for (const conn of connections) end(conn);
      listener.stop(true);
    },
  });
}
